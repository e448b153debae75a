"""``spacy-mbert annotate`` on Ray against ``nlp.pipe`` in one process, on the same cores.

SIB-200 test sentences of all 12 languages (2,448, repeated ``--copies`` times with new
ids so that start-up is a small part of each run) through an e5-small textcat pipeline
(``--pipeline``, or one trained here: one epoch of SIB-200 English with
``configs/textcat.cfg``; throughput does not depend on how well it was trained):

  nlp.pipe   one process, ``--threads`` torch threads, batches of ``--batch-size``;
  annotate   the command with its embedded Ray: 1 worker x ``--threads`` CPUs, and
             ``--threads`` workers x 1 CPU, same batch size, JSONL in and out.

Each system runs as its own process, in turn, ``--repeats`` times (median). The ratio
is of docs/s after start-up (from the end of the first batch to the last doc: what a long
job runs at); the start-up seconds and each process's end-to-end seconds are given beside.

    python benchmarks/annotate.py --encoder encoders/e5-small --data ../shared/data/sib200
"""

import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import typer
from common import DEFAULT_SHARED_DATA, ROOT, machine_info, markdown_table, read_jsonl, require_dir, write_results
from sib200_textcat import LANGS, load_split, write_docbin

from spacy_mbert.annotate import Summary

PIPE_SCRIPT = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
import spacy, spacy_mbert
nlp = spacy.load(sys.argv[1])
texts = [json.loads(line)["text"] for line in open(sys.argv[2], encoding="utf8")]
taken = 0
def stream():
    global taken
    for text in texts:
        taken += 1
        yield text
start = time.perf_counter()
for n, _ in enumerate(nlp.pipe(stream(), batch_size=int(sys.argv[4])), 1):
    if n == 1:
        # The first doc is out, as annotate's start-up ends at its first batch back; the
        # encoder reads ahead (its sort buffer), so the rows done by then are the rows read.
        first, startup_rows = time.perf_counter(), taken
seconds = time.perf_counter() - start
print(json.dumps({"docs": n, "seconds": seconds, "startup_seconds": first - start, "startup_rows": startup_rows}))
"""
SUMMARY = re.compile(
    r"✔ (\d+) docs annotated, (\d+) errors.*?([\d.]+) docs/s \(([\d.]+) s; after ([\d.]+) s of start-up, ([\d.]+) docs/s\)"
)


def train_pipeline(encoder: Path, data: Path, work: Path, threads: int) -> Path:
    """One epoch of SIB-200 English (22 steps of 32) with configs/textcat.cfg: a trained e5-small textcat."""
    import spacy
    import torch
    from spacy.cli.train import train

    from spacy_mbert.tokenizer import MultilingualTokenizer

    torch.set_num_threads(threads)
    nlp = spacy.blank("xx")
    nlp.tokenizer = MultilingualTokenizer(nlp.vocab)
    labels = json.loads((data / "labels.json").read_text(encoding="utf8"))["labels"]
    write_docbin(load_split(data, "eng_Latn", "train"), "eng_Latn", labels, work / "train.spacy", nlp)
    write_docbin(load_split(data, "eng_Latn", "dev"), "eng_Latn", labels, work / "dev.spacy", nlp)
    steps = math.ceil(len(load_split(data, "eng_Latn", "train")) / 32)
    overrides = {
        "paths.train": str(work / "train.spacy"),
        "paths.dev": str(work / "dev.spacy"),
        "paths.encoder": str(encoder),
        "training.max_steps": steps,
        "training.eval_frequency": steps,
        "training.optimizer.learn_rate.warmup_steps": 2,
    }
    train(ROOT / "configs" / "textcat.cfg", work / "out", use_gpu=-1, overrides=overrides)
    return work / "out" / "model-last"


def write_corpus(data: Path, path: Path, copies: int) -> int:
    rows = [r for lang in LANGS for r in read_jsonl(data / lang / "test.jsonl")]
    with path.open("w", encoding="utf8") as out:
        for copy in range(copies):
            for i, row in enumerate(rows):
                out.write(json.dumps({"id": f"{copy}-{i}", "text": row["text"]}, ensure_ascii=False) + "\n")
    return copies * len(rows)


def run_pipe(pipeline: Path, corpus: Path, threads: int, batch_size: int) -> Dict[str, float]:
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", PIPE_SCRIPT, str(pipeline), str(corpus), str(threads), str(batch_size)],
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    if run.returncode != 0:
        sys.exit(f"✘ nlp.pipe failed:\n{run.stderr[-2000:]}")
    # The same arithmetic as annotate's own summary line, so the two rates cannot drift apart.
    summary = Summary(**json.loads(run.stdout.strip().splitlines()[-1]))
    return {
        "docs_per_second": summary.docs_per_second,
        "docs_per_second_after_startup": summary.docs_per_second_after_startup,
        "startup_seconds": summary.startup_seconds,
        "wall_seconds": time.perf_counter() - start,
    }


def run_annotate(pipeline: Path, corpus: Path, out: Path, workers: int, cpus: int, batch_size: int) -> Dict[str, float]:
    command = [sys.executable, "-m", "spacy_mbert", "annotate", str(pipeline), str(corpus), str(out)]
    command += ["--workers", str(workers), "--cpus-per-worker", str(cpus), "--batch-size", str(batch_size)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    found = SUMMARY.search(run.stdout + run.stderr)
    if run.returncode != 0 or not found:
        sys.exit(f"✘ annotate failed:\n{(run.stdout + run.stderr)[-3000:]}")
    docs, errors, _, seconds, startup, after = found.groups()
    return {
        "docs_per_second": int(docs) / float(seconds),
        "docs_per_second_after_startup": float(after),
        "startup_seconds": float(startup),
        "wall_seconds": wall,
        "errors": int(errors),
    }


def main(
    encoder: Path = typer.Option(ROOT / "encoders" / "e5-small", help="Encoder for the pipeline trained here."),
    data: Path = typer.Option(DEFAULT_SHARED_DATA / "sib200", help="SIB-200 folder."),
    pipeline: Path = typer.Option(None, help="A trained textcat pipeline; default: train one epoch here."),
    threads: int = typer.Option(2, help="Cores for every system: nlp.pipe's threads, the workers' CPUs."),
    batch_size: int = typer.Option(64, help="Docs per batch, every system."),
    copies: int = typer.Option(4, help="Copies of the 2,448 test sentences (new ids each)."),
    repeats: int = typer.Option(3, help="Runs per system (median)."),
):
    require_dir(data, "SIB-200")
    import spacy_mbert  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if pipeline is None:
            pipeline = train_pipeline(encoder, data, work, threads)
        corpus = work / "corpus.jsonl"
        n_docs = write_corpus(data, corpus, copies)
        systems = {
            "nlp.pipe": lambda i: run_pipe(pipeline, corpus, threads, batch_size),
            f"annotate 1 worker x {threads} CPUs": lambda i: run_annotate(
                pipeline, corpus, work / f"one-{i}.jsonl", 1, threads, batch_size
            ),
            f"annotate {threads} workers x 1 CPU": lambda i: run_annotate(
                pipeline, corpus, work / f"many-{i}.jsonl", threads, 1, batch_size
            ),
        }
        runs: Dict[str, List[dict]] = {name: [] for name in systems}
        for i in range(repeats):
            for name, system in systems.items():
                runs[name].append(system(i))
                print(name, json.dumps(runs[name][-1]), flush=True)
    write_report(runs, n_docs=n_docs, threads=threads, batch_size=batch_size, copies=copies, repeats=repeats)


def write_report(runs, *, n_docs, threads, batch_size, copies, repeats) -> None:
    keys = ("docs_per_second_after_startup", "startup_seconds", "wall_seconds")
    median = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()}
    base = median["nlp.pipe"]
    rows = [
        [
            name,
            f"{m['docs_per_second_after_startup']:.1f}",
            f"**{m['docs_per_second_after_startup'] / base['docs_per_second_after_startup']:.2f}x**",
            f"{m['startup_seconds']:.1f}",
            f"{m['wall_seconds']:.1f}",
            f"{base['wall_seconds'] / m['wall_seconds']:.2f}x",
        ]
        for name, m in median.items()
    ]
    ratios = {
        name: m["docs_per_second_after_startup"] / base["docs_per_second_after_startup"]
        for name, m in median.items()
        if name != "nlp.pipe"
    }
    end_to_end = {name: base["wall_seconds"] / m["wall_seconds"] for name, m in median.items() if name != "nlp.pipe"}
    lines = [
        f"# annotate on Ray vs nlp.pipe: {n_docs} SIB-200 test sentences (12 languages), e5-small textcat, {threads} cores",
        "",
        f"Command: `python benchmarks/annotate.py --threads {threads} --batch-size {batch_size} --copies {copies} --repeats {repeats}`",
        "",
        markdown_table(
            ["system", "docs/s after start-up", "vs nlp.pipe", "start-up s", "process s (end to end)", "vs nlp.pipe"],
            rows,
        ),
        "",
        "docs/s after start-up: from the end of the first batch to the last doc, for every system (nlp.pipe: after "
        "spacy.load and its first doc out, when the encoder's read-ahead of 256 docs is done; annotate: after the "
        "first batch is back at the driver, which includes Ray starting the actors and each actor loading the "
        "pipeline). Start-up: from the start of the work to that point (nlp.pipe: its first read-ahead only, "
        "spacy.load is before it; annotate: the actors' start and load, and the first batch). Process seconds: the whole command, interpreter start, imports, loading, Ray's start and "
        f"writing included; its ratio is nlp.pipe's time over the system's. Median of {repeats} runs of each, in "
        "turn, each in its own process.",
        "",
    ]
    write_results(
        "annotate",
        lines,
        machine_info(threads),
        {
            "annotate_vs_nlp_pipe": ratios,
            "annotate_vs_nlp_pipe_end_to_end": end_to_end,
            "median": median,
            "runs": runs,
            "docs": n_docs,
        },
    )


if __name__ == "__main__":
    typer.run(main)
