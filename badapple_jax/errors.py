"""The one exception the command line turns into a one-line message and exit status 2."""


class BadInputError(ValueError):
    """Input, option or checkpoint that cannot be used; the message is shown to the user as is."""
