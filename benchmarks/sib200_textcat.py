"""SIB-200 zero-shot cross-lingual topic classification, systems side by side, over seeds.

Train on English (eng_Latn train, 701 sentences) only; evaluate on the test split
(204 sentences) of all 12 languages. Same encoder, data, epochs and peak learning rate:

  (a) spacy-mbert: configs/textcat.cfg — ClsPoolTextCat.v1 ([CLS] ⊕ mean pool → MLP, HF-style
      output init, gradient of the mean loss), warmup + linear decay, batches of 32 docs;
  (b) stock spaCy: spacy.TextCatReduce.v1 (mean) over spacy-transformers.TransformerListener.v1,
      constant learning rate, padded batches of 1000 words, spaCy's default tokenizer and
      strided_spans.v1 (spaCy's transformer defaults);
  (c) Hugging Face AutoModelForSequenceClassification with a plain PyTorch loop
      (AdamW, 10% warmup + linear decay, batches of 32, global-norm clipping 1.0).

(a) and (b) both step with spaCy's Adam.v1 with *decoupled* weight decay 0.01 and grad_clip
1.0 (spaCy's default_config.cfg sets L2_is_weight_decay = true; fill_config merges it in).
Two ablations separate the head from the training settings, each differing from (a) in
one half only:

  (d) this package's head (ClsPoolTextCat) with spaCy's training defaults (constant rate,
      padded batches of 1000 words, epochs instead of steps);
  (e) spaCy's head (TextCatReduce + listener) with this package's training settings, tokenizer
      and span getter.

Two systems train a LoRA adapter (Hugging Face ``peft``) on the frozen encoder instead of
fine-tuning it, with the settings of the shipped config's ``[...model.adapter]`` (rank 8,
alpha 16, dropout 0, query/key/value/dense; the adapter at its ``learn_rate_scale`` times
the peak learning rate, the head at 1x), everything else as their full fine-tuning counterpart:

  (l) (a) on the shared base: ``--paths.base mbert_base``, what the demo trains;
  (p) (c) with ``peft.get_peft_model`` (``task_type`` SEQ_CLS): the classifier trains fully,
      and so does the pooler (``modules_to_save``, excluded from the adapter): e5-small has
      no pooler weights, so a frozen pooler would be a random projection.

Every system runs once per ``--seeds`` seed (mean ± sd reported). The final model of each
run is scored (no checkpoint selection, dev is not used), and inference is timed over all
2,448 test sentences.

    python benchmarks/sib200_textcat.py --encoder encoders/e5-small --data ../shared/data/sib200 --seeds 0,1,2
    python benchmarks/sib200_textcat.py --systems a,l,p --seeds 0,1   # LoRA vs full vs HF peft
"""

import json
import math
import random
import statistics
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

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
    stopwatch,
)

LANGS = [
    "eng_Latn",
    "deu_Latn",
    "fra_Latn",
    "spa_Latn",
    "zho_Hans",
    "arb_Arab",
    "hin_Deva",
    "rus_Cyrl",
    "jpn_Jpan",
    "swh_Latn",
    "tur_Latn",
    "vie_Latn",
]

STOCK_CONFIG = """
[paths]
train = null
dev = null
encoder = "bert-base-multilingual-cased"

[system]
gpu_allocator = "pytorch"
seed = 0

[nlp]
lang = "xx"
pipeline = ["transformer","textcat"]
batch_size = 64

[components]

[components.transformer]
factory = "transformer"

[components.transformer.model]
# The stock spacy-transformers.TransformerModel.v3 cannot load tokenizer.json-only
# checkpoints such as e5-small (vocab_file is None); this is the same model with
# that fixed, and nothing else changed.
@architectures = "spacy-mbert.MBertTransformer.v1"
name = ${paths.encoder}

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = 128
stride = 96

[components.textcat]
factory = "textcat"

[components.textcat.model]
@architectures = "spacy.TextCatReduce.v1"
exclusive_classes = true
use_reduce_first = false
use_reduce_last = false
use_reduce_max = false
use_reduce_mean = true

[components.textcat.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0

[components.textcat.model.tok2vec.pooling]
@layers = "reduce_mean.v1"

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${paths.train}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${paths.dev}

[training]
dropout = 0.1
max_epochs = 6
max_steps = 0
patience = 0
eval_frequency = 100000

[training.batcher]
@batchers = "spacy.batch_by_padded.v1"
discard_oversize = true
size = 1000
buffer = 256

[training.optimizer]
@optimizers = "Adam.v1"
learn_rate = 5e-5

[training.score_weights]
cats_macro_f = 1.0
"""


def shipped_adapter() -> dict:
    """configs/textcat.cfg's adapter settings ([components.transformer.model.adapter]), for (p) to match (l)."""
    from thinc.api import Config

    adapter = dict(
        Config().from_disk(ROOT / "configs" / "textcat.cfg", interpolate=False)["components"]["transformer"]["model"][
            "adapter"
        ]
    )
    adapter.pop("@misc")
    return adapter


LORA = shipped_adapter()
# The encoders `spacy-mbert quantize` makes, scored with --int8.
QUANTIZED = ("int8", "bf16")
LORA_LR_SCALE = float(LORA.get("learn_rate_scale", 10.0))  # LoRA.v1's default


def load_split(data: Path, lang: str, split: str) -> List[dict]:
    return read_jsonl(data / lang / f"{split}.jsonl")


def write_docbin(records: List[dict], lang: str, labels: List[str], path: Path, nlp) -> None:
    """A DocBin of ``records`` with ``doc.cats`` and ``doc._.lang`` (a record's own "lang", else ``lang``)."""
    from spacy.tokens import DocBin

    docbin = DocBin(store_user_data=True)
    for record in records:
        doc = nlp.make_doc(record["text"])
        doc.cats = {label: float(label == record["label"]) for label in labels}
        doc._.lang = record.get("lang", lang)
        docbin.add(doc)
    docbin.to_disk(path)


def train_spacy(config_path: Path, overrides: Dict[str, object], output: Path) -> float:
    from spacy.cli.train import train

    with stopwatch() as clock:
        train(config_path, output, use_gpu=-1, overrides=overrides)
    return clock["seconds"]


def predict_spacy(model_dir: Path, texts: List[str], batch_size: int) -> Tuple[List[str], float]:
    import spacy

    nlp = spacy.load(model_dir)
    textcat = next(pipe for name, pipe in nlp.pipeline if name == "textcat")
    labels = list(textcat.labels)
    with stopwatch() as clock:
        docs = list(nlp.pipe(texts, batch_size=batch_size))
    return [max(labels, key=lambda label: doc.cats[label]) for doc in docs], clock["seconds"]


# The two halves of a spaCy textcat config that the ablation swaps: the head, and the
# training settings (learning-rate schedule and batcher; both sides use spaCy's Adam.v1
# with decoupled weight decay 0.01 and grad_clip 1.0).
STOCK_HEAD = {
    "@architectures": "spacy.TextCatReduce.v1",
    "exclusive_classes": True,
    "use_reduce_first": False,
    "use_reduce_last": False,
    "use_reduce_max": False,
    "use_reduce_mean": True,
    "nO": None,
    "tok2vec": {
        "@architectures": "spacy-transformers.TransformerListener.v1",
        "grad_factor": 1.0,
        "upstream": "*",
        "pooling": {"@layers": "reduce_mean.v1"},
    },
}
STOCK_BATCHER = {
    "@batchers": "spacy.batch_by_padded.v1",
    "discard_oversize": True,
    "size": 1000,
    "buffer": 256,
    "get_length": None,
}


def spacy_config(system: str, work: Path, *, steps: int, epochs: int, lr: float) -> Tuple[Path, Dict[str, object]]:
    """The config file and overrides of a spaCy system: (a), (b) or an ablation (d), (e)."""
    from spacy.cli.init_config import fill_config
    from thinc.api import Config

    if system == "b":
        base = work / "stock-base.cfg"
        base.write_text(STOCK_CONFIG, encoding="utf8")
        config_path = work / "stock.cfg"
        fill_config(config_path, base, silent=True)  # spaCy's defaults for everything not set
        return config_path, {"training.max_epochs": epochs, "training.optimizer.learn_rate": lr}
    config = Config().from_disk(ROOT / "configs" / "textcat.cfg", interpolate=False)
    package_training = system in ("a", "e", "l")
    if system == "e":  # stock head, package training
        config["components"]["textcat"]["model"] = dict(STOCK_HEAD)
    if not package_training:  # (d): package head, spaCy's training defaults
        config["training"]["optimizer"]["learn_rate"] = lr  # constant
        config["training"]["batcher"] = dict(STOCK_BATCHER)
        config["training"]["max_steps"] = 0
        config["training"]["max_epochs"] = epochs
        config["training"]["patience"] = 0
        config["training"]["eval_frequency"] = 100000
    config_path = work / f"{system}.cfg"
    config.to_disk(config_path)
    if not package_training:
        return config_path, {}
    return config_path, {
        "training.max_steps": steps,
        "training.max_epochs": 0,
        "training.eval_frequency": steps,
        "training.patience": 0,
        "training.optimizer.learn_rate.warmup_steps": max(1, steps // 10),
        "training.optimizer.learn_rate.initial_rate": lr,
    }


def run_spacy_system(
    system: str,
    encoder: Path,
    train: List[dict],
    dev: List[dict],
    work: Path,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    labels: List[str],
    test_texts: List[str],
    seed: int,
    extra: Optional[Dict[str, object]] = None,
    int8: bool = False,
) -> dict:
    """Train ``system`` on ``train`` and predict ``test_texts`` with its final model (and, with
    ``int8``, with that model after ``spacy-mbert quantize --dtype int8`` and ``--dtype bf16``)."""
    import spacy

    from spacy_mbert.tokenizer import MultilingualTokenizer

    nlp = spacy.blank("xx")
    nlp.tokenizer = MultilingualTokenizer(nlp.vocab)
    train_path, dev_path = work / "train.spacy", work / "dev.spacy"
    write_docbin(train, "eng_Latn", labels, train_path, nlp)
    write_docbin(dev, "eng_Latn", labels, dev_path, nlp)
    steps = epochs * math.ceil(len(train) / batch_size)
    config, overrides = spacy_config(system, work, steps=steps, epochs=epochs, lr=lr)
    overrides.update(
        {"paths.train": str(train_path), "paths.dev": str(dev_path), "paths.encoder": str(encoder), "system.seed": seed}
    )
    if system in ("a", "e", "l"):
        overrides["training.batcher.size"] = batch_size
    if system == "l":
        overrides["paths.base"] = "mbert_base"
    overrides.update(extra or {})
    seconds = train_spacy(config, overrides, work / "out")
    predictions, infer_seconds = predict_spacy(work / "out" / "model-last", test_texts, batch_size=64)
    run = {"train_seconds": seconds, "predictions": predictions, "infer_seconds": infer_seconds}
    if int8:
        from spacy_mbert.encoder.quantize import quantize_pipeline

        for dtype in QUANTIZED:
            quantize_pipeline(str(work / "out" / "model-last"), work / dtype, dtype=dtype)
            quantized_predictions, quantized_seconds = predict_spacy(work / dtype, test_texts, batch_size=64)
            run[dtype] = {"predictions": quantized_predictions, "infer_seconds": quantized_seconds}
    return run


def run_hf_system(
    encoder: Path,
    train: List[dict],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    labels: List[str],
    test_texts: List[str],
    seed: int,
    lora: bool = False,
) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    random.seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    model = AutoModelForSequenceClassification.from_pretrained(str(encoder), num_labels=len(labels))
    if lora:
        model = with_peft_lora(model)
    train = list(train)  # shuffled in place below
    label_ids = {label: i for i, label in enumerate(labels)}
    steps = epochs * math.ceil(len(train) / batch_size)
    # fused: the kernel spacy-mbert.AdamW.v1 uses (like for like; torch's default path is ~10x slower on a CPU).
    optimizer = torch.optim.AdamW(parameter_groups(model, lr), lr=lr, fused=True)
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, steps // 10), steps)
    with stopwatch() as clock:
        model.train()
        for _ in range(epochs):
            random.shuffle(train)
            for start in range(0, len(train), batch_size):
                batch = train[start : start + batch_size]
                inputs = tokenizer(
                    [r["text"] for r in batch], padding=True, truncation=True, max_length=512, return_tensors="pt"
                )
                target = torch.tensor([label_ids[r["label"]] for r in batch])
                loss = model(**inputs, labels=target).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
    predictions, infer_seconds = predict_hf(model, tokenizer, test_texts, labels)
    return {"train_seconds": clock["seconds"], "predictions": predictions, "infer_seconds": infer_seconds}


def with_peft_lora(model):
    """``model`` with a peft LoRA adapter of the shipped configs' settings; classifier and pooler train fully."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=LORA["rank"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=LORA["target_modules"],
        exclude_modules=["pooler.dense"],
        modules_to_save=["classifier", "pooler"],
        bias="none",
    )
    return get_peft_model(model, config)


def parameter_groups(model, lr: float) -> List[dict]:
    """AdamW groups as Hugging Face's Trainer makes them (no decay on biases and LayerNorm);
    LoRA weights at LoRA.v1's ``learn_rate_scale`` times ``lr``, as in (l)."""
    no_decay = ("bias", "LayerNorm.weight")
    groups = []
    for is_lora in (False, True):
        for decay in (True, False):
            params = [
                p
                for n, p in model.named_parameters()
                if p.requires_grad and (".lora_" in n) == is_lora and (not n.endswith(no_decay)) == decay
            ]
            if params:
                rate = lr * LORA_LR_SCALE if is_lora else lr
                groups.append({"params": params, "weight_decay": 0.01 if decay else 0.0, "lr": rate})
    return groups


def predict_hf(model, tokenizer, texts: List[str], labels: List[str], batch_size: int = 64) -> Tuple[List[str], float]:
    """The raw forward over length-sorted batches (the speed floor)."""
    import torch

    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    predictions: List[Optional[str]] = [None] * len(texts)
    with stopwatch() as clock, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            inputs = tokenizer(
                [texts[i] for i in index], padding=True, truncation=True, max_length=512, return_tensors="pt"
            )
            best = model(**inputs).logits.argmax(-1).tolist()
            for i, label_index in zip(index, best):
                predictions[i] = labels[label_index]
    return predictions, clock["seconds"]


SYSTEM_NAMES = {
    "a": "(a) spacy-mbert: ClsPoolTextCat, package training",
    "b": "(b) stock spaCy: TextCatReduce + listener, spaCy's training defaults",
    "c": "(c) HF AutoModelForSequenceClassification",
    "d": "(d) ablation: ClsPoolTextCat, spaCy's training defaults",
    "e": "(e) ablation: TextCatReduce + listener, package training",
    "l": "(l) spacy-mbert on the shared base: (a) with a LoRA adapter",
    "p": "(p) HF AutoModelForSequenceClassification with a peft LoRA adapter",
}


def per_language_accuracy(predictions: List[str], gold: List[Tuple[str, str]]) -> Dict[str, float]:
    per_lang = {}
    for lang in LANGS:
        pairs = [(p, g) for p, (code, g) in zip(predictions, gold) if code == lang]
        per_lang[lang] = sum(p == g for p, g in pairs) / len(pairs)
    return per_lang


def score_run(run: dict, gold: List[Tuple[str, str]], words: int, chars: int) -> dict:
    per_lang = per_language_accuracy(run["predictions"], gold)
    scores = {
        "accuracy": per_lang,
        "average": sum(per_lang.values()) / len(per_lang),
        "train_seconds": run["train_seconds"],
        "infer_seconds": run["infer_seconds"],
        "words_per_second": words / run["infer_seconds"],
        "chars_per_second": chars / run["infer_seconds"],
    }
    for dtype in QUANTIZED:
        if dtype in run:
            accuracy = per_language_accuracy(run[dtype]["predictions"], gold)
            scores[dtype] = {
                "accuracy": accuracy,
                "average": sum(accuracy.values()) / len(accuracy),
                "infer_seconds": run[dtype]["infer_seconds"],
                "agreement": sum(a == b for a, b in zip(run["predictions"], run[dtype]["predictions"])) / len(gold),
            }
    return scores


def main(
    encoder: Path = typer.Option(
        ROOT / "encoders" / "e5-small",
        help="Encoder checkpoint directory (spacy-mbert init-encoder e5-small encoders/e5-small).",
    ),
    data: Path = typer.Option(
        DEFAULT_SHARED_DATA / "sib200", help="SIB-200 folder (LANG/train.jsonl, test.jsonl, labels.json)."
    ),
    systems: str = typer.Option(
        "a,b,c",
        help="Comma-separated systems to run: a, b, c, the ablations d (this head, spaCy's training defaults), e (spaCy's head, this package's training), and the LoRA systems l (a on the shared base) and p (c with peft).",
    ),
    seeds: str = typer.Option("0", help="Comma-separated seeds; every system runs once per seed (mean ± sd reported)."),
    epochs: int = typer.Option(6, help="Training epochs for every system."),
    lr: float = typer.Option(5e-5, help="Peak learning rate for every system."),
    batch_size: int = typer.Option(
        32, help="Batch size (docs) for (a), (c) and (e); (b) and (d) use padded batches of 1000 words."
    ),
    threads: int = typer.Option(2, help="Torch threads for every system."),
    name: str = typer.Option("sib200_textcat", help="Results file stem under benchmarks/results/."),
    eval_split: str = typer.Option(
        "test", help="Split to score: test, or dev for choosing settings (dev of all 12 languages, never test)."
    ),
    setting: List[str] = typer.Option(
        [], "--set", help="KEY=VALUE config override for the spaCy systems (a JSON value), e.g. for a dev sweep."
    ),
    merge: List[Path] = typer.Option(
        [],
        help="Results JSON of earlier runs (same settings) to include in the table, e.g. when systems ran as separate processes.",
    ),
    int8: bool = typer.Option(
        False, help="Also score each spaCy system's final model after `spacy-mbert quantize` (int8 and bf16 rows)."
    ),
):
    require_dir(data, "SIB-200")
    pin_threads(threads)
    import spacy_mbert  # noqa: F401  (registers the Doc extensions)

    labels = json.loads((data / "labels.json").read_text(encoding="utf8"))["labels"]
    test = {lang: load_split(data, lang, eval_split) for lang in LANGS}
    extra = {key: json.loads(value) for key, value in (item.split("=", 1) for item in setting)}
    test_texts = [r["text"] for lang in LANGS for r in test[lang]]
    gold = [(lang, r["label"]) for lang in LANGS for r in test[lang]]
    words = sum(len(text.split()) for text in test_texts)
    chars = sum(len(text) for text in test_texts)
    results: Dict[str, Dict[str, dict]] = {}  # system -> seed -> scores
    for path in merge:
        for system, runs in json.loads(path.read_text(encoding="utf8"))["results"].items():
            results.setdefault(system, {}).update(runs)
    for seed in [int(s) for s in seeds.split(",") if s]:
        for system in [s for s in systems.split(",") if s]:
            print(f"=== {SYSTEM_NAMES[system]}, seed {seed} ===", flush=True)
            settings = dict(
                epochs=epochs, lr=lr, batch_size=batch_size, labels=labels, test_texts=test_texts, seed=seed
            )
            with tempfile.TemporaryDirectory() as tmp:
                if system in ("c", "p"):
                    run = run_hf_system(encoder, load_split(data, "eng_Latn", "train"), **settings, lora=system == "p")
                else:
                    english = (load_split(data, "eng_Latn", "train"), load_split(data, "eng_Latn", "dev"))
                    run = run_spacy_system(system, encoder, *english, Path(tmp), **settings, extra=extra, int8=int8)
            results.setdefault(system, {})[str(seed)] = score_run(run, gold, words, chars)
            print(json.dumps(results[system][str(seed)], indent=1), flush=True)
    write_report(
        name,
        results,
        encoder=encoder,
        data=data,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        threads=threads,
        words=words,
        chars=chars,
        n_texts=len(test_texts),
    )


def _mean_sd(values: List[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def write_report(
    name: str, results: dict, *, encoder, data, epochs, lr, batch_size, threads, words, chars, n_texts
) -> None:
    info = machine_info(threads)
    header = (
        ["system", "seeds"]
        + [lang.split("_")[0] for lang in LANGS]
        + ["avg", "train", "infer words/s", "infer chars/s"]
    )
    rows = []
    for system, runs in sorted(results.items()):
        scores = list(runs.values())
        rows.append(
            [SYSTEM_NAMES[system], ",".join(sorted(runs, key=int))]
            + [_mean_sd([100 * r["accuracy"][lang] for r in scores]) for lang in LANGS]
            + [
                f"**{_mean_sd([100 * r['average'] for r in scores])}**",
                minutes(statistics.median(r["train_seconds"] for r in scores)),
                f"{statistics.median(r['words_per_second'] for r in scores):.0f}",
                f"{statistics.median(r['chars_per_second'] for r in scores):.0f}",
            ]
        )
        for dtype in QUANTIZED:
            quantized = [r[dtype] for r in scores if dtype in r]
            if quantized:
                rows.append(
                    [
                        f"{SYSTEM_NAMES[system]}, the same model after quantize --dtype {dtype}",
                        ",".join(sorted(runs, key=int)),
                    ]
                    + [_mean_sd([100 * r["accuracy"][lang] for r in quantized]) for lang in LANGS]
                    + [
                        f"**{_mean_sd([100 * r['average'] for r in quantized])}**",
                        "",
                        f"{words / statistics.median(r['infer_seconds'] for r in quantized):.0f}",
                        f"{chars / statistics.median(r['infer_seconds'] for r in quantized):.0f}",
                    ]
                )
    all_seeds = sorted({seed for runs in results.values() for seed in runs}, key=int)
    command = (
        f"python benchmarks/sib200_textcat.py --encoder {encoder} --data {data} --epochs {epochs} "
        f"--lr {lr} --batch-size {batch_size} --threads {threads} --systems {','.join(sorted(results))} "
        f"--seeds {','.join(all_seeds)}"
    )
    report = "\n".join(
        [
            "# SIB-200: train on English, test on 12 languages (accuracy %)",
            "",
            f"Command: `{command}`",
            "",
            markdown_table(header, rows),
            "",
            "Accuracy is the mean ± sample standard deviation over the seeds listed (the seed sets the head's "
            "initialisation, dropout and data order); train time and throughput are medians over the seeds. "
            "The final model of each run is scored: no checkpoint selection, and no test data is used in training.",
            "",
            f"Inference: all {n_texts} test sentences ({words} whitespace words, {chars} characters), batch 64; "
            "(c) is the raw forward pass over length-sorted batches.",
            "",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
            "",
        ]
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(report, encoding="utf8")
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"machine": info, "command": command, "results": results}, indent=1), encoding="utf8"
    )
    print(report)


if __name__ == "__main__":
    typer.run(main)
