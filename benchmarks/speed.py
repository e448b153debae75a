"""Speed and memory, side by side: spacy-mbert vs Hugging Face vs the raw model (the floor).

One process run, identical inputs, thread count pinned, median over ``--repeats`` runs
(the systems alternate within each repeat, so machine noise hits them alike):

  textcat      characters/s and texts/s: spacy-mbert pipeline (``nlp.pipe``, configs/textcat.cfg),
               the HF ``text-classification`` pipeline (batched), and the raw
               ``AutoModelForSequenceClassification`` forward over length-sorted batches: the
               floor, timed from the raw texts (HF tokenizer call, windowing, sorting, padding
               and forward all inside the timed region, as the pipelines do them), and beside
               it the same forward on windows tokenized beforehand (no tokenization).
               Two input sets: SIB-200 test sentences of 12 languages, and long documents
               (~5,000 words each, SIB-200 sentences joined), where the floor covers every
               wordpiece in consecutive 512-piece windows and the HF pipeline truncates
               (it reads only the first 512 pieces: faster, but most of the text is lost).
  qa           questions/s: ``mbert_qa`` (``nlp.pipe``) vs the HF ``question-answering``
               pipeline vs the raw forward over the same windows (384 pieces, stride 128),
               again with the tokenizer call inside (floor) and pre-tokenized.
  translation  sentences/s: ``mbert_translator`` (``nlp.pipe``) vs a plain HF loop
               (tokenize, ``generate``, ``batch_decode``) on the same model and settings.
  train        examples/s of text-classification training from text: ``nlp.make_doc`` +
               ``Example.from_dict`` + ``nlp.update`` steps as ``spacy train`` runs them
               (configs/textcat.cfg) vs a plain PyTorch loop (tokenizer call + AdamW) over
               ``AutoModelForSequenceClassification``, batches of 32.
               The training peak RSS of each side is measured too, each in a fresh process
               (the same imports; spaCy builds and initializes the pipeline as spacy train does).
  int8         ``spacy-mbert quantize`` pipelines (``--dtype int8`` and ``bf16``) on the SIB-200
               sentences beside the fp32 pipeline, the int8 and bf16-autocast raw forward and the
               fp32 floor; with ``qa``, the QA pipeline fp32 vs int8 vs bf16 (CPU only).
  load         ``spacy.load`` vs ``AutoModelForSequenceClassification.from_pretrained`` (+ the
               tokenizer), each in a fresh process: load time, then peak RSS, RSS, PSS and USS
               (``/proc/self/smaps_rollup``) after the load and again after the first forward
               pass on the same 64 sentences (memory-mapped weight pages are resident only once
               touched); all as increases over the process after its imports.

Encoders: the offline e5-small (``encoders/e5-small``) and ``mbert-shape``: a random-initialized
BERT with M-BERT-base's exact shape (12 layers, hidden 768, 12 heads, vocabulary 119,547),
built here once (WordPiece vocabulary trained on the SIB-200 training text, embedding
matrix sized as M-BERT's), so that speed reflects real M-BERT cost.

    python benchmarks/speed.py --encoder encoders/e5-small --encoder mbert-shape --threads 2
    python benchmarks/speed.py --gpu-id 0 --mixed-precision     # the same on a GPU
"""

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import sib200_textcat
import tatoeba_translation
import typer
import xquad_qa
from common import (
    DEFAULT_SHARED_DATA,
    RESULTS,
    ROOT,
    machine_info,
    markdown_table,
    pin_threads,
    read_jsonl,
    require_dir,
)

# The benchmarks' own language lists, so the speed inputs are the texts they score.
SIB_LANGS = sib200_textcat.LANGS
XQUAD_LANGS = xquad_qa.LANGS
TATOEBA_LANGS = tatoeba_translation.TRAINED + tatoeba_translation.UNSEEN
MBERT_SHAPE = dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, vocab_size=119547)


# --------------------------------------------------------------------------- inputs


def sib_sentences(data: Path, per_lang: int) -> List[str]:
    return [r["text"] for lang in SIB_LANGS for r in read_jsonl(data / "sib200" / lang / "test.jsonl")[:per_lang]]


def long_documents(data: Path, n_docs: int, words: int) -> List[str]:
    """Documents of ~``words`` whitespace words, each from one language's SIB-200 sentences."""
    docs = []
    for lang in (SIB_LANGS * n_docs)[:n_docs]:
        sentences = [
            r["text"]
            for split in ("train", "dev", "test")
            for r in read_jsonl(data / "sib200" / lang / f"{split}.jsonl")
        ]
        # Chinese and Japanese have no spaces: count characters / 2 as "words" for them.
        size = (lambda s: len(s) // 2) if lang in ("zho_Hans", "jpn_Jpan") else (lambda s: len(s.split()))
        doc, count = [], 0
        for sentence in sentences * 10:
            if count >= words:
                break
            doc.append(sentence)
            count += size(sentence)
        docs.append(" ".join(doc))
    return docs


def xquad_questions(data: Path, per_lang: int) -> List[dict]:
    out = []
    for lang in XQUAD_LANGS:
        articles = json.loads((data / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf8"))["data"][36:]
        qas = [
            {"question": qa["question"], "context": p["context"], "lang": lang, "answers": qa["answers"]}
            for a in articles
            for p in a["paragraphs"]
            for qa in p["qas"]
        ]
        out += qas[:per_lang]
    return out


def tatoeba_pairs(data: Path, per_lang: int) -> List[tuple]:
    out = []
    for lang in TATOEBA_LANGS:
        lines = (data / "tatoeba" / f"{lang}-eng.tsv").read_text(encoding="utf8").splitlines()[-per_lang:]
        out += [tuple(line.split("\t", 1)) for line in lines]
    return out


# --------------------------------------------------------------------------- encoders


def resolve_encoder(name: str, data: Path, cache: Path) -> Path:
    if name != "mbert-shape":
        return Path(name)
    out = cache / "mbert-shape"
    if not (out / "config.json").exists():
        build_mbert_shape(out, [data / "sib200" / lang / "train.jsonl" for lang in SIB_LANGS])
    return out


def build_mbert_shape(out: Path, texts: Sequence[Path]) -> None:
    """Random BERT with M-BERT-base's shape; the WordPiece vocabulary is trained on ``texts``."""
    import torch
    from transformers import BertConfig, BertModel

    from spacy_mbert.checkpoints.tiny import build_tiny

    print(f"building a random M-BERT-shaped encoder in {out} ...", flush=True)
    build_tiny(out, texts=list(texts), vocab_size=30000, hidden_size=8, num_layers=1, num_heads=1, intermediate_size=8)
    shape = MBERT_SHAPE
    config = BertConfig.from_pretrained(str(out))
    config.update(
        dict(
            vocab_size=shape["vocab_size"],
            hidden_size=shape["hidden_size"],
            num_hidden_layers=shape["num_layers"],
            num_attention_heads=shape["num_heads"],
            intermediate_size=shape["intermediate_size"],
        )
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(out), safe_serialization=True)


def weight_bytes(encoder: Path) -> int:
    return sum(p.stat().st_size for p in encoder.glob("*.safetensors")) or sum(
        p.stat().st_size for p in encoder.glob("*.bin")
    )


# --------------------------------------------------------------------------- pipelines


def build_pipeline(config_name: str, encoder: Path, examples_fn: Callable, out: Path, overrides: Optional[dict] = None):
    """Assemble and initialize one of configs/*.cfg on ``encoder``, save it, load it back."""
    import spacy
    from spacy.util import load_config, load_model_from_config

    config = load_config(
        ROOT / "configs" / config_name, overrides={"paths.encoder": str(encoder), **(overrides or {})}, interpolate=True
    )
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: examples_fn(nlp))
    nlp.to_disk(out)
    return spacy.load(out)


def textcat_example(nlp, record: dict, labels: List[str]):
    """One training Example from a SIB-200 record, built from its text as ``spacy train``'s corpus reader does."""
    from spacy.training import Example

    return Example.from_dict(
        nlp.make_doc(record["text"]), {"cats": {label: float(label == record["label"]) for label in labels}}
    )


def textcat_examples(data: Path, n: int = 32):
    labels = json.loads((data / "sib200" / "labels.json").read_text(encoding="utf8"))["labels"]
    records = read_jsonl(data / "sib200" / "eng_Latn" / "train.jsonl")[:n]

    def make(nlp):
        return [textcat_example(nlp, r, labels) for r in records]

    return make, labels, records


def qa_examples(questions: List[dict]):
    from spacy.training import Example

    def make(nlp):
        examples = []
        for q in questions[:16]:
            reference = nlp.make_doc(q["context"])
            reference._.question = q["question"]
            answer = q["answers"][0]
            reference._.answers = [
                {
                    "text": answer["text"],
                    "start_char": answer["answer_start"],
                    "end_char": answer["answer_start"] + len(answer["text"]),
                }
            ]
            predicted = nlp.make_doc(q["context"])
            predicted._.question = q["question"]
            examples.append(Example(predicted, reference))
        return examples

    return make


def translation_examples(pairs: List[tuple]):
    from spacy.training import Example

    def make(nlp):
        examples = []
        for source, target in pairs:
            reference = nlp.make_doc(source)
            reference._.translation = target
            examples.append(Example(nlp.make_doc(source), reference))
        return examples

    return make


# --------------------------------------------------------------------------- timing


def alternate(systems: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, List[float]]:
    """Run each system once per repeat, in turn; seconds per run.

    Python's garbage collector runs a full collection before each timed run: a full
    collection of a process with torch, transformers and spaCy loaded takes about a
    second here, and otherwise lands in whichever run happens to trigger it.
    """
    times: Dict[str, List[float]] = {name: [] for name in systems}
    for name, run in systems.items():  # warm-up: first calls allocate and compile
        run()
    for _ in range(repeats):
        for name, run in systems.items():
            gc.collect()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


# The floor does the pipelines' work from the raw texts (tokenizer call, windowing, padding, forward);
# the ratios of each group are computed against it. The pre-tokenized row shows the tokenizer's share.
FLOOR = "raw forward + tokenization (floor)"
PRETOKENIZED = "raw forward, pre-tokenized (no tokenization)"


def textcat_windows(tokenizer, texts: List[str], long: bool) -> List[List[int]]:
    """[CLS] pieces [SEP] windows, shortest first: every piece of long texts in consecutive 510-piece windows."""
    room = 510
    windows = []
    for piece_ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        chunks = (
            [piece_ids[i : i + room] for i in range(0, max(1, len(piece_ids)), room)] if long else [piece_ids[:room]]
        )
        windows += [[tokenizer.cls_token_id] + chunk + [tokenizer.sep_token_id] for chunk in chunks]
    return sorted(windows, key=len)


def forward_windows(model, windows: List[List[int]], batch_size: int, pad: int, bf16: bool = False) -> None:
    """The raw forward over length-sorted ``windows``, padded per batch; argmax of the first output (the prediction).

    bf16: under CPU autocast to bfloat16 (matrix products in bf16, the rest in fp32).
    """
    import torch

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for begin in range(0, len(windows), batch_size):
            batch = windows[begin : begin + batch_size]
            width = len(batch[-1])
            input_ids = torch.tensor([w + [pad] * (width - len(w)) for w in batch], device=model.device)
            mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in batch], device=model.device)
            model(input_ids=input_ids, attention_mask=mask)[0].argmax(-1)


def raw_floors(
    model, tokenizer, tokenize: Callable[[], List[List[int]]], batch_size: int
) -> Dict[str, Callable[[], None]]:
    """The pre-tokenized row (windows made once, outside the timing) and the floor (``tokenize`` inside it)."""
    pad = tokenizer.pad_token_id or 0
    windows = tokenize()
    return {
        PRETOKENIZED: lambda: forward_windows(model, windows, batch_size, pad),
        FLOOR: lambda: forward_windows(model, tokenize(), batch_size, pad),
    }


def measure_textcat(
    nlp, model, tokenizer, texts: List[str], *, long: bool, repeats: int, device: int
) -> Dict[str, List[float]]:
    from transformers import pipeline

    hf = pipeline("text-classification", model=model, tokenizer=tokenizer, device=device)
    return alternate(
        {
            "spacy-mbert": lambda: list(nlp.pipe(texts, batch_size=64)),
            "HF pipeline": lambda: hf(texts, batch_size=64, truncation=True, max_length=512),
            **raw_floors(model, tokenizer, lambda: textcat_windows(tokenizer, texts, long), 64),
        },
        repeats,
    )


INT8_SPACY = "spacy-mbert int8 (quantize --dtype int8)"
BF16_SPACY = "spacy-mbert bf16 (quantize --dtype bf16)"
INT8_RAW = "raw forward int8 + tokenization"
BF16_RAW = "raw forward bf16 autocast + tokenization"


def measure_int8_textcat(
    nlp, quantized: Dict[str, object], model, tokenizer, texts: List[str], *, repeats: int
) -> Dict[str, List[float]]:
    """The quantized pipeline and the quantized raw forward beside the fp32 floor, and bf16 autocast."""
    import copy

    from spacy_mbert.encoder.quantize import quantize_network

    model_int8 = quantize_network(copy.deepcopy(model))
    pad = tokenizer.pad_token_id or 0

    def windows():
        return textcat_windows(tokenizer, texts, False)

    return alternate(
        {
            INT8_SPACY: lambda: list(quantized["int8"].pipe(texts, batch_size=64)),
            BF16_SPACY: lambda: list(quantized["bf16"].pipe(texts, batch_size=64)),
            "spacy-mbert": lambda: list(nlp.pipe(texts, batch_size=64)),
            INT8_RAW: lambda: forward_windows(model_int8, windows(), 64, pad),
            BF16_RAW: lambda: forward_windows(model, windows(), 64, pad, bf16=True),
            FLOOR: lambda: forward_windows(model, windows(), 64, pad),
        },
        repeats,
    )


def quantized_copies(pipeline_dir: Path) -> Dict[str, object]:
    """``spacy-mbert quantize --dtype int8`` and ``bf16`` of a saved pipeline, loaded."""
    import spacy

    from spacy_mbert.encoder.quantize import quantize_pipeline

    copies = {}
    for dtype in ("int8", "bf16"):
        out = pipeline_dir.with_name(f"{pipeline_dir.name}-{dtype}")
        quantize_pipeline(str(pipeline_dir), out, dtype=dtype)
        copies[dtype] = spacy.load(out)
    return copies


def qa_questions_pipe(nlp, questions: List[dict]) -> Callable[[], None]:
    def run():
        docs = []
        for q in questions:
            doc = nlp.make_doc(q["context"])
            doc._.question = q["question"]
            docs.append(doc)
        list(nlp.pipe(docs, batch_size=16))

    return run


def qa_windows(tokenizer, questions: List[dict]) -> List[List[int]]:
    """Question + context windows of 384 pieces, stride 128 (as both pipelines make them), shortest first."""
    features = tokenizer(
        [q["question"].lstrip() for q in questions],
        [q["context"] for q in questions],
        truncation="only_second",
        max_length=384,
        stride=128,
        return_overflowing_tokens=True,
    )
    return sorted(features["input_ids"], key=len)


def measure_qa(nlp, questions: List[dict], *, repeats: int, device: int) -> Dict[str, List[float]]:
    from transformers import pipeline

    from spacy_mbert.qa.model import get_tokenizer, get_transformer

    qa = nlp.get_pipe("mbert_qa")
    # eval(): a network rebuilt by spacy.load is in train mode (thinc's convention; mbert_qa
    # switches to eval for each prediction). The HF pipeline and the floor would run it with
    # dropout on: slower, and not the same answers.
    model, tokenizer = get_transformer(qa.model).eval(), get_tokenizer(qa.model)
    hf = pipeline("question-answering", model=model, tokenizer=tokenizer, device=device)
    return alternate(
        {
            "spacy-mbert": qa_questions_pipe(nlp, questions),
            "HF pipeline": lambda: hf(
                question=[q["question"] for q in questions],
                context=[q["context"] for q in questions],
                batch_size=16,
                max_seq_len=384,
                doc_stride=128,
                max_answer_len=30,
            ),
            **raw_floors(model, tokenizer, lambda: qa_windows(tokenizer, questions), 16),
        },
        repeats,
    )


def measure_translation(nlp, sources: List[str], *, repeats: int) -> Dict[str, List[float]]:
    import torch

    from spacy_mbert.encoder import get_shim
    from spacy_mbert.translation.generate import generation_config

    translator = nlp.get_pipe("mbert_translator")
    shim = get_shim(translator.model)
    seq2seq, tokenizer = shim.seq2seq.eval(), shim.tokenizer
    config = generation_config(translator.model, num_beams=translator.num_beams, max_length=translator.max_length)

    def plain():
        with torch.inference_mode():
            for begin in range(0, len(sources), 16):
                inputs = tokenizer(
                    sources[begin : begin + 16], padding=True, truncation=True, max_length=128, return_tensors="pt"
                ).to(shim.device)
                inputs.pop("token_type_ids", None)
                tokenizer.batch_decode(
                    shim.restricted_to_full(seq2seq.generate(**inputs, generation_config=config)),
                    skip_special_tokens=True,
                )

    return alternate(
        {"spacy-mbert": lambda: list(nlp.pipe(sources, batch_size=16)), "plain HF generate": plain}, repeats
    )


TRAIN_SPACY = "spacy-mbert (make_doc + Example.from_dict + nlp.update)"
TRAIN_TORCH = "plain PyTorch loop (tokenizer call + forward/backward + AdamW)"


def measure_training(
    nlp, model, tokenizer, records: List[dict], labels: List[str], *, steps: int, repeats: int
) -> Dict[str, List[float]]:
    """Seconds for ``steps`` updates of 32 examples from text: spaCy's training step vs a plain PyTorch loop.

    Both sides start from the same records' text inside the timed region: spaCy builds its
    Examples (tokenizing with ``nlp.make_doc``), the torch loop calls the HF tokenizer.
    spaCy's side is ``spacy train``'s step: ``nlp.update(sgd=False)``, then every trainable
    component's ``finish_update`` with the optimizer of configs/textcat.cfg.
    """
    from spacy.util import load_config, registry

    batches = [records[(i * 32) % len(records) :][:32] for i in range(steps)]
    shipped = load_config(ROOT / "configs" / "textcat.cfg", interpolate=True)
    sgd = registry.resolve({"optimizer": shipped["training"]["optimizer"]})["optimizer"]
    torch_step = plain_torch_step(model, tokenizer, labels)

    def spacy_steps():
        for batch in batches:
            spacy_train_step(nlp, [textcat_example(nlp, r, labels) for r in batch], sgd)

    def torch_steps():
        model.train()
        for batch in batches:
            torch_step(batch)
        model.eval()

    return alternate({TRAIN_SPACY: spacy_steps, TRAIN_TORCH: torch_steps}, repeats)


def spacy_train_step(nlp, examples, sgd) -> None:
    """One step as ``spacy train`` takes it: every backward pass, then every component's optimizer step."""
    nlp.update(examples, sgd=False, drop=0.1)
    for _, component in nlp.pipeline:
        if getattr(component, "is_trainable", False) and component.model not in (True, False, None):
            component.finish_update(sgd)
    sgd.step_schedules()


def plain_torch_step(model, tokenizer, labels: List[str]) -> Callable[[List[dict]], None]:
    """The plain loop's step, with AdamW set up as Hugging Face's Trainer does (no decay on biases
    and LayerNorm weights, global-norm clipping 1.0)."""
    import torch

    label_ids = {label: i for i, label in enumerate(labels)}
    # fused: the kernel spacy-mbert.AdamW.v1 uses (like for like).
    optimizer = torch.optim.AdamW(sib200_textcat.parameter_groups(model, 5e-5), lr=5e-5, fused=True)

    def step(batch: List[dict]) -> None:
        inputs = tokenizer(
            [r["text"] for r in batch], padding=True, truncation=True, max_length=512, return_tensors="pt"
        ).to(model.device)
        target = torch.tensor([label_ids[r["label"]] for r in batch], device=model.device)
        model(**inputs, labels=target).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return step


# Training's peak memory, each side in a fresh process (the same imports in both): spaCy builds
# the pipeline from configs/textcat.cfg and initializes it as spacy train does, the plain loop
# calls from_pretrained; then both train the same batches.
TRAIN_RSS_SCRIPT = r"""
import json, sys
kind, encoder, data, steps, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, sys.argv[6])
import torch
torch.set_num_threads(threads)
import spacy, spacy_mbert, transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from pathlib import Path
import speed
def peak_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) * 1024 / 1e6
make_examples, labels, records = speed.textcat_examples(Path(data), n=32 * steps)
batches = [records[i * 32 : i * 32 + 32] for i in range(steps)]
if kind == "spacy":
    from spacy.util import load_config, load_model_from_config
    config = load_config(speed.ROOT / "configs" / "textcat.cfg", overrides={"paths.encoder": encoder}, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    sgd = nlp.initialize(lambda: make_examples(nlp)[:32])
    for batch in batches:
        speed.spacy_train_step(nlp, [speed.textcat_example(nlp, r, labels) for r in batch], sgd)
else:
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=len(labels)).train()
    step = speed.plain_torch_step(model, AutoTokenizer.from_pretrained(encoder), labels)
    for batch in batches:
        step(batch)
print(json.dumps({"peak_rss_mb": peak_mb()}))
"""


def measure_training_rss(
    encoder: Path, data: Path, *, steps: int, repeats: int, threads: int
) -> Dict[str, List[float]]:
    """Peak RSS (MB, the whole process) of ``steps`` training steps, each system in a fresh process per repeat."""
    results: Dict[str, List[float]] = {TRAIN_SPACY: [], TRAIN_TORCH: []}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(threads))
    for _ in range(repeats):
        for name, kind in ((TRAIN_SPACY, "spacy"), (TRAIN_TORCH, "torch")):
            args = [kind, str(encoder), str(data), str(steps), str(threads), str(Path(__file__).parent)]
            out = subprocess.run(
                [sys.executable, "-c", TRAIN_RSS_SCRIPT, *args], capture_output=True, text=True, env=env
            )
            if out.returncode != 0:
                sys.exit(f"✘ training memory measurement failed ({name}):\n{out.stderr[-2000:]}")
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])
    return results


LOAD_SCRIPT = r"""
import gc, json, sys, time
kind, path, texts_file, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
import torch
torch.set_num_threads(threads)
# Imports (and spaCy's entry points) are paid once per process, not per model: warm them.
import spacy, spacy_mbert, transformers
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
import transformers.models.bert.modeling_bert
spacy.blank("xx")
def memory():  # MB: resident (RSS), proportional (PSS), unique (USS: private clean + dirty), kernel peak RSS (VmHWM)
    kb = {}
    for line in open("/proc/self/smaps_rollup"):
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            kb[parts[0].rstrip(":")] = int(parts[1])
    kb["VmHWM"] = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    mb = lambda k: k * 1024 / 1e6
    return {"peak_rss": mb(kb["VmHWM"]), "rss": mb(kb["Rss"]), "pss": mb(kb["Pss"]), "uss": mb(kb["Private_Clean"] + kb["Private_Dirty"])}
def reset_peak():  # restart the kernel's peak-RSS count at the current RSS, so the peak is the load's own
    try:
        open("/proc/self/clear_refs", "w").write("5")
        return True
    except OSError:
        return False  # then the peak is the process's lifetime peak: an upper bound
texts = json.load(open(texts_file))
gc.collect()
peak_reset = reset_peak()
before = memory()
def grown(now):  # increase over the process after its imports; the peak against the RSS it was reset to
    return {k: v - before["rss" if k == "peak_rss" else k] for k, v in now.items()}
start = time.perf_counter()
if kind == "spacy":
    nlp = spacy.load(path)
    run = lambda: list(nlp.pipe(texts, batch_size=64))
else:
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=7).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    def run():
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                model(**tokenizer(texts[i:i+64], padding=True, truncation=True, max_length=512, return_tensors="pt"))
load_seconds = time.perf_counter() - start
at_load = grown(memory())
start = time.perf_counter()
run()  # the first forward: it touches the memory-mapped weight pages
forward_seconds = time.perf_counter() - start
print(json.dumps({"load_seconds": load_seconds, "first_forward_seconds": forward_seconds, "peak_reset": peak_reset,
                  "baseline_mb": before, "load_mb": at_load, "first_forward_mb": grown(memory())}))
"""


def measure_load(
    pipeline_dir: Path, encoder: Path, texts: List[str], *, repeats: int, threads: int
) -> Dict[str, List[dict]]:
    results: Dict[str, List[dict]] = {"spacy.load": [], "from_pretrained": []}
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf8")
        for _ in range(repeats):
            for name, kind, path in (("spacy.load", "spacy", pipeline_dir), ("from_pretrained", "hf", encoder)):
                env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(threads))
                out = subprocess.run(
                    [sys.executable, "-c", LOAD_SCRIPT, kind, str(path), str(texts_file), str(threads)],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if out.returncode != 0:
                    sys.exit(f"✘ load measurement failed ({name}):\n{out.stderr[-2000:]}")
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


# --------------------------------------------------------------------------- driver


def main(
    encoder: List[str] = typer.Option(
        ["encoders/e5-small", "mbert-shape"],
        help="Checkpoint directories; 'mbert-shape' builds a random M-BERT-base-shaped model.",
    ),
    data: Path = typer.Option(DEFAULT_SHARED_DATA, help="Shared data folder with sib200/, xquad/ and tatoeba/."),
    tasks: str = typer.Option("textcat,long,qa,translation,train,load,int8", help="What to measure."),
    threads: int = typer.Option(2, help="Torch threads (all systems)."),
    repeats: int = typer.Option(3, help="Runs per system (median reported)."),
    per_lang: int = typer.Option(50, help="SIB-200 test sentences per language (12 languages)."),
    long_docs: int = typer.Option(2, help="Long documents."),
    long_words: int = typer.Option(5000, help="Words per long document."),
    qa_per_lang: int = typer.Option(10, help="XQuAD questions per language."),
    mt_per_lang: int = typer.Option(4, help="Tatoeba sentences per language (14 languages)."),
    train_steps: int = typer.Option(4, help="Training steps of 32 examples per timed run."),
    translator: Optional[Path] = typer.Option(
        None,
        help="A trained mbert_translator pipeline (e.g. from benchmarks/tatoeba_translation.py) to time for e5-small; otherwise an untrained one.",
    ),
    gpu_id: int = typer.Option(-1, help="GPU id; -1 for the CPU."),
    mixed_precision: bool = typer.Option(False, help="Mixed precision on the GPU."),
    name: str = typer.Option("speed", help="Results file stem under benchmarks/results/."),
    cache: Path = typer.Option(ROOT / "benchmarks" / "runs" / "speed", help="Built encoders and pipelines."),
    int8_sib200: Optional[Path] = typer.Option(
        None, help="sib200_textcat.py results run with --int8: the int8 accuracy loss of the shipped config's model."
    ),
    int8_xquad: Optional[Path] = typer.Option(None, help="xquad_qa.py results run with --int8: the int8 F1 loss."),
):
    require_dir(data / "sib200", "SIB-200")
    pin_threads(threads)
    import spacy
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import spacy_mbert  # noqa: F401

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    device = gpu_id if gpu_id >= 0 else -1
    cache.mkdir(parents=True, exist_ok=True)
    wanted = set(tasks.split(","))
    sentences = sib_sentences(data, per_lang)
    docs = long_documents(data, long_docs, long_words)
    inputs = {"textcat": sentences, "long": docs}
    results: Dict[str, dict] = {}
    for enc_name in encoder:
        path = resolve_encoder(enc_name, data, cache)
        label = "mbert-shape (random)" if enc_name == "mbert-shape" else Path(enc_name).name
        res = results[label] = {"weights_mb": weight_bytes(path) / 1e6}
        make_examples, labels, records = textcat_examples(data)
        overrides = {"components.transformer.model.mixed_precision": mixed_precision} if mixed_precision else {}
        nlp = build_pipeline("textcat.cfg", path, make_examples, cache / f"{label}-textcat", overrides)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=len(labels)).eval()
        if gpu_id >= 0:
            model.to(f"cuda:{gpu_id}")
        for task in ("textcat", "long"):
            if task in wanted:
                print(f"=== {label}: {task} ===", flush=True)
                texts = inputs[task]
                res[task] = {
                    "texts": len(texts),
                    "chars": sum(map(len, texts)),
                    "times": measure_textcat(
                        nlp, model, tokenizer, texts, long=task == "long", repeats=repeats, device=device
                    ),
                }
        if "int8" in wanted and gpu_id < 0:
            print(f"=== {label}: int8 ===", flush=True)
            quantized = quantized_copies(cache / f"{label}-textcat")
            res["int8"] = {
                "texts": len(sentences),
                "chars": sum(map(len, sentences)),
                "times": measure_int8_textcat(nlp, quantized, model, tokenizer, sentences, repeats=repeats),
            }
            del quantized
        if "train" in wanted:
            print(f"=== {label}: train ===", flush=True)
            train_records = read_jsonl(data / "sib200" / "eng_Latn" / "train.jsonl")
            res["train"] = {
                "examples": 32 * train_steps,
                "times": measure_training(
                    nlp, model, tokenizer, train_records, labels, steps=train_steps, repeats=repeats
                ),
            }
            if gpu_id < 0:
                res["train_rss_mb"] = measure_training_rss(
                    path, data, steps=train_steps, repeats=repeats, threads=threads
                )
        if "load" in wanted:
            print(f"=== {label}: load ===", flush=True)
            res["load"] = {
                "texts": len(sentences[:64]),
                "systems": measure_load(
                    cache / f"{label}-textcat", path, sentences[:64], repeats=repeats, threads=threads
                ),
            }
        del nlp, model
        if "qa" in wanted:
            print(f"=== {label}: qa ===", flush=True)
            questions = xquad_questions(data, qa_per_lang)
            qa_nlp = build_pipeline(
                "qa.cfg",
                path,
                qa_examples(questions),
                cache / f"{label}-qa",
                {"components.mbert_qa.allow_no_answer": False},
            )
            res["qa"] = {
                "questions": len(questions),
                "times": measure_qa(qa_nlp, questions, repeats=repeats, device=device),
            }
            if "int8" in wanted and gpu_id < 0:
                copies = quantized_copies(cache / f"{label}-qa")
                systems = {
                    INT8_SPACY: qa_questions_pipe(copies["int8"], questions),
                    BF16_SPACY: qa_questions_pipe(copies["bf16"], questions),
                    "spacy-mbert": qa_questions_pipe(qa_nlp, questions),
                }
                res["qa_int8"] = {"questions": len(questions), "times": alternate(systems, repeats)}
                del copies
            del qa_nlp
        if "translation" in wanted:
            print(f"=== {label}: translation ===", flush=True)
            pairs = tatoeba_pairs(data, mt_per_lang)
            if translator is not None and label == "e5-small":
                mt_nlp, trained = spacy.load(translator), True
            else:
                mt_nlp, trained = (
                    build_pipeline(
                        "translation.cfg",
                        path,
                        translation_examples(pairs),
                        cache / f"{label}-mt",
                        {"components.mbert_translator.max_length": 32},
                    ),
                    False,
                )
            res["translation"] = {
                "sentences": len(pairs),
                "trained": trained,
                "times": measure_translation(mt_nlp, [s for s, _ in pairs], repeats=repeats),
            }
            del mt_nlp
        (RESULTS / f"{name}.json").write_text(json.dumps({"results": results}, indent=1), encoding="utf8")
    write_report(
        name,
        results,
        threads=threads,
        repeats=repeats,
        gpu_id=gpu_id,
        mixed_precision=mixed_precision,
        command="python benchmarks/speed.py " + " ".join(sys.argv[1:]),
        accuracy=int8_accuracy(int8_sib200, int8_xquad),
    )


def int8_accuracy(sib200: Optional[Path], xquad: Optional[Path]) -> dict:
    """<dtype>_sib200_accuracy_loss and <dtype>_xquad_f1_loss (points, fp32 minus quantized) from the accuracy benchmarks."""
    keys = {}
    for dtype in ("int8", "bf16"):
        if sib200 is not None:
            runs = json.loads(sib200.read_text(encoding="utf8"))["results"]["a"].values()
            keys[f"{dtype}_sib200_accuracy_loss"] = statistics.mean(
                100 * (r["average"] - r[dtype]["average"]) for r in runs
            )
        if xquad is not None:
            keys[f"{dtype}_xquad_f1_loss"] = json.loads(xquad.read_text(encoding="utf8"))[dtype]["f1_loss"]
    return keys


def _median(values: List[float]) -> float:
    return statistics.median(values)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


THROUGHPUT = (
    ("textcat", "texts/s", "texts"),
    ("long", "texts/s", "texts"),
    ("qa", "questions/s", "questions"),
    ("translation", "sentences/s", "sentences"),
    ("train", "examples/s", "examples"),
    ("int8", "texts/s", "texts"),
    ("qa_int8", "questions/s", "questions"),
)
# (key in a load run, what the row measures, its seconds key, what those seconds are)
MEMORY_STAGES = (
    ("load_mb", "load only", "load_seconds", "load"),
    ("first_forward_mb", "load + first forward on {n} sentences", "first_forward_seconds", "first forward"),
)
MEMORY_FIGURES = (("peak_rss", "peak RSS"), ("rss", "RSS"), ("pss", "PSS"), ("uss", "USS"))


def baseline(systems: List[str]) -> str:
    """The system a group's chart bars are relative to: the tokenizing floor, else the last (the plain HF loop)."""
    return FLOOR if FLOOR in systems else systems[-1]


def throughput_rows(label: str, res: dict):
    """Every system of every task, favourable or not: table rows, chart bars and summary lines."""
    rows, chart, summary = [], [], []
    for task, unit, count_key in THROUGHPUT:
        if task not in res:
            continue
        times = {system: _median(t) for system, t in res[task]["times"].items()}
        systems = list(times)
        for system, seconds in times.items():
            chars = f"{res[task]['chars'] / seconds:,.0f}" if "chars" in res[task] else ""
            ratios = ", ".join(f"{times[other] / seconds:.2f}x {other}" for other in systems if other != system)
            rows.append(
                [
                    label,
                    TASK_NAMES[task],
                    system,
                    f"{res[task][count_key] / seconds:.2f} {unit}",
                    chars,
                    f"{seconds:.2f}",
                    ratios,
                ]
            )
            chart.append((f"{label}\n{TASK_NAMES[task]}", system, times[baseline(systems)] / seconds))
        ours = systems[0]  # spacy-mbert is listed first
        summary += [
            f"- {label}, {TASK_NAMES[task]}: {ours} at {times[other] / times[ours]:.2f}x the speed of {other}"
            for other in systems[1:]
        ]
    return rows, chart, summary


def memory_rows(label: str, load: dict, weights_mb: float) -> List[list]:
    rows = []
    for system, runs in load["systems"].items():
        for stage, what, seconds_key, seconds_what in MEMORY_STAGES:
            figures = {key: _median([r[stage][key] for r in runs]) for key, _ in MEMORY_FIGURES}
            rows.append(
                [
                    label,
                    system,
                    what.format(n=load["texts"]),
                    f"{_median([r[seconds_key] for r in runs]):.2f} s {seconds_what}",
                    f"{figures['peak_rss']:,.0f} MB ({figures['peak_rss'] / weights_mb:.2f}x weights)",
                    f"{figures['rss']:,.0f} MB",
                    f"{figures['pss']:,.0f} MB ({figures['pss'] / weights_mb:.2f}x weights)",
                    f"{figures['uss']:,.0f} MB",
                ]
            )
    return rows


def memory_summary(label: str, load: dict) -> List[str]:
    """spacy.load against from_pretrained: load time, then every memory figure at both stages."""
    ours, theirs = load["systems"]["spacy.load"], load["systems"]["from_pretrained"]

    def pair(get, unit: str) -> str:
        a, b = _median([get(r) for r in ours]), _median([get(r) for r in theirs])
        number = ".2f" if unit == "s" else ",.0f"
        return f"{a:{number}} vs {b:{number}} {unit} ({_ratio(a, b)})"

    lines = [
        f"- {label}, load time, spacy.load vs from_pretrained: {pair(lambda r: r['load_seconds'], 's')}",
        f"- {label}, first forward time, spacy.load vs from_pretrained: {pair(lambda r: r['first_forward_seconds'], 's')}",
    ]
    for stage, what, _, _ in MEMORY_STAGES:
        figures = ", ".join(f"{name} {pair(lambda r: r[stage][key], 'MB')}" for key, name in MEMORY_FIGURES)
        lines.append(
            f"- {label}, memory after {what.format(n=load['texts'])}, spacy.load vs from_pretrained: {figures}"
        )
    return lines


def encoder_key(label: str) -> str:
    return "mbert-shape" if label.startswith("mbert-shape") else label


def headline(results: dict, accuracy: dict) -> dict:
    """The issue's keys: ratios per encoder (above 1: spacy-mbert faster / int8 faster; memory: above 1
    means spacy-mbert needs more), and the int8 accuracy figures of the accuracy benchmarks."""
    keys: Dict[str, object] = {
        "train_vs_plain_torch": {},
        "train_peak_rss_vs_plain_torch": {},
        "int8_vs_fp32_floor": {},
    }
    for label, res in results.items():
        key = encoder_key(label)
        times = {
            task: {k: _median(v) for k, v in value["times"].items()}
            for task, value in res.items()
            if isinstance(value, dict) and "times" in value
        }
        if "train" in times:
            keys["train_vs_plain_torch"][key] = times["train"][TRAIN_TORCH] / times["train"][TRAIN_SPACY]
        if "train_rss_mb" in res:
            rss = {k: _median(v) for k, v in res["train_rss_mb"].items()}
            keys["train_peak_rss_vs_plain_torch"][key] = rss[TRAIN_SPACY] / rss[TRAIN_TORCH]
        if "int8" in times:
            keys["int8_vs_fp32_floor"][key] = times["int8"][FLOOR] / times["int8"][INT8_SPACY]
            keys.setdefault("bf16_vs_fp32_floor", {})[key] = times["int8"][FLOOR] / times["int8"][BF16_SPACY]
        if "qa_int8" in times and key == "e5-small":
            keys["int8_qa_speedup"] = times["qa_int8"]["spacy-mbert"] / times["qa_int8"][INT8_SPACY]
            keys["bf16_qa_speedup"] = times["qa_int8"]["spacy-mbert"] / times["qa_int8"][BF16_SPACY]
    keys.update(accuracy)
    return keys


def train_rss_rows(label: str, res: dict) -> List[str]:
    if "train_rss_mb" not in res:
        return []
    rss = {k: _median(v) for k, v in res["train_rss_mb"].items()}
    a, b = rss[TRAIN_SPACY], rss[TRAIN_TORCH]
    return [
        f"- {label}, training peak RSS (whole process, fresh per run), spacy-mbert vs plain PyTorch loop: "
        f"{a:,.0f} vs {b:,.0f} MB ({_ratio(a, b)})"
    ]


def write_report(
    name: str,
    results: dict,
    *,
    threads: int,
    repeats: int,
    gpu_id: int,
    mixed_precision: bool,
    command: str,
    accuracy: Optional[dict] = None,
) -> None:
    info = machine_info(threads)
    info["device"] = f"cuda:{gpu_id}" + (" mixed precision" if mixed_precision else "") if gpu_id >= 0 else "cpu"
    rows, chart, summary, memory = [], [], [], []
    for label, res in results.items():
        task_rows, task_chart, task_summary = throughput_rows(label, res)
        rows += task_rows
        chart += task_chart
        summary += task_summary
        summary += train_rss_rows(label, res)
        if "load" in res:
            memory += memory_rows(label, res["load"], res["weights_mb"])
            summary += memory_summary(label, res["load"])
    keys = headline(results, accuracy or {})
    summary += ["", "Headline keys (`speed.json`):", "", "```", json.dumps(keys, indent=1), "```"]
    header = ["encoder", "task", "system", "throughput", "chars/s", "median s", "ratios (time of other / time of this)"]
    memory_header = ["encoder", "system", "measured after", "median time", "peak RSS", "RSS", "PSS", "USS"]
    lines = [
        "# Speed and memory: spacy-mbert vs Hugging Face vs the raw model",
        "",
        f"Command: `{command}`",
        "",
        markdown_table(header, rows),
        "",
        f"Median of {repeats} runs per system, systems alternating, after one warm-up run each. `{FLOOR}` starts from the "
        f"raw texts (HF tokenizer call, windowing, padding and forward inside the timed region); `{PRETOKENIZED}` is the same "
        "forward on windows tokenized beforehand. Training starts from text on both sides: spaCy builds its Examples "
        "(`nlp.make_doc` + `Example.from_dict`) inside the timed region, the torch loop calls the tokenizer inside it. "
        + "; ".join(f"{label}: weights {res['weights_mb']:,.0f} MB" for label, res in results.items())
        + ".",
        "",
    ]
    if memory:
        lines += [
            "## Load and memory (each system in a fresh process)",
            "",
            markdown_table(memory_header, memory),
            "",
            "Memory is the increase over the same process after its imports, from `/proc/self/smaps_rollup` and the kernel's "
            "peak RSS (`VmHWM`, reset before the load): *load only* right after `spacy.load` / `from_pretrained` + tokenizer, "
            "when memory-mapped weights may not be resident yet; *load + first forward* after one forward pass over the same "
            "sentences (weight pages touched), the peak covering load and forward. PSS divides shared pages among the "
            "processes mapping them; USS is this process's private pages (Private_Clean + Private_Dirty).",
            "",
        ]
    lines += [
        "## Summary (every ratio, favourable or not)",
        "",
        "Speed ratios: time of the other system / time of spacy-mbert (above 1: spacy-mbert is faster). "
        "Load ratios: spacy.load / from_pretrained (above 1: spacy.load takes longer or uses more).",
        "",
        *summary,
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
    ]
    report = "\n".join(lines)
    (RESULTS / f"{name}.md").write_text(report, encoding="utf8")
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"machine": info, "command": command, **keys, "results": results}, indent=1), encoding="utf8"
    )
    if chart:
        draw_chart(chart, RESULTS / f"{name}.png", info)
    print(report)


TASK_NAMES = {
    "textcat": "textcat, SIB-200 sentences",
    "long": "textcat, long docs",
    "qa": "QA (XQuAD)",
    "translation": "translation (Tatoeba)",
    "train": "textcat training",
    "int8": "textcat int8 / bf16, SIB-200 sentences",
    "qa_int8": "QA int8 / bf16 (XQuAD)",
}


def draw_chart(chart, path: Path, info: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(group for group, _, _ in chart))
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(groups)), 4.5))
    systems = list(dict.fromkeys(system for _, system, _ in chart))
    width = 0.8 / max(1, max(sum(1 for g, _, _ in chart if g == group) for group in groups))
    for g, group in enumerate(groups):
        bars = [(s, v) for gg, s, v in chart if gg == group]
        for k, (system, value) in enumerate(bars):
            x = g + (k - (len(bars) - 1) / 2) * width
            ax.bar(x, value, width, color=f"C{systems.index(system) % 10}", label=system)
            ax.text(x, value, f"{value:.2f}", ha="center", va="bottom", fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper right")
    ax.set_xticks(range(len(groups)), groups, fontsize=7)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("speed relative to the group's baseline = 1.0\n(raw forward + tokenization, or the plain HF loop)")
    ax.set_title(f"spacy-mbert speed ({info['device']}, {info['threads']} threads)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    typer.run(main)
