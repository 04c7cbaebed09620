"""The one exception type the engine raises for bad input: its message says what is wrong and what
to do, so the CLI and the app can show it as-is instead of a traceback."""


class UserError(ValueError):
    """Bad input from a user (names, files, shapes, splits); the message is meant to be shown."""
