"""``spacy-mbert.QuestionAnswering.v1``: a BERT encoder with a start/end head, as a thinc model.

The model is Hugging Face's ``AutoModelForQuestionAnswering`` (the encoder plus
one linear layer giving a start and an end logit per wordpiece) inside an
``MBertShim``, so the pipeline saves config, weights (head included) and
tokenizer, and ``spacy.load`` rebuilds it without network or cache.

Input: a :class:`~spacy_mbert.qa.features.PaddedBatch` of windows.
Output: ``(start_logits, end_logits)``, two ``(n_windows, width)`` float arrays.
Backprop takes ``(d_start, d_end)`` of the same shapes.

The encoder is either the QA component's own copy (``base = null``: full
fine-tuning) or the pipeline's shared ``mbert_base`` with a LoRA adapter
(``base = "mbert_base"``, ``adapter``): question and context are encoded together,
as one BERT pair, which the shared per-doc ``transformer`` listener cannot do, so
the head runs the base itself.
"""

from typing import Dict, Optional, Tuple

import torch
from spacy.util import registry
from spacy_transformers.data_classes import HFObjects
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats2d
from transformers import AutoModelForQuestionAnswering

from ..encoder.loading import DEFAULT_ENCODER, load_pretrained
from ..encoder.on_base import OnBaseShim, new_task_network, task_network
from ..encoder.owned import (
    empty_hf_objects,
    get_shim,
    get_tokenizer,
    get_transformer,
    inference,
    owned_encoder,
    position_limit,
)
from ..encoder.shim import MBertShim
from ..errors import UserError
from .features import PaddedBatch, check_window_settings

Logits = Tuple[Floats2d, Floats2d]

__all__ = ["QuestionAnswering", "check_encoder", "get_tokenizer", "get_transformer"]


@registry.architectures("spacy-mbert.QuestionAnswering.v1")
def QuestionAnswering(
    *,
    name: str = DEFAULT_ENCODER,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    base: Optional[str] = None,
    adapter=None,
) -> Model[PaddedBatch, Logits]:
    """Extractive QA model: encoder + start/end logits per wordpiece.

    name (str): Hub name (e.g. "bert-base-multilingual-cased") or local checkpoint
        directory. Loaded when the pipeline is initialized (``spacy train``,
        ``nlp.initialize()``), never by ``spacy.load``: the weights are saved in the pipeline.
    max_seq_length (int): Wordpieces per window (question, context part and special tokens);
        at most what the encoder reads (512 for BERT and XLM-R), checked at initialization.
    doc_stride (int): Wordpieces shared by consecutive windows of a long context (as run_qa.py).
    mixed_precision (bool): Run the encoder in mixed precision (GPU).
    grad_scaler_config (dict): Settings for the gradient scaler used with mixed precision.
    tokenizer_config (dict): Keyword arguments for ``AutoTokenizer.from_pretrained``;
        the tokenizer must be a fast one (character offsets).
    transformer_config (dict): Keyword arguments for ``AutoConfig.from_pretrained``
        (e.g. ``{"hidden_dropout_prob": 0.1}``).
    base (Optional[str]): Name of the pipeline's ``mbert_base`` component to run on (its
        frozen weights, stored once for every head); ``name`` and ``tokenizer_config`` are
        then the base's. None: this head loads and fine-tunes its own encoder copy.
    adapter (Optional[LoRASettings]): With ``base``: the head's LoRA adapter
        (``spacy-mbert.LoRA.v1``); None trains only the start/end layer.
    """
    check_window_settings(max_seq_length, doc_stride)
    settings = dict(mixed_precision=mixed_precision, grad_scaler_config=dict(grad_scaler_config))
    hf_objects = empty_hf_objects(tokenizer_config, transformer_config)
    if base is None:
        shim = MBertShim(hf_objects, model_cls=AutoModelForQuestionAnswering, **settings)
    else:
        shim = OnBaseShim(
            hf_objects,
            base_upstream=base,
            rebuild=task_network(AutoModelForQuestionAnswering, base_of=lambda network: network.base_model),
            adapter=adapter,
            **settings,
        )
    return owned_encoder(
        "mbert-qa",
        forward,
        shim=shim,
        encoder=name,
        load=load,
        attrs={"max_seq_length": max_seq_length, "doc_stride": doc_stride},
    )


def load(model: Model, Y=None) -> HFObjects:
    """The encoder with a new (or its fine-tuned) start/end head, checked for the QA windows."""
    shim = model.shims[0]
    tokenizer_config = dict(shim._hfmodel._init_tokenizer_config)
    transformer_config = dict(shim._hfmodel._init_transformer_config)
    if isinstance(shim, OnBaseShim):
        hf = shim.new_network(new_task_network(shim.rebuild, transformer_config))
        name = shim.base_upstream
    else:
        name = model.attrs["name"]
        hf = load_pretrained(name, tokenizer_config, transformer_config, model_cls=AutoModelForQuestionAnswering)
    check_encoder(name, hf, model.attrs["max_seq_length"])
    return HFObjects(hf.tokenizer, hf.transformer, hf.vocab_file_contents, tokenizer_config, transformer_config)


def check_encoder(name: str, hf: HFObjects, max_seq_length: int) -> None:
    """Fail at initialization, with the fix, on encoders the QA windows cannot use."""
    if not getattr(hf.tokenizer, "is_fast", False):
        raise UserError(
            f"Encoder '{name}': question answering needs a fast tokenizer (character offsets); "
            f'set tokenizer_config = {{"use_fast": true}} or add a tokenizer.json to the checkpoint.'
        )
    limit = position_limit(hf.transformer.config)
    if limit is not None and max_seq_length > limit:
        raise UserError(
            f"Encoder '{name}' reads at most {limit} wordpieces but max_seq_length is "
            f"{max_seq_length}; set max_seq_length <= {limit}."
        )


def forward(model: Model, batch: PaddedBatch, is_train: bool):
    shim = get_shim(model)
    inputs = _torch_inputs(batch, shim.device)
    if not is_train:
        with inference(model) as network:
            output = network(**inputs)
        return (_to_xp(model, output.start_logits), _to_xp(model, output.end_logits)), _no_backprop
    output, torch_backprop = shim(ArgsKwargs(args=(), kwargs=inputs), is_train=True)
    start, end = output.start_logits, output.end_logits

    def backprop(d_logits: Logits) -> PaddedBatch:
        grads = [xp2torch(d, device=t.device).to(t.dtype) for d, t in zip(d_logits, (start, end))]
        torch_backprop(ArgsKwargs(args=((start, end),), kwargs={"grad_tensors": grads}))
        return batch

    return (_to_xp(model, start), _to_xp(model, end)), backprop


def _to_xp(model: Model, logits: torch.Tensor) -> Floats2d:
    return torch2xp(logits.detach().float(), ops=model.ops)


def _torch_inputs(batch: PaddedBatch, device) -> Dict[str, torch.Tensor]:
    inputs = {
        "input_ids": torch.as_tensor(batch.input_ids, device=device),
        "attention_mask": torch.as_tensor(batch.attention_mask, device=device),
    }
    if batch.token_type_ids is not None:
        inputs["token_type_ids"] = torch.as_tensor(batch.token_type_ids, device=device)
    return inputs


def _no_backprop(d_logits):
    raise ValueError("The QA model was run in prediction mode; use begin_update to train it.")
