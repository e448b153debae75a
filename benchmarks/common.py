"""Shared helpers for the on-demand benchmarks: data paths, machine facts, timing, tables."""

import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        sys.exit(f"✘ {what} not found at {path}: pass its location with --data (see benchmarks/README.md).")
    return path


def read_jsonl(path: Path) -> List[dict]:
    with path.open(encoding="utf8") as file:
        return [json.loads(line) for line in file if line.strip()]


def pin_threads(threads: int) -> None:
    """Pin torch (and BLAS) to ``threads`` so every system runs on the same budget."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def machine_info(threads: int) -> Dict[str, str]:
    import spacy
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        model_line = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")
        )
        cpu = model_line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "threads": str(threads),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "spacy": spacy.__version__,
        "commit": commit.stdout.strip() or "unknown",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


@contextmanager
def stopwatch() -> Iterator[Dict[str, float]]:
    result: Dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def write_results(stem: str, lines: List[str], info: Dict[str, str], payload: dict) -> str:
    """Write ``results/<stem>.md`` (``lines`` + the machine line) and ``results/<stem>.json``; print the report."""
    report = "\n".join(lines + ["Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(report, encoding="utf8")
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"machine": info, **payload}, ensure_ascii=False, indent=1), encoding="utf8"
    )
    print(report)
    return report
