"""An encoder that a task component owns: one way to build, initialize, guard and run it.

``mbert_qa`` and ``mbert_translator`` do not listen to a shared ``transformer``
component: QA encodes question and context together as one BERT pair, and the
translator needs the encoder-decoder as one network. Each wraps its Hugging Face
model in an :class:`~.shim.MBertShim` (its own encoder copy) or an
:class:`~.on_base.OnBaseShim` (a network on the shared ``mbert_base``) inside a thinc ``Model``. What they have in
common lives here, so that it is written (and fixed) once:

- :func:`owned_encoder` builds the thinc model with an empty shim (``spacy.load``
  fills it from the saved bytes; ``initialize`` from the checkpoint);
- its ``init`` calls the task's ``load`` once and installs what it returns
  (:func:`set_encoder`); later calls keep the weights;
- :func:`get_shim` is the one "not initialized" guard, with one message;
- :func:`inference` is prediction mode: ``eval()``, ``torch.inference_mode``,
  mixed precision by one rule for every device, and train mode restored after;
- :func:`position_limit` is the longest input any BERT-family config takes;
- :class:`OwnedEncoderPipe` is the components' base: read-ahead ``nlp.pipe`` and
  the encoder's weights in their own memory-mapped file.
"""

from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Dict, Iterator, Optional

import torch
from spacy.pipeline import TrainablePipe
from spacy_transformers.data_classes import HFObjects
from thinc.api import Model, get_torch_default_device

from ..batching import ReadAheadPipe
from ..errors import UserError
from .on_base import ensure_built
from .quantize import BF16, cpu_autocast
from .shim import MBertShim
from .weights_file import OwnEncoderSerialization

# load(model, Y) -> the HFObjects to install; Y is what ``model.initialize(Y=...)`` was given.
Loader = Callable[[Model, Any], HFObjects]

# Model types whose position ids start after the padding id (RoBERTa's scheme):
# position ``pad_token_id + 1`` is the first one used, so two of the
# ``max_position_embeddings`` positions are never read (514 rows: 512 wordpieces).
PADDING_OFFSET_TYPES = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "roberta-prelayernorm", "xmod"}
)


def owned_encoder(
    name: str,
    forward: Callable,
    *,
    shim: MBertShim,
    encoder: str,
    load: Loader,
    attrs: Optional[Dict[str, Any]] = None,
) -> Model:
    """The thinc model of a component that owns its encoder.

    name (str): The thinc model's name (e.g. "mbert-qa"); also names it in errors.
    forward (Callable): The model's forward pass; it gets the shim from :func:`get_shim`.
    shim (MBertShim): An empty shim (``empty_hf_objects``), filled at initialization or load.
    encoder (str): Hub name or checkpoint directory that ``load`` reads at initialization.
    load (Loader): Builds the Hugging Face objects (tokenizer + network) at initialization;
        called once, never by ``spacy.load``, which restores the saved ones.
    attrs (Optional[Dict[str, Any]]): The task's own settings (saved with the model).
    """
    return Model(
        name,
        forward,
        init=partial(_initialize, load=load),
        shims=[shim],
        attrs={"name": str(encoder), **(attrs or {})},
    )


def empty_hf_objects(tokenizer_config: dict, transformer_config: dict) -> HFObjects:
    """Placeholders for a shim built before its encoder is loaded, with the settings to load it by."""
    return HFObjects(None, None, None, dict(tokenizer_config), dict(transformer_config))


def _initialize(model: Model, X=None, Y=None, *, load: Loader) -> None:
    if has_encoder(model):
        return
    set_encoder(model, load(model, Y))


def has_encoder(model: Model) -> bool:
    """Whether the model has its weights (initialized, or loaded from a saved pipeline)."""
    return model.shims[0]._model is not None


def set_encoder(model: Model, hf_objects: HFObjects) -> None:
    """Install a loaded tokenizer and network in the model's shim, on thinc's current device."""
    shim = model.shims[0]
    device = get_torch_default_device()
    hf_objects.transformer.to(device)
    shim._hfmodel = hf_objects
    shim._model = hf_objects.transformer
    shim._grad_scaler.to_(device)


def get_shim(model: Model) -> MBertShim:
    """The model's shim, after checking that the encoder is there."""
    ensure_built(model.shims[0])
    if not has_encoder(model):
        raise UserError(
            f"The '{model.name}' model is not initialized: its encoder has no weights yet; call "
            f"nlp.initialize() (spacy train does) or load a trained pipeline."
        )
    return model.shims[0]


def get_tokenizer(model: Model):
    """The model's Hugging Face tokenizer (None before initialization)."""
    return model.shims[0]._hfmodel.tokenizer


def get_transformer(model: Model):
    """The wrapped Hugging Face network (None before initialization)."""
    return model.shims[0]._hfmodel.transformer


def autocast(shim: MBertShim):
    """Mixed precision where training uses it: on CUDA devices, with ``mixed_precision`` on.

    thinc's PyTorchShim autocasts the training forward pass on CUDA only, so
    predictions are made in the precision the model was trained in on every device;
    on a CPU, only an encoder converted by ``spacy-mbert quantize --dtype bf16`` runs
    under autocast to bfloat16 (quantize.py).
    """
    device_type = shim.device.type
    if device_type == "cpu" and shim.quantized == BF16:  # spacy-mbert quantize --dtype bf16
        return cpu_autocast(BF16)
    return torch.autocast(device_type=device_type, enabled=bool(shim._mixed_precision) and device_type == "cuda")


@contextmanager
def inference(model: Model) -> Iterator[torch.nn.Module]:
    """Run the encoder for prediction: the network in eval mode, no autograd, one autocast rule.

    Yields the network; its train/eval mode is what it was before, afterwards.
    ``torch.inference_mode`` rather than ``no_grad``: no autograd bookkeeping at all.
    """
    shim = get_shim(model)
    network = shim._model
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode(), autocast(shim):
            yield network
    finally:
        network.train(was_training)


def position_limit(config) -> Optional[int]:
    """The most wordpieces (special tokens included) the encoder of ``config`` reads in one row.

    config: A Hugging Face config of a BERT-family encoder. RoBERTa-style models
        (XLM-R, multilingual-e5's XLM-R variants, CamemBERT, ...) number positions
        from ``pad_token_id + 1``, so they read two fewer than ``max_position_embeddings``.
    RETURNS (Optional[int]): The limit; None when the config sets none.
    """
    positions = getattr(config, "max_position_embeddings", None)
    if not positions:
        return None
    if getattr(config, "model_type", "") in PADDING_OFFSET_TYPES:
        return positions - 2
    return int(positions)


class OwnedEncoderPipe(ReadAheadPipe, OwnEncoderSerialization, TrainablePipe):
    """Base of the components that own their encoder (``mbert_qa``, ``mbert_translator``).

    ``nlp.pipe`` reads ahead and batches docs by length (:class:`ReadAheadPipe`), and
    the encoder's weights are saved in a file of their own, memory-mapped on load
    (:class:`OwnEncoderSerialization`); the rest is spaCy's ``TrainablePipe``.
    """
