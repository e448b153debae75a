"""The masked-LM training loop: optimization, checkpoints, exact resume and held-out evaluation.

OUTPUT_DIR layout::

    config.json, model.safetensors, tokenizer files   final model (save_pretrained)
    pretrain_config.json                               effective settings, data statistics
    heldout.jsonl                                      the held-out documents ({"text","lang"})
    train_log.jsonl                                    {"step","loss","lr","grad_norm","lang_counts"} per step
    eval_log.jsonl                                     {"step","per_lang":{lang:{loss,perplexity,n_tokens}},"all":{…}}
    checkpoints/step-N/                                model + tokenizer + trainer_state.pt/.json

``--resume`` restores weights, optimizer, scheduler, gradient scaler, every random
generator and the data sampler's position from the newest checkpoint, so the
steps after it are the ones an uninterrupted run takes (bit for bit on CPU).
"""

import contextlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy
import torch

from ..errors import UserError
from . import data as data_mod
from .config import PretrainConfig, resolve_config, trajectory_differences
from .masking import IGNORE_INDEX, mask_tokens

CHECKPOINTS = "checkpoints"
TRAIN_LOG = "train_log.jsonl"
EVAL_LOG = "eval_log.jsonl"
CONFIG_JSON = "pretrain_config.json"
HELDOUT = "heldout.jsonl"
STATE_PT = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
EVAL_SEED = 0  # Held-out masks are the same in every run and checkpoint.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-6  # BERT's


# --------------------------------------------------------------------------- public API


def pretrain(
    base_model: Union[str, Path],
    output_dir: Union[str, Path],
    *,
    texts: Optional[Sequence[Union[str, Path]]] = None,
    config: Optional[Union[str, Path]] = None,
    resume: bool = False,
    stop_at_step: Optional[int] = None,
    progress: bool = True,
    verbose: bool = True,
    **settings: Any,
) -> Path:
    """Masked-LM (continued) pretraining of a BERT-family checkpoint; returns ``output_dir``.

    base_model (str | Path): Hub name or local checkpoint directory (e.g. from
        ``spacy-mbert init-encoder tiny``, to train from scratch).
    output_dir (Path): Where the final Hugging Face checkpoint, logs and checkpoints go.
    texts (Sequence[Path]): Training files (.txt: one document per line; .jsonl: "text",
        optional "lang"). Same as the setting ``text``.
    config (Path): Optional .cfg file with a [pretrain] section (see configs/pretrain.cfg).
    resume (bool): Continue from the newest checkpoint in ``output_dir`` (settings not
        given default to the checkpoint's); start afresh if there is none.
    stop_at_step (int): Stop after this step as if interrupted (no final model is saved);
        continue later with ``resume=True``.
    progress (bool): Show a progress bar (only on a terminal).
    verbose (bool): Print status lines.
    **settings: Any field of :class:`PretrainConfig` (max_steps, batch_size, lr, alpha, …);
        None means "not given".
    """
    run = _Run(base_model, output_dir, texts, config, resume, settings, progress, verbose)
    return run.train(stop_at_step)


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

    from ..encoder import load_pretrained

    device, dtype = select_device(gpu_id, "auto")
    documents = _documents_from(texts, lang)
    documents = data_mod.cap_per_lang(documents, max_docs)
    if not documents:
        raise UserError("No documents to evaluate: the texts are empty.")
    hf = load_pretrained(str(model_dir), {"use_fast": True}, {}, model_cls=AutoModelForMaskedLM)
    model = hf.transformer.to(device)
    _check_max_length(model, max_length)
    packed = data_mod.pack_documents(hf.tokenizer, documents, max_length)
    return evaluate_packed(
        model, hf.tokenizer, packed, batch_size=batch_size, mask_prob=mask_prob,
        whole_word_mask=whole_word_mask, seed=seed, device=device, dtype=dtype,
    )


def select_device(gpu_id: int, mixed_precision: str = "auto") -> Tuple[torch.device, Optional[torch.dtype]]:
    """The torch device and autocast dtype (None: float32) for ``--gpu-id``/``--mixed-precision``."""
    if gpu_id is None or gpu_id < 0:
        if mixed_precision in ("bf16", "fp16"):
            raise UserError(
                f"--mixed-precision {mixed_precision} needs a GPU (--gpu-id 0); on CPU pretraining runs "
                f"in float32, so use --mixed-precision auto or no."
            )
        return torch.device("cpu"), None
    if not torch.cuda.is_available():
        raise UserError(
            f"--gpu-id {gpu_id} asks for a GPU, but PyTorch sees none (torch {torch.__version__}, "
            f"torch.cuda.is_available() is False); use --gpu-id -1 for CPU or install a CUDA build of PyTorch."
        )
    count = torch.cuda.device_count()
    if gpu_id >= count:
        raise UserError(f"--gpu-id {gpu_id} does not exist: PyTorch sees {count} GPU(s) (ids 0-{count - 1}).")
    device = torch.device("cuda", gpu_id)
    torch.cuda.set_device(device)
    if mixed_precision == "no":
        return device, None
    bf16_ok = torch.cuda.is_bf16_supported()
    if mixed_precision == "bf16" and not bf16_ok:
        raise UserError(f"GPU {gpu_id} does not support bfloat16; use --mixed-precision fp16 or no.")
    if mixed_precision == "fp16" or (mixed_precision == "auto" and not bf16_ok):
        return device, torch.float16
    return device, torch.bfloat16


# --------------------------------------------------------------------------- evaluation


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


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate_packed(
    model, tokenizer, packed: Mapping[str, "data_mod.PackedLanguage"], *, batch_size: int = 16,
    mask_prob: float = 0.15, whole_word_mask: bool = False, seed: int = EVAL_SEED,
    device: torch.device = torch.device("cpu"), dtype: Optional[torch.dtype] = None,
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
                        seq, numpy.isin(seq, special_ids), mask_prob=mask_prob, rng=rng,
                        mask_token_id=tokenizer.mask_token_id, vocab_size=vocab_size,
                        whole_word_ids=wid if whole_word_mask else None, special_token_ids=special_ids,
                    )
                    for seq, wid in zip(sequences[start : start + batch_size], words[start : start + batch_size])
                ]
                inputs = pad([m[0] for m in masked], pad_id)
                attention = pad([numpy.ones(len(m[0]), dtype=numpy.int64) for m in masked], 0)
                labels_t = torch.from_numpy(pad([m[1] for m in masked], IGNORE_INDEX)).to(device)
                with _autocast(device, dtype):
                    logits = model(
                        input_ids=torch.from_numpy(inputs).to(device),
                        attention_mask=torch.from_numpy(attention).to(device),
                    ).logits
                loss = torch.nn.functional.cross_entropy(
                    logits.float().view(-1, logits.shape[-1]), labels_t.view(-1),
                    ignore_index=IGNORE_INDEX, reduction="sum",
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


def _check_max_length(model, max_length: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    # RoBERTa-style models reserve 2 positions for the padding offset.
    if limit is not None and getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2
    if limit is not None and max_length > limit:
        raise UserError(f"--max-length {max_length} is longer than the model's {limit} positions; use --max-length {limit} or less.")


# --------------------------------------------------------------------------- training


def seed_everything(seed: int) -> None:
    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(model, cfg: PretrainConfig):
    """AdamW with weight decay on weight matrices only (not on biases or LayerNorm)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim < 2 or name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name
        (no_decay if skip else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS)


def lr_lambda(max_steps: int, warmup_steps: int):
    """Linear warmup from 0 over ``warmup_steps``, then linear decay to 0 at ``max_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))

    return factor


def find_checkpoints(output_dir: Path) -> List[Tuple[int, Path]]:
    """Complete checkpoints as (step, path), oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    found = []
    if root.is_dir():
        for path in root.iterdir():
            match = re.fullmatch(r"step-(\d+)", path.name)
            if match and (path / STATE_PT).is_file() and (path / STATE_JSON).is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


class _Run:
    def __init__(self, base_model, output_dir, texts, config_path, resume, settings, progress, verbose):
        self.base_model = str(base_model)
        self.output_dir = Path(output_dir)
        self.progress = progress
        self.verbose = verbose
        overrides = dict(settings)
        if texts is not None:
            overrides["text"] = [str(t) for t in texts] if not isinstance(texts, (str, Path)) else [str(texts)]
        self.resume = resume
        self.checkpoint: Optional[Path] = None
        self.start_step = 0
        saved_state: Dict[str, Any] = {}
        has_run = (self.output_dir / TRAIN_LOG).exists() or (self.output_dir / CHECKPOINTS).exists()
        if has_run and not resume:
            raise UserError(
                f"{self.output_dir} already holds a pretraining run ({TRAIN_LOG} or {CHECKPOINTS}/); pass "
                f"--resume to continue it, or choose another OUTPUT_DIR."
            )
        if resume:
            found = find_checkpoints(self.output_dir)
            if found:
                self.start_step, self.checkpoint = found[-1]
                saved_state = json.loads((self.checkpoint / STATE_JSON).read_text(encoding="utf8"))
        self.saved_state = saved_state
        self.cfg = resolve_config(config_path, overrides, base=saved_state.get("config"))
        if self.checkpoint is not None:
            differences = trajectory_differences(saved_state["config"], self.cfg)
            if differences:
                raise UserError(
                    f"Cannot resume {self.checkpoint}: settings that change training differ from the "
                    f"checkpoint's ({'; '.join(differences)}). Resume with the same settings, or start a "
                    f"new OUTPUT_DIR (use this one's final model as BASE_MODEL to train on)."
                )
        self.device, self.dtype = select_device(self.cfg.gpu_id, self.cfg.mixed_precision)
        base_path = Path(self.base_model).expanduser()
        if base_path.exists() and base_path.resolve() == self.output_dir.resolve():
            raise UserError("OUTPUT_DIR is the BASE_MODEL directory; write the pretrained model to a new directory.")

    # ----------------------------------------------------------------- helpers

    def log(self, message: str) -> None:
        if self.verbose:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)

    def _load_model(self):
        from transformers import AutoModelForMaskedLM

        from ..encoder import load_pretrained

        source = str(self.checkpoint) if self.checkpoint is not None else self.base_model
        hf = load_pretrained(source, {"use_fast": True}, {}, model_cls=AutoModelForMaskedLM)
        if hf.tokenizer.mask_token_id is None:
            raise UserError(f"The tokenizer of '{source}' has no mask token; masked-LM pretraining needs one ([MASK] or <mask>).")
        return hf.tokenizer, hf.transformer.to(self.device)

    def _read_data(self):
        """Read (and check) the text files: (training documents, held-out documents)."""
        cfg = self.cfg
        documents = data_mod.read_documents(cfg.text, cfg.lang)
        if cfg.eval_text:
            eval_langs = cfg.lang if len(cfg.lang) == 1 else []
            heldout = data_mod.cap_per_lang(data_mod.read_documents(cfg.eval_text, eval_langs), cfg.eval_max_docs)
            train, dropped = data_mod.remove_overlap(documents, heldout)
            if dropped:
                self.log(f"Dropped {dropped} training documents that are also in --eval-text.")
        else:
            train, heldout = data_mod.split_heldout(documents, cfg.eval_fraction, cfg.eval_max_docs)
        if not train:
            raise UserError("No training documents: the --text files are empty (or everything is held out).")
        return train, heldout

    def _prepare_data(self, tokenizer, train, heldout):
        cfg = self.cfg
        self.train_data = data_mod.pack_documents(tokenizer, train, cfg.max_length)
        self.eval_data = data_mod.pack_documents(tokenizer, heldout, cfg.max_length) if heldout else {}
        self.heldout_docs = heldout
        self.fingerprint = data_mod.fingerprint(
            self.train_data, extra=[f"eval:{d.lang}:{d.text}" for d in heldout]
        )

    def _write_json_lines(self, path: Path, records: Sequence[Mapping]) -> None:
        with path.open("w", encoding="utf8") as file:
            for record in records:
                file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _truncate_log(self, path: Path, last_step: int) -> None:
        """Keep the records up to ``last_step`` (drop those an interruption left after the checkpoint)."""
        if not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut off by the interruption
            if record.get("step", 0) <= last_step:
                kept.append(record)
        self._write_json_lines(path, kept)

    def _write_run_files(self, tokenizer, sampler) -> None:
        from transformers import __version__ as transformers_version

        cfg = self.cfg
        summary = {
            "base_model": self.base_model,
            "output_dir": str(self.output_dir),
            "settings": cfg.to_dict(),
            "resumed_from_step": self.start_step if self.checkpoint is not None else None,
            "data": {
                "sampling_unit": "packed training sequences (max_length pieces each)",
                "train": {
                    lang: {"docs": p.n_docs, "pieces": p.n_pieces, "sequences": len(p)}
                    for lang, p in self.train_data.items()
                },
                "heldout": {
                    lang: {"docs": p.n_docs, "pieces": p.n_pieces, "sequences": len(p)}
                    for lang, p in self.eval_data.items()
                },
                "sampling_probabilities": sampler.probabilities,
                "fingerprint": self.fingerprint,
            },
            "optimizer": {
                "name": "AdamW", "betas": list(ADAM_BETAS), "eps": ADAM_EPS,
                "warmup_steps": self.warmup_steps, "schedule": "linear warmup, linear decay to 0",
                "effective_batch_size": cfg.batch_size * cfg.grad_accum,
            },
            "device": str(self.device),
            "autocast_dtype": str(self.dtype).replace("torch.", "") if self.dtype else None,
            "versions": {"torch": torch.__version__, "transformers": transformers_version},
        }
        (self.output_dir / CONFIG_JSON).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
        self._write_json_lines(
            self.output_dir / HELDOUT, [{"text": d.text, "lang": d.lang} for d in self.heldout_docs]
        )

    def _evaluate(self, model, tokenizer, step: int) -> Optional[Dict[str, Any]]:
        if not self.eval_data:
            return None
        result = evaluate_packed(
            model, tokenizer, self.eval_data, batch_size=self.cfg.batch_size, mask_prob=self.cfg.mask_prob,
            whole_word_mask=self.cfg.whole_word_mask, seed=EVAL_SEED, device=self.device, dtype=self.dtype,
        )
        record = {"step": step, **result}
        with (self.output_dir / EVAL_LOG).open("a", encoding="utf8") as file:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.log(f"step {step}: {format_eval(result)}")
        return result

    def _rng_state(self, mask_rng, sampler) -> Dict[str, Any]:
        state = {
            "python": random.getstate(),
            "numpy": numpy.random.get_state(),
            "torch": torch.get_rng_state(),
            "mask": mask_rng.bit_generator.state,
            "sampler": sampler.state_dict(),
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore_rng_state(self, state, mask_rng, sampler) -> None:
        random.setstate(state["python"])
        numpy.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if self.device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.device)
        mask_rng.bit_generator.state = state["mask"]
        sampler.load_state_dict(state["sampler"])

    def _save_checkpoint(self, step, model, tokenizer, optimizer, scheduler, scaler, mask_rng, sampler, eval_result):
        root = self.output_dir / CHECKPOINTS
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".step-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        torch.save(
            {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": self._rng_state(mask_rng, sampler),
            },
            tmp / STATE_PT,
        )
        state_json = {
            "step": step,
            "base_model": self.base_model,
            "config": self.cfg.to_dict(),
            "fingerprint": self.fingerprint,
            "eval": eval_result,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (tmp / STATE_JSON).write_text(json.dumps(state_json, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
        final = root / f"step-{step}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # a checkpoint is complete or absent
        if self.cfg.keep_checkpoints:
            for _, old in find_checkpoints(self.output_dir)[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)

    # ----------------------------------------------------------------- the loop

    def train(self, stop_at_step: Optional[int] = None) -> Path:
        from tqdm import tqdm

        cfg = self.cfg
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for leftover in (self.output_dir / CHECKPOINTS).glob(".step-*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
        # Input errors first, before the (possibly large) model is loaded.
        train_docs, heldout_docs = self._read_data()
        seed_everything(cfg.seed)
        tokenizer, model = self._load_model()
        _check_max_length(model, cfg.max_length)
        self._prepare_data(tokenizer, train_docs, heldout_docs)
        del train_docs

        counts = {lang: len(p) for lang, p in self.train_data.items()}
        sampler = data_mod.LanguageSampler(counts, cfg.alpha, cfg.seed)
        mask_rng = numpy.random.default_rng([cfg.seed, 0x4D41534B])
        optimizer = build_optimizer(model, cfg)
        self.warmup_steps = int(round(cfg.warmup_ratio * cfg.max_steps))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.max_steps, self.warmup_steps))
        scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

        if self.checkpoint is not None:
            if self.saved_state.get("fingerprint") != self.fingerprint:
                raise UserError(
                    f"Cannot resume {self.checkpoint}: the training or held-out data differ from the "
                    f"checkpoint's. Resume with the same --text/--eval-text files and --lang, or start a new OUTPUT_DIR."
                )
            state = torch.load(self.checkpoint / STATE_PT, map_location="cpu", weights_only=False)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            self._restore_rng_state(state["rng"], mask_rng, sampler)
            self._truncate_log(self.output_dir / TRAIN_LOG, self.start_step)
            self._truncate_log(self.output_dir / EVAL_LOG, self.start_step)
            self.log(f"Resuming from {self.checkpoint} (step {self.start_step} of {cfg.max_steps}).")
        else:
            if self.resume and (self.output_dir / TRAIN_LOG).exists():
                self.log(f"No complete checkpoint in {self.output_dir / CHECKPOINTS}; starting again from step 0.")
            for name in (TRAIN_LOG, EVAL_LOG):
                (self.output_dir / name).unlink(missing_ok=True)
            shutil.rmtree(self.output_dir / CHECKPOINTS, ignore_errors=True)
        self._write_run_files(tokenizer, sampler)
        probabilities = ", ".join(f"{lang} {p:.3f}" for lang, p in sampler.probabilities.items())
        self.log(
            f"Pretraining {self.base_model} on {sum(counts.values())} sequences of {cfg.max_length} pieces "
            f"({len(counts)} languages; sampling p: {probabilities}) on {self.device}."
        )

        step = self.start_step
        if self.checkpoint is None:
            self._evaluate(model, tokenizer, 0)
        special_ids = data_mod.special_ids_of(tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        vocab_size = min(len(tokenizer), model.config.vocab_size)
        train_log = (self.output_dir / TRAIN_LOG).open("a", encoding="utf8")
        bar = tqdm(
            total=cfg.max_steps, initial=step, desc="pretrain", unit="step", dynamic_ncols=True,
            disable=None if self.progress else True, file=sys.stderr,
        )
        resumed_from = self.start_step if self.checkpoint is not None else None
        evaluated_at = step  # step 0 just now; a checkpoint's step before it was saved
        model.train()
        try:
            while step < cfg.max_steps:
                if stop_at_step is not None and step >= stop_at_step:
                    break
                optimizer.zero_grad(set_to_none=True)
                lr = scheduler.get_last_lr()[0]
                step_loss_t = torch.zeros((), device=self.device)
                lang_counts: Counter = Counter()
                for _ in range(cfg.grad_accum):
                    drawn = sampler.sample(cfg.batch_size)
                    lang_counts.update(lang for lang, _ in drawn)
                    ids, attention, special, word_ids = collate(
                        [self.train_data[lang].input_ids[i] for lang, i in drawn],
                        [self.train_data[lang].word_ids[i] for lang, i in drawn],
                        pad_id, special_ids,
                    )
                    inputs, labels = mask_tokens(
                        ids, special, mask_prob=cfg.mask_prob, rng=mask_rng,
                        mask_token_id=tokenizer.mask_token_id, vocab_size=vocab_size,
                        whole_word_ids=word_ids if cfg.whole_word_mask else None,
                        special_token_ids=special_ids,
                    )
                    with _autocast(self.device, self.dtype):
                        output = model(
                            input_ids=torch.from_numpy(inputs).to(self.device),
                            attention_mask=torch.from_numpy(attention).to(self.device),
                            labels=torch.from_numpy(labels).to(self.device),
                        )
                    loss = output.loss / cfg.grad_accum
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                    step_loss_t += loss.detach().float()
                step_loss = float(step_loss_t)  # one device sync per step
                if not math.isfinite(step_loss) and scaler is None:
                    raise UserError(
                        f"The training loss became {step_loss} at step {step + 1}: training diverged. Start "
                        f"again with a lower --lr (now {cfg.lr:g}) or more --warmup-ratio; checkpoints before "
                        f"this step are in {self.output_dir / CHECKPOINTS}."
                    )
                grad_norm = None
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if cfg.grad_clip > 0:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                step += 1

                record: Dict[str, Any] = {
                    "step": step, "loss": step_loss, "lr": lr, "grad_norm": grad_norm,
                    "lang_counts": dict(sorted(lang_counts.items())),
                }
                if resumed_from is not None:
                    record["resumed_from"] = resumed_from
                    resumed_from = None
                self._log_step(train_log, record)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}", refresh=False)

                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    result = self._evaluate(model, tokenizer, step)
                    evaluated_at = step
                    self._save_checkpoint(step, model, tokenizer, optimizer, scheduler, scaler, mask_rng, sampler, result)
        except KeyboardInterrupt:
            last = find_checkpoints(self.output_dir)
            where = f"from step {last[-1][0]}" if last else "from the start (no checkpoint yet)"
            self.log(f"Interrupted at step {step}; rerun with --resume to continue {where}.")
            raise
        finally:
            bar.close()
            train_log.close()

        if step < cfg.max_steps:
            last = find_checkpoints(self.output_dir)
            where = f"from the checkpoint of step {last[-1][0]}" if last else "from step 0 (no checkpoint yet)"
            self.log(f"Stopped after step {step} of {cfg.max_steps}; --resume continues {where}.")
            return self.output_dir
        if evaluated_at != step:
            self._evaluate(model, tokenizer, step)
        model.save_pretrained(str(self.output_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(self.output_dir))
        self.log(f"Saved the pretrained model to {self.output_dir}.")
        return self.output_dir

    def _log_step(self, file, record: Mapping[str, Any]) -> None:
        file.write(json.dumps(record, ensure_ascii=False) + "\n")
        file.flush()
