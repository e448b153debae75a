"""Where the time goes: the profiles behind the gaps in ``results/speed.md``.

Run after ``speed.py`` (it profiles the pipelines that ``speed.py`` built in ``--cache``):

    python benchmarks/profile_speed.py textcat --pipeline "benchmarks/runs/speed/e5-small-textcat"
    python benchmarks/profile_speed.py train   --pipeline "benchmarks/runs/speed/e5-small-textcat"
    python benchmarks/profile_speed.py load    --pipeline "benchmarks/runs/speed/mbert-shape (random)-textcat"

textcat  ``nlp.pipe`` over the SIB-200 test sentences: total time, time inside the encoder's
         forward pass, the rest; then a cProfile of the rest (garbage collection off).
train    cProfile of one training step of 32 examples (``spacy train``'s order: every backward pass,
         then every component's step) with configs/textcat.cfg's optimizer, after a warm-up step.
load     ``spacy.load`` time, each in a fresh process, with and without the weights checksum.
"""

import cProfile
import gc
import io
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import typer
from common import DEFAULT_SHARED_DATA, ROOT, pin_threads, read_jsonl

LIBRARIES = "spacy_mbert|spacy_transformers|spacy/|thinc|tokenization_utils_base.py:2772"


def main(
    what: str = typer.Argument(..., help="textcat, train or load"),
    pipeline: Path = typer.Option(..., help="A textcat pipeline saved by speed.py."),
    data: Path = typer.Option(DEFAULT_SHARED_DATA, help="Shared data folder with sib200/."),
    per_lang: int = typer.Option(20, help="SIB-200 test sentences per language (textcat)."),
    threads: int = typer.Option(2, help="Torch threads."),
    repeats: int = typer.Option(3, help="Timed runs."),
):
    pin_threads(threads)
    if what == "load":
        return profile_load(pipeline, repeats)
    import spacy

    import spacy_mbert  # noqa: F401

    nlp = spacy.load(pipeline)
    if what == "textcat":
        profile_textcat(nlp, data, per_lang, repeats)
    elif what == "train":
        profile_train(nlp, data)
    else:
        sys.exit(f"✘ unknown profile '{what}': use textcat, train or load")


def profile_textcat(nlp, data: Path, per_lang: int, repeats: int) -> None:
    from speed import sib_sentences

    from spacy_mbert.encoder import MBertShim

    texts = sib_sentences(data, per_lang)
    forward = {"seconds": 0.0}
    predict = MBertShim.predict

    def timed_predict(shim, inputs):
        start = time.perf_counter()
        try:
            return predict(shim, inputs)
        finally:
            forward["seconds"] += time.perf_counter() - start

    MBertShim.predict = timed_predict
    list(nlp.pipe(texts, batch_size=64))  # warm-up
    for _ in range(repeats):
        forward["seconds"] = 0.0
        gc.collect()
        start = time.perf_counter()
        list(nlp.pipe(texts, batch_size=64))
        total = time.perf_counter() - start
        rest = total - forward["seconds"]
        print(
            f"{len(texts)} texts: total {total:.2f} s, encoder forward {forward['seconds']:.2f} s, rest {rest:.2f} s ({rest / total:.0%})"
        )
    MBertShim.predict = predict
    print_profile(lambda: list(nlp.pipe(texts, batch_size=64)), "cumulative", LIBRARIES)


def profile_train(nlp, data: Path) -> None:
    from spacy.training import Example
    from spacy.util import load_config, registry

    labels = json.loads((data / "sib200" / "labels.json").read_text(encoding="utf8"))["labels"]
    records = read_jsonl(data / "sib200" / "eng_Latn" / "train.jsonl")[:64]
    shipped = load_config(ROOT / "configs" / "textcat.cfg", interpolate=True)
    sgd = registry.resolve({"optimizer": shipped["training"]["optimizer"]})["optimizer"]
    batches = [
        [
            Example.from_dict(
                nlp.make_doc(r["text"]), {"cats": {label: float(label == r["label"]) for label in labels}}
            )
            for r in records[i : i + 32]
        ]
        for i in (0, 32)
    ]
    from speed import spacy_train_step

    # Steps as spacy train takes them; the warm-up step allocates the optimizer's state.
    spacy_train_step(nlp, batches[0], sgd)
    print_profile(lambda: spacy_train_step(nlp, batches[1], sgd), "tottime", None)


def profile_load(pipeline: Path, repeats: int) -> None:
    code = (
        "import time, spacy, spacy_mbert, transformers.models.bert.modeling_bert; spacy.blank('xx'); "
        "t = time.perf_counter(); spacy.load(__import__('sys').argv[1]); print(time.perf_counter() - t)"
    )
    for verify in ("1", "0"):
        env = dict(os.environ, SPACY_MBERT_VERIFY_WEIGHTS=verify, HF_HUB_OFFLINE="1")
        seconds = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code, str(pipeline)], env=env, check=True, capture_output=True, text=True
                ).stdout.split()[-1]
            )
            for _ in range(repeats)
        ]
        print(f"spacy.load, SPACY_MBERT_VERIFY_WEIGHTS={verify}: " + ", ".join(f"{s:.2f} s" for s in seconds))


def print_profile(run, sort: str, restrict) -> None:
    gc.collect()
    gc.disable()
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    gc.enable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats(sort)
    if restrict:
        stats.print_stats(restrict, 30)
    else:
        stats.print_stats(15)
    print(out.getvalue())


if __name__ == "__main__":
    typer.run(main)
