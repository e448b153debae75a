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

The accuracy comparisons (LoRA vs full fine-tuning, and HF peft on SIB-200) are runs of
the task benchmarks, whose results JSON this script merges into the same report:

    python benchmarks/sib200_textcat.py --systems l,a,p --seeds 0 --name mt_sib200
    python benchmarks/xquad_qa.py --systems a,l --epochs 1 --name xquad_qa_lora
    python benchmarks/tatoeba_translation.py --systems w,l --epochs 2 --train-pairs 800 --name tatoeba_lora
    python benchmarks/multitask.py ... --sib200 benchmarks/results/mt_sib200.json \
        --xquad benchmarks/results/xquad_qa_lora.json --tatoeba benchmarks/results/tatoeba_lora.json

Writes ``benchmarks/results/multitask.{md,json,png}``.
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
TATOEBA_TRAINED = ["deu", "fra", "spa", "ita", "por", "nld", "pol"]
SOURCES = {"textcat": "textcat.cfg", "qa": "qa.cfg", "translation": "translation.cfg"}

# Both memory scripts start with this, after their imports: peak RSS is counted from here.
RSS_FROM_HERE = r"""
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":")) * 1024 / 1e6
try:
    open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
except OSError:
    pass
before = status("VmRSS")
"""

LOAD_SCRIPT = (
    r"""
import json, sys
path, question, context, text = sys.argv[1:5]
import spacy, spacy_mbert, torch, transformers, spacy_transformers, peft
from transformers import AutoModel, AutoModelForQuestionAnswering, EncoderDecoderModel
spacy.blank("xx")  # imports and entry points are paid once per process, not per pipeline: warm them
"""
    + RSS_FROM_HERE
    + r"""
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
)


# The reference: one encoder as Hugging Face loads and runs it (tokenizer, weights, one
# forward over the same context), measured the same way. What a process needs beyond the
# weights (the tokenizer: ~280 MB for e5-small's 250k-piece vocabulary; the libraries'
# code paged in by the first forward) is paid by any pipeline, so the ratios read best
# beside this one.
HF_SCRIPT = (
    r"""
import json, sys
encoder, context = sys.argv[1:3]
import torch, transformers, spacy, spacy_mbert, spacy_transformers, peft
from transformers import AutoModel, AutoTokenizer
"""
    + RSS_FROM_HERE
    + r"""
tokenizer = AutoTokenizer.from_pretrained(encoder)
model = AutoModel.from_pretrained(encoder, add_pooling_layer=False).eval()
after_load = status("VmHWM") - before
with torch.inference_mode():
    model(**tokenizer(context, truncation=True, max_length=512, return_tensors="pt"))
print(json.dumps({"load_peak_mb": after_load, "peak_mb": status("VmHWM") - before}))
"""
)


def median_peaks(script: str, args: List[str], repeats: int, what: str) -> Dict[str, float]:
    """``load_peak_mb`` and ``peak_mb`` of a memory script, each the median of ``repeats`` fresh processes."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    loads = []
    for _ in range(repeats):
        run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env)
        if run.returncode != 0:
            sys.exit(f"✘ {what} measurement failed:\n{run.stderr[-2000:]}")
        loads.append(json.loads(run.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(load[key] for load in loads) for key in ("load_peak_mb", "peak_mb")}


def measure_hf_reference(encoder: Path, context: str, repeats: int) -> dict:
    weights = weight_bytes(encoder)
    peaks = median_peaks(HF_SCRIPT, [str(encoder), context], repeats, "HF reference")
    return {**peaks, "peak_to_encoder": peaks["peak_mb"] * 1e6 / weights,
            "load_only_to_encoder": peaks["load_peak_mb"] * 1e6 / weights}  # fmt: skip


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
    results = {"hf_one_encoder": measure_hf_reference(encoder, question["context"], repeats)}
    print(json.dumps(results["hf_one_encoder"], indent=1), flush=True)
    for mode, base in MODES.items():
        print(f"=== package: {encoder.name}, {mode} ===", flush=True)
        pipeline = build_heads(encoder, base, data, work / mode)
        size = dir_bytes(pipeline)
        args = [str(pipeline), question["question"], question["context"], question["context"][:200]]
        peaks = median_peaks(LOAD_SCRIPT, args, repeats, f"load ({mode})")
        results[mode] = {
            "weights_mb": weights / 1e6,
            "pipeline_mb": size / 1e6,
            "package_to_encoder": size / weights,
            **peaks,
            "load_peak_to_encoder": peaks["peak_mb"] * 1e6 / weights,
            "load_only_to_encoder": peaks["load_peak_mb"] * 1e6 / weights,
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


def accuracy_keys(sib200: List[Path], xquad: Path, tatoeba: Path) -> Dict[str, float]:
    """The accuracy comparisons, from the results JSON of the task benchmarks' LoRA runs (same settings per pair)."""
    keys: Dict[str, float] = {}
    runs: Dict[str, List[float]] = {}
    for path in sib200:
        for system, seeds in json.loads(path.read_text(encoding="utf8"))["results"].items():
            runs.setdefault(system, []).extend(100 * run["average"] for run in seeds.values())
    for system, key in (("l", "sib200_lora_avg"), ("a", "sib200_full_avg"), ("p", "sib200_hf_peft_avg")):
        if system in runs:
            keys[key] = statistics.mean(runs[system])
    if xquad is not None:
        results = json.loads(xquad.read_text(encoding="utf8"))["results"]
        for system, key in (("l", "xquad_lora_f1"), ("a", "xquad_full_f1")):
            if system in results:
                keys[key] = 100 * statistics.mean(lang["f1"] for lang in results[system]["scores"].values())
    if tatoeba is not None:
        results = json.loads(tatoeba.read_text(encoding="utf8"))["results"]
        for system, key in (("l", "tatoeba_lora_chrf"), ("w", "tatoeba_full_chrf")):
            if system in results:
                scores = results[system]["scores"]
                keys[key] = 100 * statistics.mean(scores[lang]["chrf"] for lang in TATOEBA_TRAINED if lang in scores)
    return keys


def accuracy_lines(keys: Dict[str, float], sources: List[str]) -> List[str]:
    rows = []
    for task, lora, full, peft, target in (
        (
            "SIB-200 accuracy, 12-language average",
            "sib200_lora_avg",
            "sib200_full_avg",
            "sib200_hf_peft_avg",
            "within 1.0 of full, ≥ HF peft",
        ),
        ("XQuAD F1, 12-language average", "xquad_lora_f1", "xquad_full_f1", None, "within 1.5 of full"),
        ("Tatoeba chrF, trained languages", "tatoeba_lora_chrf", "tatoeba_full_chrf", None, "within 1.0 of full"),
    ):
        if lora in keys and full in keys:
            cells = [task, f"**{keys[lora]:.1f}**", f"{keys[full]:.1f}", f"{keys[lora] - keys[full]:+.1f}"]
            cells.append(f"{keys[peft]:.1f}" if peft and peft in keys else "")
            rows.append(cells + [target])
    if not rows:
        return []
    header = ["task", "LoRA on the shared base", "full fine-tuning", "LoRA - full", "HF peft LoRA", "target"]
    return ["## Accuracy: LoRA adapters vs full fine-tuning (e5-small)", "", markdown_table(header, rows), "",
            "From: " + ", ".join(f"`{s}`" for s in sources), ""]  # fmt: skip


def write_chart(keys: Dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [("SIB-200 acc", "sib200"), ("XQuAD F1", "xquad"), ("Tatoeba chrF", "tatoeba")]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for offset, (label, suffix) in enumerate(
        (("full fine-tuning", "full"), ("LoRA on one base", "lora"), ("HF peft LoRA", "hf_peft"))
    ):
        values = [
            keys.get(f"{t}_{suffix}_avg", keys.get(f"{t}_{suffix}_f1", keys.get(f"{t}_{suffix}_chrf")))
            for _, t in tasks
        ]
        xs = [i + (offset - 1) * 0.27 for i in range(len(tasks)) if values[i] is not None]
        ax.bar(xs, [v for v in values if v is not None], width=0.27, label=label)
    ax.set_xticks(range(len(tasks)), [label for label, _ in tasks])
    ax.set_ylabel("score")
    ax.legend(fontsize=8)
    ax.set_title("e5-small: LoRA adapters on one base vs full fine-tuning")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(
    encoder: List[str] = typer.Option(
        ["encoders/e5-small", "mbert-shape"], help="Checkpoint directories, or mbert-shape."
    ),
    data: Path = typer.Option(DEFAULT_SHARED_DATA, help="The shared evaluation data (sib200/, xquad/)."),
    threads: int = typer.Option(2, help="Torch threads."),
    repeats: int = typer.Option(3, help="Timing and load repeats (median reported)."),
    train_steps: int = typer.Option(3, help="Training steps per timed run (batches of 32)."),
    work: Path = typer.Option(ROOT / "benchmarks" / "runs" / "multitask", help="Where pipelines are built."),
    sib200: List[Path] = typer.Option([], help="Results JSON of sib200_textcat.py runs of systems l, a, p (merged)."),
    xquad: Path = typer.Option(None, help="Results JSON of xquad_qa.py --systems a,l."),
    tatoeba: Path = typer.Option(None, help="Results JSON of tatoeba_translation.py --systems w,l."),
    skip_package: bool = typer.Option(False, help="Only merge the accuracy results into the report."),
):
    require_dir(data / "sib200", "SIB-200")
    require_dir(data / "xquad", "XQuAD")
    pin_threads(threads)
    import spacy_mbert  # noqa: F401

    accuracy = accuracy_keys(sib200, xquad, tatoeba)
    sources = [str(p) for p in [*sib200, xquad, tatoeba] if p is not None]
    if skip_package:
        previous = json.loads((ROOT / "benchmarks" / "results" / "multitask.json").read_text(encoding="utf8"))
        write_report(previous["results"], encoder=encoder, threads=threads, repeats=repeats, train_steps=train_steps,
                     accuracy=accuracy, sources=sources)  # fmt: skip
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in encoder:
            path = resolve_encoder(name, data, Path(tmp))
            label = "mbert-shape" if name == "mbert-shape" else path.name
            entry = {"package": measure_package(path, data, work / label, repeats=repeats)}
            if label != "mbert-shape":
                entry["train_seconds"] = measure_training(path, data, work / label, steps=train_steps, repeats=repeats)
            results[label] = entry
    write_report(
        results,
        encoder=encoder,
        threads=threads,
        repeats=repeats,
        train_steps=train_steps,
        accuracy=accuracy,
        sources=sources,
    )


def write_report(results: dict, *, encoder, threads, repeats, train_steps, accuracy=None, sources=()) -> None:
    info = machine_info(threads)
    rows = []
    for label, entry in results.items():
        reference = entry["package"].get("hf_one_encoder")
        if reference:
            rows.append([label, "HF: one encoder + tokenizer, one forward", "", "", "", f"{reference['peak_mb']:.0f}",
                         f"{reference['peak_to_encoder']:.2f}x", "(reference)"])  # fmt: skip
        for mode, package in entry["package"].items():
            if mode == "hf_one_encoder":
                continue
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
        f"the pipeline and runs each head once (textcat on a short text, QA and translation on a full XQuAD context), "
        f"median of {repeats}, over the process after its imports. The HF row is one encoder as Hugging Face loads it "
        "(tokenizer and weights) with one forward over the same context, measured the same way: the tokenizer (~280 MB "
        "for e5-small's 250k pieces) and the libraries' code paged in by a first forward are paid by any pipeline.",
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
        if "hf_one_encoder" in e5["package"]:  # measured since the HF reference row was added
            keys["load_only_to_encoder"] = e5["package"]["lora"]["load_only_to_encoder"]
            keys["hf_one_encoder_peak_to_encoder"] = e5["package"]["hf_one_encoder"]["peak_to_encoder"]
        if "train_seconds" in e5:
            keys["lora_train_speedup"] = summary["e5-small_lora_train_speedup"]
    lines.append("")
    accuracy = accuracy or {}
    lines += accuracy_lines(accuracy, list(sources))
    if accuracy:
        write_chart(accuracy, ROOT / "benchmarks" / "results" / "multitask.png")
        lines += ["![LoRA vs full fine-tuning](multitask.png)", ""]
    write_results("multitask", lines, info, {**keys, **accuracy, "summary": summary, "results": results})


if __name__ == "__main__":
    typer.run(main)
