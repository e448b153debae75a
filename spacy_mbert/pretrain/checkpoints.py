"""Pretraining checkpoints: written whole or not at all, found by step, restored exactly.

A checkpoint ``checkpoints/step-N/`` holds the model and tokenizer
(``save_pretrained``), ``trainer_state.pt`` (optimizer, scheduler, gradient
scaler, every random generator and the sampler's position) and
``trainer_state.json`` (settings, data fingerprint, held-out scores). It is
written to a temporary directory and renamed, so an interruption leaves the
previous checkpoints intact.
"""

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy
import torch

CHECKPOINTS = "checkpoints"
STATE_PT = "trainer_state.pt"
STATE_JSON = "trainer_state.json"


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


def save_checkpoint(
    output_dir: Path,
    step: int,
    model,
    tokenizer,
    *,
    trainer_state: Mapping[str, Any],
    state_json: Mapping[str, Any],
    keep: int = 0,
) -> Path:
    """Write ``checkpoints/step-{step}`` atomically; keep only the newest ``keep`` (0: all)."""
    root = Path(output_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    torch.save(dict(trainer_state), tmp / STATE_PT)
    (tmp / STATE_JSON).write_text(json.dumps(dict(state_json), indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    final = root / f"step-{step}"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)  # a checkpoint is complete or absent
    if keep:
        for _, old in find_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def rng_state(mask_rng, sampler, device: torch.device) -> Dict[str, Any]:
    """Every random generator a training step draws from, and the sampler's position."""
    state = {
        "python": random.getstate(),
        "numpy": numpy.random.get_state(),
        "torch": torch.get_rng_state(),
        "mask": mask_rng.bit_generator.state,
        "sampler": sampler.state_dict(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: Mapping[str, Any], mask_rng, sampler, device: torch.device) -> None:
    """Put back what :func:`rng_state` saved, so the next steps are those of an uninterrupted run."""
    random.setstate(state["python"])
    numpy.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    mask_rng.bit_generator.state = state["mask"]
    sampler.load_state_dict(state["sampler"])


def write_json_lines(path: Path, records: Sequence[Mapping]) -> None:
    """Write one JSON object per line (the run's logs and held-out documents)."""
    with path.open("w", encoding="utf8") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


def truncate_log(path: Path, last_step: int) -> None:
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
    write_json_lines(path, kept)
