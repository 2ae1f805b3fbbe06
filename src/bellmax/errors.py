"""One exception type for mistakes a user can fix (bad flag, unknown env, missing checkpoint).

The CLI turns a `BellmaxError` into one readable line on stderr and a non-zero exit code; it
never shows a traceback for these. Library users can catch it like any other exception.
"""


class BellmaxError(Exception):
    """A user-facing error: the message names the problem and how to fix it."""


class ConfigError(BellmaxError, ValueError):
    """A configuration field holds a value outside its allowed range."""
