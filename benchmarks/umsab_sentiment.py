"""UMSAB multilingual tweet sentiment (negative / neutral / positive), systems side by side.

Eight languages (ar, de, en, es, fr, hi romanized, it, pt), 1,839 train / 324 val / 870 test
tweets each, every split class-balanced. Two regimes:

  zero-shot     train on English only, test on all 8 languages;
  multilingual  train on the first ``--train-per-lang`` train tweets of every language,
                plainly concatenated (the classes stay balanced; the training loop shuffles
                every epoch), test on all 8.

Same encoder, epochs, peak learning rate, schedule (10% warmup, linear decay to 0) and batches
(32 tweets) for every system:

  (a) spacy-mbert: configs/textcat.cfg as shipped (ClsPoolTextCat.v1);
  (b) stock spaCy: spacy.TextCatReduce.v1 (mean) over spacy-transformers.TransformerListener.v1,
      trained with (a)'s settings (the SIB-200 benchmark's ablation (e)): only the head differs;
  (c) Hugging Face AutoModelForSequenceClassification in a plain PyTorch loop (AdamW, no decay
      on biases and LayerNorm, global-norm clipping 1.0).

The final model of each run is scored on test (no checkpoint selection; the spaCy systems'
loop scores 40 val tweets per training language once at the end, inside their train time). Scores: accuracy and macro-F1 per
language and averaged; train time; inference texts/s over all 6,960 test tweets (batch 64;
(c) is the raw forward pass over length-sorted batches).

Escapes: upstream's English train and val files hold 500 literal ``\\u2019`` / ``\\u002c``
sequences from an old export (no other language and no test file has any). Every system gets
them decoded (``i\\u2019m`` -> ``i’m``), since that is the text the author wrote; see
``decode_escapes``.

    python benchmarks/umsab_sentiment.py --encoder encoders/e5-small --data ../shared/data/umsab_sentiment
"""

import json
import re
import statistics
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import typer
from common import (
    DEFAULT_SHARED_DATA,
    RESULTS,
    ROOT,
    machine_info,
    markdown_table,
    minutes,
    pin_threads,
    read_jsonl,
    require_dir,
    write_results,
)
from sib200_textcat import run_hf_system, run_spacy_system

LANGS = ["english", "arabic", "french", "german", "hindi", "italian", "portuguese", "spanish"]
SHORT = {"english": "en", "arabic": "ar", "french": "fr", "german": "de", "hindi": "hi", "italian": "it"}
SHORT.update({"portuguese": "pt", "spanish": "es"})
REGIMES = ("zero-shot", "multilingual")
SYSTEM_NAMES = {
    "a": "(a) spacy-mbert: configs/textcat.cfg",
    "b": "(b) stock spaCy: TextCatReduce + listener",
    "c": "(c) HF AutoModelForSequenceClassification",
}
# (b) is the SIB-200 benchmark's ablation (e): spaCy's head with this package's training settings.
SPACY_SYSTEM = {"a": "a", "b": "e"}
DEV_PER_LANG = 40
ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def decode_escapes(text: str) -> str:
    """``\\uXXXX`` sequences as the characters they stand for (surrogate pairs joined)."""
    if "\\u" not in text:
        return text
    decoded = ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text)
    return decoded.encode("utf-16", "surrogatepass").decode("utf-16")


def load(data: Path, lang: str, split: str) -> List[dict]:
    return [
        {"text": decode_escapes(r["text"]), "label": r["label"], "lang": lang}
        for r in read_jsonl(data / lang / f"{split}.jsonl")
    ]


def training_data(data: Path, regime: str, per_lang: int) -> Tuple[List[dict], List[dict]]:
    """Train and dev records. spaCy's loop needs a dev set, scored once at the end and not
    used for anything: ``DEV_PER_LANG`` val tweets per training language keep that pass short."""
    langs = ["english"] if regime == "zero-shot" else LANGS
    train = [r for lang in langs for r in load(data, lang, "train")[: per_lang if len(langs) > 1 else None]]
    return train, [r for lang in langs for r in load(data, lang, "val")[:DEV_PER_LANG]]


def macro_f1(pairs: List[Tuple[str, str]], labels: List[str]) -> float:
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in pairs)
        predicted = sum(p == label for p, _ in pairs)
        gold = sum(g == label for _, g in pairs)
        scores.append(2 * tp / (predicted + gold) if predicted + gold else 0.0)
    return sum(scores) / len(scores)


def score(run: dict, test: List[dict], labels: List[str]) -> dict:
    per_lang = {}
    for lang in LANGS:
        pairs = [(p, r["label"]) for p, r in zip(run["predictions"], test) if r["lang"] == lang]
        per_lang[lang] = {
            "accuracy": sum(p == g for p, g in pairs) / len(pairs),
            "macro_f1": macro_f1(pairs, labels),
        }
    return {
        "languages": per_lang,
        "accuracy": statistics.mean(s["accuracy"] for s in per_lang.values()),
        "macro_f1": statistics.mean(s["macro_f1"] for s in per_lang.values()),
        "train_seconds": run["train_seconds"],
        "train_examples": run["train_examples"],
        "texts_per_second": len(test) / run["infer_seconds"],
    }


def run_system(system: str, regime: str, settings: dict, *, encoder: Path, data: Path, per_lang: int) -> dict:
    train, val = training_data(data, regime, per_lang)
    if system == "c":
        run = run_hf_system(encoder, train, **settings)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run = run_spacy_system(SPACY_SYSTEM[system], encoder, train, val, Path(tmp), **settings)
    return {**run, "train_examples": len(train) * settings["epochs"]}


def main(
    encoder: Path = typer.Option(
        ROOT / "encoders" / "e5-small",
        help="Encoder checkpoint directory (spacy-mbert init-encoder e5-small encoders/e5-small).",
    ),
    data: Path = typer.Option(
        DEFAULT_SHARED_DATA / "umsab_sentiment", help="UMSAB folder (LANGUAGE/{train,val,test}.jsonl, labels.json)."
    ),
    systems: str = typer.Option("a,b,c", help="Comma-separated systems: a (this package), b (stock spaCy), c (HF)."),
    regimes: str = typer.Option(",".join(REGIMES), help="Comma-separated regimes: zero-shot, multilingual."),
    seed: int = typer.Option(0, help="Seed of every run (head initialisation, dropout, data order)."),
    epochs: int = typer.Option(2, help="Training epochs for every system."),
    lr: float = typer.Option(5e-5, help="Peak learning rate for every system (10% warmup, linear decay)."),
    batch_size: int = typer.Option(32, help="Tweets per batch for every system."),
    train_per_lang: int = typer.Option(
        300, help="Multilingual regime: the first N train tweets of every language (1,839 is all of them)."
    ),
    test_per_lang: int = typer.Option(870, help="The first N test tweets of every language (870 is all of them)."),
    threads: int = typer.Option(2, help="Torch threads for every system."),
    name: str = typer.Option("umsab_sentiment", help="Results file stem under benchmarks/results/."),
    merge: List[Path] = typer.Option([], help="Results JSON of earlier runs (same settings) to include in the table."),
):
    require_dir(data, "UMSAB sentiment")
    pin_threads(threads)
    import spacy_mbert  # noqa: F401  (registers the Doc extensions)

    labels = json.loads((data / "labels.json").read_text(encoding="utf8"))["labels"]
    test = [r for lang in LANGS for r in load(data, lang, "test")[:test_per_lang]]
    test_texts = [r["text"] for r in test]
    results: Dict[str, Dict[str, dict]] = {}  # regime -> system -> scores
    for path in merge:
        for regime, runs in json.loads(path.read_text(encoding="utf8"))["results"].items():
            results.setdefault(regime, {}).update(runs)
    settings = dict(epochs=epochs, lr=lr, batch_size=batch_size, labels=labels, test_texts=test_texts, seed=seed)
    for regime in [r for r in regimes.split(",") if r]:
        for system in [s for s in systems.split(",") if s]:
            print(f"=== {regime}: {SYSTEM_NAMES[system]} ===", flush=True)
            run = run_system(system, regime, settings, encoder=encoder, data=data, per_lang=train_per_lang)
            results.setdefault(regime, {})[system] = score(run, test, labels)
            print(json.dumps(results[regime][system], indent=1), flush=True)
    command = (
        f"python benchmarks/umsab_sentiment.py --encoder {encoder} --data {data} --epochs {epochs} --lr {lr} "
        f"--batch-size {batch_size} --train-per-lang {train_per_lang} --test-per-lang {test_per_lang} "
        f"--threads {threads} --seed {seed}"
    )
    write_chart(results, RESULTS / f"{name}.png")
    lines = report_lines(results, command, n_test=len(test), name=name)
    write_results(name, lines, machine_info(threads), {"command": command, "results": results})


def report_lines(results: dict, command: str, *, n_test: int, name: str) -> List[str]:
    header = ["system"] + [SHORT[lang] for lang in LANGS] + ["**avg F1**", "avg acc", "train", "texts/s"]
    lines = ["# UMSAB tweet sentiment: macro-F1 % per language (3 classes)", "", f"Command: `{command}`", ""]
    for regime in REGIMES:
        if regime not in results:
            continue
        rows = []
        for system, r in sorted(results[regime].items()):
            rows.append(
                [SYSTEM_NAMES[system]]
                + [f"{100 * r['languages'][lang]['macro_f1']:.1f}" for lang in LANGS]
                + [f"**{100 * r['macro_f1']:.1f}**", f"{100 * r['accuracy']:.1f}", minutes(r["train_seconds"])]
                + [f"{r['texts_per_second']:.0f}"]
            )
        trained_on = "English train only" if regime == "zero-shot" else "every language's train subset"
        lines += [f"## {regime} ({trained_on})", "", markdown_table(header, rows), ""]
    lines += [
        f"Test: {n_test} tweets of 8 languages. The final model of each run is scored (no checkpoint selection; "
        "no val or test data in training). Per-language accuracy is in the JSON beside this file.",
        "",
        f"![macro-F1 per language]({name}.png)",
        "",
    ]
    return lines


def write_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = [regime for regime in REGIMES if regime in results]
    figure, axes = plt.subplots(len(regimes), 1, figsize=(9, 3.2 * len(regimes)), squeeze=False)
    for axis, regime in zip(axes[:, 0], regimes):
        systems = sorted(results[regime])
        width = 0.8 / max(1, len(systems))
        for i, system in enumerate(systems):
            scores = [100 * results[regime][system]["languages"][lang]["macro_f1"] for lang in LANGS]
            positions = [x + (i - (len(systems) - 1) / 2) * width for x in range(len(LANGS))]
            axis.bar(positions, scores, width, label=SYSTEM_NAMES[system])
        axis.set_xticks(range(len(LANGS)), [SHORT[lang] for lang in LANGS])
        axis.set_ylabel("macro-F1 %")
        axis.set_title(regime)
        axis.set_ylim(0, 100)
    axes[0, 0].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    typer.run(main)
