"""``spacy-mbert.Bert2Bert.v1``: a BERT2BERT / BERTShare encoder-decoder as a thinc model.

Rothe, Narayan and Severyn (2020), "Leveraging Pre-trained Checkpoints for
Sequence Generation Tasks": warm-start *both* halves of a Transformer
encoder-decoder from one BERT-family checkpoint.

- The encoder is the checkpoint as it is (``AutoModel``).
- The decoder is the same checkpoint loaded as a causal LM
  (``AutoModelForCausalLM`` with ``is_decoder=True``: causal self-attention)
  with ``add_cross_attention=True``: the cross-attention layers are the only
  new weights, initialised as BERT initialises its layers. The masked-LM head
  of the checkpoint (if it has one) becomes the output layer.
- ``share_weights=True`` is BERTShare: the decoder's self-attention and
  feed-forward weights and its position/type embeddings *are* the encoder's
  (the same ``Parameter`` objects), so the model has about half the
  parameters. The cross-attention stays separate. With a restricted output
  vocabulary the word embeddings cannot be shared (the decoder's matrix has
  other rows), so only they are kept separate.

The two halves are a ``transformers.EncoderDecoderModel``, so generation is
Hugging Face's ``generate`` (beam search with the key/value cache).

**Restricted output vocabulary** (``restrict_vocab=True``). With M-BERT's 119k
pieces (XLM-R's 250k) the decoder's output layer and softmax dominate the cost
of every decoding step on a CPU, yet a model that translates into one target
language only ever needs that language's pieces. At ``initialize`` the model
keeps the pieces that occur on the target side of the training data plus the
tokenizer's special tokens, and gives the decoder its *own* smaller vocabulary:
the rows of the pretrained word embeddings (and of the output bias) for the
kept piece ids are gathered into new matrices, so the decoder works entirely
in "restricted id" space (``generate`` runs natively over k ids). The map
``vocab_map[restricted id] = full id`` is stored in the model's config, so it
travels with the pipeline (``to_disk``/``to_bytes``), and turns outputs back
into pieces for detokenization. Target pieces that are not in the map (in data
seen after ``initialize``) are trained as the restricted ``[UNK]``. The
encoder always keeps the full vocabulary: any source language it knows works.

**Random initialisation** (``init_from_pretrained=False``): the same network
(same config, tokenizer and vocabulary restriction) with random weights, for
comparisons such as Rothe et al.'s Rnd2Rnd baseline.

The thinc model's forward pass takes a :class:`Seq2SeqBatch` and returns the
mean label-smoothed cross-entropy over the target tokens (teacher forcing);
its backprop callback carries the gradient into the PyTorch model through the
shim, so the component's ``finish_update`` applies spaCy's optimizer.
"""

import copy
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from spacy.util import registry
from spacy_transformers.data_classes import HFObjects
from thinc.api import ArgsKwargs, Model, get_torch_default_device

from ..encoder import DEFAULT_ENCODER, MBertShim, load_pretrained
from ..errors import EncoderNotFoundError, UserError
from .chunks import source_chunks
from .detokenize import decode, join_words

# Keys this package adds to the EncoderDecoderConfig (saved with the weights).
VOCAB_MAP_KEY = "bert2bert_vocab_map"
SHARE_KEY = "bert2bert_share_weights"
# Label value that the loss ignores (padding), as in Hugging Face.
IGNORE_INDEX = -100
# Model types whose position ids start after the padding index (2 positions fewer).
_OFFSET_POSITION_TYPES = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}


@dataclass
class Seq2SeqBatch:
    """One teacher-forcing batch, all tensors on the model's device.

    input_ids, attention_mask: The sources, in full-vocabulary ids (the encoder's).
    decoder_input_ids, decoder_attention_mask: ``[start] y1 .. yn``, restricted ids.
    labels: ``y1 .. yn [eos]``, restricted ids, ``-100`` at padding.
    label_smoothing: Label smoothing of the cross-entropy.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    decoder_input_ids: torch.Tensor
    decoder_attention_mask: torch.Tensor
    labels: torch.Tensor
    label_smoothing: float = 0.0

    @property
    def n_target_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


@registry.architectures("spacy-mbert.Bert2Bert.v1")
def Bert2Bert(
    name: str = DEFAULT_ENCODER,
    share_weights: bool = False,
    restrict_vocab: bool = True,
    init_from_pretrained: bool = True,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    freeze_embeddings: bool = False,
) -> Model[Seq2SeqBatch, float]:
    """A BERT2BERT (or BERTShare) encoder-decoder warm-started from one checkpoint.

    Nothing is loaded until ``initialize``; a pipeline loaded from disk gets its
    weights, tokenizer and vocabulary map from the saved model instead, so it
    needs neither network nor the checkpoint directory.

    name (str): Hub name (e.g. "bert-base-multilingual-cased") or local checkpoint
        directory of a BERT-family encoder that can also be loaded as a causal LM
        with cross-attention (BERT, RoBERTa, XLM-R, ...).
    share_weights (bool): BERTShare: the decoder uses the encoder's self-attention,
        feed-forward and embedding weights (not the word embeddings when
        ``restrict_vocab`` is on); only the cross-attention and output layer are its own.
    restrict_vocab (bool): Give the decoder only the pieces seen on the target side
        of the training data (plus special tokens): a much smaller output layer.
        Computed at ``initialize`` and stored with the model.
    init_from_pretrained (bool): Warm-start from the checkpoint's weights. False
        builds the same network (config, tokenizer, vocabulary) from random weights.
    tokenizer_config (dict): Keyword arguments for ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): Keyword arguments for ``AutoConfig.from_pretrained``
        (e.g. ``{"hidden_dropout_prob": 0.1}``); they apply to encoder and decoder.
    mixed_precision (bool): Run forward passes in mixed precision (GPU only).
    grad_scaler_config (dict): Settings for the gradient scaler used with mixed precision.
    freeze_embeddings (bool): Keep the encoder's word-embedding matrix fixed in training
        (also the decoder's input embeddings where BERTShare shares them). With a
        250k-piece vocabulary that matrix holds most of the parameters, so this cuts
        the optimizer's work per step by more than half, and it keeps the pieces of
        languages absent from the training data where pretraining put them.
    """
    shim = Bert2BertShim(
        HFObjects(None, None, None, dict(tokenizer_config), dict(transformer_config)),
        mixed_precision=mixed_precision,
        grad_scaler_config=dict(grad_scaler_config),
    )
    return Model(
        "bert2bert",
        forward,
        init=init,
        shims=[shim],
        attrs={
            "name": str(name),
            "share_weights": bool(share_weights),
            "restrict_vocab": bool(restrict_vocab),
            "init_from_pretrained": bool(init_from_pretrained),
            "freeze_embeddings": bool(freeze_embeddings),
        },
    )


# --------------------------------------------------------------------------- shim


class _Bert2BertBuilder:
    """``model_cls`` for :class:`MBertShim`: rebuilds the network from its saved config."""

    @staticmethod
    def from_config(config) -> "EncoderDecoderModel":  # noqa: F821
        from transformers import EncoderDecoderModel

        with _quiet_transformers():
            seq2seq = EncoderDecoderModel(config=config)
        if getattr(config, SHARE_KEY, False):
            # Tie before load_state_dict: both names of a shared weight then load
            # into the one tensor.
            share_encoder_weights(seq2seq.encoder, seq2seq.decoder)
        return seq2seq

    @staticmethod
    def after_load(seq2seq) -> None:
        """Tie the shared weights again once loaded weights were assigned (MBertShim.from_bytes)."""
        if getattr(seq2seq.config, SHARE_KEY, False):
            share_encoder_weights(seq2seq.encoder, seq2seq.decoder)


class Bert2BertShim(MBertShim):
    """:class:`MBertShim` over a ``transformers.EncoderDecoderModel``.

    The saved format is MBertShim's (config + weights + tokenizer files); the
    vocabulary map and the sharing flag are part of the saved config
    (:data:`VOCAB_MAP_KEY`, :data:`SHARE_KEY`), so ``from_bytes`` restores the
    restricted decoder vocabulary and the weight sharing exactly.
    """

    def __init__(self, hf_objects: HFObjects, *, mixed_precision: bool = False, grad_scaler_config: dict = {}):
        from transformers import AutoTokenizer, EncoderDecoderConfig

        super().__init__(
            hf_objects,
            mixed_precision=mixed_precision,
            grad_scaler_config=dict(grad_scaler_config),
            config_cls=EncoderDecoderConfig,
            model_cls=_Bert2BertBuilder,
            tokenizer_cls=AutoTokenizer,
        )
        # Derived from the vocabulary map; rebuilt when the wrapped model changes.
        self._cache_key: Optional[object] = None
        self._cache: Dict[str, object] = {}

    @property
    def has_model(self) -> bool:
        return self._hfmodel.transformer is not None

    @property
    def seq2seq(self):
        """The ``transformers.EncoderDecoderModel``."""
        return self._model

    @property
    def tokenizer(self):
        return self._hfmodel.tokenizer

    @property
    def vocab_map(self) -> Optional[List[int]]:
        """``vocab_map[restricted id] = full id``, or None when the decoder has the full vocabulary."""
        return getattr(self._model.config, VOCAB_MAP_KEY, None)

    def set_model(self, hf_objects: HFObjects) -> None:
        device = get_torch_default_device()
        hf_objects.transformer.to(device)
        self._hfmodel = hf_objects
        self._model = hf_objects.transformer
        self._grad_scaler.to_(device)

    def _derived(self) -> Dict[str, object]:
        if self._cache_key is not self._model:
            vocab_map = self.vocab_map
            cache: Dict[str, object] = {"specials": _special_ids(self.tokenizer, vocab_map)}
            if vocab_map is not None:
                full_size = max(self._model.config.encoder.vocab_size, len(self.tokenizer), max(vocab_map) + 1)
                lookup = torch.full((full_size,), _restricted_unk(self.tokenizer, vocab_map), dtype=torch.long)
                map_tensor = torch.tensor(vocab_map, dtype=torch.long)
                lookup[map_tensor] = torch.arange(len(vocab_map))
                cache.update(lookup=lookup, map=map_tensor)
            self._cache, self._cache_key = cache, self._model
        return self._cache

    def special_ids(self) -> Dict[str, int]:
        """Decoder ``start``, ``eos`` and ``pad`` ids in the decoder's (restricted) id space."""
        return dict(self._derived()["specials"])

    def full_to_restricted(self, ids: torch.Tensor) -> torch.Tensor:
        """Map full-vocabulary ids to decoder ids (pieces outside the map -> restricted [UNK])."""
        lookup = self._derived().get("lookup")
        return ids if lookup is None else lookup.to(ids.device)[ids]

    def restricted_to_full(self, ids: torch.Tensor) -> torch.Tensor:
        """Map decoder ids back to full-vocabulary ids."""
        map_tensor = self._derived().get("map")
        return ids if map_tensor is None else map_tensor.to(ids.device)[ids]


def get_shim(model: Model) -> Bert2BertShim:
    """The model's shim, checking that the weights are there."""
    shim = model.shims[0]
    if not shim.has_model:
        raise UserError(
            "The mbert_translator model has no weights yet: initialize the pipeline "
            "(nlp.initialize() / spacy train) or load a trained one."
        )
    return shim


# --------------------------------------------------------------------------- building


def init(model: Model, X=None, Y: Optional[Sequence[str]] = None) -> None:
    """Load (or randomly build) the encoder-decoder; ``Y`` are the training targets.

    Y (Optional[Sequence[str]]): Target-side texts of the training data, used for
        the restricted output vocabulary. Needed when ``restrict_vocab`` is on.
    """
    shim: Bert2BertShim = model.shims[0]
    if shim.has_model:
        return
    targets = [text for text in (Y or []) if isinstance(text, str) and text.strip()]
    if model.attrs["restrict_vocab"] and not targets:
        raise UserError(
            "restrict_vocab is on but no training example has a target translation "
            "(doc._.translation); convert parallel data with `spacy-mbert convert translation`, "
            "or set restrict_vocab = false."
        )
    hf_objects = build_bert2bert(
        model.attrs["name"],
        tokenizer_config=dict(shim._hfmodel._init_tokenizer_config or {}),
        transformer_config=dict(shim._hfmodel._init_transformer_config or {}),
        share_weights=model.attrs["share_weights"],
        targets=targets if model.attrs["restrict_vocab"] else None,
        init_from_pretrained=model.attrs["init_from_pretrained"],
    )
    shim.set_model(hf_objects)


def build_bert2bert(
    name: str,
    *,
    tokenizer_config: Optional[Dict] = None,
    transformer_config: Optional[Dict] = None,
    share_weights: bool = False,
    targets: Optional[Sequence[str]] = None,
    init_from_pretrained: bool = True,
) -> HFObjects:
    """Build the ``EncoderDecoderModel`` and its tokenizer (see the module docstring).

    name (str): Hub name or local checkpoint directory.
    tokenizer_config, transformer_config (Optional[Dict]): As for ``load_pretrained``.
    share_weights (bool): BERTShare.
    targets (Optional[Sequence[str]]): Restrict the decoder vocabulary to the pieces
        of these texts plus the special tokens; None keeps the full vocabulary.
    init_from_pretrained (bool): False: same network, random weights.
    RETURNS (HFObjects): tokenizer, the EncoderDecoderModel, vocab file contents.
    """
    from transformers import AutoModel, EncoderDecoderModel, GenerationConfig

    # Offline-first loading with one-line errors; gives tokenizer, config and encoder.
    loaded = load_pretrained(name, dict(tokenizer_config or {}), dict(transformer_config or {}))
    tokenizer, encoder = loaded.tokenizer, loaded.transformer
    full_config = copy.deepcopy(encoder.config)
    dec_config = copy.deepcopy(full_config)
    dec_config.is_decoder = True
    dec_config.add_cross_attention = True
    with _quiet_transformers():
        if init_from_pretrained:
            decoder = _load_decoder(name, dec_config)
        else:
            # Rnd2Rnd: the same network from random weights (the seed is spaCy's).
            encoder = AutoModel.from_config(full_config)
            decoder = _causal_lm_from_config(name, dec_config)
    vocab_map = build_vocab_map(tokenizer, targets) if targets is not None else None
    if vocab_map is not None:
        decoder = restrict_decoder_vocab(decoder, vocab_map, _special_ids(tokenizer, vocab_map))
    else:
        _set_decoder_special_ids(decoder.config, _special_ids(tokenizer, None))
    if share_weights:
        share_encoder_weights(encoder, decoder)
    with _quiet_transformers():
        seq2seq = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    specials = _special_ids(tokenizer, vocab_map)
    seq2seq.config.decoder_start_token_id = specials["start"]
    seq2seq.config.bos_token_id = specials["start"]
    seq2seq.config.eos_token_id = specials["eos"]
    seq2seq.config.pad_token_id = specials["pad"]
    seq2seq.config.vocab_size = seq2seq.config.decoder.vocab_size
    setattr(seq2seq.config, VOCAB_MAP_KEY, vocab_map)
    setattr(seq2seq.config, SHARE_KEY, bool(share_weights))
    # So that a plain `seq2seq.generate(...)` (e.g. a benchmark baseline) knows the
    # special ids too; a model rebuilt by from_bytes gets them from its config.
    seq2seq.generation_config = GenerationConfig.from_model_config(seq2seq.config)
    seq2seq.to(get_torch_default_device())
    return HFObjects(tokenizer, seq2seq, loaded.vocab_file_contents, {}, {})


def _load_decoder(name: str, dec_config):
    from transformers import AutoModelForCausalLM

    path = Path(name).expanduser()
    source = str(path) if path.is_dir() else name
    try:
        # load_pretrained has just found (or downloaded) these very files.
        return AutoModelForCausalLM.from_pretrained(source, config=dec_config, local_files_only=True)
    except ValueError as error:
        raise _not_a_decoder(name, dec_config, error) from None
    except OSError as error:
        raise EncoderNotFoundError(
            f"Could not load '{name}' as a decoder ({str(error).strip().splitlines()[0][:160]}); "
            f"point `name` at a local checkpoint directory."
        ) from None


def _causal_lm_from_config(name: str, dec_config):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_config(dec_config)
    except ValueError as error:
        raise _not_a_decoder(name, dec_config, error) from None


def _not_a_decoder(name: str, config, error: Exception) -> UserError:
    return UserError(
        f"'{name}' ({getattr(config, 'model_type', '?')}) cannot be used as a decoder: transformers has no "
        f"causal-LM class with cross-attention for it ({str(error).strip().splitlines()[0][:120]}). Use a "
        f"BERT, RoBERTa or XLM-R checkpoint."
    )


def build_vocab_map(tokenizer, texts: Sequence[str]) -> List[int]:
    """The decoder's vocabulary: full ids of the pieces in ``texts`` plus all special tokens, sorted.

    Sorted order keeps the low ids of special tokens (e.g. BERT's [PAD] = 0) unchanged.
    """
    ids = set(int(i) for i in tokenizer.all_special_ids)
    texts = list(texts)
    for start in range(0, len(texts), 10000):  # bounded memory for large corpora
        for sequence in tokenizer(texts[start : start + 10000], add_special_tokens=True, truncation=False)["input_ids"]:
            ids.update(sequence)
    return sorted(int(i) for i in ids)


def restrict_decoder_vocab(decoder, vocab_map: Sequence[int], specials: Dict[str, int]):
    """A copy of ``decoder`` whose vocabulary is ``vocab_map`` (rows of the embeddings/output bias gathered).

    The decoder is rebuilt from its config with ``vocab_size = len(vocab_map)``
    (the same code path ``from_bytes`` takes, so the saved weights always fit),
    then every weight is copied; a weight with one row per full-vocabulary piece
    gets the rows of the kept pieces.
    """
    from transformers import AutoModelForCausalLM

    full_size = decoder.config.vocab_size
    config = copy.deepcopy(decoder.config)
    config.vocab_size = len(vocab_map)
    _set_decoder_special_ids(config, specials)
    with _quiet_transformers():
        restricted = AutoModelForCausalLM.from_config(config)
    index = torch.tensor(list(vocab_map), dtype=torch.long)
    source = decoder.state_dict()
    state = {}
    for key, target in restricted.state_dict().items():
        value = source[key]
        if value.shape != target.shape and value.shape[0] == full_size and target.shape[0] == len(vocab_map):
            value = value.index_select(0, index.to(value.device))
        state[key] = value
    restricted.load_state_dict(state)
    restricted.tie_weights()
    return restricted


def share_encoder_weights(encoder, decoder) -> List[str]:
    """BERTShare: make the decoder's weights the encoder's, where both have them with the same shape.

    Parameters are tied (the decoder module's attribute is set to the encoder's
    ``Parameter``), not modules, so the decoder keeps its own causal attention
    and key/value cache logic. Cross-attention has no encoder counterpart and
    stays the decoder's own; so do the word embeddings when the decoder's
    vocabulary is restricted (other shape).
    RETURNS (List[str]): The names (in the decoder's base model) of the shared weights.
    """
    base = decoder.base_model
    encoder_params = dict(encoder.named_parameters())
    shared = []
    for name, param in list(base.named_parameters()):
        source = encoder_params.get(name)
        if source is None or source.shape != param.shape or source is param:
            continue
        module_path, _, leaf = name.rpartition(".")
        setattr(base.get_submodule(module_path) if module_path else base, leaf, source)
        shared.append(name)
    # The output layer is tied to the decoder's word embeddings, which may now be the encoder's.
    decoder.tie_weights()
    return shared


def _special_ids(tokenizer, vocab_map: Optional[Sequence[int]]) -> Dict[str, int]:
    """Decoder start ([CLS] / <s>), end ([SEP] / </s>) and padding ids, in the decoder's id space."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if start is None or eos is None or pad is None:
        raise UserError(
            "The tokenizer needs a start ([CLS] or <s>), an end ([SEP] or </s>) and a padding token "
            "to be used for generation."
        )
    ids = {"start": start, "eos": eos, "pad": pad}
    if vocab_map is not None:
        position = {full: restricted for restricted, full in enumerate(vocab_map)}
        ids = {key: position[value] for key, value in ids.items()}
    return ids


def _restricted_unk(tokenizer, vocab_map: Sequence[int]) -> int:
    position = {full: restricted for restricted, full in enumerate(vocab_map)}
    unk = tokenizer.unk_token_id
    return position.get(unk, position[tokenizer.pad_token_id])


def _set_decoder_special_ids(config, specials: Dict[str, int]) -> None:
    config.pad_token_id = specials["pad"]
    config.bos_token_id = specials["start"]
    config.eos_token_id = specials["eos"]


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence expected load messages (e.g. "cross-attention weights newly initialized")."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


# --------------------------------------------------------------------------- training


def forward(model: Model, batch: Seq2SeqBatch, is_train: bool) -> Tuple[float, Callable[[float], Seq2SeqBatch]]:
    """Mean label-smoothed cross-entropy over the target tokens (teacher forcing).

    The loss is computed in float32 from the logits, ignoring padding; its
    gradient is passed into the PyTorch model through the shim (which applies
    gradient scaling with mixed precision), and ``finish_update`` applies it.
    """
    shim = get_shim(model)
    if model.attrs.get("freeze_embeddings"):
        # Set here rather than at init: a pipeline loaded from disk trains frozen too.
        # The optimizer skips parameters without a gradient.
        shim.seq2seq.encoder.get_input_embeddings().weight.requires_grad_(False)
    inputs = ArgsKwargs(
        args=(),
        kwargs={
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "decoder_input_ids": batch.decoder_input_ids,
            "decoder_attention_mask": batch.decoder_attention_mask,
            "use_cache": False,
            "return_dict": True,
        },
    )
    output, backprop_shim = shim(inputs, is_train)
    logits = output.logits
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        batch.labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        label_smoothing=batch.label_smoothing,
    )

    def backprop(d_loss: float = 1.0) -> Seq2SeqBatch:
        grad = torch.tensor(float(d_loss), dtype=loss.dtype, device=loss.device)
        backprop_shim(ArgsKwargs(args=((loss,),), kwargs={"grad_tensors": (grad,)}))
        return batch

    return float(loss.detach()), backprop


def make_batch(
    model: Model,
    sources: Sequence[str],
    targets: Sequence[str],
    *,
    max_source_length: int = 128,
    max_target_length: int = 64,
    label_smoothing: float = 0.0,
) -> Seq2SeqBatch:
    """Tokenize source/target pairs into a teacher-forcing batch.

    sources (Sequence[str]): Source texts (truncated to ``max_source_length`` pieces).
    targets (Sequence[str]): Reference translations (truncated to ``max_target_length``
        pieces, including the start and end tokens; the end token is kept).
    """
    shim = get_shim(model)
    tokenizer, device = shim.tokenizer, shim.device
    encoded = encode_sources(model, sources, max_source_length=max_source_length)
    full = _special_ids(tokenizer, None)
    target_ids = []
    # BERT/XLM-R tokenizers add [CLS] ... [SEP] (<s> ... </s>) and keep [SEP]
    # when truncating, so a truncated target still teaches the model to stop.
    for ids in tokenizer(list(targets), truncation=True, max_length=max(3, max_target_length))["input_ids"]:
        if not ids or ids[0] != full["start"]:
            ids = [full["start"]] + ids
        if ids[-1] != full["eos"]:
            ids = ids + [full["eos"]]
        target_ids.append(ids)
    width = max(len(ids) for ids in target_ids) - 1
    pad = shim.special_ids()["pad"]
    decoder_input_ids = torch.full((len(target_ids), width), pad, dtype=torch.long)
    labels = torch.full((len(target_ids), width), IGNORE_INDEX, dtype=torch.long)
    decoder_attention_mask = torch.zeros((len(target_ids), width), dtype=torch.long)
    for row, ids in enumerate(target_ids):
        ids_t = shim.full_to_restricted(torch.tensor(ids, dtype=torch.long))
        n = len(ids) - 1
        decoder_input_ids[row, :n] = ids_t[:-1]
        labels[row, :n] = ids_t[1:]
        decoder_attention_mask[row, :n] = 1
    return Seq2SeqBatch(
        input_ids=encoded["input_ids"],
        attention_mask=encoded["attention_mask"],
        decoder_input_ids=decoder_input_ids.to(device),
        decoder_attention_mask=decoder_attention_mask.to(device),
        labels=labels.to(device),
        label_smoothing=float(label_smoothing),
    )


def encode_sources(model: Model, texts: Sequence[str], *, max_source_length: int = 128) -> Dict[str, torch.Tensor]:
    """``{"input_ids", "attention_mask"}`` for the encoder (padded, truncated), on the model's device."""
    shim = get_shim(model)
    max_length = min(max_source_length, _position_limit(shim.seq2seq.config.encoder))
    encoded = shim.tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return {key: encoded[key].to(shim.device) for key in ("input_ids", "attention_mask")}


def _position_limit(config) -> int:
    limit = getattr(config, "max_position_embeddings", 512) or 512
    return limit - 2 if getattr(config, "model_type", "") in _OFFSET_POSITION_TYPES else limit


# --------------------------------------------------------------------------- generation


def generation_config(
    model: Model,
    *,
    num_beams: int = 4,
    max_length: int = 64,
    length_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    **kwargs,
):
    """The ``transformers.GenerationConfig`` that :func:`translate` uses (deterministic beam search).

    max_length (int): As in Hugging Face: the longest output in decoder tokens,
        counting the decoder start token.
    kwargs: More ``GenerationConfig`` settings (e.g. ``num_return_sequences``).
    """
    from transformers import GenerationConfig

    specials = get_shim(model).special_ids()
    settings = dict(
        num_beams=num_beams,
        max_length=max_length,
        length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        do_sample=False,
        decoder_start_token_id=specials["start"],
        bos_token_id=specials["start"],
        eos_token_id=specials["eos"],
        pad_token_id=specials["pad"],
        use_cache=True,
    )
    if num_beams > 1:
        # Stop a beam search when num_beams hypotheses are finished (they cannot be beaten).
        settings["early_stopping"] = True
    settings.update(kwargs)
    return GenerationConfig(**settings)


def translate(
    model: Model,
    texts: Sequence[str],
    *,
    target_lang: Optional[str] = None,
    num_beams: int = 4,
    max_length: int = 64,
    length_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    max_source_length: int = 128,
    batch_size: int = 16,
) -> List[str]:
    """Translate ``texts`` with beam search; returns one string per text, in input order.

    Texts are sorted by length and generated ``batch_size`` at a time (little
    padding), in ``torch.inference_mode``; empty or whitespace-only texts give
    ``""`` without running the model. A text longer than ``max_source_length``
    wordpieces is translated in chunks of whole sentences (``chunks.py``), whose
    translations are joined; a sentence longer than that alone is cut between
    words, with a warning.

    target_lang (Optional[str]): Target language code, for detokenization.
    num_beams (int): Beam size; 1 is greedy decoding.
    max_length (int): Longest output in decoder tokens (start token included), per chunk.
    length_penalty (float): Exponent of the length normalization of beam scores
        (> 0 favours longer outputs).
    no_repeat_ngram_size (int): Forbid repeating n-grams of this size; 0 = off.
    max_source_length (int): Most source wordpieces translated in one piece.
    batch_size (int): Texts (chunks) per ``generate`` call.
    """
    results = [""] * len(texts)
    todo = [i for i, text in enumerate(texts) if text and text.strip()]
    if not todo:
        return results
    shim = get_shim(model)
    tokenizer = shim.tokenizer
    max_source = min(max_source_length, _position_limit(shim.seq2seq.config.encoder))
    # (text index, source) per piece to translate: the text itself or its chunks.
    sources: List[Tuple[int, str]] = []
    lengths = _n_wordpieces(tokenizer, [texts[i] for i in todo])
    for i, n_pieces in zip(todo, lengths):
        if n_pieces <= max_source:
            sources.append((i, texts[i]))
            continue
        chunks, longest_cut = source_chunks(tokenizer, texts[i], max_source)
        if longest_cut:
            warnings.warn(
                f"mbert_translator: text {i} of the batch ({_preview(texts[i])}, {len(texts[i]):,} characters) has a "
                f"sentence of {longest_cut} wordpieces, more than max_source_length ({max_source}): it is translated "
                f"in parts cut between words. Raise max_source_length (at most "
                f"{_position_limit(shim.seq2seq.config.encoder)} for this encoder) to translate it whole."
            )
        sources.extend((i, chunk) for chunk in chunks)
    lengths = _n_wordpieces(tokenizer, [source for _, source in sources])
    too_long = [n for n in lengths if n > max_source]
    if too_long:  # Only where a long sentence could not be cut (a tokenizer without offsets).
        warnings.warn(
            f"mbert_translator: {len(too_long)} source(s) of up to {max(too_long)} wordpieces are cut to "
            f"max_source_length ({max_source}); the rest of them is not translated. Raise max_source_length, "
            f"or use a fast tokenizer (tokenizer_config = {{\"use_fast\": true}}) so long sentences are split."
        )
    order = sorted(range(len(sources)), key=lambda k: -lengths[k])
    config = generation_config(
        model, num_beams=num_beams, max_length=max_length, length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
    )
    translations: List[str] = [""] * len(sources)
    for start in range(0, len(order), max(1, batch_size)):
        batch = order[start : start + max(1, batch_size)]
        sequences = generate_ids(model, [sources[k][1] for k in batch], config, max_source_length=max_source)
        for k, ids in zip(batch, sequences):
            translations[k] = decode(tokenizer, ids, target_lang)
    parts: Dict[int, List[str]] = {}
    for (i, _), translation in zip(sources, translations):
        parts.setdefault(i, []).append(translation)
    for i, translated in parts.items():
        results[i] = translated[0] if len(translated) == 1 else join_words(translated, target_lang, only_no_space_rule=True)
    return results


def _n_wordpieces(tokenizer, texts: Sequence[str]) -> List[int]:
    """Wordpieces of each text, special tokens included, without truncation."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), verbose=False)["input_ids"]]


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def generate_ids(model: Model, texts: Sequence[str], config, *, max_source_length: int = 128) -> List[List[int]]:
    """Run ``generate`` on one batch; returns full-vocabulary ids per text (specials included)."""
    shim = get_shim(model)
    seq2seq = shim.seq2seq
    inputs = encode_sources(model, texts, max_source_length=max_source_length)
    use_amp = shim._mixed_precision and shim.device.type == "cuda"
    was_training = seq2seq.training
    seq2seq.eval()
    try:
        with torch.inference_mode(), torch.autocast("cuda", enabled=use_amp):
            output = seq2seq.generate(**inputs, generation_config=config)
    finally:
        seq2seq.train(was_training)
    sequences = output if isinstance(output, torch.Tensor) else output.sequences
    return shim.restricted_to_full(sequences).tolist()
