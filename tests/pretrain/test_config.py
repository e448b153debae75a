import pytest

from spacy_mbert.errors import UserError
from spacy_mbert.pretrain.config import PretrainConfig, load_config_file, resolve_config, trajectory_differences

from ..conftest import ROOT

PROJECT_CFG = ROOT / "configs" / "pretrain.cfg"


def test_project_cfg_documents_the_defaults():
    assert load_config_file(PROJECT_CFG) == PretrainConfig().to_dict()


def test_options_override_the_file_which_overrides_defaults(tmp_path):
    cfg = tmp_path / "run.cfg"
    cfg.write_text('[pretrain]\nalpha = 0.5\nseed = 3\ntext = ["a.txt"]\nlr = 1e-4\n', encoding="utf8")
    config = resolve_config(cfg, {"seed": 4, "max_steps": 7, "alpha": None})
    assert (config.alpha, config.seed, config.max_steps, config.text, config.lr) == (0.5, 4, 7, ["a.txt"], 1e-4)
    assert config.batch_size == PretrainConfig().batch_size
    # A checkpoint's settings come below the file and the options.
    config = resolve_config(cfg, {"seed": 4}, base={"max_steps": 9, "seed": 1, "alpha": 0.9})
    assert (config.max_steps, config.seed, config.alpha) == (9, 4, 0.5)


@pytest.mark.parametrize(
    "body,match",
    [
        ("[pretrain]\nlearning_rate = 0.1\n", "unknown setting.*learning_rate.*valid keys"),
        ('[pretrain]\nmax_steps = "many"\n', "'max_steps' should be int"),
        ("[training]\nmax_steps = 3\n", r"no \[pretrain\] section"),
        ("[pretrain\nmax_steps = 3\n", "could not parse"),
    ],
)
def test_bad_config_files(tmp_path, body, match):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(body, encoding="utf8")
    with pytest.raises(UserError, match=match) as error:
        resolve_config(cfg, {"text": ["a.txt"]})
    assert str(cfg) in str(error.value)


def test_validation_errors(tmp_path):
    with pytest.raises(UserError, match="--text"):
        resolve_config(None, {})
    with pytest.raises(UserError, match="--mask-prob"):
        resolve_config(None, {"text": ["a"], "mask_prob": 1.5})
    with pytest.raises(UserError, match="--mixed-precision"):
        resolve_config(None, {"text": ["a"], "mixed_precision": "fp8"})
    with pytest.raises(UserError, match="2 --lang values for 3 --text"):
        resolve_config(None, {"text": ["a", "b", "c"], "lang": ["x", "y"]})
    with pytest.raises(UserError, match="Config file not found"):
        resolve_config(tmp_path / "missing.cfg", {"text": ["a"]})
    with pytest.raises(UserError, match="unknown setting"):
        resolve_config(None, {"text": ["a"], "learning_rate": 1})


def test_trajectory_differences_ignore_checkpointing_and_device():
    saved = PretrainConfig(text=["a"]).to_dict()
    now = PretrainConfig(text=["b"], checkpoint_every=5, gpu_id=0, lr=1e-3)
    assert trajectory_differences(saved, now) == ["lr: 5e-05 -> 0.001"]
