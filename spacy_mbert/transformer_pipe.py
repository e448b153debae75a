"""``mbert_transformer``: spacy-transformers' ``transformer`` component, with its weights in their own file.

The same component (listeners, training, ``doc._.trf_data``) with two differences:
the default model is ``spacy-mbert.MBertTransformer.v1`` on M-BERT, and
``to_disk``/``from_disk`` keep the encoder's weights in a file beside the model
file, memory-mapped on load (see ``weights_file.py``): ``spacy.load`` then holds
about one copy of the weights instead of four to five, and takes less time.
"""

from pathlib import Path
from typing import Callable, List

from spacy.language import Language
from spacy.tokens import Doc
from spacy_transformers.data_classes import FullTransformerBatch
from spacy_transformers.pipeline_component import Transformer
from thinc.api import Config, Model

from .weights_file import weights_beside

DEFAULT_CONFIG_STR = """
[transformer]
max_batch_items = 4096

[transformer.set_extra_annotations]
@annotation_setters = "spacy-transformers.null_annotation_setter.v1"

[transformer.model]
@architectures = "spacy-mbert.MBertTransformer.v1"
name = "bert-base-multilingual-cased"
tokenizer_config = {"use_fast": true}
transformer_config = {}
mixed_precision = false
grad_scaler_config = {}

[transformer.model.get_spans]
@span_getters = "spacy-mbert.wordpiece_strided_spans.v1"
window = 128
stride = 96
"""
DEFAULT_CONFIG = Config().from_str(DEFAULT_CONFIG_STR)


@Language.factory("mbert_transformer", assigns=["doc._.trf_data"], default_config=DEFAULT_CONFIG["transformer"])
def make_mbert_transformer(
    nlp: Language,
    name: str,
    model: Model[List[Doc], FullTransformerBatch],
    set_extra_annotations: Callable[[List[Doc], FullTransformerBatch], None],
    max_batch_items: int,
) -> "MBertTransformerPipe":
    """A shared multilingual BERT encoder for the components that listen to it (e.g. ``textcat``).

    model (Model[List[Doc], FullTransformerBatch]): The encoder, usually
        ``spacy-mbert.MBertTransformer.v1`` (hub name or local checkpoint, loaded
        offline-first at initialization, saved inside the pipeline).
    set_extra_annotations (Callable): Sets more annotations from the encoder's output
        (after ``doc._.trf_data``); none by default.
    max_batch_items (int): Most padded wordpieces per batch in prediction.
    """
    return MBertTransformerPipe(
        nlp.vocab, model, set_extra_annotations, name=name, max_batch_items=max_batch_items
    )


class MBertTransformerPipe(Transformer):
    """spacy-transformers' ``Transformer`` whose weights are saved to, and memory-mapped from, their own file."""

    def to_disk(self, path, *, exclude=tuple()) -> None:
        with weights_beside(self.model, Path(path) / "model"):
            super().to_disk(path, exclude=exclude)

    def from_disk(self, path, *, exclude=tuple()) -> "MBertTransformerPipe":
        with weights_beside(self.model, Path(path) / "model"):
            return super().from_disk(path, exclude=exclude)
