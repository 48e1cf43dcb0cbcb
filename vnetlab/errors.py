"""The one base class of failures a user can act on."""


class VnetlabError(Exception):
    """A failure whose message says what went wrong and what to do: the CLI prints it without a traceback."""
