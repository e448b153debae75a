"""Offline fixtures: tiny encoders built once per test run from the project's own corpus."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spacy_mbert.checkpoints.tiny import build_tiny
from spacy_mbert.convert import make_nlp

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SHARED_DATA = Path(os.environ.get("SPACY_MBERT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def corpus_text_files():
    files = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".txt", ".tsv", ".json", ".jsonl"))
    assert files, f"no corpus text under {CORPUS}"
    return files


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models run fastest on one thread; with 2+ threads on a busy 2-core machine,
    OpenMP spin-waiting makes them 10-50x slower. Session-wide, so that session and
    module fixtures (tiny encoders, trained pipelines) run on one thread too."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_wordpiece_dir(tmp_path_factory) -> Path:
    """An M-BERT-style checkpoint: cased WordPiece vocab.txt + tokenizer.json, random weights."""
    return build_tiny(tmp_path_factory.mktemp("tiny-wordpiece"), texts=corpus_text_files())


@pytest.fixture(scope="session")
def tiny_unigram_dir(tmp_path_factory) -> Path:
    """An XLM-R-style checkpoint whose tokenizer is only a tokenizer.json (like multilingual-e5)."""
    return build_tiny(tmp_path_factory.mktemp("tiny-unigram"), texts=corpus_text_files(), tokenizer_type="unigram")


THAI_SENTENCES = [
    "ภาษาไทยเป็นภาษาราชการของประเทศไทย",
    "มีผู้พูดมากกว่าหกสิบล้านคน",
    "ตลาดน้ำในกรุงเทพมีชื่อเสียงมาก",
    "ฝนตกหนักในฤดูมรสุม",
]
THAI_TEXT = " ".join(THAI_SENTENCES) + " "


@pytest.fixture(scope="session")
def tiny_thai_wordpiece_dir(tmp_path_factory) -> Path:
    """Like ``tiny_wordpiece_dir``, with Thai in its vocabulary training text.

    M-BERT knows the Thai characters; the project corpus has no Thai, so the shared tiny
    encoder reads every Thai phrase as one ``[UNK]``, which would hide how Thai is windowed.
    """
    out = tmp_path_factory.mktemp("tiny-thai")
    thai = out / "thai.txt"
    thai.write_text("\n".join(THAI_SENTENCES) + "\n", encoding="utf8")
    return build_tiny(out / "encoder", texts=corpus_text_files() + [thai])


@pytest.fixture
def offline_env(tmp_path):
    """Environment for a subprocess with no Hub access and an empty Hugging Face cache.

    huggingface_hub reads these variables at import time, so offline behaviour is
    tested in a fresh interpreter rather than by patching this one.
    """
    env = dict(os.environ)
    home = tmp_path / "empty-hf-home"
    home.mkdir(exist_ok=True)
    # transformers takes its cache from these (deprecated) variables before HF_HUB_CACHE: drop them.
    for legacy in ("TRANSFORMERS_CACHE", "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE"):
        env.pop(legacy, None)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"))
    return env


def run_python(code: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; return the completed process (text output)."""
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def blank_xx():
    """A blank multilingual pipeline with the BERT-aligned tokenizer."""
    return make_nlp()


def transformer_pipeline(encoder_dir, **model_config):
    nlp = blank_xx()
    config = {"@architectures": "spacy-mbert.MBertTransformer.v1", "name": str(encoder_dir), **model_config}
    nlp.add_pipe("transformer", config={"model": config})
    return nlp
