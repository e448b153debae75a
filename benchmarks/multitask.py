"""One encoder, many heads: the multitask pipeline with LoRA adapters on one base vs full fine-tuning.

Side by side in one run, on e5-small and on ``mbert-shape`` (a random model with
M-BERT-base's shape, for size and memory):

  package  the three-head pipeline assembled by ``configs/multitask.cfg`` from heads
           built with the shipped configs (initialized, not trained: sizes do not depend
           on training), once with ``--paths.base mbert_base`` (LoRA adapters on one
           base) and once with ``null`` (full fine-tuning, an encoder copy per head):
           its size on disk, and the peak RSS of a fresh process that ``spacy.load``s it
           and runs each head once (the memory-mapped pages touched), both as ratios to
           the encoder's weights file.
  train    examples/s of text-classification training (``nlp.update`` on batches of 32
           SIB-200 sentences, Examples built from text inside the timed region), LoRA vs
           full, the two alternating; median of ``--repeats``.

    python benchmarks/multitask.py --encoder encoders/e5-small --encoder mbert-shape --threads 2

Writes ``benchmarks/results/multitask.{md,json}``. The accuracy comparisons of the
issue (SIB-200, XQuAD, Tatoeba: LoRA vs full vs HF peft) are not part of this script yet.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import typer
from common import DEFAULT_SHARED_DATA, ROOT, machine_info, markdown_table, pin_threads, require_dir, write_results
from speed import (
    alternate,
    qa_examples,
    resolve_encoder,
    textcat_example,
    textcat_examples,
    translation_examples,
    weight_bytes,
    xquad_questions,
)

MODES = {"lora": "mbert_base", "full": None}
SOURCES = {"textcat": "textcat.cfg", "qa": "qa.cfg", "translation": "translation.cfg"}

LOAD_SCRIPT = r"""
import json, sys
path, question, context, text = sys.argv[1:5]
import spacy, spacy_mbert, torch, transformers, spacy_transformers, peft
from transformers import AutoModel, AutoModelForQuestionAnswering, EncoderDecoderModel
spacy.blank("xx")  # imports and entry points are paid once per process, not per pipeline: warm them
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":")) * 1024 / 1e6
try:
    open("/proc/self/clear_refs", "w").write("5")  # peak RSS counted from here: the load's own
except OSError:
    pass
before = status("VmRSS")
nlp = spacy.load(path)
after_load = status("VmHWM") - before
nlp.get_pipe("mbert_translator").max_length = 8
with nlp.select_pipes(disable=["mbert_qa", "mbert_translator"]):
    nlp(text)
doc = nlp.make_doc(context)
doc._.question = question
nlp(doc)
print(json.dumps({"load_peak_mb": after_load, "peak_mb": status("VmHWM") - before}))
"""


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def build_heads(encoder: Path, base, data: Path, out: Path) -> Path:
    """Initialize the three heads from the shipped configs, save them, assemble and save the multitask pipeline."""
    from spacy.util import load_config, load_model_from_config

    make_textcat, _, _ = textcat_examples(data)
    questions = xquad_questions(data, 2)
    pairs = [("Ich trinke jeden Morgen einen Kaffee.", "I drink a coffee every morning."), ("Hola.", "Hello.")]
    examples = {"textcat": make_textcat, "qa": qa_examples(questions), "translation": translation_examples(pairs)}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, config_name in SOURCES.items():
        overrides = {"paths.encoder": str(encoder), "paths.base": base}
        config = load_config(ROOT / "configs" / config_name, overrides=overrides, interpolate=True)
        nlp = load_model_from_config(config, auto_fill=True, validate=True)
        nlp.initialize(lambda nlp=nlp, key=key: examples[key](nlp))
        nlp.to_disk(out / key)
        paths[f"paths.{key}"] = str(out / key)
        del nlp
    config = load_config(ROOT / "configs" / "multitask.cfg", overrides=paths, interpolate=False)
    load_model_from_config(config, auto_fill=True).to_disk(out / "multitask")
    return out / "multitask"


def measure_package(encoder: Path, data: Path, work: Path, *, repeats: int) -> Dict[str, dict]:
    weights = weight_bytes(encoder)
    question = xquad_questions(data, 1)[0]
    results = {}
    for mode, base in MODES.items():
        print(f"=== package: {encoder.name}, {mode} ===", flush=True)
        pipeline = build_heads(encoder, base, data, work / mode)
        size = dir_bytes(pipeline)
        loads = []
        for _ in range(repeats):
            env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
            args = [str(pipeline), question["question"], question["context"], question["context"][:200]]
            run = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, *args], capture_output=True, text=True, env=env)
            if run.returncode != 0:
                sys.exit(f"✘ load measurement failed ({mode}):\n{run.stderr[-2000:]}")
            loads.append(json.loads(run.stdout.strip().splitlines()[-1]))
        results[mode] = {
            "weights_mb": weights / 1e6,
            "pipeline_mb": size / 1e6,
            "package_to_encoder": size / weights,
            "load_peak_mb": statistics.median(load["load_peak_mb"] for load in loads),
            "peak_mb": statistics.median(load["peak_mb"] for load in loads),
            "load_peak_to_encoder": statistics.median(load["peak_mb"] for load in loads) * 1e6 / weights,
            "weight_files": sorted(str(p.relative_to(pipeline)) for p in pipeline.rglob("*.pt")),
        }
        print(json.dumps(results[mode], indent=1), flush=True)
    return results


def measure_training(encoder: Path, data: Path, work: Path, *, steps: int, repeats: int) -> Dict[str, List[float]]:
    """Seconds for ``steps`` textcat updates of 32 examples from text, LoRA vs full, alternating."""
    from spacy.util import load_config, load_model_from_config

    make, labels, records = textcat_examples(data, n=32 * steps)
    pipelines = {}
    for mode, base in MODES.items():
        config = load_config(
            ROOT / "configs" / "textcat.cfg",
            overrides={"paths.encoder": str(encoder), "paths.base": base},
            interpolate=True,
        )
        nlp = load_model_from_config(config, auto_fill=True, validate=True)
        optimizer = nlp.initialize(lambda nlp=nlp: make(nlp))
        pipelines[mode] = (nlp, optimizer)
    batches = [records[i * 32 : (i + 1) * 32] for i in range(steps)]

    def steps_of(mode):
        nlp, optimizer = pipelines[mode]

        def run():
            for batch in batches:
                nlp.update([textcat_example(nlp, r, labels) for r in batch], sgd=optimizer, drop=0.1)

        return run

    return alternate({mode: steps_of(mode) for mode in MODES}, repeats)


def main(
    encoder: List[str] = typer.Option(
        ["encoders/e5-small", "mbert-shape"], help="Checkpoint directories, or mbert-shape."
    ),
    data: Path = typer.Option(DEFAULT_SHARED_DATA, help="The shared evaluation data (sib200/, xquad/)."),
    threads: int = typer.Option(2, help="Torch threads."),
    repeats: int = typer.Option(3, help="Timing and load repeats (median reported)."),
    train_steps: int = typer.Option(3, help="Training steps per timed run (batches of 32)."),
    work: Path = typer.Option(ROOT / "benchmarks" / "runs" / "multitask", help="Where pipelines are built."),
):
    require_dir(data / "sib200", "SIB-200")
    require_dir(data / "xquad", "XQuAD")
    pin_threads(threads)
    import spacy_mbert  # noqa: F401

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in encoder:
            path = resolve_encoder(name, data, Path(tmp))
            label = "mbert-shape" if name == "mbert-shape" else path.name
            entry = {"package": measure_package(path, data, work / label, repeats=repeats)}
            if label != "mbert-shape":
                entry["train_seconds"] = measure_training(path, data, work / label, steps=train_steps, repeats=repeats)
            results[label] = entry
    write_report(results, encoder=encoder, threads=threads, repeats=repeats, train_steps=train_steps)


def write_report(results: dict, *, encoder, threads, repeats, train_steps) -> None:
    info = machine_info(threads)
    rows = []
    for label, entry in results.items():
        for mode, package in entry["package"].items():
            rows.append(
                [
                    label,
                    mode,
                    f"{package['weights_mb']:.0f}",
                    f"{package['pipeline_mb']:.0f}",
                    f"**{package['package_to_encoder']:.2f}x**",
                    f"{package['peak_mb']:.0f}",
                    f"**{package['load_peak_to_encoder']:.2f}x**",
                    ", ".join(package["weight_files"]),
                ]
            )
    header = [
        "encoder",
        "heads",
        "weights MB",
        "pipeline MB",
        "pipeline / weights",
        "peak RSS MB",
        "peak / weights",
        "weight files",
    ]
    lines = [
        "# One encoder, many heads: the three-head multitask pipeline, LoRA on one base vs full fine-tuning",
        "",
        "Command: `python benchmarks/multitask.py "
        + " ".join(f"--encoder {e}" for e in encoder)
        + f" --threads {threads} --repeats {repeats} --train-steps {train_steps}`",
        "",
        markdown_table(header, rows),
        "",
        "Pipeline: `configs/multitask.cfg` assembled from textcat, QA and translation heads built with the shipped "
        "configs (`--paths.base mbert_base` for lora, `null` for full). Peak RSS: a fresh process that `spacy.load`s "
        f"the pipeline and runs each head once, median of {repeats}, over the process after its imports.",
        "",
    ]
    summary = {}
    for label, entry in results.items():
        lora = entry["package"]["lora"]
        summary[f"{label}_package_to_encoder"] = lora["package_to_encoder"]
        summary[f"{label}_load_peak_to_encoder"] = lora["load_peak_to_encoder"]
        if "train_seconds" in entry:
            times = {mode: statistics.median(values) for mode, values in entry["train_seconds"].items()}
            speedup = times["full"] / times["lora"]
            summary[f"{label}_lora_train_speedup"] = speedup
            per_second = {mode: 32 * train_steps / seconds for mode, seconds in times.items()}
            lines.append(
                f"Training ({label}, textcat, {train_steps} steps of 32 from text, median of {repeats}): "
                f"LoRA {per_second['lora']:.1f} examples/s, full {per_second['full']:.1f}: **{speedup:.2f}x**."
            )
    e5 = results.get("e5-small")
    keys = {}
    if e5 is not None:
        keys = {
            "package_to_encoder": e5["package"]["lora"]["package_to_encoder"],
            "load_peak_to_encoder": e5["package"]["lora"]["load_peak_to_encoder"],
        }
        if "train_seconds" in e5:
            keys["lora_train_speedup"] = summary["e5-small_lora_train_speedup"]
    lines.append("")
    write_results("multitask", lines, info, {**keys, "summary": summary, "results": results})


if __name__ == "__main__":
    typer.run(main)
