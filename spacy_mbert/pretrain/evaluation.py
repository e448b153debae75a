"""Held-out masked-LM loss and perplexity per language, with fixed seeded masks.

The same numbers for a checkpoint of any masked-LM model
(:func:`evaluate_perplexity`) and during training (:func:`evaluate_packed`, the
``eval_log.jsonl`` of a run): the masks depend only on the seed and the language,
not on the batch size.
"""

import contextlib
import math
import zlib
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy
import torch

from ..errors import UserError
from . import data as data_mod
from .masking import IGNORE_INDEX, mask_tokens

EVAL_SEED = 0  # Held-out masks are the same in every run and checkpoint.


def evaluate_perplexity(
    model_dir: Union[str, Path],
    texts: Union[str, Path, Sequence[Union[str, Path]], Mapping[str, Sequence[str]]],
    *,
    max_length: int = 128,
    batch_size: int = 16,
    mask_prob: float = 0.15,
    whole_word_mask: bool = False,
    lang: Optional[Union[str, Sequence[str]]] = None,
    max_docs: int = 0,
    seed: int = EVAL_SEED,
    gpu_id: int = -1,
) -> Dict[str, Any]:
    """Held-out masked-LM loss and perplexity per language for any masked-LM checkpoint.

    model_dir: Hub name or checkpoint directory (with an MLM head, e.g. a pretrain OUTPUT_DIR
        or bert-base-multilingual-cased; without one the head is random and the numbers
        meaningless).
    texts: File path(s) (.txt / .jsonl, as for training; e.g. OUTPUT_DIR/heldout.jsonl) or a
        mapping {lang: [document, ...]}.
    max_length, mask_prob, whole_word_mask: Packing and masking, as in training.
    lang: Language(s) for files/records without one (see ``--lang``).
    max_docs (int): At most this many documents per language (0: all).
    seed (int): Seed of the (fixed) masks; the default equals the one used for the
        eval_log of training runs, so numbers on the same texts are comparable.
    gpu_id (int): GPU to run on; -1 for CPU.

    RETURNS: {"per_lang": {lang: {"loss", "perplexity", "n_tokens"}}, "all": {...}} where
        loss is the mean cross-entropy (nats) over the masked pieces, perplexity its exp
        and n_tokens the number of masked pieces scored.
    """
    from transformers import AutoModelForMaskedLM

    from ..encoder.loading import load_pretrained
    from .runtime import select_device

    device, dtype = select_device(gpu_id, "auto")
    documents = _documents_from(texts, lang)
    documents = data_mod.cap_per_lang(documents, max_docs)
    if not documents:
        raise UserError("No documents to evaluate: the texts are empty.")
    hf = load_pretrained(str(model_dir), {"use_fast": True}, {}, model_cls=AutoModelForMaskedLM)
    model = hf.transformer.to(device)
    check_max_length(model, max_length)
    packed = data_mod.pack_documents(hf.tokenizer, documents, max_length)
    return evaluate_packed(
        model,
        hf.tokenizer,
        packed,
        batch_size=batch_size,
        mask_prob=mask_prob,
        whole_word_mask=whole_word_mask,
        seed=seed,
        device=device,
        dtype=dtype,
    )


def pad(arrays: Sequence[numpy.ndarray], value: int) -> numpy.ndarray:
    """Stack 1D arrays into a 2D int64 array, padding with ``value`` to the longest."""
    out = numpy.full((len(arrays), max(len(a) for a in arrays)), value, dtype=numpy.int64)
    for row, array in enumerate(arrays):
        out[row, : len(array)] = array
    return out


def collate(sequences: Sequence[numpy.ndarray], words: Sequence[numpy.ndarray], pad_id: int, special_ids):
    """Pad sequences to the longest; returns ids, attention mask, special mask, word ids."""
    ids = pad(sequences, pad_id)
    attention = pad([numpy.ones(len(seq), dtype=numpy.int64) for seq in sequences], 0)
    special = numpy.isin(ids, special_ids) | (attention == 0)
    return ids, attention, special, pad(words, -1)


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate_packed(
    model,
    tokenizer,
    packed: Mapping[str, "data_mod.PackedLanguage"],
    *,
    batch_size: int = 16,
    mask_prob: float = 0.15,
    whole_word_mask: bool = False,
    seed: int = EVAL_SEED,
    device: torch.device = torch.device("cpu"),
    dtype: Optional[torch.dtype] = None,
) -> Dict[str, Any]:
    """Masked-LM loss per language with fixed, seeded masks (one generator per language)."""
    was_training = model.training
    model.eval()
    special_ids = data_mod.special_ids_of(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    vocab_size = min(len(tokenizer), model.config.vocab_size)
    per_lang: Dict[str, Dict[str, float]] = {}
    total_loss, total_tokens = 0.0, 0
    try:
        for lang in sorted(packed):
            rng = numpy.random.default_rng([seed, zlib.crc32(lang.encode("utf8"))])
            sequences, words = packed[lang].input_ids, packed[lang].word_ids
            loss_sum, n_tokens = 0.0, 0
            for start in range(0, len(sequences), batch_size):
                # Masked one sequence at a time: the masks do not depend on the batch size.
                masked = [
                    mask_tokens(
                        seq,
                        numpy.isin(seq, special_ids),
                        mask_prob=mask_prob,
                        rng=rng,
                        mask_token_id=tokenizer.mask_token_id,
                        vocab_size=vocab_size,
                        whole_word_ids=wid if whole_word_mask else None,
                        special_token_ids=special_ids,
                    )
                    for seq, wid in zip(sequences[start : start + batch_size], words[start : start + batch_size])
                ]
                inputs = pad([m[0] for m in masked], pad_id)
                attention = pad([numpy.ones(len(m[0]), dtype=numpy.int64) for m in masked], 0)
                labels_t = torch.from_numpy(pad([m[1] for m in masked], IGNORE_INDEX)).to(device)
                with autocast(device, dtype):
                    logits = model(
                        input_ids=torch.from_numpy(inputs).to(device),
                        attention_mask=torch.from_numpy(attention).to(device),
                    ).logits
                loss = torch.nn.functional.cross_entropy(
                    logits.float().view(-1, logits.shape[-1]),
                    labels_t.view(-1),
                    ignore_index=IGNORE_INDEX,
                    reduction="sum",
                )
                loss_sum += float(loss)
                n_tokens += int((labels_t != IGNORE_INDEX).sum())
            if n_tokens:
                per_lang[lang] = _scores(loss_sum, n_tokens)
                total_loss += loss_sum
                total_tokens += n_tokens
    finally:
        model.train(was_training)
    return {"per_lang": per_lang, "all": _scores(total_loss, total_tokens) if total_tokens else {}}


def _scores(loss_sum: float, n_tokens: int) -> Dict[str, float]:
    loss = loss_sum / n_tokens
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else float("inf"), "n_tokens": n_tokens}


def format_eval(result: Mapping[str, Any]) -> str:
    overall = result.get("all") or {}
    langs = ", ".join(f"{lang} {s['loss']:.3f}" for lang, s in result.get("per_lang", {}).items())
    if not overall:
        return "no held-out data"
    return f"held-out loss {overall['loss']:.4f} (perplexity {overall['perplexity']:.2f}); {langs}"


def _documents_from(texts, lang) -> List["data_mod.Document"]:
    if isinstance(texts, Mapping):
        return [
            data_mod.Document(text.strip(), str(code)) for code, docs in texts.items() for text in docs if text.strip()
        ]
    if isinstance(texts, (str, Path)):
        texts = [texts]
    langs = [lang] if isinstance(lang, str) else list(lang or [])
    return data_mod.read_documents([Path(t) for t in texts], langs)


def check_max_length(model, max_length: int) -> None:
    from ..encoder.owned import position_limit

    limit = position_limit(model.config)
    if limit is not None and max_length > limit:
        raise UserError(
            f"--max-length {max_length} is longer than the model's {limit} positions; use --max-length {limit} or less."
        )
