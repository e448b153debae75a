"""Errors users can act on: one line that names the problem and the fix.

Code raises :class:`UserError` (or a subclass) for anything caused by input,
configuration or environment. The CLI prints such errors without a traceback.
"""


class UserError(ValueError):
    """A problem with the user's input, config or environment; the message says how to fix it."""


class EncoderNotFoundError(UserError, OSError):
    """The encoder weights could not be found locally or downloaded."""


class DataFormatError(UserError):
    """A data file is malformed; the message names the file, line and field."""
