"""``spacy-mbert.MBertTransformer.v1``: the shared encoder of the ``transformer`` component.

spacy-transformers' ``TransformerModel`` (the same attributes, listeners and
output, ``FullTransformerBatch``) built from this package's parts:

- loading (``loading.py``) tries the local cache/directory first and, when the
  weights cannot be had, fails with one line that names the model and the fix
  (instead of a long huggingface_hub traceback);
- the shim (``shim.py``) saves checkpoints whose tokenizer is only a
  ``tokenizer.json`` (XLM-R-vocabulary models such as multilingual-e5), which
  spacy-transformers 1.4 cannot, and checks the saved weights' SHA-256, so
  ``spacy.load`` needs neither network nor cache and a damaged file gives a clear error;
- nothing of a long doc is dropped: the default windows
  (``spacy-mbert.wordpiece_strided_spans.v1``) fit the encoder, and a single
  spaCy token longer than a window is split over several encoder rows
  (``windows.py``) where spacy-transformers would cut it;
- with ``base`` set, the network is not a copy of its own: it runs on the frozen
  weights of the pipeline's ``mbert_base`` component, with a LoRA adapter
  (``adapter``) that its listeners train (``on_base.py``).
"""

import copy
from typing import Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.align import get_alignment
from spacy_transformers.data_classes import FullTransformerBatch, HFObjects, WordpieceBatch
from spacy_transformers.layers._util import replace_listener, replace_listener_cfg
from spacy_transformers.layers.transformer_model import (
    _convert_transformer_inputs,
    _convert_transformer_outputs,
    huggingface_tokenize,
    set_pytorch_transformer,
)
from spacy_transformers.util import maybe_flush_pytorch_cache
from thinc.api import Model
from thinc.layers.pytorchwrapper import forward as pytorch_forward

from ..errors import corrupted_file_errors
from .alignment import align_by_offsets
from .loading import DEFAULT_ENCODER, load_pretrained
from .on_base import OnBaseShim, ensure_built, new_task_network, task_network
from .shim import MBertShim
from .span_getters import WordpieceStridedSpans, configure_wordpiece_strided_spans
from .tokenize import special_template, tokenize_windows
from .windows import fit_windows

# Prediction runs windows in length-sorted groups of this many (less padding).
LENGTH_SORTED_ROWS = 16


@registry.architectures("spacy-mbert.MBertTransformer.v1")
def MBertTransformer(
    *,
    name: str = DEFAULT_ENCODER,
    get_spans: Optional[Callable] = None,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    base: Optional[str] = None,
    adapter=None,
) -> Model[List[Doc], FullTransformerBatch]:
    """A BERT-family encoder for the ``transformer`` component.

    name (str): Hub name (e.g. "bert-base-multilingual-cased") or local checkpoint directory.
    get_spans (Callable[[List[Doc]], List[List[Span]]]): Splits docs into windows; defaults
        to ``spacy-mbert.wordpiece_strided_spans.v1``: windows of 128 tokens with a stride
        of 96, shortened where they would have more wordpieces than the encoder takes.
        A span getter with a ``set_tokenizer`` method is given the tokenizer before each use.
    tokenizer_config (dict): Keyword arguments for ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): Keyword arguments for ``AutoConfig.from_pretrained``.
    mixed_precision (bool): Run the forward pass in mixed precision (GPU).
    grad_scaler_config (dict): Settings for the gradient scaler used with mixed precision.
    base (Optional[str]): Name of the pipeline's ``mbert_base`` component whose frozen
        weights this encoder runs on (stored once for every head; ``name`` is then the
        base's). None: the component loads and fine-tunes its own copy.
    adapter (Optional[LoRASettings]): With ``base``: the LoRA adapter the listeners train
        (``spacy-mbert.LoRA.v1``); None keeps the base's outputs fixed.
    """
    if get_spans is None:
        get_spans = configure_wordpiece_strided_spans(window=128, stride=96)
    return MBertTransformerModel(
        name,
        get_spans,
        tokenizer_config=dict(tokenizer_config),
        transformer_config=dict(transformer_config),
        mixed_precision=mixed_precision,
        grad_scaler_config=dict(grad_scaler_config),
        base=base,
        adapter=adapter,
    )


class MBertTransformerModel(Model):
    """The encoder model: this module's forward and init around an ``MBertShim`` wrapper.

    A ``Model`` subclass for two things only: the ``tokenizer``/``transformer``
    properties spacy-transformers' ``TransformerModel`` has (code written for it
    reads them), and a damaged model file failing with one line. ``copy`` builds
    another instance of this class, so a copy keeps both.
    """

    def __init__(
        self,
        name: str,
        get_spans: Callable,
        *,
        tokenizer_config: dict,
        transformer_config: dict,
        mixed_precision: bool = False,
        grad_scaler_config: dict = {},
        base: Optional[str] = None,
        adapter=None,
    ):
        hf_objects = HFObjects(None, None, None, dict(tokenizer_config), dict(transformer_config))
        settings = dict(mixed_precision=mixed_precision, grad_scaler_config=dict(grad_scaler_config))
        if base is None:
            shim = MBertShim(hf_objects, **settings)
        else:
            shim = OnBaseShim(
                hf_objects,
                base_upstream=base,
                rebuild=task_network(_auto_model(), base_of=lambda network: network),
                adapter=adapter,
                **settings,
            )
        shim.length_sorted_rows = LENGTH_SORTED_ROWS
        wrapper = Model(
            "hf-pytorch",
            pytorch_forward,
            attrs={"convert_inputs": _convert_transformer_inputs, "convert_outputs": _convert_transformer_outputs},
            shims=[shim],
            dims={"nI": None, "nO": None},
        )
        super().__init__(
            "transformer",
            forward,
            init=init,
            layers=[wrapper],
            dims={"nO": None},
            attrs={
                "get_spans": get_spans,
                "name": name,
                "set_transformer": set_pytorch_transformer,
                "has_transformer": False,
                "flush_cache_chance": 0.0,
                "replace_listener": replace_listener,
                "replace_listener_cfg": replace_listener_cfg,
                "mixed_precision": mixed_precision,
                "grad_scaler_config": dict(grad_scaler_config),
            },
        )
        self._base_settings = {"base": base, "adapter": adapter}

    @property
    def shim(self) -> MBertShim:
        return self.layers[0].shims[0]

    @property
    def tokenizer(self):
        return self.shim._hfmodel.tokenizer

    @property
    def transformer(self):
        return self.shim._hfmodel.transformer

    @property
    def _init_tokenizer_config(self) -> dict:
        return self.shim._hfmodel._init_tokenizer_config

    @property
    def _init_transformer_config(self) -> dict:
        return self.shim._hfmodel._init_transformer_config

    def from_bytes(self, bytes_data: bytes) -> "MBertTransformerModel":
        with corrupted_file_errors("The transformer model file"):
            return super().from_bytes(bytes_data)

    def copy(self) -> "MBertTransformerModel":
        """A copy with its own parameters and shim (the encoder's weights are copied too)."""
        copied = MBertTransformerModel(
            self.attrs["name"],
            self.attrs["get_spans"],
            tokenizer_config=dict(self._init_tokenizer_config or {}),
            transformer_config=dict(self._init_transformer_config or {}),
            mixed_precision=self.attrs["mixed_precision"],
            grad_scaler_config=self.attrs["grad_scaler_config"],
            **self._base_settings,
        )
        copied.attrs["has_transformer"] = self.attrs["has_transformer"]
        copied.params = copy.deepcopy({name: self.get_param(name) for name in self.param_names if self.has_param(name)})
        copied.dims = copy.deepcopy(self._dims)
        copied.layers[0] = copy.deepcopy(self.layers[0])
        for name in self.grad_names:
            copied.set_grad(name, self.get_grad(name).copy())
        return copied


def _auto_model():
    from transformers import AutoModel

    return AutoModel


def init(model: MBertTransformerModel, X=None, Y=None) -> None:
    """Load the encoder once (offline-first); later calls keep the weights."""
    if model.attrs["has_transformer"]:
        return
    if isinstance(model.shim, OnBaseShim):
        build = new_task_network(model.shim.rebuild, dict(model._init_transformer_config or {}))
        hf_objects = model.shim.new_network(build)
    else:
        hf_objects = load_pretrained(model.attrs["name"], model._init_tokenizer_config, model._init_transformer_config)
    # Sets the weights, the tokenizer and the output width (nO).
    model.attrs["set_transformer"](model, hf_objects)


def forward(model: MBertTransformerModel, docs: List[Doc], is_train: bool) -> Tuple[FullTransformerBatch, Callable]:
    """spacy-transformers' forward pass, except for what happens to windows that are too long.

    Windows are fitted to the encoder by :func:`~.windows.fit_windows` (a window
    that is one spaCy token too long is split over several rows, others are cut
    with a warning), and the alignment is computed from character offsets in numpy
    (``alignment.py``) where the tokenizer gives them.
    """
    ensure_built(model.shim)
    tokenizer = model.tokenizer
    get_spans = model.attrs["get_spans"]
    if hasattr(get_spans, "set_tokenizer"):
        # Set on every call: after spacy.load or a copy, the tokenizer is another object.
        get_spans.set_tokenizer(tokenizer)
    if isinstance(get_spans, WordpieceStridedSpans):
        nested_spans, doc_pieces = get_spans.spans_and_pieces(docs)
    else:
        nested_spans, doc_pieces = get_spans(docs), None
    flat_spans = [span for doc_spans in nested_spans for span in doc_spans]
    maybe_flush_pytorch_cache(chance=model.attrs.get("flush_cache_chance", 0))
    if getattr(tokenizer, "is_fast", False):
        # Each doc's wordpieces from the span getter's counting pass, reused (tokenize.py).
        template = special_template(tokenizer)
        batch_encoding = tokenize_windows(tokenizer, docs, nested_spans, doc_pieces, template)
    else:
        batch_encoding = huggingface_tokenize(tokenizer, [span.text for span in flat_spans])
    wordpieces = WordpieceBatch.from_batch_encoding(batch_encoding)
    if "offset_mapping" in batch_encoding:
        align = align_by_offsets(flat_spans, batch_encoding["offset_mapping"])
    else:
        align = get_alignment(flat_spans, wordpieces.strings, tokenizer.all_special_tokens)
    nested_spans, wordpieces, align = fit_windows(nested_spans, wordpieces, align, tokenizer)
    model_output, bp_tensors = model.layers[0](wordpieces, is_train)
    output = FullTransformerBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output, align=align)

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        bp_tensors(d_output.model_output)
        return docs

    return output, backprop
