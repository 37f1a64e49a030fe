"""The exceptions the command line turns into one line: exit status 2 for bad input, 130 for an interrupt."""


class BadInputError(ValueError):
    """Input, option or checkpoint that cannot be used; the message is shown to the user as is."""


class Interrupted(Exception):
    """A render stopped by SIGINT/SIGTERM; the message says how to resume. `busy`: a chunk is still
    computing in a worker thread, so the process should exit without waiting for it."""

    def __init__(self, message: str, busy: bool):
        super().__init__(message)
        self.busy = busy
