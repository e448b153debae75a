"""The ``Doc._`` attributes this package reads and writes.

They live in ``doc.user_data``, so ``DocBin(store_user_data=True)`` keeps them
in converted training data:

- ``doc._.lang``: language code of the text ("de", "zh", ...), for per-language
  evaluation; ``None`` when unknown.
- ``doc._.question``: the question to answer over ``doc.text`` (QA input).
- ``doc._.answers``: list of ``{"text", "start_char", "end_char"[, "score"]}``
  dicts, best first — gold answers on reference docs, predictions otherwise.
- ``doc._.translation``: the translation of ``doc.text`` — the reference on
  training docs, the model's output otherwise.
"""

from spacy.tokens import Doc

DOC_EXTENSIONS = ("lang", "question", "answers", "translation")


def install_extensions() -> None:
    """Register the ``Doc._`` attributes (idempotent)."""
    for name in DOC_EXTENSIONS:
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)


def has_text(value: object) -> bool:
    """True for a string with more than whitespace (a question or translation worth using)."""
    return isinstance(value, str) and bool(value.strip())
