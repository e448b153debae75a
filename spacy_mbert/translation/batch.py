"""Teacher-forcing batches: source/target pairs tokenized into the tensors training reads."""

from dataclasses import dataclass
from typing import Dict, Sequence

import torch
from thinc.api import Model

from ..encoder.owned import get_shim, position_limit
from .shim import Bert2BertShim
from .vocabulary import special_ids

# Label value that the loss ignores (padding), as in Hugging Face.
IGNORE_INDEX = -100


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
    full = special_ids(tokenizer, None)
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
    max_length = source_limit(shim, max_source_length)
    encoded = shim.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {key: encoded[key].to(shim.device) for key in ("input_ids", "attention_mask")}


def source_limit(shim: Bert2BertShim, max_source_length: int) -> int:
    """``max_source_length``, or less where the encoder reads fewer positions."""
    return min(max_source_length, position_limit(shim.seq2seq.config.encoder) or max_source_length)
