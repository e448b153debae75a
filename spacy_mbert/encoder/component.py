"""``mbert_transformer``: spacy-transformers' ``transformer`` component, with its weights in their own file.

The same component (listeners, training, ``doc._.trf_data``) with two differences:
the default model is ``spacy-mbert.MBertTransformer.v1`` on M-BERT, and
``to_disk``/``from_disk`` keep the encoder's weights in a file beside the model
file, memory-mapped on load (see ``weights_file.py``): ``spacy.load`` then holds
about one copy of the weights instead of four to five, and takes less time.
"""

from pathlib import Path
from typing import Callable, Iterable, Iterator, List

from spacy.language import Language
from spacy.tokens import Doc
from spacy_transformers.data_classes import FullTransformerBatch
from spacy_transformers.pipeline_component import Transformer, install_extensions
from spacy_transformers.util import batch_by_length
from thinc.api import Config, Model

from ..batching import read_ahead
from .weights_file import weights_beside

DEFAULT_CONFIG_STR = """
[transformer]
max_batch_items = 4096
sort_buffer = 256

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
    sort_buffer: int,
) -> "MBertTransformerPipe":
    """A shared multilingual BERT encoder for the components that listen to it (e.g. ``textcat``).

    model (Model[List[Doc], FullTransformerBatch]): The encoder, usually
        ``spacy-mbert.MBertTransformer.v1`` (hub name or local checkpoint, loaded
        offline-first at initialization, saved inside the pipeline).
    set_extra_annotations (Callable): Sets more annotations from the encoder's output
        (after ``doc._.trf_data``); none by default.
    max_batch_items (int): Most padded spaCy tokens per batch in prediction.
    sort_buffer (int): In ``nlp.pipe``, read up to this many docs ahead (at least
        ``batch_size``, and no more once they hold ``4 * max_batch_items`` tokens) and
        batch them by length, so batches need less padding; docs still come out in
        input order. 0 reads ``batch_size`` docs, as spacy-transformers does.
    """
    pipe = MBertTransformerPipe(nlp.vocab, model, set_extra_annotations, name=name, max_batch_items=max_batch_items)
    # An attribute, not in cfg: from_disk would restore a saved cfg over the config's value.
    pipe.sort_buffer = sort_buffer
    return pipe


class MBertTransformerPipe(Transformer):
    """spacy-transformers' ``Transformer`` whose weights are saved to, and memory-mapped from, their own file."""

    sort_buffer: int = 0

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotate a stream of docs; yields them in order.

        Like spacy-transformers' ``Transformer.pipe``, except that the docs batched
        by length are read ``sort_buffer`` at a time instead of ``batch_size``:
        sentences of mixed length then share batches with sentences of the same
        length, and the encoder runs on less padding.
        """
        install_extensions()
        for buffer in read_ahead(stream, batch_size, self.sort_buffer, 4 * self.cfg["max_batch_items"]):
            for indices in batch_by_length(buffer, self.cfg["max_batch_items"]):
                subbatch = [buffer[i] for i in indices]
                self.set_annotations(subbatch, self.predict(subbatch))
            yield from buffer

    def to_disk(self, path, *, exclude=tuple()) -> None:
        with weights_beside(self.model, Path(path) / "model"):
            super().to_disk(path, exclude=exclude)

    def from_disk(self, path, *, exclude=tuple()) -> "MBertTransformerPipe":
        with weights_beside(self.model, Path(path) / "model"):
            return super().from_disk(path, exclude=exclude)
