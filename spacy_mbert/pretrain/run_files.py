"""What a pretraining run writes beside its model: the effective settings and data statistics, and the held-out documents.

``pretrain_config.json`` records everything needed to read the run's logs (settings,
packed data per language, sampling probabilities, data fingerprint, optimizer,
device, versions); ``heldout.jsonl`` the held-out documents the perplexities are on.
"""

import json

import torch

from .checkpoints import write_json_lines
from .runtime import ADAM_BETAS, ADAM_EPS

CONFIG_JSON = "pretrain_config.json"
HELDOUT = "heldout.jsonl"


def write_run_files(run, sampler) -> None:
    """Write ``pretrain_config.json`` and ``heldout.jsonl`` into ``run.output_dir`` (``run``: the trainer's ``_Run``)."""
    from transformers import __version__ as transformers_version

    cfg = run.cfg
    summary = {
        "base_model": run.base_model,
        "output_dir": str(run.output_dir),
        "settings": cfg.to_dict(),
        "resumed_from_step": run.start_step if run.checkpoint is not None else None,
        "data": {
            "sampling_unit": "packed training sequences (max_length pieces each)",
            "train": {
                lang: {"docs": p.n_docs, "pieces": p.n_pieces, "sequences": len(p)}
                for lang, p in run.train_data.items()
            },
            "heldout": {
                lang: {"docs": p.n_docs, "pieces": p.n_pieces, "sequences": len(p)} for lang, p in run.eval_data.items()
            },
            "sampling_probabilities": sampler.probabilities,
            "fingerprint": run.fingerprint,
        },
        "optimizer": {
            "name": "AdamW",
            "betas": list(ADAM_BETAS),
            "eps": ADAM_EPS,
            "warmup_steps": run.warmup_steps,
            "schedule": "linear warmup, linear decay to 0",
            "effective_batch_size": cfg.batch_size * cfg.grad_accum,
        },
        "device": str(run.device),
        "autocast_dtype": str(run.dtype).replace("torch.", "") if run.dtype else None,
        "versions": {"torch": torch.__version__, "transformers": transformers_version},
    }
    (run.output_dir / CONFIG_JSON).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    write_json_lines(run.output_dir / HELDOUT, [{"text": d.text, "lang": d.lang} for d in run.heldout_docs])
