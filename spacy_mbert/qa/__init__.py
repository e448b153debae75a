"""Extractive question answering: the ``mbert_qa`` component and its parts.

- :mod:`.features`: question + context pairs as overlapping BERT windows;
- :mod:`.model`: ``spacy-mbert.QuestionAnswering.v1``, encoder + start/end head;
- :mod:`.decoding`: n-best span search, "no answer", exact character offsets;
- :mod:`.scorer`: SQuAD / MLQA exact match and F1, per language (also for ``spacy-mbert evaluate``);
- :mod:`.convert`: SQuAD JSON -> docs (``spacy-mbert convert qa``);
- :mod:`.component`: the ``mbert_qa`` pipeline component.

The names below are imported on first use: ``spacy-mbert convert qa`` reads
SQuAD files through :mod:`.convert` without loading torch and transformers.
"""

from importlib import import_module

_EXPORTS = {
    "QuestionAnswerer": "component",
    "make_qa": "component",
    "QuestionAnswering": "model",
    "Prediction": "decoding",
    "decode": "decoding",
    "Window": "features",
    "encode_pairs": "features",
    "make_qa_scorer": "scorer",
    "normalize_answer": "scorer",
    "score_qa": "scorer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
