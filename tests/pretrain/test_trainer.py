import json
import shutil

import numpy
import pytest
import torch
from safetensors.numpy import load_file

from spacy_mbert.errors import DataFormatError, UserError
from spacy_mbert.pretrain import evaluate_perplexity, pretrain
from spacy_mbert.pretrain.trainer import _Run, find_checkpoints, lr_lambda

from ..conftest import transformer_pipeline
from .conftest import ENGLISH, MULTILINGUAL

TEXTS = [MULTILINGUAL, ENGLISH]
# Small enough for a few seconds on CPU; dropout on, so resuming must restore torch's RNG.
RESUME_SETTINGS = dict(
    texts=TEXTS,
    lang=["xx", "en"],
    max_steps=8,
    batch_size=4,
    grad_accum=2,
    max_length=32,
    lr=1e-3,
    checkpoint_every=4,
    eval_fraction=0.05,
    eval_max_docs=2,
    whole_word_mask=True,
    seed=3,
    progress=False,
    verbose=False,
)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines() if line.strip()]


def assert_same_weights(dir_a, dir_b):
    a, b = load_file(str(dir_a / "model.safetensors")), load_file(str(dir_b / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        numpy.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def straight_run(tiny_wordpiece_dir, tmp_path_factory):
    """8 steps without interruption."""
    return pretrain(tiny_wordpiece_dir, tmp_path_factory.mktemp("straight") / "out", **RESUME_SETTINGS)


def test_from_scratch_lowers_heldout_loss_and_writes_a_usable_checkpoint(tiny_wordpiece_dir, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    out = pretrain(
        tiny_wordpiece_dir,
        tmp_path / "out",
        texts=TEXTS,
        lang=["xx", "en"],
        max_steps=30,
        batch_size=16,
        max_length=64,
        lr=1e-3,
        checkpoint_every=10,
        keep_checkpoints=2,
        eval_fraction=0.1,
        progress=False,
    )
    evals = read_jsonl(out / "eval_log.jsonl")
    assert [e["step"] for e in evals] == [0, 10, 20, 30]
    assert set(evals[0]["per_lang"]) == {"ar", "de", "en", "es", "fr", "ja", "ru", "zh"}
    for scores in evals[-1]["per_lang"].values():
        assert scores["n_tokens"] > 0 and scores["perplexity"] == pytest.approx(numpy.exp(scores["loss"]))
    assert evals[-1]["all"]["loss"] < evals[0]["all"]["loss"] - 0.1, "held-out loss should drop"

    log = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 31))
    assert all(numpy.isfinite(r["loss"]) and sum(r["lang_counts"].values()) == 16 for r in log)
    assert log[0]["lr"] == 0.0 and max(r["lr"] for r in log) == pytest.approx(1e-3)

    assert [step for step, _ in find_checkpoints(out)] == [20, 30], "--keep-checkpoints 2"
    state = json.loads((out / "checkpoints" / "step-30" / "trainer_state.json").read_text())
    assert state["step"] == 30 and state["eval"]["all"]["loss"] == evals[-1]["all"]["loss"]
    summary = json.loads((out / "pretrain_config.json").read_text())
    assert summary["settings"]["max_steps"] == 30 and summary["settings"]["alpha"] == 0.7
    assert sum(summary["data"]["sampling_probabilities"].values()) == pytest.approx(1.0)
    heldout = read_jsonl(out / "heldout.jsonl")
    assert {d["lang"] for d in heldout} == set(evals[0]["per_lang"])

    # A standard Hugging Face checkpoint...
    assert AutoModelForMaskedLM.from_pretrained(str(out)).config.hidden_size == 64
    AutoModel.from_pretrained(str(out))
    # ...that spacy-mbert.MBertTransformer.v1 takes as `name`.
    nlp = transformer_pipeline(out)
    nlp.initialize()
    doc = nlp("The lighthouse is now a museum. 灯塔现在是博物馆。")
    assert doc._.trf_data.tensors[0].shape[-1] == 64

    # The held-out perplexity of any checkpoint, comparable with the run's eval_log.
    scores = evaluate_perplexity(out, out / "heldout.jsonl", max_length=64, batch_size=5)
    assert scores["all"]["loss"] == pytest.approx(evals[-1]["all"]["loss"], rel=1e-5)
    assert scores["per_lang"]["ja"]["n_tokens"] == evals[-1]["per_lang"]["ja"]["n_tokens"]
    base = evaluate_perplexity(
        tiny_wordpiece_dir, {"en": [d["text"] for d in heldout if d["lang"] == "en"]}, max_length=64
    )
    assert set(base["per_lang"]) == {"en"} and base["all"]["loss"] > scores["per_lang"]["en"]["loss"]


def test_resume_after_stop_equals_uninterrupted_run(straight_run, tiny_wordpiece_dir, tmp_path):
    out = tmp_path / "out"
    pretrain(tiny_wordpiece_dir, out, stop_at_step=4, **RESUME_SETTINGS)
    assert not (out / "config.json").exists() and [s for s, _ in find_checkpoints(out)] == [4]
    # Settings not given on resume come from the checkpoint.
    pretrain(tiny_wordpiece_dir, out, resume=True, progress=False, verbose=False)
    expected, got = read_jsonl(straight_run / "train_log.jsonl"), read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in got] == list(range(1, 9))
    assert got[4]["resumed_from"] == 4
    for before, after in zip(expected, got):
        assert after["loss"] == pytest.approx(before["loss"], abs=1e-5), f"step {after['step']}"
        assert after["lr"] == pytest.approx(before["lr"])
        assert after["lang_counts"] == before["lang_counts"]
    assert_same_weights(straight_run, out)
    assert [e["all"]["loss"] for e in read_jsonl(out / "eval_log.jsonl")] == pytest.approx(
        [e["all"]["loss"] for e in read_jsonl(straight_run / "eval_log.jsonl")], abs=1e-5
    )


def test_resume_after_crash_drops_unsaved_steps(straight_run, tiny_wordpiece_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    log_step = _Run._log_step

    def crash_at_step_6(self, file, record):
        log_step(self, file, record)
        if record["step"] == 6:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(_Run, "_log_step", crash_at_step_6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(tiny_wordpiece_dir, out, **RESUME_SETTINGS)
    monkeypatch.undo()
    assert [r["step"] for r in read_jsonl(out / "train_log.jsonl")] == [1, 2, 3, 4, 5, 6]
    pretrain(tiny_wordpiece_dir, out, resume=True, **RESUME_SETTINGS)
    got = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in got] == list(range(1, 9)), "steps 5-6 were redone, not duplicated"
    expected = read_jsonl(straight_run / "train_log.jsonl")
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in expected], abs=1e-5)
    assert_same_weights(straight_run, out)


def test_resume_refuses_changed_settings_or_data(straight_run, tiny_wordpiece_dir, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(straight_run, out)
    with pytest.raises(UserError, match="lr: 0.001 -> 0.002"):
        pretrain(tiny_wordpiece_dir, out, resume=True, **{**RESUME_SETTINGS, "lr": 2e-3})
    with pytest.raises(UserError, match="data differ"):
        pretrain(tiny_wordpiece_dir, out, resume=True, **{**RESUME_SETTINGS, "texts": [MULTILINGUAL], "lang": ["xx"]})
    with pytest.raises(UserError, match="--resume"):
        pretrain(tiny_wordpiece_dir, out, **RESUME_SETTINGS)
    # Resuming a finished run only re-saves the final model.
    pretrain(tiny_wordpiece_dir, out, resume=True, progress=False, verbose=False)
    assert len(read_jsonl(out / "train_log.jsonl")) == 8 and len(read_jsonl(out / "eval_log.jsonl")) == 3


def test_input_errors_come_before_loading_the_model(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "lang": "en"}\n{"txt": "oops"}\n', encoding="utf8")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: field \"text\" is missing"):
        pretrain(tmp_path / "no-such-model", tmp_path / "out", texts=[bad])
    with pytest.raises(UserError, match="--text"):
        pretrain(tmp_path / "no-such-model", tmp_path / "out")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without a GPU")
def test_gpu_request_without_gpu_is_a_user_error(tiny_wordpiece_dir, tmp_path):
    with pytest.raises(UserError, match="--gpu-id 0 asks for a GPU") as error:
        pretrain(tiny_wordpiece_dir, tmp_path / "out", texts=TEXTS, gpu_id=0)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="needs a GPU"):
        pretrain(tiny_wordpiece_dir, tmp_path / "out", texts=TEXTS, mixed_precision="bf16")
    with pytest.raises(UserError, match="asks for a GPU"):
        evaluate_perplexity(tiny_wordpiece_dir, ENGLISH, gpu_id=1)


def test_max_length_beyond_positions_is_a_user_error(tiny_wordpiece_dir, tmp_path):
    with pytest.raises(UserError, match="--max-length 1024 is longer than the model's 512"):
        pretrain(tiny_wordpiece_dir, tmp_path / "out", texts=[ENGLISH], max_length=1024, verbose=False)


def test_learning_rate_schedule():
    factor = lr_lambda(max_steps=10, warmup_steps=2)
    assert [round(factor(s), 3) for s in range(11)] == [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]


def test_unigram_tokenizer_model_trains(tiny_unigram_dir, tmp_path):
    out = pretrain(
        tiny_unigram_dir,
        tmp_path / "out",
        texts=[MULTILINGUAL],
        max_steps=3,
        batch_size=4,
        max_length=32,
        checkpoint_every=0,
        whole_word_mask=True,
        progress=False,
        verbose=False,
    )
    assert (out / "tokenizer.json").exists() and not (out / "checkpoints").exists()
    assert [e["step"] for e in read_jsonl(out / "eval_log.jsonl")] == [0, 3]
