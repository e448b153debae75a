"""Clear errors (issue #9, part 4): one line that names the problem and the fix.

Covered elsewhere, and not repeated here: a missing hub model offline, a missing directory,
a directory that is not a checkpoint, a checkpoint whose tokenizer is larger than its
embeddings, and corrupted transformer weights (tests/test_encoder.py); malformed training
files with file, line and field (tests/test_convert.py, tests/pretrain/test_data.py);
unknown labels in evaluation data (tests/test_evaluate.py::test_unknown_gold_label);
a GPU asked of `spacy-mbert pretrain` (tests/pretrain/test_cli.py, test_trainer.py).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Config

from spacy_mbert.corpus import create_corpus_reader
from spacy_mbert.encoder import load_pretrained
from spacy_mbert.errors import DataFormatError, EncoderNotFoundError, UserError

from ..conftest import ROOT, blank_xx, transformer_pipeline
from .conftest import (
    FRAMES,
    KEYWORDS,
    LABELS,
    make_qa_pipeline,
    make_translator_pipeline,
    textcat_examples,
)


def one_line(message: str) -> str:
    assert message and "\n" not in message.strip(), message
    return message


def _has_gpu() -> bool:
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


# ------------------------------------------------------------------ encoders that cannot be had


def _make_component(kind, name):
    nlp = make_qa_pipeline(name) if kind == "qa" else make_translator_pipeline(name)
    examples = []
    for text in ("code Paris.", "Hallo Welt."):
        gold = nlp.make_doc(text)
        gold._.question, gold._.answers, gold._.translation = "What is the code?", (), text
        predicted = nlp.make_doc(text)
        predicted._.question = gold._.question
        examples.append(Example(predicted, gold))
    return nlp, examples


@pytest.mark.parametrize("kind", ["qa", "translator"])
@pytest.mark.parametrize("case", ["hub-name-offline", "missing-directory", "not-a-checkpoint"])
def test_components_that_own_an_encoder_fail_clearly_when_it_cannot_be_had(kind, case, tmp_path, monkeypatch):
    """mbert_qa and mbert_translator load their encoders themselves; the transformer's are in test_encoder.py."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    if case == "hub-name-offline":
        name, fragments = (
            "bert-base-multilingual-cased",
            ["'bert-base-multilingual-cased'", "local directory", "init-encoder"],
        )
    elif case == "missing-directory":
        name, fragments = str(tmp_path / "no-such-encoder"), ["does not exist", "init-encoder"]
    else:
        (tmp_path / "weights").mkdir()
        (tmp_path / "weights" / "pytorch_model.bin").write_bytes(b"")
        name, fragments = (
            str(tmp_path / "weights"),
            ["not a Hugging Face checkpoint", "no config.json", "pytorch_model.bin"],
        )
    nlp, examples = _make_component(kind, name)
    with pytest.raises(EncoderNotFoundError) as info:
        nlp.initialize(lambda: examples)
    message = one_line(str(info.value))
    assert all(fragment in message for fragment in fragments), message


# ------------------------------------------------------------------ encoder and tokenizer of different vocabularies
#
# In this package the encoder's weights and its tokenizer both come from `name`. They can
# still come from different models in two ways: a config whose `tokenizer_config` points the
# tokenizer at another model's files, and a checkpoint directory whose tokenizer files were
# copied from another model.


def test_config_that_loads_another_models_tokenizer(tiny_wordpiece_dir, tiny_unigram_dir):
    """`tokenizer_config = {"tokenizer_file": ...}` with another model's tokenizer.json."""
    nlp = transformer_pipeline(
        tiny_wordpiece_dir,
        tokenizer_config={"use_fast": True, "tokenizer_file": str(tiny_unigram_dir / "tokenizer.json")},
    )
    with pytest.raises(UserError) as info:
        nlp.initialize()
    message = one_line(str(info.value))
    assert "belong to another model" in message and "embeddings" in message


def _checkpoint_with_foreign_tokenizer(weights_dir, tokenizer_dir, out):
    shutil.copytree(weights_dir, out)
    for path in out.iterdir():
        if path.name not in ("config.json", "model.safetensors"):
            path.unlink()
    for path in tokenizer_dir.iterdir():
        if path.name not in ("config.json", "model.safetensors"):
            shutil.copy(path, out / path.name)
    return out


@pytest.mark.parametrize("weights,tokenizer", [("wordpiece", "unigram"), ("unigram", "wordpiece")])
def test_checkpoint_with_a_same_size_tokenizer_from_another_model(
    weights, tokenizer, tiny_wordpiece_dir, tiny_unigram_dir, tmp_path
):
    """Another model's tokenizer of the same size (4,000 pieces each) used to load silently, every id
    meaning another piece; its padding id differs from the config's pad_token_id (0 vs 1 here)."""
    dirs = {"wordpiece": tiny_wordpiece_dir, "unigram": tiny_unigram_dir}
    mixed = _checkpoint_with_foreign_tokenizer(dirs[weights], dirs[tokenizer], tmp_path / "mixed")
    with pytest.raises(UserError) as info:
        load_pretrained(str(mixed), {"use_fast": True}, {})
    message = one_line(str(info.value))
    assert f"'{mixed}'" in message and "pad_token_id" in message and "another model" in message
    assert "tokenizer files saved with these weights" in message
    # The checkpoints themselves load.
    for path in dirs.values():
        load_pretrained(str(path), {"use_fast": True}, {})


def test_a_vocabulary_reused_with_larger_embeddings_is_not_a_mismatch(tiny_unigram_dir):
    """Multilingual-MiniLM and multilingual-e5-small keep BERT's pad_token_id = 0 next to XLM-R's
    <pad> = 1, with 250,037 embeddings for 250,002 pieces: they load. The same ids with equal
    sizes are the foreign-tokenizer case."""
    from transformers import AutoTokenizer, BertConfig

    from spacy_mbert.encoder import check_vocabularies_match

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_unigram_dir))
    assert tokenizer.pad_token_id == 1
    check_vocabularies_match("minilm-like", tokenizer, BertConfig(vocab_size=len(tokenizer) + 35, pad_token_id=0))
    with pytest.raises(UserError, match="pad_token_id = 0"):
        check_vocabularies_match("foreign", tokenizer, BertConfig(vocab_size=len(tokenizer), pad_token_id=0))


# ------------------------------------------------------------------ label sets that change between training and resuming


def _write_cats(path, nlp, rows):
    docbin = DocBin(store_user_data=True)
    for text, label, labels in rows:
        doc = nlp.make_doc(text)
        doc.cats = {other: float(other == label) for other in labels}
        doc._.lang = "en"
        docbin.add(doc)
    docbin.to_disk(path)
    return path


def _changed_label_rows():
    """The toy task with "weather" renamed "climate"."""
    rows = []
    for label, words in KEYWORDS.items():
        new_label = "climate" if label == "weather" else label
        new_labels = ["climate" if other == "weather" else other for other in LABELS]
        rows.extend((frame.format(word), new_label, new_labels) for word in words for frame in FRAMES)
    return rows


def test_resuming_a_trained_textcat_on_data_with_another_label_set(textcat_nlp, tmp_path):
    path = _write_cats(tmp_path / "train.spacy", textcat_nlp, _changed_label_rows())
    reader = create_corpus_reader(path)
    with pytest.raises(DataFormatError) as info:
        list(reader(textcat_nlp))
    message = one_line(str(info.value))
    assert str(path) in message and "'climate'" in message and "food, sports, weather" in message
    assert "from scratch" in message and "relabel" in message
    # The same data with the trained label set reads fine.
    rows = [
        (eg.reference.text, max(eg.reference.cats, key=eg.reference.cats.get), LABELS)
        for eg in textcat_examples(textcat_nlp)
    ]
    same = _write_cats(tmp_path / "same.spacy", textcat_nlp, rows)
    assert len(list(create_corpus_reader(same)(textcat_nlp))) == len(rows)


def test_label_check_leaves_fresh_classifiers_and_shared_data_alone(tmp_path):
    """A classifier that is not trained yet takes its labels from the data (no check); two trained
    classifiers may read their own labels from the same docs (no false alarm)."""
    nlp = blank_xx()
    bow = {"@architectures": "spacy.TextCatBOW.v3", "ngram_size": 1, "no_output_layer": False}
    # (An exclusive textcat refuses docs with two positive labels, so both are multilabel here.)
    nlp.add_pipe("textcat_multilabel", name="sentiment", config={"model": {**bow, "exclusive_classes": False}})
    nlp.add_pipe("textcat_multilabel", name="topics", config={"model": {**bow, "exclusive_classes": False}})
    docbin = DocBin(store_user_data=True)
    for text, sentiment, topic in [("good soup", "POS", "food"), ("bad rain", "NEG", "weather")]:
        doc = nlp.make_doc(text)
        doc.cats = {"POS": float(sentiment == "POS"), "NEG": float(sentiment == "NEG"), "food": 0.0, "weather": 0.0}
        doc.cats[topic] = 1.0
        docbin.add(doc)
    docbin.to_disk(tmp_path / "data.spacy")
    reader = create_corpus_reader(tmp_path / "data.spacy")
    assert len(list(reader(nlp))) == 2  # not trained yet: nothing to check against
    nlp.get_pipe("sentiment").initialize(lambda: reader(nlp), nlp=nlp, labels=["NEG", "POS"])
    nlp.get_pipe("topics").initialize(lambda: reader(nlp), nlp=nlp, labels=["food", "weather"])
    assert len(list(reader(nlp))) == 2  # every label belongs to one of the two
    _write_cats(tmp_path / "dev.spacy", nlp, [("so-so soup", "MIXED", ["POS", "NEG", "MIXED"])])
    with pytest.raises(DataFormatError, match="'MIXED'.*'sentiment' has NEG, POS; 'topics' has food, weather"):
        list(create_corpus_reader(tmp_path / "dev.spacy")(nlp))


def test_spacy_train_resume_with_another_label_set_stops_with_one_line(textcat_nlp, tmp_path):
    """`spacy train` with the trained transformer + textcat sourced, on data with a renamed label."""
    textcat_nlp.to_disk(tmp_path / "trained")
    config = Config().from_disk(ROOT / "configs" / "textcat.cfg", interpolate=False)
    config["components"]["transformer"] = {"source": str(tmp_path / "trained")}
    config["components"]["textcat"] = {"source": str(tmp_path / "trained")}
    config.to_disk(tmp_path / "resume.cfg")
    data = _write_cats(tmp_path / "train.spacy", textcat_nlp, _changed_label_rows())
    command = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(tmp_path / "resume.cfg"),
        "--output",
        str(tmp_path / "out"),
        "--paths.train",
        str(data),
        "--paths.dev",
        str(data),
        "--training.max_steps",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode != 0, result.stdout[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("spacy_mbert.errors.DataFormatError: ") and "'climate'" in last, result.stderr[-3000:]
    # (spaCy still writes model-last on the way out: the sourced model, untouched.)


def test_corrupt_training_docbin_is_named_by_spacy(tmp_path):
    """A .spacy file that is not a DocBin: spaCy's own E1014 (the file is the one in --paths.train)."""
    broken = tmp_path / "train.spacy"
    broken.write_bytes(b"\x00not a docbin")
    with pytest.raises(ValueError, match=r"E1014.*DocBin \(\.spacy\) format"):
        list(create_corpus_reader(broken)(blank_xx()))


# ------------------------------------------------------------------ unknown labels via the CLI


def test_cli_evaluate_unknown_labels_is_one_line(textcat_nlp, tmp_path):
    from typer.testing import CliRunner

    from spacy_mbert.cli import app

    textcat_nlp.to_disk(tmp_path / "model")
    gold = tmp_path / "gold.jsonl"
    lines = [
        {"text": "Hablamos de sopa.", "label": "food", "lang": "es"},
        {"text": "Es regnet.", "label": "climate", "lang": "de"},
    ]
    gold.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf8")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "model"), str(gold)])
    assert result.exit_code == 1, result.output
    message = one_line(result.output.strip())
    assert "'climate'" in message and "food, sports, weather" in message and "Traceback" not in result.output


# ------------------------------------------------------------------ a GPU asked for where there is none


@pytest.mark.skipif(_has_gpu(), reason="checks the message on machines without a usable GPU")
def test_cli_evaluate_gpu_without_gpu_is_one_line(textcat_nlp, tmp_path):
    from typer.testing import CliRunner

    from spacy_mbert.cli import app

    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"text": "Hablamos de sopa.", "label": "food", "lang": "es"}) + "\n", encoding="utf8")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "no-model-needed"), str(gold), "--gpu-id", "0"])
    assert result.exit_code == 1, result.output
    message = one_line(result.output.strip())
    assert "cannot use GPU 0" in message and "drop --gpu-id" in message


@pytest.mark.skipif(_has_gpu(), reason="checks the message on machines without a usable GPU")
def test_spacy_train_gpu_without_gpu_names_the_problem(tmp_path):
    """spaCy's own CLI: a traceback whose last line names the problem (not this package's to change)."""
    command = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(ROOT / "configs" / "textcat.cfg"),
        "--gpu-id",
        "0",
        "--paths.train",
        str(tmp_path / "x.spacy"),
        "--paths.dev",
        str(tmp_path / "x.spacy"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "GPU" in last, result.stderr[-2000:]
