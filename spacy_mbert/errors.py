"""Errors users can act on: one line that names the problem and the fix.

Code raises :class:`UserError` (or a subclass) for anything caused by input,
configuration or environment. The CLI prints such errors without a traceback.
"""

from contextlib import contextmanager


class UserError(ValueError):
    """A problem with the user's input, config or environment; the message says how to fix it."""


class EncoderNotFoundError(UserError, OSError):
    """The encoder weights could not be found locally or downloaded."""


class DataFormatError(UserError):
    """A data file is malformed; the message names the file, line and field."""


class WeightsChecksumError(UserError):
    """Saved weights that differ from the checksum saved with them: the file changed after saving."""

    def __init__(self, detail: str, subject: str = "A model file of this pipeline"):
        self.detail = detail
        super().__init__(f"{subject} {detail}")

    def naming(self, subject: str) -> "WeightsChecksumError":
        """The same error, naming the file, e.g. "The 'mbert_qa' component's model file"."""
        return WeightsChecksumError(self.detail, subject)


@contextmanager
def corrupted_file_errors(what: str):
    """Turn the msgpack/torch errors of reading a damaged model file into one line with the fix.

    what (str): What is being read, e.g. "The 'mbert_translator' component's model file".
    A WeightsChecksumError is raised again naming ``what``; other UserErrors and
    OSErrors (a missing file) pass through unchanged.
    """
    try:
        yield
    except WeightsChecksumError as error:
        raise error.naming(what) from None
    except (UserError, OSError):
        raise
    except Exception as error:  # msgpack and torch raise many unrelated types
        raise UserError(
            f"{what} is corrupted or truncated ({type(error).__name__}: {first_line(error)}); "
            f"re-save or re-download the pipeline."
        ) from None


def first_line(error: BaseException, limit: int = 120) -> str:
    """The first line of an error's message, at most ``limit`` characters ("" for an empty message).

    Library errors (msgpack, torch, huggingface_hub) can run to pages; a one-line
    UserError quotes only this much of them.
    """
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else ""


def preview(text: str, limit: int = 40) -> str:
    """``repr`` of a text cut to ``limit`` characters, to name an input in a message."""
    return repr(text if len(text) <= limit else text[:limit] + "…")
