"""``spacy-mbert pretrain``: masked-LM (continued) pretraining from the command line.

Registered in ``spacy_mbert/cli.py`` with::

    app.command("pretrain")(user_errors_as_messages(pretrain_command))

Options left out take their value from ``--config`` (a ``[pretrain]`` section), else,
with ``--resume``, from the checkpoint, else the defaults in ``configs/pretrain.cfg``.
"""

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer


class MixedPrecision(str, Enum):
    auto = "auto"
    no = "no"
    bf16 = "bf16"
    fp16 = "fp16"


def pretrain_command(
    base_model: str = typer.Argument(
        ...,
        help="BERT-family checkpoint to start from: Hub name (e.g. bert-base-multilingual-cased) or local directory (e.g. from `spacy-mbert init-encoder tiny`, to train from scratch).",
    ),
    output_dir: Path = typer.Argument(
        ..., help="Directory for the pretrained model (a standard Hugging Face checkpoint), logs and checkpoints/."
    ),
    text: Optional[List[Path]] = typer.Option(
        None,
        "--text",
        "-t",
        help='Training text: .txt (one document per line) or .jsonl ({"text", "lang"?}). Repeatable.',
        show_default=False,
    ),
    lang: Optional[List[str]] = typer.Option(
        None,
        "--lang",
        "-l",
        help='Language of documents without a "lang" field: once for all files, or once per --text in order. Default: unknown.',
        show_default=False,
    ),
    eval_text: Optional[List[Path]] = typer.Option(
        None,
        "--eval-text",
        help="Held-out text (same formats) instead of holding out --eval-fraction of --text. Repeatable.",
        show_default=False,
    ),
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        "-c",
        help="A .cfg file whose 'pretrain' section sets any of these options (see configs/pretrain.cfg); options given here win.",
        show_default=False,
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from the newest checkpoint in OUTPUT_DIR (settings not given default to the checkpoint's).",
    ),
    max_steps: Optional[int] = typer.Option(
        None, "--max-steps", help="Optimizer steps to train for. (default: 10000)", show_default=False
    ),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", "-b", help="Sequences per forward pass. (default: 32)", show_default=False
    ),
    grad_accum: Optional[int] = typer.Option(
        None,
        "--grad-accum",
        help="Forward passes per optimizer step (effective batch = batch size × this). (default: 1)",
        show_default=False,
    ),
    max_length: Optional[int] = typer.Option(
        None,
        "--max-length",
        help="Pieces per packed sequence, [CLS] and [SEP] included. (default: 128)",
        show_default=False,
    ),
    lr: Optional[float] = typer.Option(
        None,
        "--lr",
        help="Peak learning rate of AdamW (use ~1e-4-1e-3 to train a small model from scratch). (default: 5e-5)",
        show_default=False,
    ),
    weight_decay: Optional[float] = typer.Option(
        None, "--weight-decay", help="AdamW weight decay (not on biases/LayerNorm). (default: 0.01)", show_default=False
    ),
    warmup_ratio: Optional[float] = typer.Option(
        None,
        "--warmup-ratio",
        help="Share of --max-steps for linear warmup; then linear decay to 0. (default: 0.1)",
        show_default=False,
    ),
    grad_clip: Optional[float] = typer.Option(
        None, "--grad-clip", help="Clip the gradient norm to this (0: off). (default: 1.0)", show_default=False
    ),
    mask_prob: Optional[float] = typer.Option(
        None,
        "--mask-prob",
        help="Share of pieces to predict (80% [MASK], 10% random, 10% kept). (default: 0.15)",
        show_default=False,
    ),
    whole_word_mask: Optional[bool] = typer.Option(
        None,
        "--whole-word-mask/--no-whole-word-mask",
        help="Mask all pieces of a word together. (default: off)",
        show_default=False,
    ),
    alpha: Optional[float] = typer.Option(
        None,
        "--alpha",
        help="Language sampling exponent: p_l ∝ n_l^alpha (1: by data size, 0: uniform). (default: 0.7)",
        show_default=False,
    ),
    eval_fraction: Optional[float] = typer.Option(
        None,
        "--eval-fraction",
        help="Share of each language's documents held out for evaluation (at least 1 when it has 2+). (default: 0.05)",
        show_default=False,
    ),
    eval_max_docs: Optional[int] = typer.Option(
        None,
        "--eval-max-docs",
        help="At most this many held-out documents per language (0: no cap). (default: 1000)",
        show_default=False,
    ),
    checkpoint_every: Optional[int] = typer.Option(
        None,
        "--checkpoint-every",
        help="Save a checkpoint and report held-out loss every N steps (0: only at the end). (default: 1000)",
        show_default=False,
    ),
    keep_checkpoints: Optional[int] = typer.Option(
        None, "--keep-checkpoints", help="Keep only the newest N checkpoints (0: all). (default: 3)", show_default=False
    ),
    seed: Optional[int] = typer.Option(
        None,
        "--seed",
        help="Random seed (weights of new layers, sampling, masking, dropout). (default: 0)",
        show_default=False,
    ),
    gpu_id: Optional[int] = typer.Option(
        None, "--gpu-id", "-g", help="GPU to train on; -1 for CPU. (default: -1)", show_default=False
    ),
    mixed_precision: Optional[MixedPrecision] = typer.Option(
        None,
        "--mixed-precision",
        help="On GPU: auto (bf16 where supported, else fp16 with loss scaling), bf16, fp16 or no. (default: auto)",
        show_default=False,
    ),
    stop_at_step: Optional[int] = typer.Option(
        None,
        "--stop-at-step",
        help="Stop after this step as if interrupted (for testing --resume); no final model is saved.",
        show_default=False,
    ),
):
    """Masked-LM pretraining of a BERT-family encoder on raw (multilingual) text.

    Writes a Hugging Face checkpoint to OUTPUT_DIR that spacy-mbert.MBertTransformer.v1 and
    the task heads take as `name`, with train_log.jsonl (loss per step), eval_log.jsonl
    (held-out loss/perplexity per language at each checkpoint) and pretrain_config.json.
    """
    from .trainer import EVAL_LOG, pretrain

    settings = dict(
        text=[str(p) for p in text] if text else None,
        lang=list(lang) if lang else None,
        eval_text=[str(p) for p in eval_text] if eval_text else None,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        lr=lr,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        grad_clip=grad_clip,
        mask_prob=mask_prob,
        whole_word_mask=whole_word_mask,
        alpha=alpha,
        eval_fraction=eval_fraction,
        eval_max_docs=eval_max_docs,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        seed=seed,
        gpu_id=gpu_id,
        mixed_precision=mixed_precision.value if mixed_precision is not None else None,
    )
    path = pretrain(base_model, output_dir, config=config, resume=resume, stop_at_step=stop_at_step, **settings)
    if stop_at_step is not None and not (path / "config.json").exists():
        typer.secho(f"✔ Stopped after step {stop_at_step}; continue with --resume.", fg=typer.colors.GREEN)
        return
    summary = ""
    eval_log = path / EVAL_LOG
    if eval_log.exists():
        lines = [line for line in eval_log.read_text(encoding="utf8").splitlines() if line.strip()]
        if lines:
            overall = json.loads(lines[-1]).get("all") or {}
            if overall:
                summary = f" (held-out loss {overall['loss']:.4f}, perplexity {overall['perplexity']:.2f})"
    typer.secho(f"✔ Wrote the pretrained model to {path}{summary}", fg=typer.colors.GREEN)
