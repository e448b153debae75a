"""Tatoeba many-to-English translation: BERT2BERT warm-started from the encoder vs Rnd2Rnd.

Train ``mbert_translator`` (``spacy train configs/translation.cfg``) into English on 800
pairs of each of deu, fra, spa, ita, por, nld, pol (5,600 pairs); evaluate BLEU and chrF
(sacreBLEU, 13a) on 200 pairs of all 14 languages in the folder, the 7 unseen ones
zero-shot.

The split is made by English sentence, because Tatoeba's English side is shared across
languages (the same English sentence is the reference of a German, a French and a
Japanese pair): a test pair is taken from the end of its language's file only when its
English reference occurs in no *other* training language's file, and a training pair is
dropped when its English reference or its source sentence (whitespace-collapsed,
casefolded) is that of any test pair. So no test reference and no test source is seen in
training, in any language. ``--check-split --split-out DIR`` writes the pairs as
``DIR/train.tsv`` and ``DIR/test.tsv`` (lang, source, target), prints the overlap count
and exits non-zero unless it is 0.

Two systems with identical settings, trained side by side in their own processes with
the same thread count:

  (w) warm-started: encoder and decoder from the checkpoint (Rothe et al.'s BERT2BERT);
  (r) Rnd2Rnd: the same network from random weights (``init_from_pretrained = false``);
  (l) (w) on the shared base, the demo's default: encoder and decoder run on the frozen
      checkpoint with LoRA adapters (the decoder's cross-attention and output layer train
      fully), the adapters at LoRA.v1's 10x learning rate.

Both freeze the encoder's word-embedding matrix (``freeze_embeddings``) and restrict
the decoder's output to the English pieces of the training targets, which is what makes
the run fit on 2 CPU cores. The final model of each run is scored (no checkpoint
selection). Then one process times generation on the same sentences with the warm model,
alternating: ``nlp.pipe`` (tokenization and detokenization included) against a plain
Hugging Face loop (tokenize a batch, ``generate`` with the same beam settings, decode),
batches in input order.

    python benchmarks/tatoeba_translation.py --encoder encoders/e5-small --data ../shared/data/tatoeba
    python benchmarks/tatoeba_translation.py --check-split --split-out /tmp/tatoeba-split
    python benchmarks/tatoeba_translation.py --systems w,l --epochs 2 --train-pairs 800 --name tatoeba_lora
"""

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import typer
from common import (
    DEFAULT_SHARED_DATA,
    ROOT,
    machine_info,
    markdown_table,
    minutes,
    pin_threads,
    require_dir,
    stopwatch,
    write_results,
)

TRAINED = ["deu", "fra", "spa", "ita", "por", "nld", "pol"]
UNSEEN = ["ara", "cmn", "hin", "jpn", "rus", "tur", "vie"]
ISO1 = {
    "deu": "de",
    "fra": "fr",
    "spa": "es",
    "ita": "it",
    "por": "pt",
    "nld": "nl",
    "pol": "pl",
    "ara": "ar",
    "cmn": "zh",
    "hin": "hi",
    "jpn": "ja",
    "rus": "ru",
    "tur": "tr",
    "vie": "vi",
}
N_TRAIN, N_TEST = 800, 200
SYSTEM_NAMES = {
    "w": "(w) BERT2BERT warm-started",
    "r": "(r) Rnd2Rnd (random init)",
    "l": "(l) (w) with LoRA adapters on the shared base (--paths.base mbert_base)",
}


def read_pairs(data: Path, lang: str) -> List[Tuple[str, str]]:
    path = data / f"{lang}-eng.tsv"
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf8").splitlines(), 1):
        source, sep, target = line.partition("\t")
        if not sep:
            sys.exit(f"✘ {path}:{number}: expected 'source<TAB>english'")
        pairs.append((source, target))
    if len(pairs) < N_TRAIN + N_TEST:
        sys.exit(f"✘ {path}: {len(pairs)} pairs, the benchmark needs {N_TRAIN + N_TEST}")
    return pairs


def _key(text: str) -> str:
    """What counts as 'the same sentence' for the leak check: case and spacing ignored."""
    return " ".join(text.casefold().split())


Split = Dict[str, List[Tuple[str, str]]]


def clean_split(pairs: Split) -> Tuple[Split, Split]:
    """(train, test) by English sentence: no test reference or source occurs in any training pair.

    Test pairs are taken from the end of each file, skipping pairs whose English reference
    is also the reference of a pair in another training language (taking it would remove
    that pair from training); training pairs are the first ``N_TRAIN`` of each training
    language whose reference and source are not a test pair's.
    """
    langs_of_reference: Dict[str, set] = {}
    for lang, lang_pairs in pairs.items():
        for _, target in lang_pairs:
            langs_of_reference.setdefault(_key(target), set()).add(lang)
    test: Split = {}
    for lang, lang_pairs in pairs.items():
        others = set(TRAINED) - {lang}
        eligible = [pair for pair in reversed(lang_pairs) if not langs_of_reference[_key(pair[1])] & others]
        if len(eligible) < N_TEST:
            sys.exit(
                f"✘ {lang}-eng.tsv: only {len(eligible)} pairs have an English side unseen in training, the benchmark needs {N_TEST}"
            )
        test[lang] = eligible[:N_TEST][::-1]
    test_keys = {_key(text) for lang_pairs in test.values() for pair in lang_pairs for text in pair}
    train: Split = {}
    for lang in TRAINED:
        if lang in pairs:
            kept = [p for p in pairs[lang] if _key(p[0]) not in test_keys and _key(p[1]) not in test_keys]
            train[lang] = kept[:N_TRAIN]
    return train, test


def split_overlap(train: Split, test: Split) -> int:
    """Test pairs whose English reference or source sentence occurs in any training pair."""
    seen = {_key(text) for lang_pairs in train.values() for pair in lang_pairs for text in pair}
    return sum(
        _key(source) in seen or _key(target) in seen for lang_pairs in test.values() for source, target in lang_pairs
    )


def write_split(split: Split, path: Path) -> None:
    lines = ["lang\tsource\ttarget"] + [
        f"{lang}\t{s}\t{t}" for lang, lang_pairs in split.items() for s, t in lang_pairs
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")


def write_jsonl(records: List[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf8")
    return path


# --------------------------------------------------------------------------- one system


def train_system(
    system: str,
    encoder: Path,
    train_pairs: Split,
    work: Path,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    num_beams: int,
    freeze: bool,
) -> dict:
    from spacy.cli.train import train

    from spacy_mbert.convert import convert

    work.mkdir(parents=True, exist_ok=True)
    train_records = [
        {"source": s, "target": t, "lang": ISO1[lang]} for lang, pairs in train_pairs.items() for s, t in pairs
    ]
    convert("translation", write_jsonl(train_records, work / "train.jsonl"), work / "train.spacy")
    # spacy train logs one dev score at the end; a few training pairs keep that cheap (no selection).
    dev_records = [
        {"source": s, "target": t, "lang": ISO1[lang]} for lang, pairs in train_pairs.items() for s, t in pairs[:3]
    ]
    convert("translation", write_jsonl(dev_records, work / "dev.jsonl"), work / "dev.spacy")
    steps = epochs * math.ceil(len(train_records) / batch_size)
    overrides = {
        "paths.train": str(work / "train.spacy"),
        "paths.dev": str(work / "dev.spacy"),
        "paths.encoder": str(encoder),
        "paths.base": "mbert_base" if system == "l" else None,
        "components.mbert_translator.model.init_from_pretrained": system != "r",
        "components.mbert_translator.model.freeze_embeddings": freeze,
        "components.mbert_translator.num_beams": num_beams,
        "training.max_steps": steps,
        "training.eval_frequency": steps,
        "training.patience": 0,
        "training.batcher.size": batch_size,
        "training.optimizer.learn_rate.initial_rate": lr,
        "training.optimizer.learn_rate.warmup_steps": max(1, steps // 10),
    }
    with stopwatch() as clock:
        train(ROOT / "configs" / "translation.cfg", work / "out", use_gpu=-1, overrides=overrides)
    return {
        "train_seconds": clock["seconds"],
        "steps": steps,
        "train_pairs": len(train_records),
        "model": str(work / "out" / "model-last"),
    }


def evaluate_system(model_dir: Path, tests: Dict[str, List[Tuple[str, str]]], batch_size: int) -> dict:
    import spacy

    from spacy_mbert.translation.scorer import corpus_scores

    nlp = spacy.load(model_dir)
    scores, outputs = {}, {}
    with stopwatch() as clock:
        for lang, pairs in tests.items():
            hypotheses = [doc._.translation for doc in nlp.pipe([s for s, _ in pairs], batch_size=batch_size)]
            outputs[lang] = hypotheses
            scores[lang] = corpus_scores(list(zip(hypotheses, [t for _, t in pairs])))
    return {"scores": scores, "outputs": outputs, "infer_seconds": clock["seconds"]}


# --------------------------------------------------------------------------- generation speed


def plain_generate(seq2seq, tokenizer, shim, texts: List[str], config, batch_size: int) -> List[str]:
    """What a user would write with Hugging Face alone: batches in input order, generate, decode."""
    import torch

    outputs = []
    with torch.inference_mode():
        for begin in range(0, len(texts), batch_size):
            inputs = tokenizer(
                texts[begin : begin + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            inputs.pop("token_type_ids", None)
            sequences = seq2seq.generate(**inputs, generation_config=config)
            outputs += tokenizer.batch_decode(shim.restricted_to_full(sequences), skip_special_tokens=True)
    return outputs


def time_generation(model_dir: Path, texts: List[str], *, repeats: int, batch_size: int) -> dict:
    import spacy

    from spacy_mbert.encoder import get_shim
    from spacy_mbert.translation.generate import generation_config

    nlp = spacy.load(model_dir)
    translator = nlp.get_pipe("mbert_translator")
    shim = get_shim(translator.model)
    seq2seq = shim.seq2seq.eval()
    config = generation_config(
        translator.model,
        num_beams=translator.num_beams,
        max_length=translator.max_length,
        length_penalty=translator.length_penalty,
        no_repeat_ngram_size=translator.no_repeat_ngram_size,
    )
    translator.batch_size = batch_size
    list(nlp.pipe(texts[:4]))  # warm-up
    plain_generate(seq2seq, shim.tokenizer, shim, texts[:4], config, batch_size)
    ours, theirs = [], []
    for _ in range(repeats):
        with stopwatch() as clock:
            docs = list(nlp.pipe(texts, batch_size=batch_size))
        ours.append(clock["seconds"])
        with stopwatch() as clock:
            plain = plain_generate(seq2seq, shim.tokenizer, shim, texts, config, batch_size)
        theirs.append(clock["seconds"])
    a_s, b_s = statistics.median(ours), statistics.median(theirs)
    same = sum(" ".join(doc._.translation.split()) == " ".join(p.split()) for doc, p in zip(docs, plain)) / len(texts)
    return {
        "sentences": len(texts),
        "repeats": repeats,
        "batch_size": batch_size,
        "num_beams": translator.num_beams,
        "ours_seconds": ours,
        "plain_seconds": theirs,
        "ours_per_second": len(texts) / a_s,
        "plain_per_second": len(texts) / b_s,
        "speedup": b_s / a_s,
        "same_output": same,
    }


# --------------------------------------------------------------------------- driver


def main(
    encoder: Path = typer.Option(
        ROOT / "encoders" / "e5-small",
        help="Encoder checkpoint directory (spacy-mbert init-encoder e5-small encoders/e5-small).",
    ),
    data: Path = typer.Option(DEFAULT_SHARED_DATA / "tatoeba", help="Tatoeba folder (XXX-eng.tsv)."),
    systems: str = typer.Option("w,r", help="w (warm-started), r (Rnd2Rnd)."),
    epochs: int = typer.Option(3, help="Passes over the 5,600 training pairs, both systems."),
    lr: float = typer.Option(1e-4, help="Peak learning rate (10% warmup, linear decay), both systems."),
    batch_size: int = typer.Option(32, help="Pairs per step."),
    num_beams: int = typer.Option(4, help="Beam size for evaluation and timing."),
    freeze_embeddings: bool = typer.Option(True, help="Freeze the encoder's word embeddings (both systems)."),
    threads: int = typer.Option(1, help="Torch threads per process."),
    speed_sentences: int = typer.Option(20, help="Test sentences per language for the generation timing (x14)."),
    repeats: int = typer.Option(3, help="Timing repeats (median reported)."),
    work: Path = typer.Option(ROOT / "benchmarks" / "runs" / "tatoeba", help="Where models and per-system results go."),
    check_split: bool = typer.Option(
        False, "--check-split", help="Only make the split: print its overlap count, exit non-zero unless 0."
    ),
    split_out: Path = typer.Option(
        None, help="With --check-split: write the pairs used to DIR/train.tsv and DIR/test.tsv."
    ),
    train_pairs_per_lang: int = typer.Option(
        N_TRAIN,
        "--train-pairs",
        help=f"Training pairs per language: the first N of the clean split's {N_TRAIN} (a shorter run).",
    ),
    name: str = typer.Option("tatoeba_translation", help="Results file stem under benchmarks/results/."),
    one: str = typer.Option("", hidden=True, help="Internal: train and score one system in this process."),
):
    require_dir(data, "Tatoeba")
    langs = [lang for lang in TRAINED + UNSEEN if (data / f"{lang}-eng.tsv").exists()]
    train_pairs, tests = clean_split({lang: read_pairs(data, lang) for lang in langs})
    train_pairs = {lang: pairs[:train_pairs_per_lang] for lang, pairs in train_pairs.items()}
    overlap = split_overlap(train_pairs, tests)
    if check_split:
        if split_out is not None:
            split_out.mkdir(parents=True, exist_ok=True)
            write_split(train_pairs, split_out / "train.tsv")
            write_split(tests, split_out / "test.tsv")
        n_train, n_test = (sum(map(len, split.values())) for split in (train_pairs, tests))
        print(
            f"{'✔' if overlap == 0 else '✘'} {n_train} training pairs ({len(train_pairs)} languages), {n_test} test pairs "
            f"({len(tests)} languages); test pairs whose English reference or source occurs in training: {overlap}"
        )
        raise typer.Exit(0 if overlap == 0 else 1)
    if overlap:
        sys.exit(f"✘ the Tatoeba split leaks: {overlap} test pairs occur in training (run with --check-split)")
    pin_threads(threads)
    import spacy_mbert  # noqa: F401  (registers the Doc extensions)

    settings = dict(epochs=epochs, lr=lr, batch_size=batch_size, num_beams=num_beams, freeze=freeze_embeddings)
    if one:
        run = train_system(one, encoder, train_pairs, work / one, **settings)
        run.update(evaluate_system(Path(run["model"]), tests, batch_size=16))
        (work / f"{one}.json").write_text(json.dumps(run, ensure_ascii=False, indent=1), encoding="utf8")
        print(json.dumps(run["scores"], indent=1), flush=True)
        return
    work.mkdir(parents=True, exist_ok=True)
    procs = {
        system: subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--one",
                system,
                "--encoder",
                str(encoder),
                "--data",
                str(data),
                "--epochs",
                str(epochs),
                "--lr",
                str(lr),
                "--batch-size",
                str(batch_size),
                "--num-beams",
                str(num_beams),
                "--threads",
                str(threads),
                "--work",
                str(work),
                "--train-pairs",
                str(train_pairs_per_lang),
                "--freeze-embeddings" if freeze_embeddings else "--no-freeze-embeddings",
            ]
        )
        for system in systems.split(",")
        if system
    }
    failed = [system for system, proc in procs.items() if proc.wait() != 0]
    if failed:
        sys.exit(f"✘ system(s) {failed} failed; see the log above")
    results = {
        s: json.loads((work / f"{s}.json").read_text(encoding="utf8"))
        for s in SYSTEM_NAMES
        if (work / f"{s}.json").exists()
    }
    speed = None
    if "w" in results and speed_sentences > 0:
        sample = [source for lang in langs for source, _ in tests[lang][:speed_sentences]]
        print(f"=== generation timing: {len(sample)} sentences ===", flush=True)
        speed = time_generation(Path(results["w"]["model"]), sample, repeats=repeats, batch_size=16)
        print(json.dumps(speed, indent=1), flush=True)
    write_report(
        name,
        results,
        speed,
        tests,
        langs=langs,
        encoder=encoder,
        data=data,
        threads=threads,
        train_pairs=train_pairs_per_lang,
        **settings,
    )


def write_report(
    name,
    results,
    speed,
    tests,
    *,
    langs,
    encoder,
    data,
    threads,
    train_pairs,
    epochs,
    lr,
    batch_size,
    num_beams,
    freeze,
) -> None:
    info = machine_info(threads)
    trained = [lang for lang in langs if lang in TRAINED]
    unseen = [lang for lang in langs if lang not in TRAINED]
    header = ["system", "metric"] + langs + ["avg trained", "avg unseen", "train", "eval sent/s"]
    rows = []
    for system, result in sorted(results.items(), key=lambda item: item[0] != "w"):
        n_eval = sum(len(v) for v in result["outputs"].values())
        for metric in ("bleu", "chrf"):
            values = {lang: 100 * result["scores"][lang][metric] for lang in langs}
            rows.append(
                [
                    SYSTEM_NAMES[system] if metric == "bleu" else "",
                    metric.replace("bleu", "BLEU").replace("chrf", "chrF"),
                ]
                + [f"{values[lang]:.1f}" for lang in langs]
                + [
                    f"**{statistics.mean(values[lang] for lang in trained):.1f}**",
                    f"{statistics.mean(values[lang] for lang in unseen):.1f}" if unseen else "-",
                ]
                + (
                    [minutes(result["train_seconds"]), f"{n_eval / result['infer_seconds']:.2f}"]
                    if metric == "bleu"
                    else ["", ""]
                )
            )
    command = (
        f"python benchmarks/tatoeba_translation.py --encoder {encoder} --data {data} --epochs {epochs} --lr {lr} "
        f"--batch-size {batch_size} --num-beams {num_beams} --threads {threads} "
        f"{'--freeze-embeddings' if freeze else '--no-freeze-embeddings'} --systems {','.join(sorted(results))}"
        + (f" --train-pairs {train_pairs}" if train_pairs != N_TRAIN else "")
        + (f" --name {name}" if name != "tatoeba_translation" else "")
    )
    any_result = next(iter(results.values()))
    lines = [
        f"# Tatoeba: many-to-English, trained on {', '.join(TRAINED)} ({train_pairs} pairs each), tested on {N_TEST} pairs of {len(langs)} languages, split by English sentence (no test reference or source in training)",
        "",
        f"Command: `{command}`",
        "",
        markdown_table(header, rows),
        "",
        f"sacreBLEU BLEU (13a) and chrF on the English output. Unseen languages ({', '.join(unseen)}) are zero-shot. "
        f"Training: {epochs} epochs = {any_result['steps']} steps of {batch_size} pairs, peak learning rate {lr}, 10% warmup then "
        f"linear decay, label smoothing 0.1, decoder vocabulary restricted to the training targets' pieces, encoder word "
        f"embeddings {'frozen' if freeze else 'trained'}. Beam search with {num_beams} beams, at most 64 pieces. Each system "
        f"trained in its own process, side by side ({threads} thread each); eval sent/s is that process's scoring pass.",
        "",
    ]
    if speed:
        lines += [
            f"## Generation speed: {speed['sentences']} test sentences (the first {speed['sentences'] // len(langs)} of each language), "
            f"warm model, {speed['num_beams']} beams, batch {speed['batch_size']}, median of {speed['repeats']} alternating runs",
            "",
            markdown_table(
                ["system", "sentences/s", "ratio"],
                [
                    [
                        "spacy-mbert `nlp.pipe` (tokenize, generate, detokenize)",
                        f"{speed['ours_per_second']:.2f}",
                        f"**{speed['speedup']:.2f}x**",
                    ],
                    [
                        "plain HF loop (tokenizer, `generate`, `batch_decode`)",
                        f"{speed['plain_per_second']:.2f}",
                        "1.00x",
                    ],
                ],
            ),
            "",
            f"Same output text (whitespace-normalised) for {100 * speed['same_output']:.1f}% of the sentences.",
            "",
        ]
    slim = {s: {k: v for k, v in r.items() if k != "outputs"} for s, r in results.items()}
    examples = (
        {lang: list(zip([s for s, _ in tests[lang]][:3], results["w"]["outputs"][lang][:3])) for lang in langs}
        if "w" in results
        else {}
    )
    write_results(name, lines, info, {"command": command, "results": slim, "speed": speed, "examples": examples})


if __name__ == "__main__":
    typer.run(main)
