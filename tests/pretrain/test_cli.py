import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from spacy_mbert.cli import user_errors_as_messages
from spacy_mbert.pretrain.cli import pretrain_command

from .conftest import ENGLISH, MULTILINGUAL


@pytest.fixture(scope="module")
def app():
    # Registered the way spacy_mbert/cli.py registers it.
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("pretrain")(user_errors_as_messages(pretrain_command))
    app.command("other")(lambda: None)  # two commands, so "pretrain" is a subcommand
    return app


def invoke(app, *args):
    return CliRunner().invoke(app, ["pretrain", *map(str, args)], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})


def test_help_lists_the_options(app):
    result = invoke(app, "--help")
    assert result.exit_code == 0
    for option in ("--text", "--max-steps", "--resume", "--gpu-id", "--whole-word-mask", "--alpha", "--config"):
        assert option in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without a GPU")
def test_gpu_without_gpu_is_one_line(app, tiny_wordpiece_dir, tmp_path):
    result = invoke(app, tiny_wordpiece_dir, tmp_path / "out", "--text", ENGLISH, "--gpu-id", "0")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--gpu-id 0 asks for a GPU" in lines[0]


def test_bad_data_is_one_line(app, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n{oops}\n', encoding="utf8")
    result = invoke(app, tmp_path / "model", tmp_path / "out", "--text", bad)
    assert result.exit_code == 1
    assert f"{bad}:2: invalid JSON" in result.output and len(result.output.strip().splitlines()) == 1


def test_config_file_options_and_resume(app, tiny_wordpiece_dir, tmp_path):
    cfg = tmp_path / "run.cfg"
    cfg.write_text(
        "[pretrain]\nalpha = 0.5\nmax_steps = 100\nbatch_size = 4\nmax_length = 32\ncheckpoint_every = 2\n",
        encoding="utf8",
    )
    out = tmp_path / "out"
    common = ("--config", cfg, "--max-steps", 4, "--seed", 1)
    result = invoke(
        app,
        tiny_wordpiece_dir,
        out,
        "--text",
        MULTILINGUAL,
        "--text",
        ENGLISH,
        "--lang",
        "xx",
        "--lang",
        "en",
        *common,
        "--stop-at-step",
        2,
    )
    assert result.exit_code == 0, result.output
    assert "Stopped after step 2" in result.output
    result = invoke(app, tiny_wordpiece_dir, out, "--resume", *common)
    assert result.exit_code == 0, result.output
    assert "Wrote the pretrained model" in result.output and "held-out loss" in result.output
    settings = json.loads((out / "pretrain_config.json").read_text())["settings"]
    assert (settings["alpha"], settings["max_steps"], settings["seed"], settings["batch_size"]) == (0.5, 4, 1, 4)
    assert settings["text"] == [str(MULTILINGUAL), str(ENGLISH)] and settings["lang"] == ["xx", "en"]
    assert [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert (out / "model.safetensors").exists()
