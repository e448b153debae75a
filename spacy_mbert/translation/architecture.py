"""``spacy-mbert.Bert2Bert.v1``: a BERT2BERT / BERTShare encoder-decoder as a thinc model.

The modules beside this one: ``build.py`` (the network), ``vocabulary.py`` (the
restricted decoder vocabulary), ``shim.py`` (saving and id spaces), ``batch.py``
(teacher-forcing batches), ``generate.py`` (beam search).

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

**Restricted output vocabulary** (``restrict_vocab=True``): the decoder gets only the
pieces of the training targets (``vocabulary.py``); the encoder keeps the full vocabulary.

**Random initialisation** (``init_from_pretrained=False``): the same network
(same config, tokenizer and vocabulary restriction) with random weights, for
comparisons such as Rothe et al.'s Rnd2Rnd baseline.

The thinc model's forward pass takes a :class:`Seq2SeqBatch` and returns the
mean label-smoothed cross-entropy over the target tokens (teacher forcing);
its backprop callback carries the gradient into the PyTorch model through the
shim, so the component's ``finish_update`` applies spaCy's optimizer.
"""

from typing import Callable, Optional, Sequence, Tuple

import torch
from spacy.util import registry
from spacy_transformers.data_classes import HFObjects
from thinc.api import ArgsKwargs, Model

from ..encoder.loading import DEFAULT_ENCODER
from ..encoder.on_base import OnBaseShim
from ..encoder.owned import empty_hf_objects, get_shim, owned_encoder
from ..errors import UserError
from .batch import IGNORE_INDEX, Seq2SeqBatch
from .build import build_bert2bert, build_bert2bert_on_base, rebuild_bert2bert_on_base
from .shim import Bert2BertOnBaseShim, Bert2BertShim


@registry.architectures("spacy-mbert.Bert2Bert.v1")
def Bert2Bert(
    *,
    name: str = DEFAULT_ENCODER,
    share_weights: bool = False,
    restrict_vocab: bool = True,
    init_from_pretrained: bool = True,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    freeze_embeddings: bool = False,
    base: Optional[str] = None,
    adapter=None,
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
    base (Optional[str]): Name of the pipeline's ``mbert_base`` component to run on: the
        encoder and the decoder's self-attention, feed-forward and position embeddings are
        its frozen weights (BERTShare on the base, stored once for every head); the
        cross-attention, the decoder's word embeddings and output layer are this head's
        own and trained fully. BERTShare is implied (``share_weights`` is not read);
        needs ``restrict_vocab`` and ``init_from_pretrained``. None: the head owns and
        fine-tunes its own copy.
    adapter (Optional[LoRASettings]): With ``base``: the LoRA adapter on the encoder's and
        the decoder's shared layers (``spacy-mbert.LoRA.v1``).
    """
    settings = dict(mixed_precision=mixed_precision, grad_scaler_config=dict(grad_scaler_config))
    hf_objects = empty_hf_objects(tokenizer_config, transformer_config)
    if base is None:
        shim = Bert2BertShim(hf_objects, **settings)
    else:
        if not (restrict_vocab and init_from_pretrained):
            raise UserError(
                f"A translator on the shared base '{base}' warm-starts from the base and owns only a restricted "
                f"output layer: set restrict_vocab = true and init_from_pretrained = true, or base = null for an "
                f"own encoder copy."
            )
        shim = Bert2BertOnBaseShim(
            hf_objects,
            base_upstream=base,
            rebuild=rebuild_bert2bert_on_base,
            adapter=adapter,
            # Trained fully; an adapter on them would only add parameters.
            exclude_modules=r".*crossattention.*",
            **settings,
        )
    return owned_encoder(
        "bert2bert",
        forward,
        shim=shim,
        encoder=name,
        load=load,
        attrs={
            "share_weights": bool(share_weights),
            "restrict_vocab": bool(restrict_vocab),
            "init_from_pretrained": bool(init_from_pretrained),
            "freeze_embeddings": bool(freeze_embeddings),
        },
    )


def load(model: Model, Y: Optional[Sequence[str]] = None) -> HFObjects:
    """Load (or randomly build) the encoder-decoder; ``Y`` are the training targets.

    Y (Optional[Sequence[str]]): Target-side texts of the training data, used for
        the restricted output vocabulary. Needed when ``restrict_vocab`` is on.
    """
    hf_objects = model.shims[0]._hfmodel
    targets = [text for text in (Y or []) if isinstance(text, str) and text.strip()]
    if model.attrs["restrict_vocab"] and not targets:
        raise UserError(
            "restrict_vocab is on but no training example has a target translation "
            "(doc._.translation); convert parallel data with `spacy-mbert convert translation`, "
            "or set restrict_vocab = false."
        )
    shim = model.shims[0]
    if isinstance(shim, OnBaseShim):
        transformer_config = dict(hf_objects._init_transformer_config or {})
        return shim.new_network(
            lambda base: build_bert2bert_on_base(base, transformer_config=transformer_config, targets=targets)
        )
    return build_bert2bert(
        model.attrs["name"],
        tokenizer_config=dict(hf_objects._init_tokenizer_config or {}),
        transformer_config=dict(hf_objects._init_transformer_config or {}),
        share_weights=model.attrs["share_weights"],
        targets=targets if model.attrs["restrict_vocab"] else None,
        init_from_pretrained=model.attrs["init_from_pretrained"],
    )


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
