"""Every shipped training config passes ``spacy debug config`` with real converted data."""

import pytest

from spacy_mbert.convert import convert

from .conftest import ROOT

CONFIGS = {
    "textcat.cfg": ("textcat", "textcat/train.jsonl", "textcat/dev.jsonl"),
    "textcat_multilabel.cfg": ("textcat", "textcat_multilabel/train.jsonl", "textcat_multilabel/dev.jsonl"),
    "qa.cfg": ("qa", "qa/train.json", "qa/dev.json"),
}


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_config_passes_debug_config(config_name, tmp_path, tiny_wordpiece_dir, capsys):
    from spacy.cli.debug_config import debug_config

    task, train, dev = CONFIGS[config_name]
    convert(task, ROOT / "corpus" / train, tmp_path / "train.spacy")
    convert(task, ROOT / "corpus" / dev, tmp_path / "dev.spacy")
    overrides = {"paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "dev.spacy"),
                 "paths.encoder": str(tiny_wordpiece_dir)}
    debug_config(ROOT / "configs" / config_name, overrides=overrides)
    assert "Config is valid" in capsys.readouterr().out
