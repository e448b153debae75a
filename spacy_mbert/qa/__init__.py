"""Extractive question answering: the ``mbert_qa`` component and its parts.

- :mod:`.features`: question + context pairs as overlapping BERT windows;
- :mod:`.model`: ``spacy-mbert.QuestionAnswering.v1``, encoder + start/end head;
- :mod:`.decoding`: n-best span search, "no answer", exact character offsets;
- :mod:`.scorer`: SQuAD / MLQA exact match and F1, per language;
- :mod:`.component`: the ``mbert_qa`` pipeline component.
"""

from .component import QuestionAnswerer, make_qa
from .decoding import Prediction, decode
from .features import Window, encode_pairs
from .model import QuestionAnswering
from .scorer import make_qa_scorer, normalize_answer, score_qa

__all__ = [
    "QuestionAnswerer",
    "make_qa",
    "QuestionAnswering",
    "Prediction",
    "decode",
    "Window",
    "encode_pairs",
    "make_qa_scorer",
    "normalize_answer",
    "score_qa",
]
