"""The encoder: one BERT-family network that every head of this package uses.

- :mod:`.architecture`: ``spacy-mbert.MBertTransformer.v1``, the shared encoder of
  the ``transformer`` component (textcat and other listeners);
- :mod:`.component`: the ``mbert_transformer`` component (read-ahead ``nlp.pipe``,
  weights in their own file);
- :mod:`.owned`: the encoder a task component owns (``mbert_qa``,
  ``mbert_translator``): build, initialize, "not initialized" guard, inference mode,
  position limit;
- :mod:`.loading`: offline-first loading with one-line errors;
- :mod:`.shim`: ``MBertShim``, bounded length-sorted prediction, checked serialization;
- :mod:`.weights_file`: memory-mapped weights files with a SHA-256;
- :mod:`.windows`: windows fitted to the encoder's input length;
- :mod:`.alignment`: token ↔ wordpiece alignment from character offsets;
- :mod:`.span_getters`: ``spacy-mbert.wordpiece_strided_spans.v1``;
- :mod:`.rows`: slicing, reordering and joining batch rows of tensors;
- :mod:`.tokenize`: the windows' wordpieces, reusing the span getter's counting pass;
- :mod:`.quantize`: ``spacy-mbert quantize`` (bf16 and int8 encoders for CPU inference).
"""

from .architecture import MBertTransformer, MBertTransformerModel
from .loading import DEFAULT_ENCODER, check_vocabularies_match, load_pretrained
from .owned import get_shim, inference, owned_encoder, position_limit
from .shim import WEIGHTS_CHECKSUM_KEY, MBertShim
from .windows import fit_windows

__all__ = [
    "DEFAULT_ENCODER",
    "MBertShim",
    "MBertTransformer",
    "MBertTransformerModel",
    "WEIGHTS_CHECKSUM_KEY",
    "check_vocabularies_match",
    "fit_windows",
    "get_shim",
    "inference",
    "load_pretrained",
    "owned_encoder",
    "position_limit",
]
