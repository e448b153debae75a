"""Masked-LM pretraining of BERT-family encoders on raw multilingual text (``spacy-mbert pretrain``).

Public API:

- :func:`pretrain` — train and write a standard Hugging Face checkpoint directory;
- :func:`evaluate_perplexity` — held-out masked-LM loss/perplexity per language for any checkpoint;
- :func:`language_probabilities`, :func:`mask_tokens` — the sampling and masking building blocks.
"""

from .config import PretrainConfig, resolve_config
from .data import LanguageSampler, language_probabilities, pack_documents, read_documents
from .evaluation import evaluate_perplexity
from .masking import mask_tokens
from .trainer import pretrain

__all__ = [
    "PretrainConfig",
    "LanguageSampler",
    "evaluate_perplexity",
    "language_probabilities",
    "mask_tokens",
    "pack_documents",
    "pretrain",
    "read_documents",
    "resolve_config",
]
