"""Per-language evaluation: tiny bag-of-words textcat pipelines (no transformer), trained in-process."""

import json
from collections import defaultdict
from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import DocBin
from spacy.training import Example

from spacy_mbert.errors import DataFormatError, UserError
from spacy_mbert.evaluate import (
    TASK_SCORERS,
    Metric,
    evaluate,
    format_table,
    read_textcat_minimal,
    task_scorer,
)
from spacy_mbert.extensions import install_extensions
from spacy_mbert.textcat import scorer as textcat_scorer

install_extensions()

LABELS = ["NEG", "POS"]
TRAIN = [
    ("en", "good great fine", "POS"),
    ("en", "bad awful poor", "NEG"),
    ("en", "great movie", "POS"),
    ("en", "awful movie", "NEG"),
    ("de", "gut toll prima", "POS"),
    ("de", "schlecht mies doof", "NEG"),
    ("de", "toll film", "POS"),
    ("de", "mies film", "NEG"),
    ("fr", "bon super génial", "POS"),
    ("fr", "mauvais nul affreux", "NEG"),
    ("fr", "super film", "POS"),
    ("fr", "nul film", "NEG"),
]
# (lang or None, text, gold): several are deliberately wrong for the model, so accuracy differs per language.
GOLD = [
    ("en", "good fine", "POS"),
    ("en", "awful poor", "NEG"),
    ("en", "great movie", "NEG"),
    ("en", "bad", "POS"),
    ("de", "gut prima", "POS"),
    ("de", "mies doof", "NEG"),
    ("de", "toll", "NEG"),
    ("fr", "super génial", "POS"),
    ("fr", "nul affreux", "NEG"),
    (None, "great super", "POS"),
    (None, "schlecht nul", "POS"),
]
ML_LABELS = ["food", "price", "service"]
ML_TRAIN = [
    ("en", "tasty pizza", ["food"]),
    ("en", "cheap pizza", ["food", "price"]),
    ("en", "friendly waiter", ["service"]),
    ("de", "leckere suppe", ["food"]),
    ("de", "teuer kellner", ["price", "service"]),
    ("fr", "serveur aimable", ["service"]),
    ("fr", "cher repas", ["food", "price"]),
]
ML_GOLD = [
    ("en", "tasty cheap", ["food", "price"]),
    ("en", "friendly", ["service"]),
    ("en", "waiter pizza", ["food"]),
    ("de", "leckere", ["food"]),
    ("de", "teuer suppe", ["price"]),
    ("fr", "aimable cher", ["service", "price"]),
    (None, "repas", ["food"]),
]


def _bow(exclusive: bool):
    return {
        "@architectures": "spacy.TextCatBOW.v3",
        "exclusive_classes": exclusive,
        "ngram_size": 1,
        "no_output_layer": False,
        "length": 4096,
    }


def _train(factory: str, labels, train, *, exclusive: bool) -> Language:
    nlp = spacy.blank("xx")
    nlp.add_pipe(factory, config={"model": _bow(exclusive)})
    examples = []
    for _, text, gold in train:
        gold = [gold] if isinstance(gold, str) else gold
        cats = {label: float(label in gold) for label in labels}
        examples.append(Example.from_dict(nlp.make_doc(text), {"cats": cats}))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(30):
        nlp.update(examples, sgd=optimizer)
    return nlp


def _gold_docs(nlp, gold, labels):
    docs = []
    for code, text, labs in gold:
        labs = [labs] if isinstance(labs, str) else labs
        doc = nlp.make_doc(text)
        doc.cats = {label: float(label in labs) for label in labels}
        doc._.lang = code
        docs.append(doc)
    return docs


def _write_data(directory: Path, nlp, gold, labels, *, multilabel: bool):
    docbin = DocBin(store_user_data=True, docs=_gold_docs(nlp, gold, labels))
    spacy_path = directory / "gold.spacy"
    docbin.to_disk(spacy_path)
    jsonl_path = directory / "gold.jsonl"
    with jsonl_path.open("w", encoding="utf8") as file:
        for code, text, labs in gold:
            record = {"text": text, ("labels" if multilabel else "label"): labs}
            if code is not None:
                record["lang"] = code
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    return spacy_path, jsonl_path


@pytest.fixture(scope="module")
def textcat_setup(tmp_path_factory):
    directory = tmp_path_factory.mktemp("eval-textcat")
    nlp = _train("textcat", LABELS, TRAIN, exclusive=True)
    nlp.to_disk(directory / "model")
    spacy_path, jsonl_path = _write_data(directory, nlp, GOLD, LABELS, multilabel=False)
    return directory / "model", spacy_path, jsonl_path


@pytest.fixture(scope="module")
def multilabel_setup(tmp_path_factory):
    directory = tmp_path_factory.mktemp("eval-multilabel")
    nlp = _train("textcat_multilabel", ML_LABELS, ML_TRAIN, exclusive=False)
    nlp.to_disk(directory / "model")
    spacy_path, jsonl_path = _write_data(directory, nlp, ML_GOLD, ML_LABELS, multilabel=True)
    return directory / "model", spacy_path, jsonl_path


def _expected_groups(model_dir, gold, labels):
    """Examples per group, predicted independently of the module under test."""
    nlp = spacy.load(model_dir)
    refs = _gold_docs(nlp, gold, labels)
    preds = list(nlp.pipe([ref.text for ref in refs]))
    groups = defaultdict(list)
    for (code, _, _), pred, ref in zip(gold, preds, refs):
        eg = Example(pred, ref)
        groups[code or "unknown"].append(eg)
        groups["all"].append(eg)
    return nlp, groups


def _accuracy(examples):
    correct = 0
    for eg in examples:
        pred = max(eg.predicted.cats, key=eg.predicted.cats.get)
        gold = max(eg.reference.cats, key=eg.reference.cats.get)
        correct += pred == gold
    return correct / len(examples)


# --------------------------------------------------------------------------- textcat


def test_textcat_docbin_per_language(textcat_setup, tmp_path, capsys):
    model_dir, spacy_path, _ = textcat_setup
    out_json, out_png = tmp_path / "out" / "metrics.json", tmp_path / "out" / "chart.png"
    result = evaluate(model_dir, spacy_path, output_json=out_json, output_png=out_png, batch_size=4)
    nlp, groups = _expected_groups(model_dir, GOLD, LABELS)

    assert list(result["languages"]) == ["de", "en", "fr", "unknown"]
    assert {code: scores["n"] for code, scores in result["languages"].items()} == {
        "de": 3,
        "en": 4,
        "fr": 2,
        "unknown": 2,
    }
    assert result["all"]["n"] == len(GOLD)
    assert result["task"] == "textcat" and result["component"] == "textcat" and result["labels"] == LABELS
    accuracies = set()
    for code, examples in groups.items():
        scores = result["all"] if code == "all" else result["languages"][code]
        assert scores["accuracy"] == _accuracy(examples)
        expected = Scorer.score_cats(examples, "cats", labels=LABELS, multi_label=False)
        assert scores["macro_f"] == pytest.approx(expected["cats_macro_f"])
        for label in LABELS:
            assert scores["per_label"][label] == pytest.approx(expected["cats_f_per_type"][label])
        accuracies.add(scores["accuracy"])
    assert len(accuracies) > 2, "the toy model should score languages differently"
    # Same number as `spacy evaluate` (nlp.evaluate) on the whole set.
    spacy_scores = nlp.evaluate([Example(nlp.make_doc(eg.reference.text), eg.reference) for eg in groups["all"]])
    assert result["all"]["macro_f"] == pytest.approx(spacy_scores["cats_macro_f"])

    assert json.loads(out_json.read_text(encoding="utf8")) == json.loads(json.dumps(result))
    saved = json.loads(out_json.read_text(encoding="utf8"))
    assert saved["model"] == str(model_dir) and saved["data"] == str(spacy_path)
    assert set(saved["languages"]["de"]) >= {"n", "accuracy", "macro_f"}
    assert all(0.0 <= s["accuracy"] <= 1.0 for s in saved["languages"].values())
    assert out_png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    printed = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.split()}
    assert rows["en"][1] == "4" and rows["unknown"][1] == "2" and rows["all"][1] == str(len(GOLD))
    assert rows["all"][2] == f"{result['all']['accuracy'] * 100:.2f}"
    assert "macro-F1" in printed


def test_textcat_jsonl_matches_docbin(textcat_setup):
    model_dir, spacy_path, jsonl_path = textcat_setup
    from_docbin = evaluate(model_dir, spacy_path, silent=True)
    from_jsonl = evaluate(model_dir, jsonl_path, silent=True)
    assert from_jsonl["languages"] == from_docbin["languages"]
    assert from_jsonl["all"] == from_docbin["all"]
    assert from_jsonl["data"] == str(jsonl_path)


def test_minimal_jsonl_reader_matches(textcat_setup, monkeypatch):
    model_dir, spacy_path, jsonl_path = textcat_setup
    monkeypatch.setattr(textcat_scorer, "_textcat_reader", lambda: read_textcat_minimal)
    assert (
        evaluate(model_dir, jsonl_path, silent=True)["languages"]
        == evaluate(model_dir, spacy_path, silent=True)["languages"]
    )


def test_minimal_jsonl_reader_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "POS", "lang": "en"}\n{"text": "b"}\n', encoding="utf8")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: no label field"):
        read_textcat_minimal(path, nlp=spacy.blank("xx"))


def test_lang_option_fills_missing_codes(textcat_setup):
    model_dir, spacy_path, jsonl_path = textcat_setup
    for path in (spacy_path, jsonl_path):
        result = evaluate(model_dir, path, lang="en", silent=True)
        assert {code: s["n"] for code, s in result["languages"].items()} == {"de": 3, "en": 6, "fr": 2}


def test_loaded_pipeline_and_model_name(textcat_setup, tmp_path):
    model_dir, spacy_path, _ = textcat_setup
    nlp = spacy.load(model_dir)
    result = evaluate(nlp, spacy_path, output_png=tmp_path / "c.png", silent=True)
    assert result["model"] == "xx_pipeline"
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("suffix", [".spacy", ".jsonl"])
def test_unknown_gold_label(textcat_setup, tmp_path, suffix):
    model_dir, _, _ = textcat_setup
    nlp = spacy.load(model_dir)
    gold = GOLD[:3] + [("en", "meh", "NEUTRAL")]
    spacy_path, jsonl_path = _write_data(tmp_path, nlp, gold, LABELS + ["NEUTRAL"], multilabel=False)
    path = spacy_path if suffix == ".spacy" else jsonl_path
    with pytest.raises(UserError) as info:
        evaluate(model_dir, path, silent=True)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "'NEUTRAL'" in message and "NEG, POS" in message


def test_user_errors(textcat_setup, tmp_path):
    model_dir, spacy_path, _ = textcat_setup
    with pytest.raises(UserError, match="no such file"):
        evaluate(model_dir, tmp_path / "missing.spacy", silent=True)
    with pytest.raises(UserError, match=r"\.png"):
        evaluate(model_dir, spacy_path, output_png=tmp_path / "chart.svg", silent=True)
    with pytest.raises(UserError, match="cannot load pipeline"):
        evaluate(tmp_path / "no-model", spacy_path, silent=True)
    with pytest.raises(UserError, match="no component this command can evaluate"):
        evaluate(spacy.blank("xx"), spacy_path, silent=True)
    tsv = tmp_path / "data.tsv"
    tsv.write_text("a\tb\n", encoding="utf8")
    with pytest.raises(UserError, match=r"\.spacy or \.jsonl"):
        evaluate(model_dir, tsv, silent=True)
    broken = tmp_path / "broken.spacy"
    broken.write_bytes(b"not a docbin")
    with pytest.raises(DataFormatError, match="not a readable"):
        evaluate(model_dir, broken, silent=True)


def test_several_components_need_a_choice(textcat_setup):
    model_dir, spacy_path, _ = textcat_setup
    nlp = spacy.load(model_dir)
    nlp.add_pipe("textcat_multilabel", name="other", config={"model": _bow(False)})
    with pytest.raises(UserError, match="--component"):
        evaluate(nlp, spacy_path, silent=True)
    with pytest.raises(UserError, match="no component 'nope'"):
        evaluate(nlp, spacy_path, component="nope", silent=True)


# --------------------------------------------------------------------------- textcat_multilabel


def test_multilabel(multilabel_setup, tmp_path):
    model_dir, spacy_path, jsonl_path = multilabel_setup
    out_json = tmp_path / "ml.json"
    result = evaluate(model_dir, spacy_path, output_json=out_json, output_png=tmp_path / "ml.png", silent=True)
    nlp, groups = _expected_groups(model_dir, ML_GOLD, ML_LABELS)
    assert result["task"] == "textcat_multilabel"
    assert {code: s["n"] for code, s in result["languages"].items()} == {"de": 2, "en": 3, "fr": 1, "unknown": 1}
    threshold = nlp.get_pipe("textcat_multilabel").cfg["threshold"]
    for code, examples in groups.items():
        scores = result["all"] if code == "all" else result["languages"][code]
        expected = Scorer.score_cats(examples, "cats", labels=ML_LABELS, multi_label=True, threshold=threshold)
        for key in ("micro_f", "macro_f", "macro_auc"):
            assert scores[key] == pytest.approx(expected[f"cats_{key}"]), (code, key)
        assert "accuracy" not in scores
    spacy_scores = nlp.evaluate([Example(nlp.make_doc(eg.reference.text), eg.reference) for eg in groups["all"]])
    assert result["all"]["macro_auc"] == pytest.approx(spacy_scores["cats_macro_auc"])
    assert result["all"]["micro_f"] == pytest.approx(spacy_scores["cats_micro_f"])
    assert json.loads(out_json.read_text(encoding="utf8"))["all"]["n"] == len(ML_GOLD)
    assert (tmp_path / "ml.png").read_bytes()[:4] == b"\x89PNG"
    assert "macro-AUC" in format_table(result)
    from_jsonl = evaluate(model_dir, jsonl_path, silent=True)
    assert from_jsonl["languages"] == result["languages"]


# --------------------------------------------------------------------------- extensibility and CLI


@Language.factory("spacy_mbert_test_length_flag")
def _make_length_flag(nlp, name):
    def length_flag(doc):
        doc.user_data["long"] = len(doc) > 1
        return doc

    return length_flag


@pytest.fixture
def restore_task_scorers():
    saved = dict(TASK_SCORERS)
    yield
    TASK_SCORERS.clear()
    TASK_SCORERS.update(saved)


def test_adding_a_task_is_one_function(textcat_setup, restore_task_scorers):
    _, spacy_path, _ = textcat_setup

    @task_scorer("spacy_mbert_test_length_flag", metrics=(Metric("long", "long docs"),), main="long")
    def score_long(examples, pipe):
        return {"long": sum(eg.predicted.user_data["long"] for eg in examples) / len(examples)}

    nlp = spacy.blank("xx")
    nlp.add_pipe("spacy_mbert_test_length_flag")
    result = evaluate(nlp, spacy_path, silent=True)
    assert result["task"] == "spacy_mbert_test_length_flag"
    assert result["languages"]["de"] == {"n": 3, "long": pytest.approx(2 / 3)}
    assert "long docs" in format_table(result)


def test_cli_evaluate(textcat_setup, tmp_path):
    from typer.testing import CliRunner

    from spacy_mbert.cli import app

    commands = {command.name for command in app.registered_commands}
    assert "evaluate" in commands, (
        f"`spacy-mbert evaluate` is not registered in cli.py; commands: {sorted(map(str, commands))}"
    )
    model_dir, spacy_path, _ = textcat_setup
    out = tmp_path / "m.json"
    run = CliRunner().invoke(app, ["evaluate", str(model_dir), str(spacy_path), "--output", str(out)])
    assert run.exit_code == 0, run.output
    assert json.loads(out.read_text(encoding="utf8"))["all"]["n"] == len(GOLD)
    run = CliRunner().invoke(app, ["evaluate", str(model_dir), str(tmp_path / "missing.spacy")])
    assert run.exit_code == 1 and "no such file" in run.output
