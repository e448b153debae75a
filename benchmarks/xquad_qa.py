"""XQuAD zero-shot cross-lingual extractive QA: spacy-mbert ``mbert_qa`` vs Hugging Face run_qa.

Train on English only (articles 0-35 of ``xquad.en.json``, 925 questions); evaluate on
articles 36-47 (265 questions) in all 12 XQuAD languages. Same encoder, split, epochs,
learning rate, schedule (10% warmup, linear decay), batch size, windows (384 wordpieces,
stride 128), n-best 20 and longest answer 30:

  (a) spacy-mbert: ``spacy train configs/qa.cfg`` (the shipped config, SQuAD v1.1 mode);
  (b) Hugging Face ``AutoModelForQuestionAnswering`` with run_qa.py's pre- and
      post-processing (``prepare_train_features``, ``postprocess_qa_predictions``) in a
      plain PyTorch loop (AdamW), dynamic padding.

(a) is also scored with ``align_to_words = false`` (answers not grown to whole words), the
post-processing rule of run_qa, so that one row is like for like with (b).

  (l) (a) with a LoRA adapter on the shared base (``--paths.base mbert_base``, the
      demo's default): the same settings, the adapter at LoRA.v1's 10x learning rate.

A step of (a) is ``--batch-size`` questions, a step of (b) ``--batch-size`` windows (run_qa's unit); the table
gives both step counts. Both systems score with the same function (SQuAD v1.1 EM/F1, max over the gold answers,
MLQA normalization per language, character tokens for zh and th). The final model of each
run is scored (no checkpoint selection). Each system trains in its own process with the
same thread count, side by side; then one process times inference on the same questions,
alternating the systems: (a) ``nlp.pipe`` over new docs (tokenization included) against the
Hugging Face ``question-answering`` pipeline loaded with (a)'s own trained weights, so both
run the identical network.

    python benchmarks/xquad_qa.py --encoder encoders/e5-small --data ../shared/data/xquad
    python benchmarks/xquad_qa.py --systems a,l --epochs 1 --name xquad_qa_lora   # LoRA vs full
"""

import json
import math
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

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

LANGS = ["en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro"]
N_TRAIN_ARTICLES = 36
SYSTEM_NAMES = {
    "a": "(a) spacy-mbert mbert_qa (spacy train), answers grown to whole words (shipped default)",
    "a-unaligned": "(a) the same model, align_to_words = false (run_qa's post-processing rule)",
    "b": "(b) HF AutoModelForQuestionAnswering, run_qa",
    "l": "(l) mbert_qa with a LoRA adapter on the shared base (--paths.base mbert_base)",
    "l-unaligned": "(l) the same model, align_to_words = false",
}


# --------------------------------------------------------------------------- data


def load_articles(data: Path, lang: str) -> List[dict]:
    return json.loads((data / f"xquad.{lang}.json").read_text(encoding="utf8"))["data"]


def questions_of(articles: List[dict]) -> List[dict]:
    """Flat list of {id, question, context, answers: [{text, answer_start}]}."""
    return [
        {"id": qa["id"], "question": qa["question"], "context": paragraph["context"], "answers": qa["answers"]}
        for article in articles
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]


def write_squad(articles: List[dict], path: Path, lang: str) -> Path:
    path.write_text(json.dumps({"version": "1.1", "lang": lang, "data": articles}, ensure_ascii=False), encoding="utf8")
    return path


def score(predictions: Dict[str, str], tests: Dict[str, List[dict]]) -> Dict[str, Dict[str, float]]:
    from spacy_mbert.qa.scorer import score_question

    result = {}
    for lang, questions in tests.items():
        pairs = [score_question(predictions[lang][q["id"]], [a["text"] for a in q["answers"]], lang) for q in questions]
        result[lang] = {"exact": sum(e for e, _ in pairs) / len(pairs), "f1": sum(f for _, f in pairs) / len(pairs)}
    return result


# --------------------------------------------------------------------------- (a) spacy-mbert


def run_spacy(
    encoder: Path,
    data: Path,
    work: Path,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    micro_batch: int,
    tests,
    base=None,
) -> dict:
    import spacy
    from spacy.cli.train import train

    from spacy_mbert.convert import convert

    work.mkdir(parents=True, exist_ok=True)
    en = load_articles(data, "en")
    convert("qa", write_squad(en[:N_TRAIN_ARTICLES], work / "train.json", "en"), work / "train.spacy")
    # spacy train logs a dev score once, at the end; the final model is scored here on all languages.
    convert("qa", write_squad(en[N_TRAIN_ARTICLES : N_TRAIN_ARTICLES + 2], work / "dev.json", "en"), work / "dev.spacy")
    n_train = len(questions_of(en[:N_TRAIN_ARTICLES]))
    steps = epochs * math.ceil(n_train / batch_size)
    overrides = {
        "paths.train": str(work / "train.spacy"),
        "paths.dev": str(work / "dev.spacy"),
        "paths.encoder": str(encoder),
        "paths.base": base,  # "mbert_base": a LoRA adapter on the shared base; None: full fine-tuning
        "components.mbert_qa.allow_no_answer": False,  # XQuAD is SQuAD v1.1: every question has an answer
        # Windows per forward pass in training (the update is still over the whole batch) and prediction.
        "components.mbert_qa.max_batch_windows": micro_batch,
        "components.mbert_qa.batch_size": 16,
        "training.max_epochs": 0,
        "training.max_steps": steps,
        "training.eval_frequency": steps,
        "training.batcher.size": batch_size,
        "training.logger.progress_bar": True,
        "training.optimizer.learn_rate.initial_rate": lr,
        "training.optimizer.learn_rate.total_steps": steps,
        "training.optimizer.learn_rate.warmup_steps": max(1, steps // 10),
    }
    with stopwatch() as clock:
        train(ROOT / "configs" / "qa.cfg", work / "out", use_gpu=-1, overrides=overrides)
    nlp = spacy.load(work / "out" / "model-last")
    with stopwatch() as infer:
        predictions = predict_spacy(nlp, tests)
    # The same model with run_qa's post-processing rule: answers are not grown to whole words.
    nlp.get_pipe("mbert_qa").cfg["align_to_words"] = False
    with stopwatch() as infer_unaligned:
        unaligned = predict_spacy(nlp, tests)
    return {
        "train_seconds": clock["seconds"],
        "infer_seconds": infer["seconds"],
        "predictions": predictions,
        "unaligned": {"infer_seconds": infer_unaligned["seconds"], "predictions": unaligned},
        "steps": steps,
        "examples_per_step": f"{batch_size} questions",
        "model": str(work / "out" / "model-last"),
    }


def predict_spacy(nlp, tests) -> Dict[str, Dict[str, str]]:
    return {
        lang: {q["id"]: answer_text(doc._.answers) for q, doc in zip(questions, nlp.pipe(make_docs(nlp, questions)))}
        for lang, questions in tests.items()
    }


def make_docs(nlp, questions: List[dict]):
    for q in questions:
        doc = nlp.make_doc(q["context"])
        doc._.question = q["question"]
        yield doc


def answer_text(answers) -> str:
    return answers[0]["text"] if answers else ""


# --------------------------------------------------------------------------- (b) Hugging Face run_qa


def prepare_train_features(tokenizer, questions: List[dict], max_length: int, stride: int) -> List[dict]:
    """run_qa.py's ``prepare_train_features``: windows with start/end targets (CLS when outside)."""
    pad_right = tokenizer.padding_side == "right"
    tokenized = tokenizer(
        [q["question"].lstrip() for q in questions],
        [q["context"] for q in questions],
        truncation="only_second" if pad_right else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    features = []
    for i, offsets in enumerate(tokenized["offset_mapping"]):
        input_ids = tokenized["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id)
        sequence_ids = tokenized.sequence_ids(i)
        answer = questions[tokenized["overflow_to_sample_mapping"][i]]["answers"][0]
        start_char = answer["answer_start"]
        end_char = start_char + len(answer["text"])
        start = 0
        while sequence_ids[start] != 1:
            start += 1
        end = len(input_ids) - 1
        while sequence_ids[end] != 1:
            end -= 1
        if not (offsets[start][0] <= start_char and offsets[end][1] >= end_char):
            start_position = end_position = cls_index
        else:
            while start < len(offsets) and offsets[start][0] <= start_char:
                start += 1
            start_position = start - 1
            while offsets[end][1] >= end_char:
                end -= 1
            end_position = end + 1
        feature = {
            key: tokenized[key][i]
            for key in tokenized.keys()
            if key not in ("offset_mapping", "overflow_to_sample_mapping")
        }
        feature["start_positions"], feature["end_positions"] = start_position, end_position
        features.append(feature)
    return features


def predict_hf(
    model,
    tokenizer,
    questions: List[dict],
    *,
    max_length: int,
    stride: int,
    batch_size: int = 64,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> Dict[str, str]:
    """run_qa.py's ``prepare_validation_features`` + ``postprocess_qa_predictions`` (v1, no null answer)."""
    import numpy
    import torch

    tokenized = tokenizer(
        [q["question"].lstrip() for q in questions],
        [q["context"] for q in questions],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    n = len(tokenized["input_ids"])
    keys = [key for key in tokenized.keys() if key not in ("offset_mapping", "overflow_to_sample_mapping")]
    starts, ends = [None] * n, [None] * n
    model.eval()
    with torch.inference_mode():
        for begin in range(0, n, batch_size):
            batch = tokenizer.pad(
                [{key: tokenized[key][i] for key in keys} for i in range(begin, min(n, begin + batch_size))],
                return_tensors="pt",
            )
            output = model(**batch)
            for row, i in enumerate(range(begin, min(n, begin + batch_size))):
                length = len(tokenized["input_ids"][i])
                starts[i] = output.start_logits[row, :length].numpy()
                ends[i] = output.end_logits[row, :length].numpy()
    by_example: Dict[int, List[int]] = {}
    for i, example in enumerate(tokenized["overflow_to_sample_mapping"]):
        by_example.setdefault(example, []).append(i)
    predictions = {}
    for example, feature_ids in by_example.items():
        context = questions[example]["context"]
        best, best_score = "", -math.inf
        for i in feature_ids:
            sequence_ids = tokenized.sequence_ids(i)
            offsets = [o if sequence_ids[k] == 1 else None for k, o in enumerate(tokenized["offset_mapping"][i])]
            for s in numpy.argsort(starts[i])[-1 : -n_best_size - 1 : -1]:
                for e in numpy.argsort(ends[i])[-1 : -n_best_size - 1 : -1]:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    value = starts[i][s] + ends[i][e]
                    if value > best_score:
                        best_score, best = value, context[offsets[s][0] : offsets[e][1]]
        predictions[questions[example]["id"]] = best
    return predictions


def run_hf(
    encoder: Path,
    data: Path,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    micro_batch: int,
    tests,
    max_length: int,
    stride: int,
    seed: int = 42,
) -> dict:
    import torch
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
        DataCollatorWithPadding,
        get_linear_schedule_with_warmup,
    )

    torch.manual_seed(seed)
    random.seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    model = AutoModelForQuestionAnswering.from_pretrained(str(encoder))
    train_questions = questions_of(load_articles(data, "en")[:N_TRAIN_ARTICLES])
    collate = DataCollatorWithPadding(tokenizer)
    clock_start = time.perf_counter()
    with stopwatch() as clock:
        features = prepare_train_features(tokenizer, train_questions, max_length, stride)
        steps = epochs * math.ceil(len(features) / batch_size)
        no_decay = ("bias", "LayerNorm.weight")
        groups = [
            {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": 0.01},
            {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=lr, eps=1e-8, fused=True)  # spacy-mbert.AdamW.v1's kernel
        schedule = get_linear_schedule_with_warmup(optimizer, max(1, steps // 10), steps)
        model.train()
        for _ in range(epochs):
            random.shuffle(features)
            for begin in range(0, len(features), batch_size):
                batch = features[begin : begin + batch_size]
                # Micro-batches bound memory; the gradient is that of the whole batch (mean loss).
                for part in range(0, len(batch), micro_batch):
                    chunk = batch[part : part + micro_batch]
                    loss = model(**collate(chunk)).loss * (len(chunk) / len(batch))
                    loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                done = schedule.last_epoch
                if done % 10 == 0:
                    print(f"(b) step {done}/{steps} ({clock_now(clock_start):.0f} s)", flush=True)
    with stopwatch() as infer:
        predictions = {
            lang: predict_hf(model, tokenizer, qs, max_length=max_length, stride=stride, batch_size=16)
            for lang, qs in tests.items()
        }
    return {
        "train_seconds": clock["seconds"],
        "infer_seconds": infer["seconds"],
        "predictions": predictions,
        "train_features": len(features),
        "steps": steps,
        "examples_per_step": f"{batch_size} windows",
    }


def clock_now(start: float) -> float:
    return time.perf_counter() - start


# --------------------------------------------------------------------------- inference speed


def time_inference(model_dir: Path, questions: List[dict], *, repeats: int, batch_size: int) -> dict:
    """Questions/s of (a) ``nlp.pipe`` and the HF ``question-answering`` pipeline on (a)'s weights, alternating."""
    import spacy
    from transformers import pipeline

    from spacy_mbert.qa.model import get_tokenizer, get_transformer

    nlp = spacy.load(model_dir)
    qa = nlp.get_pipe("mbert_qa")
    # eval(): spacy.load leaves the network in train mode (thinc's convention; mbert_qa switches
    # to eval per prediction); the HF pipeline would otherwise run it with dropout on.
    network = get_transformer(qa.model).eval()
    hf = pipeline("question-answering", model=network, tokenizer=get_tokenizer(qa.model), device=-1)
    kwargs = {"max_seq_len": 384, "doc_stride": 128, "max_answer_len": 30, "batch_size": batch_size}
    # Warm up both (first calls allocate).
    list(nlp.pipe(make_docs(nlp, questions[:8]), batch_size=batch_size))
    hf(question=[q["question"] for q in questions[:8]], context=[q["context"] for q in questions[:8]], **kwargs)
    ours, theirs = [], []
    for _ in range(repeats):
        with stopwatch() as clock:
            docs = list(nlp.pipe(make_docs(nlp, questions), batch_size=batch_size))
        ours.append(clock["seconds"])
        with stopwatch() as clock:
            answers = hf(
                question=[q["question"] for q in questions], context=[q["context"] for q in questions], **kwargs
            )
        theirs.append(clock["seconds"])
    agree = sum(answer_text(doc._.answers).strip() == a["answer"].strip() for doc, a in zip(docs, answers)) / len(
        questions
    )
    a_s, b_s = statistics.median(ours), statistics.median(theirs)
    return {
        "questions": len(questions),
        "repeats": repeats,
        "batch_size": batch_size,
        "a_seconds": ours,
        "hf_pipeline_seconds": theirs,
        "a_questions_per_second": len(questions) / a_s,
        "hf_pipeline_questions_per_second": len(questions) / b_s,
        "speedup": b_s / a_s,
        "same_answer": agree,
    }


# --------------------------------------------------------------------------- driver


def main(
    encoder: Path = typer.Option(
        ROOT / "encoders" / "e5-small",
        help="Encoder checkpoint directory (spacy-mbert init-encoder e5-small encoders/e5-small).",
    ),
    data: Path = typer.Option(DEFAULT_SHARED_DATA / "xquad", help="XQuAD folder (xquad.LANG.json)."),
    systems: str = typer.Option(
        "a,b", help="Systems to train: a (spacy-mbert), b (Hugging Face run_qa), l (a with a LoRA adapter)."
    ),
    epochs: int = typer.Option(2, help="Training epochs for both systems (run_qa's SQuAD default)."),
    lr: float = typer.Option(5e-5, help="Peak learning rate for both systems."),
    batch_size: int = typer.Option(16, help="Questions per step for (a), windows per step for (b)."),
    threads: int = typer.Option(1, help="Torch threads per process."),
    micro_batch: int = typer.Option(
        16, help="Windows per forward pass in training (bounds memory, same update), both systems."
    ),
    speed_questions: int = typer.Option(
        40, help="Questions per language for the inference timing (x12 languages); 0 skips it."
    ),
    repeats: int = typer.Option(3, help="Timing repeats (median reported)."),
    work: Path = typer.Option(ROOT / "benchmarks" / "runs" / "xquad", help="Where models and per-system results go."),
    note: str = typer.Option("", help="A remark to print under the table (e.g. how the run was split)."),
    name: str = typer.Option("xquad_qa", help="Results file stem under benchmarks/results/."),
    one: str = typer.Option("", hidden=True, help="Internal: train and score one system in this process."),
    int8_of: Optional[Path] = typer.Option(
        None,
        help="Instead of training: score this trained mbert_qa pipeline (e.g. this benchmark's (a) model-last) "
        "and its `spacy-mbert quantize` copy on the test split, and write NAME.json with the F1 loss.",
    ),
):
    require_dir(data, "XQuAD")
    pin_threads(threads)
    import spacy_mbert  # noqa: F401  (registers the Doc extensions)

    work.mkdir(parents=True, exist_ok=True)
    tests = {lang: questions_of(load_articles(data, lang)[N_TRAIN_ARTICLES:]) for lang in LANGS}
    if int8_of is not None:
        score_int8(int8_of, work / "quantized", tests, name=name, threads=threads)
        return
    if one:
        run_one(
            one, encoder, data, work, epochs=epochs, lr=lr, batch_size=batch_size, micro_batch=micro_batch, tests=tests
        )
        return
    # Train the systems side by side, one process each, so they share the machine equally.
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
                "--threads",
                str(threads),
                "--micro-batch",
                str(micro_batch),
                "--work",
                str(work),
            ]
        )
        for system in systems.split(",")
        if system
    }
    failed = [system for system, proc in procs.items() if proc.wait() != 0]
    if failed:
        sys.exit(f"✘ system(s) {failed} failed; see the log above")
    results = {
        system: json.loads((work / f"{system}.json").read_text(encoding="utf8"))
        for system in SYSTEM_NAMES
        if (work / f"{system}.json").exists()
    }
    speed = None
    if "a" in results and speed_questions > 0:
        sample = [q for lang in LANGS for q in tests[lang][:speed_questions]]
        print(f"=== inference timing: {len(sample)} questions ===", flush=True)
        speed = time_inference(Path(results["a"]["model"]), sample, repeats=repeats, batch_size=batch_size)
        print(json.dumps(speed, indent=1), flush=True)
    write_report(
        name,
        results,
        speed,
        tests=tests,
        encoder=encoder,
        data=data,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        micro_batch=micro_batch,
        threads=threads,
        note=note,
    )


def score_int8(model_dir: Path, quantized_dir: Path, tests, *, name: str, threads: int) -> None:
    """F1/EM of a trained pipeline and its ``spacy-mbert quantize`` copies (int8, bf16), and each pass's questions/s."""
    import spacy

    from spacy_mbert.encoder.quantize import quantize_pipeline

    paths = {"fp32": model_dir}
    for dtype in ("int8", "bf16"):
        paths[dtype] = quantized_dir / dtype
        quantize_pipeline(str(model_dir), paths[dtype], dtype=dtype)
    n_questions = sum(len(questions) for questions in tests.values())
    scores = {}
    for kind, path in paths.items():
        print(f"=== {kind}: {path} ===", flush=True)
        nlp = spacy.load(path)
        with stopwatch() as clock:
            per_lang = score(predict_spacy(nlp, tests), tests)
        scores[kind] = {
            "languages": per_lang,
            "f1": statistics.mean(s["f1"] for s in per_lang.values()),
            "exact": statistics.mean(s["exact"] for s in per_lang.values()),
            "questions_per_second": n_questions / clock["seconds"],
        }
        print(json.dumps({k: v for k, v in scores[kind].items() if k != "languages"}), flush=True)
    losses = {kind: 100 * (scores["fp32"]["f1"] - scores[kind]["f1"]) for kind in ("int8", "bf16")}
    speedups = {
        kind: scores[kind]["questions_per_second"] / scores["fp32"]["questions_per_second"] for kind in ("int8", "bf16")
    }
    command = f"python benchmarks/xquad_qa.py --int8-of {model_dir} --threads {threads} --name {name}"
    header = ["model", "metric"] + LANGS + ["avg", "questions/s"]
    rows = []
    for kind in paths:
        for metric in ("f1", "exact"):
            rows.append(
                [kind if metric == "f1" else "", "F1" if metric == "f1" else "EM"]
                + [f"{100 * scores[kind]['languages'][lang][metric]:.1f}" for lang in LANGS]
                + [f"**{100 * scores[kind][metric]:.1f}**"]
                + [f"{scores[kind]['questions_per_second']:.2f}" if metric == "f1" else ""]
            )
    lines = [
        "# XQuAD: the trained mbert_qa model, fp32 and after `spacy-mbert quantize` (int8, bf16)",
        "",
        f"Command: `{command}`",
        "",
        markdown_table(header, rows),
        "",
        f"{n_questions} test questions (articles {N_TRAIN_ARTICLES}-47, 12 languages). F1 loss against fp32: "
        + ", ".join(f"{kind} {losses[kind]:.2f} points at {speedups[kind]:.2f}x its questions/s" for kind in losses)
        + " (the scoring passes one after the other, not alternated; benchmarks/speed.py alternates them).",
        "",
    ]
    write_results(
        name,
        lines,
        machine_info(threads),
        {
            "command": command,
            **{kind: {"f1_loss": losses[kind], "speedup": speedups[kind]} for kind in losses},
            "scores": scores,
        },
    )


def run_one(system: str, encoder: Path, data: Path, work: Path, *, epochs, lr, batch_size, micro_batch, tests) -> None:
    print(f"=== {SYSTEM_NAMES[system]} ===", flush=True)
    if system in ("a", "l"):
        run = run_spacy(
            encoder,
            data,
            work / system,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            micro_batch=micro_batch,
            tests=tests,
            base="mbert_base" if system == "l" else None,
        )
    else:
        run = run_hf(
            encoder,
            data,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            micro_batch=micro_batch,
            tests=tests,
            max_length=384,
            stride=128,
        )
    run["scores"] = score(run["predictions"], tests)
    if "unaligned" in run:
        run["unaligned"]["scores"] = score(run["unaligned"]["predictions"], tests)
    (work / f"{system}.json").write_text(json.dumps(run, ensure_ascii=False, indent=1), encoding="utf8")
    print(json.dumps(run["scores"], indent=1), flush=True)


def report_rows(results: dict):
    """(a), then (a) scored without growing answers to whole words (like for like with run_qa), then (b)."""
    for system, result in sorted(results.items()):
        yield system, result
        if "unaligned" in result:
            yield (
                f"{system}-unaligned",
                {**result["unaligned"], "steps": result["steps"], "examples_per_step": result["examples_per_step"]},
            )


def write_report(
    name: str, results: dict, speed, *, tests, encoder, data, epochs, lr, batch_size, micro_batch, threads, note=""
) -> None:
    info = machine_info(threads)
    n_test = sum(len(qs) for qs in tests.values())
    header = ["system", "metric"] + LANGS + ["avg", "steps", "train", "eval questions/s"]
    rows = []
    for system, result in report_rows(results):
        for metric in ("f1", "exact"):
            values = [100 * result["scores"][lang][metric] for lang in LANGS]
            first = metric == "f1"
            rows.append(
                [SYSTEM_NAMES[system] if first else "", "F1" if first else "EM"]
                + [f"{v:.1f}" for v in values]
                + [f"**{sum(values) / len(values):.1f}**"]
                + (
                    [
                        f"{result['steps']} × {result['examples_per_step']}",
                        minutes(result["train_seconds"]) if "train_seconds" in result else "(same model)",
                        f"{n_test / result['infer_seconds']:.2f}",
                    ]
                    if first
                    else ["", "", ""]
                )
            )
    command = (
        f"python benchmarks/xquad_qa.py --encoder {encoder} --data {data} --epochs {epochs} --lr {lr} "
        f"--batch-size {batch_size} --micro-batch {micro_batch} --threads {threads} --systems {','.join(sorted(results))}"
        + (f" --name {name}" if name != "xquad_qa" else "")
    )
    lines = [
        "# XQuAD: train on English (articles 0-35, 925 questions), zero-shot on articles 36-47 in 12 languages",
        "",
        f"Command: `{command}`",
        "",
        markdown_table(header, rows),
        "",
        f"Scores: SQuAD v1.1 EM/F1 (%), max over the gold answers, MLQA normalization per language; {n_test} test "
        f"questions. Training: {epochs} epochs, peak learning rate {lr}, 10% warmup then linear decay, AdamW "
        f"(weight decay 0.01, clip 1.0), batch {batch_size}, windows of 384 wordpieces with stride 128. "
        "Each system trained in its own process, the two side by side; eval questions/s is the scoring pass "
        "of that process (a: nlp.pipe; b: run_qa's batched feature forward and post-processing). "
        "A step of (a) is a batch of questions (all their windows); a step of (b) is a batch of windows, as in "
        "run_qa: the steps column gives both counts. align_to_words (on in the shipped config) grows an answer "
        "that cuts a word to the whole word; run_qa's post-processing does not, so the align_to_words = false "
        "row is the like-for-like comparison with (b).",
        "",
    ]
    if note:
        lines += [note, ""]
    if speed:
        lines += [
            f"## Inference speed: {speed['questions']} questions (first {speed['questions'] // len(LANGS)} test questions of each language), "
            f"median of {speed['repeats']} alternating runs, batch {speed['batch_size']}, the same trained weights",
            "",
            markdown_table(
                ["system", "questions/s", "ratio"],
                [
                    [
                        "(a) spacy-mbert `nlp.pipe` (tokenization included)",
                        f"{speed['a_questions_per_second']:.2f}",
                        f"**{speed['speedup']:.2f}x**",
                    ],
                    ["HF `question-answering` pipeline", f"{speed['hf_pipeline_questions_per_second']:.2f}", "1.00x"],
                ],
            ),
            "",
            f"Both return the same answer text for {100 * speed['same_answer']:.1f}% of the questions.",
            "",
        ]
    slim = {system: {k: v for k, v in result.items() if k != "predictions"} for system, result in results.items()}
    for result in slim.values():
        if "unaligned" in result:
            result["unaligned"] = {k: v for k, v in result["unaligned"].items() if k != "predictions"}
    write_results(name, lines, info, {"command": command, "results": slim, "speed": speed})


if __name__ == "__main__":
    typer.run(main)
