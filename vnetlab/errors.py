"""The one base class of failures a user can act on."""

from vnetlab.printable import printable


class VnetlabError(Exception):
    """A failure whose message says what went wrong and what to do: the CLI prints it without a traceback.

    Its message often quotes a guest or another host (an SSH command's output, a console tail, a
    remote command's stderr): it is made printable here, once, for every output it reaches."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(printable(a) if isinstance(a, str) else a for a in args))


class InputError(VnetlabError):
    """Bad input given on the command line or through an API (not a file's, which has its lines):
    the CLI exits 2 with the message."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM, raised by the lab's signal handler: not an error of any step, so it passes
    every `except Exception` (a check that isolates its own failures must not swallow it)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.consequence = "the lab was torn down"  # what the CLI reports; `check` never tears down
