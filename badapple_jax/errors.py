"""The exceptions the command line turns into one line: exit status 2 for bad input, 130 for an interrupt."""
import re

OPTION = re.compile(r"`([a-z][a-z0-9_]*)`")  # an option's name, marked in an OptionError's message


class BadInputError(ValueError):
    """Input, option or checkpoint that cannot be used; the message is shown to the user as is."""


class OptionError(BadInputError):
    """A bad value of a named option. The message marks option names as `name`: the API shows them as its
    parameter names (steps, lr_min), the command line as its flags (--steps, --lr-min) through `flags()`."""

    def __init__(self, marked: str):
        super().__init__(OPTION.sub(r"\1", marked))
        self.marked = marked

    def flags(self) -> str:
        return OPTION.sub(lambda m: "--" + m[1].replace("_", "-"), self.marked)


class Interrupted(Exception):
    """A render stopped by SIGINT/SIGTERM; the message says how to resume. `busy`: a chunk is still
    computing in a worker thread, so the process should exit without waiting for it."""

    def __init__(self, message: str, busy: bool):
        super().__init__(message)
        self.busy = busy
