"""The one base class of failures a user can act on."""


class VnetlabError(Exception):
    """A failure whose message says what went wrong and what to do: the CLI prints it without a traceback."""


class InputError(VnetlabError):
    """Bad input given on the command line or through an API (not a file's, which has its lines):
    the CLI exits 2 with the message."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM, raised by the lab's signal handler: not an error of any step, so it passes
    every `except Exception` (a check that isolates its own failures must not swallow it)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.consequence = "the lab was torn down"  # what the CLI reports; `check` never tears down
