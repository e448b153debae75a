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

import json
import math
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy
import torch

from ..errors import UserError
from . import data as data_mod
from .checkpoints import (
    CHECKPOINTS,
    STATE_JSON,
    STATE_PT,
    find_checkpoints,
    restore_rng_state,
    rng_state,
    save_checkpoint,
    truncate_log,
)
from .config import resolve_config, trajectory_differences
from .evaluation import EVAL_SEED, autocast, check_max_length, collate, evaluate_packed, format_eval
from .masking import mask_tokens
from .run_files import write_run_files
from .runtime import build_optimizer, lr_lambda, seed_everything, select_device

TRAIN_LOG = "train_log.jsonl"
EVAL_LOG = "eval_log.jsonl"


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


@dataclass
class _State:
    """What a training step works with."""

    model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Optional[Any]
    sampler: "data_mod.LanguageSampler"
    mask_rng: numpy.random.Generator
    special_ids: Any  # ids never masked
    pad_id: int
    vocab_size: int  # random replacements are drawn below this id


class _Run:
    """One pretraining run: settings checked against a checkpoint to resume, then :meth:`train`."""

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

        from ..encoder.loading import load_pretrained

        source = str(self.checkpoint) if self.checkpoint is not None else self.base_model
        hf = load_pretrained(source, {"use_fast": True}, {}, model_cls=AutoModelForMaskedLM)
        if hf.tokenizer.mask_token_id is None:
            raise UserError(
                f"The tokenizer of '{source}' has no mask token; masked-LM pretraining needs one ([MASK] or <mask>)."
            )
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
        self.fingerprint = data_mod.fingerprint(self.train_data, extra=[f"eval:{d.lang}:{d.text}" for d in heldout])

    def _evaluate(self, model, tokenizer, step: int) -> Optional[Dict[str, Any]]:
        if not self.eval_data:
            return None
        result = evaluate_packed(
            model,
            tokenizer,
            self.eval_data,
            batch_size=self.cfg.batch_size,
            mask_prob=self.cfg.mask_prob,
            whole_word_mask=self.cfg.whole_word_mask,
            seed=EVAL_SEED,
            device=self.device,
            dtype=self.dtype,
        )
        record = {"step": step, **result}
        with (self.output_dir / EVAL_LOG).open("a", encoding="utf8") as file:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.log(f"step {step}: {format_eval(result)}")
        return result

    # ----------------------------------------------------------------- the loop

    def train(self, stop_at_step: Optional[int] = None) -> Path:
        """Run (or resume) the training; returns ``output_dir``."""
        state = self._start()
        if self.checkpoint is not None:
            self._restore(state)
        else:
            self._start_afresh()
        write_run_files(self, state.sampler)
        probabilities = ", ".join(f"{lang} {p:.3f}" for lang, p in state.sampler.probabilities.items())
        self.log(
            f"Pretraining {self.base_model} on {sum(len(p) for p in self.train_data.values())} sequences of "
            f"{self.cfg.max_length} pieces ({len(self.train_data)} languages; sampling p: {probabilities}) on "
            f"{self.device}."
        )
        step, evaluated_at = self._loop(state, stop_at_step)
        return self._finish(state, step, evaluated_at)

    def _start(self) -> "_State":
        """Read the data, load the model, and build optimizer, schedule, sampler and masking generator."""
        cfg = self.cfg
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for leftover in (self.output_dir / CHECKPOINTS).glob(".step-*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
        # Input errors first, before the (possibly large) model is loaded.
        train_docs, heldout_docs = self._read_data()
        seed_everything(cfg.seed)
        tokenizer, model = self._load_model()
        check_max_length(model, cfg.max_length)
        self._prepare_data(tokenizer, train_docs, heldout_docs)
        counts = {lang: len(p) for lang, p in self.train_data.items()}
        optimizer = build_optimizer(model, cfg)
        self.warmup_steps = int(round(cfg.warmup_ratio * cfg.max_steps))
        return _State(
            model=model,
            tokenizer=tokenizer,
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.max_steps, self.warmup_steps)),
            scaler=torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None,
            sampler=data_mod.LanguageSampler(counts, cfg.alpha, cfg.seed),
            mask_rng=numpy.random.default_rng([cfg.seed, 0x4D41534B]),
            special_ids=data_mod.special_ids_of(tokenizer),
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            vocab_size=min(len(tokenizer), model.config.vocab_size),
        )

    def _restore(self, state: "_State") -> None:
        """Continue from ``self.checkpoint``: optimizer, schedule, scaler, generators, sampler and logs."""
        if self.saved_state.get("fingerprint") != self.fingerprint:
            raise UserError(
                f"Cannot resume {self.checkpoint}: the training or held-out data differ from the "
                f"checkpoint's. Resume with the same --text/--eval-text files and --lang, or start a new OUTPUT_DIR."
            )
        saved = torch.load(self.checkpoint / STATE_PT, map_location="cpu", weights_only=False)
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        if state.scaler is not None and saved.get("scaler"):
            state.scaler.load_state_dict(saved["scaler"])
        restore_rng_state(saved["rng"], state.mask_rng, state.sampler, self.device)
        truncate_log(self.output_dir / TRAIN_LOG, self.start_step)
        truncate_log(self.output_dir / EVAL_LOG, self.start_step)
        self.log(f"Resuming from {self.checkpoint} (step {self.start_step} of {self.cfg.max_steps}).")

    def _start_afresh(self) -> None:
        if self.resume and (self.output_dir / TRAIN_LOG).exists():
            self.log(f"No complete checkpoint in {self.output_dir / CHECKPOINTS}; starting again from step 0.")
        for name in (TRAIN_LOG, EVAL_LOG):
            (self.output_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.output_dir / CHECKPOINTS, ignore_errors=True)

    def _loop(self, state: "_State", stop_at_step: Optional[int]) -> Tuple[int, int]:
        """Steps until ``max_steps`` (or ``stop_at_step``); returns (last step, last evaluated step)."""
        from tqdm import tqdm

        cfg = self.cfg
        step = self.start_step
        if self.checkpoint is None:
            self._evaluate(state.model, state.tokenizer, 0)
        train_log = (self.output_dir / TRAIN_LOG).open("a", encoding="utf8")
        bar = tqdm(
            total=cfg.max_steps,
            initial=step,
            desc="pretrain",
            unit="step",
            dynamic_ncols=True,
            disable=None if self.progress else True,
            file=sys.stderr,
        )
        resumed_from = self.start_step if self.checkpoint is not None else None
        evaluated_at = step  # step 0 just now; a checkpoint's step before it was saved
        state.model.train()
        try:
            while step < cfg.max_steps:
                if stop_at_step is not None and step >= stop_at_step:
                    break
                record = self._step(state, step)
                step += 1
                if resumed_from is not None:
                    record["resumed_from"] = resumed_from
                    resumed_from = None
                self._log_step(train_log, record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    result = self._evaluate(state.model, state.tokenizer, step)
                    evaluated_at = step
                    self._checkpoint(step, state, result)
        except KeyboardInterrupt:
            last = find_checkpoints(self.output_dir)
            where = f"from step {last[-1][0]}" if last else "from the start (no checkpoint yet)"
            self.log(f"Interrupted at step {step}; rerun with --resume to continue {where}.")
            raise
        finally:
            bar.close()
            train_log.close()
        return step, evaluated_at

    def _step(self, state: "_State", step: int) -> Dict[str, Any]:
        """One optimizer step over ``grad_accum`` masked batches; returns its log record."""
        cfg, model, tokenizer = self.cfg, state.model, state.tokenizer
        special_ids, pad_id, vocab_size = state.special_ids, state.pad_id, state.vocab_size
        state.optimizer.zero_grad(set_to_none=True)
        lr = state.scheduler.get_last_lr()[0]
        step_loss_t = torch.zeros((), device=self.device)
        lang_counts: Counter = Counter()
        for _ in range(cfg.grad_accum):
            drawn = state.sampler.sample(cfg.batch_size)
            lang_counts.update(lang for lang, _ in drawn)
            ids, attention, special, word_ids = collate(
                [self.train_data[lang].input_ids[i] for lang, i in drawn],
                [self.train_data[lang].word_ids[i] for lang, i in drawn],
                pad_id,
                special_ids,
            )
            inputs, labels = mask_tokens(
                ids,
                special,
                mask_prob=cfg.mask_prob,
                rng=state.mask_rng,
                mask_token_id=tokenizer.mask_token_id,
                vocab_size=vocab_size,
                whole_word_ids=word_ids if cfg.whole_word_mask else None,
                special_token_ids=special_ids,
            )
            with autocast(self.device, self.dtype):
                output = model(
                    input_ids=torch.from_numpy(inputs).to(self.device),
                    attention_mask=torch.from_numpy(attention).to(self.device),
                    labels=torch.from_numpy(labels).to(self.device),
                )
            loss = output.loss / cfg.grad_accum
            (state.scaler.scale(loss) if state.scaler is not None else loss).backward()
            step_loss_t += loss.detach().float()
        step_loss = float(step_loss_t)  # one device sync per step
        if not math.isfinite(step_loss) and state.scaler is None:
            raise UserError(
                f"The training loss became {step_loss} at step {step + 1}: training diverged. Start "
                f"again with a lower --lr (now {cfg.lr:g}) or more --warmup-ratio; checkpoints before "
                f"this step are in {self.output_dir / CHECKPOINTS}."
            )
        grad_norm = None
        if state.scaler is not None:
            state.scaler.unscale_(state.optimizer)
        if cfg.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        if state.scaler is not None:
            state.scaler.step(state.optimizer)
            state.scaler.update()
        else:
            state.optimizer.step()
        state.scheduler.step()
        return {
            "step": step + 1,
            "loss": step_loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "lang_counts": dict(sorted(lang_counts.items())),
        }

    def _checkpoint(self, step: int, state: "_State", eval_result: Optional[Dict[str, Any]]) -> None:
        state_json = {
            "step": step,
            "base_model": self.base_model,
            "config": self.cfg.to_dict(),
            "fingerprint": self.fingerprint,
            "eval": eval_result,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        save_checkpoint(
            self.output_dir,
            step,
            state.model,
            state.tokenizer,
            trainer_state={
                "step": step,
                "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict(),
                "scaler": state.scaler.state_dict() if state.scaler is not None else None,
                "rng": rng_state(state.mask_rng, state.sampler, self.device),
            },
            state_json=state_json,
            keep=self.cfg.keep_checkpoints,
        )

    def _finish(self, state: "_State", step: int, evaluated_at: int) -> Path:
        cfg = self.cfg
        if step < cfg.max_steps:
            last = find_checkpoints(self.output_dir)
            where = f"from the checkpoint of step {last[-1][0]}" if last else "from step 0 (no checkpoint yet)"
            self.log(f"Stopped after step {step} of {cfg.max_steps}; --resume continues {where}.")
            return self.output_dir
        if evaluated_at != step:
            self._evaluate(state.model, state.tokenizer, step)
        state.model.save_pretrained(str(self.output_dir), safe_serialization=True)
        state.tokenizer.save_pretrained(str(self.output_dir))
        self.log(f"Saved the pretrained model to {self.output_dir}.")
        return self.output_dir

    def _log_step(self, file, record: Mapping[str, Any]) -> None:
        file.write(json.dumps(record, ensure_ascii=False) + "\n")
        file.flush()
