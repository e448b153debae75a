"""scripts/smoke.py fails, naming the check, on a wrong label, no answer or an empty translation."""

import importlib.util
import subprocess
import sys
from types import SimpleNamespace

import pytest

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "smoke.py"


@pytest.fixture
def smoke(monkeypatch):
    spec = importlib.util.spec_from_file_location("smoke_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return module


def fake_pipeline(monkeypatch, smoke, *, cats, answers, translation):
    qa = SimpleNamespace(answer=lambda context, question: answers(context))

    def nlp(text):
        return SimpleNamespace(text=text, cats=cats, _=SimpleNamespace(translation=translation))

    nlp.path, nlp.pipe_names = "/fake", ["textcat", "mbert_qa", "mbert_translator"]
    nlp.get_pipe = lambda name: qa
    monkeypatch.setattr(smoke.spacy, "load", lambda name: nlp)


def year(context):
    start = context.index("1889")
    return [{"text": "1889", "start_char": start, "end_char": start + 4, "score": 0.9}]


def test_passes_with_the_expected_outputs(monkeypatch, smoke):
    fake_pipeline(monkeypatch, smoke, cats={"sports": 0.9, "food": 0.1}, answers=year, translation="I drink coffee.")
    assert smoke.main("xx_fake") == []


@pytest.mark.parametrize(
    "outputs, check",
    [
        ({"cats": {"sports": 0.2, "food": 0.8}}, "textcat gave 'food', expected 'sports'"),
        ({"cats": {}}, "textcat gave None"),
        ({"answers": lambda context: []}, "qa gave no answer"),
        ({"translation": ""}, "translation is empty"),
        ({"translation": "   "}, "translation is empty"),
        ({"translation": None}, "translation is empty"),
    ],
)
def test_each_check_can_fail(monkeypatch, smoke, outputs, check):
    good = {"cats": {"sports": 0.9, "food": 0.1}, "answers": year, "translation": "I drink coffee."}
    fake_pipeline(monkeypatch, smoke, **{**good, **outputs})
    failures = smoke.main("xx_fake")
    assert len(failures) == 1 and failures[0].startswith(check), failures


def test_expected_label_is_a_corpus_label(smoke):
    import json

    labels = json.loads((ROOT / "corpus" / "textcat" / "labels.json").read_text(encoding="utf8"))
    assert smoke.TEXTCAT_LABEL in labels


def test_exits_non_zero_with_one_line():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "/no/such/package"],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "", "HF_HUB_OFFLINE": "0"},
        timeout=120,
    )
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [
        "✘ run with HF_HUB_OFFLINE=1: the package must not need the Hub"
    ]


def test_outputs_only_checks_form_not_content(monkeypatch, smoke):
    """Checks "outputs" (tiny-encoder workflow runs) accept any label, no answer and an empty translation..."""
    fake_pipeline(monkeypatch, smoke, cats={"sports": 0.1, "food": 0.9}, answers=lambda context: [], translation="")
    assert smoke.main("xx_fake", outputs_only=True) == []


def test_outputs_only_still_fails_on_malformed_outputs(monkeypatch, smoke):
    """...but not a missing category score, an answer that is not a span of the context, or no translation string."""
    bad_span = [{"text": "Berlin", "start_char": 0, "end_char": 6, "score": 1.0}]
    fake_pipeline(monkeypatch, smoke, cats={}, answers=lambda context: bad_span, translation=None)
    failures = smoke.main("xx_fake", outputs_only=True)
    assert len(failures) == 3, failures
