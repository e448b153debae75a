"""Text classification on the shared encoder: ``spacy-mbert.ClsPoolTextCat.v1`` and its parts.

- :mod:`.architecture`: the head (listener -> [CLS] ⊕ pooled wordpieces -> MLP) for
  spaCy's ``textcat`` and ``textcat_multilabel``;
- :mod:`.layers`: its thinc layers (``cls_pool``, ``sigmoid_bce``, ``batch_mean_gradient``);
- :mod:`.convert`: JSON Lines -> docs with ``doc.cats`` (``spacy-mbert convert textcat``);
- :mod:`.scorer`: accuracy, macro-F1 and AUC per language for ``spacy-mbert evaluate``.

``ClsPoolTextCat`` is imported on first use: ``spacy-mbert convert textcat``
reads its data through :mod:`.convert` without loading spacy-transformers.
"""

from importlib import import_module

_EXPORTS = {"ClsPoolTextCat": "architecture", "ClsPoolTextCatModel": "architecture"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
