"""Speed and memory, side by side: spacy-mbert vs Hugging Face vs the raw model (the floor).

One process run, identical inputs, thread count pinned, median over ``--repeats`` runs
(the systems alternate within each repeat, so machine noise hits them alike):

  textcat      characters/s and texts/s: spacy-mbert pipeline (``nlp.pipe``, configs/textcat.cfg),
               the HF ``text-classification`` pipeline (batched), and the raw
               ``AutoModelForSequenceClassification`` forward over length-sorted batches (floor).
               Two input sets: SIB-200 test sentences of 12 languages, and long documents
               (~5,000 words each, SIB-200 sentences joined), where the floor covers every
               wordpiece in consecutive 512-piece windows and the HF pipeline truncates
               (it reads only the first 512 pieces: faster, but most of the text is lost).
  qa           questions/s: ``mbert_qa`` (``nlp.pipe``) vs the HF ``question-answering``
               pipeline vs the raw forward over the same windows (384 pieces, stride 128).
  translation  sentences/s: ``mbert_translator`` (``nlp.pipe``) vs a plain HF loop
               (tokenize, ``generate``, ``batch_decode``) on the same model and settings.
  train        examples/s of text-classification training: ``nlp.update`` steps as
               ``spacy train`` runs them (configs/textcat.cfg) vs a plain PyTorch loop
               (AdamW) over ``AutoModelForSequenceClassification``, batches of 32.
  load         ``spacy.load`` time and peak resident memory (at load, and after inference)
               vs ``AutoModelForSequenceClassification.from_pretrained``, each in a fresh process.

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

import typer

from common import RESULTS, ROOT, DEFAULT_SHARED_DATA, machine_info, markdown_table, pin_threads, read_jsonl, require_dir

SIB_LANGS = ["eng_Latn", "deu_Latn", "fra_Latn", "spa_Latn", "zho_Hans", "arb_Arab", "hin_Deva",
             "rus_Cyrl", "jpn_Jpan", "swh_Latn", "tur_Latn", "vie_Latn"]
XQUAD_LANGS = ["en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro"]
TATOEBA_LANGS = ["deu", "fra", "spa", "ita", "por", "nld", "pol", "ara", "cmn", "hin", "jpn", "rus", "tur", "vie"]
MBERT_SHAPE = dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, vocab_size=119547)


# --------------------------------------------------------------------------- inputs


def sib_sentences(data: Path, per_lang: int) -> List[str]:
    return [r["text"] for lang in SIB_LANGS for r in read_jsonl(data / "sib200" / lang / "test.jsonl")[:per_lang]]


def long_documents(data: Path, n_docs: int, words: int) -> List[str]:
    """Documents of ~``words`` whitespace words, each from one language's SIB-200 sentences."""
    docs = []
    for lang in (SIB_LANGS * n_docs)[:n_docs]:
        sentences = [r["text"] for split in ("train", "dev", "test") for r in read_jsonl(data / "sib200" / lang / f"{split}.jsonl")]
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
        qas = [{"question": qa["question"], "context": p["context"], "lang": lang, "answers": qa["answers"]}
               for a in articles for p in a["paragraphs"] for qa in p["qas"]]
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

    from spacy_mbert.encoders.tiny import build_tiny

    print(f"building a random M-BERT-shaped encoder in {out} ...", flush=True)
    build_tiny(out, texts=list(texts), vocab_size=30000, hidden_size=8, num_layers=1, num_heads=1, intermediate_size=8)
    shape = MBERT_SHAPE
    config = BertConfig.from_pretrained(str(out))
    config.update(dict(vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"], num_hidden_layers=shape["num_layers"],
                       num_attention_heads=shape["num_heads"], intermediate_size=shape["intermediate_size"]))
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(out), safe_serialization=True)


def weight_bytes(encoder: Path) -> int:
    return sum(p.stat().st_size for p in encoder.glob("*.safetensors")) or sum(p.stat().st_size for p in encoder.glob("*.bin"))


# --------------------------------------------------------------------------- pipelines


def build_pipeline(config_name: str, encoder: Path, examples_fn: Callable, out: Path, overrides: Optional[dict] = None):
    """Assemble and initialize one of configs/*.cfg on ``encoder``, save it, load it back."""
    import spacy
    from spacy.util import load_config, load_model_from_config

    config = load_config(ROOT / "configs" / config_name, overrides={"paths.encoder": str(encoder), **(overrides or {})}, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: examples_fn(nlp))
    nlp.to_disk(out)
    return spacy.load(out)


def textcat_examples(data: Path, n: int = 32):
    from spacy.training import Example

    labels = json.loads((data / "sib200" / "labels.json").read_text(encoding="utf8"))["labels"]
    records = read_jsonl(data / "sib200" / "eng_Latn" / "train.jsonl")[:n]

    def make(nlp):
        return [Example.from_dict(nlp.make_doc(r["text"]), {"cats": {l: float(l == r["label"]) for l in labels}}) for r in records]

    return make, labels, records


def qa_examples(questions: List[dict]):
    from spacy.training import Example

    def make(nlp):
        examples = []
        for q in questions[:16]:
            reference = nlp.make_doc(q["context"])
            reference._.question = q["question"]
            answer = q["answers"][0]
            reference._.answers = [{"text": answer["text"], "start_char": answer["answer_start"],
                                    "end_char": answer["answer_start"] + len(answer["text"])}]
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


def raw_textcat_floor(model, tokenizer, texts: List[str], *, batch_size: int = 64, long: bool = False) -> Callable[[], None]:
    """The raw forward over the same wordpieces: length-sorted batches, every piece of long texts in 512-piece windows."""
    import torch

    room = 510
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    windows = []
    for piece_ids in ids:
        chunks = [piece_ids[i : i + room] for i in range(0, max(1, len(piece_ids)), room)] if long else [piece_ids[:room]]
        windows += [[tokenizer.cls_token_id] + chunk + [tokenizer.sep_token_id] for chunk in chunks]
    windows.sort(key=len)
    pad = tokenizer.pad_token_id or 0

    def run():
        with torch.inference_mode():
            for begin in range(0, len(windows), batch_size):
                batch = windows[begin : begin + batch_size]
                width = len(batch[-1])
                input_ids = torch.tensor([w + [pad] * (width - len(w)) for w in batch])
                mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in batch])
                model(input_ids=input_ids, attention_mask=mask).logits.argmax(-1)

    return run


def measure_textcat(nlp, model, tokenizer, texts: List[str], *, long: bool, repeats: int, device: int) -> Dict[str, List[float]]:
    from transformers import pipeline

    hf = pipeline("text-classification", model=model, tokenizer=tokenizer, device=device)
    return alternate({
        "spacy-mbert": lambda: list(nlp.pipe(texts, batch_size=64)),
        "HF pipeline": lambda: hf(texts, batch_size=64, truncation=True, max_length=512),
        "raw forward (floor)": raw_textcat_floor(model, tokenizer, texts, long=long),
    }, repeats)


def measure_qa(nlp, questions: List[dict], *, repeats: int, device: int) -> Dict[str, List[float]]:
    import torch
    from transformers import pipeline

    from spacy_mbert.qa.model import get_tokenizer, get_transformer

    qa = nlp.get_pipe("mbert_qa")
    model, tokenizer = get_transformer(qa.model), get_tokenizer(qa.model)
    hf = pipeline("question-answering", model=model, tokenizer=tokenizer, device=device)
    features = tokenizer([q["question"].lstrip() for q in questions], [q["context"] for q in questions], truncation="only_second",
                         max_length=384, stride=128, return_overflowing_tokens=True)
    windows = sorted(features["input_ids"], key=len)

    def ours():
        docs = []
        for q in questions:
            doc = nlp.make_doc(q["context"])
            doc._.question = q["question"]
            docs.append(doc)
        list(nlp.pipe(docs, batch_size=16))

    def floor():
        pad = tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for begin in range(0, len(windows), 16):
                batch = windows[begin : begin + 16]
                width = len(batch[-1])
                model(input_ids=torch.tensor([w + [pad] * (width - len(w)) for w in batch]),
                      attention_mask=torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in batch]))

    return alternate({
        "spacy-mbert": ours,
        "HF pipeline": lambda: hf(question=[q["question"] for q in questions], context=[q["context"] for q in questions],
                                  batch_size=16, max_seq_len=384, doc_stride=128, max_answer_len=30),
        "raw forward (floor)": floor,
    }, repeats)


def measure_translation(nlp, sources: List[str], *, repeats: int) -> Dict[str, List[float]]:
    import torch

    from spacy_mbert.translation.model import generation_config, get_shim

    translator = nlp.get_pipe("mbert_translator")
    shim = get_shim(translator.model)
    seq2seq, tokenizer = shim.seq2seq.eval(), shim.tokenizer
    config = generation_config(translator.model, num_beams=translator.num_beams, max_length=translator.max_length)

    def plain():
        with torch.inference_mode():
            for begin in range(0, len(sources), 16):
                inputs = tokenizer(sources[begin : begin + 16], padding=True, truncation=True, max_length=128, return_tensors="pt").to(shim.device)
                inputs.pop("token_type_ids", None)
                tokenizer.batch_decode(shim.restricted_to_full(seq2seq.generate(**inputs, generation_config=config)), skip_special_tokens=True)

    return alternate({"spacy-mbert": lambda: list(nlp.pipe(sources, batch_size=16)), "plain HF generate": plain}, repeats)


def measure_training(nlp, model, tokenizer, records: List[dict], labels: List[str], *, steps: int, repeats: int) -> Dict[str, List[float]]:
    """Seconds for ``steps`` updates of 32 examples: nlp.update (as spacy train) vs a plain PyTorch loop."""
    import torch
    from spacy.training import Example
    from spacy.util import load_config, registry

    batches = [records[(i * 32) % len(records):][:32] for i in range(steps)]
    # The optimizer of configs/textcat.cfg, as spacy train builds it.
    shipped = load_config(ROOT / "configs" / "textcat.cfg", interpolate=True)
    sgd = registry.resolve({"optimizer": shipped["training"]["optimizer"]})["optimizer"]
    example_batches = [[Example.from_dict(nlp.make_doc(r["text"]), {"cats": {l: float(l == r["label"]) for l in labels}}) for r in b] for b in batches]
    label_ids = {l: i for i, l in enumerate(labels)}
    torch_opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)

    def spacy_steps():
        for batch in example_batches:
            nlp.update(batch, sgd=sgd, drop=0.1)

    def torch_steps():
        model.train()
        for batch in batches:
            inputs = tokenizer([r["text"] for r in batch], padding=True, truncation=True, max_length=512, return_tensors="pt")
            loss = model(**inputs, labels=torch.tensor([label_ids[r["label"]] for r in batch])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            torch_opt.step()
            torch_opt.zero_grad()
        model.eval()

    return alternate({"spacy-mbert (nlp.update)": spacy_steps, "plain PyTorch loop": torch_steps}, repeats)


LOAD_SCRIPT = r"""
import json, resource, sys, threading, time
kind, path, texts_file, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
import torch
torch.set_num_threads(threads)
# Imports (and spaCy's entry points) are paid once per process, not per model: warm them.
import spacy, spacy_mbert, transformers
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
import transformers.models.bert.modeling_bert
spacy.blank("xx")
def rss():  # current resident set, MB
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6
class Sampler(threading.Thread):  # the highest resident set while the load runs
    def __init__(self):
        super().__init__(daemon=True); self.peak = rss(); self.running = True
    def run(self):
        while self.running:
            self.peak = max(self.peak, rss()); time.sleep(0.002)
texts = json.load(open(texts_file))
before = rss()
sampler = Sampler(); sampler.start()
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
seconds = time.perf_counter() - start
sampler.running = False; sampler.join()
load_peak = max(sampler.peak, rss()) - before
after_load = rss() - before
sampler = Sampler(); sampler.start()
run()
sampler.running = False; sampler.join()
print(json.dumps({"load_seconds": seconds, "load_peak_mb": load_peak, "after_load_mb": after_load,
                  "infer_peak_mb": max(sampler.peak, rss()) - before}))
"""


def measure_load(pipeline_dir: Path, encoder: Path, texts: List[str], *, repeats: int, threads: int) -> Dict[str, List[dict]]:
    results: Dict[str, List[dict]] = {"spacy.load": [], "from_pretrained": []}
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf8")
        for _ in range(repeats):
            for name, kind, path in (("spacy.load", "spacy", pipeline_dir), ("from_pretrained", "hf", encoder)):
                env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(threads))
                out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, kind, str(path), str(texts_file), str(threads)],
                                     capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    sys.exit(f"✘ load measurement failed ({name}):\n{out.stderr[-2000:]}")
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


# --------------------------------------------------------------------------- driver


def main(
    encoder: List[str] = typer.Option(["encoders/e5-small", "mbert-shape"], help="Checkpoint directories; 'mbert-shape' builds a random M-BERT-base-shaped model."),
    data: Path = typer.Option(DEFAULT_SHARED_DATA, help="Shared data folder with sib200/, xquad/ and tatoeba/."),
    tasks: str = typer.Option("textcat,long,qa,translation,train,load", help="What to measure."),
    threads: int = typer.Option(2, help="Torch threads (all systems)."),
    repeats: int = typer.Option(3, help="Runs per system (median reported)."),
    per_lang: int = typer.Option(50, help="SIB-200 test sentences per language (12 languages)."),
    long_docs: int = typer.Option(2, help="Long documents."),
    long_words: int = typer.Option(5000, help="Words per long document."),
    qa_per_lang: int = typer.Option(10, help="XQuAD questions per language."),
    mt_per_lang: int = typer.Option(4, help="Tatoeba sentences per language (14 languages)."),
    train_steps: int = typer.Option(4, help="Training steps of 32 examples per timed run."),
    translator: Optional[Path] = typer.Option(None, help="A trained mbert_translator pipeline (e.g. from benchmarks/tatoeba_translation.py) to time for e5-small; otherwise an untrained one."),
    gpu_id: int = typer.Option(-1, help="GPU id; -1 for the CPU."),
    mixed_precision: bool = typer.Option(False, help="Mixed precision on the GPU."),
    name: str = typer.Option("speed", help="Results file stem under benchmarks/results/."),
    cache: Path = typer.Option(ROOT / "benchmarks" / "runs" / "speed", help="Built encoders and pipelines."),
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
                res[task] = {"texts": len(texts), "chars": sum(map(len, texts)),
                             "times": measure_textcat(nlp, model, tokenizer, texts, long=task == "long", repeats=repeats, device=device)}
        if "train" in wanted:
            print(f"=== {label}: train ===", flush=True)
            train_records = read_jsonl(data / "sib200" / "eng_Latn" / "train.jsonl")
            res["train"] = {"examples": 32 * train_steps,
                            "times": measure_training(nlp, model, tokenizer, train_records, labels, steps=train_steps, repeats=repeats)}
        if "load" in wanted:
            print(f"=== {label}: load ===", flush=True)
            res["load"] = measure_load(cache / f"{label}-textcat", path, sentences[:64], repeats=repeats, threads=threads)
        del nlp, model
        if "qa" in wanted:
            print(f"=== {label}: qa ===", flush=True)
            questions = xquad_questions(data, qa_per_lang)
            qa_nlp = build_pipeline("qa.cfg", path, qa_examples(questions), cache / f"{label}-qa", {"components.mbert_qa.allow_no_answer": False})
            res["qa"] = {"questions": len(questions), "times": measure_qa(qa_nlp, questions, repeats=repeats, device=device)}
            del qa_nlp
        if "translation" in wanted:
            print(f"=== {label}: translation ===", flush=True)
            pairs = tatoeba_pairs(data, mt_per_lang)
            if translator is not None and label == "e5-small":
                mt_nlp, trained = spacy.load(translator), True
            else:
                mt_nlp, trained = build_pipeline("translation.cfg", path, translation_examples(pairs), cache / f"{label}-mt",
                                                 {"components.mbert_translator.max_length": 32}), False
            res["translation"] = {"sentences": len(pairs), "trained": trained,
                                  "times": measure_translation(mt_nlp, [s for s, _ in pairs], repeats=repeats)}
            del mt_nlp
        (RESULTS / f"{name}.json").write_text(json.dumps({"results": results}, indent=1), encoding="utf8")
    write_report(name, results, threads=threads, repeats=repeats, gpu_id=gpu_id, mixed_precision=mixed_precision,
                 command="python benchmarks/speed.py " + " ".join(sys.argv[1:]))


def _median(values: List[float]) -> float:
    return statistics.median(values)


def write_report(name: str, results: dict, *, threads: int, repeats: int, gpu_id: int, mixed_precision: bool, command: str) -> None:
    info = machine_info(threads)
    info["device"] = f"cuda:{gpu_id}" + (" mixed precision" if mixed_precision else "") if gpu_id >= 0 else "cpu"
    rows, chart = [], []
    for label, res in results.items():
        for task, unit, count_key in (("textcat", "texts/s", "texts"), ("long", "texts/s", "texts"), ("qa", "questions/s", "questions"),
                                      ("translation", "sentences/s", "sentences"), ("train", "examples/s", "examples")):
            if task not in res:
                continue
            times = res[task]["times"]
            systems = list(times)
            base = systems[-1]  # the floor / the baseline is listed last
            floor = _median(times[base])
            for system in systems:
                seconds = _median(times[system])
                rate = res[task][count_key] / seconds
                chars = f"{res[task]['chars'] / seconds:,.0f}" if "chars" in res[task] else ""
                ratios = ", ".join(f"{_median(times[other]) / seconds:.2f}x {other}" for other in systems if other != system)
                rows.append([label, TASK_NAMES[task], system, f"{rate:.2f} {unit}", chars, f"{seconds:.2f}", ratios])
                chart.append((f"{label}\n{TASK_NAMES[task]}", system, floor / seconds))
        if "load" in res:
            for system, runs in res["load"].items():
                rows.append([label, "load", system, f"{_median([r['load_seconds'] for r in runs]):.2f} s",
                             "", f"peak {_median([r['load_peak_mb'] for r in runs]):,.0f} MB at load "
                             f"({_median([r['load_peak_mb'] for r in runs]) / res['weights_mb']:.2f}x weights)",
                             f"resident after load {_median([r['after_load_mb'] for r in runs]):,.0f} MB; peak with inference "
                             f"{_median([r['infer_peak_mb'] for r in runs]):,.0f} MB"])
    header = ["encoder", "task", "system", "throughput", "chars/s", "median s", "ratios (time of other / time of this)"]
    lines = [
        "# Speed and memory: spacy-mbert vs Hugging Face vs the raw model",
        "",
        f"Command: `{command}`",
        "",
        markdown_table(header, rows),
        "",
        f"Median of {repeats} runs per system, systems alternating, after one warm-up run each. "
        + "; ".join(f"{label}: weights {res['weights_mb']:,.0f} MB" for label, res in results.items()) + ".",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
    ]
    report = "\n".join(lines)
    (RESULTS / f"{name}.md").write_text(report, encoding="utf8")
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": info, "command": command, "results": results}, indent=1), encoding="utf8")
    if chart:
        draw_chart(chart, RESULTS / f"{name}.png", info)
    print(report)


TASK_NAMES = {"textcat": "textcat, SIB-200 sentences", "long": "textcat, long docs", "qa": "QA (XQuAD)",
              "translation": "translation (Tatoeba)", "train": "textcat training"}


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
    ax.set_ylabel("speed relative to the last system of the group\n(raw forward floor or the HF loop) = 1.0")
    ax.set_title(f"spacy-mbert speed ({info['device']}, {info['threads']} threads)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    typer.run(main)
