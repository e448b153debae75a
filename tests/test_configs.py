"""Every shipped config passes ``spacy debug config`` with real converted data; the assembled
multitask config builds its pipeline from the pipelines it sources, as ``spacy assemble`` does."""

import pytest
from spacy.training.initialize import init_nlp
from spacy.util import load_config, load_model_from_config

from spacy_mbert.convert import convert

from .conftest import ROOT

CONFIGS = {
    "textcat.cfg": ("textcat", "textcat/train.jsonl", "textcat/dev.jsonl"),
    "textcat_multilabel.cfg": ("textcat", "textcat_multilabel/train.jsonl", "textcat_multilabel/dev.jsonl"),
    "qa.cfg": ("qa", "qa/train.json", "qa/dev.json"),
    "translation.cfg": ("translation", "translation/train.jsonl", "translation/dev.jsonl"),
}
# multitask.cfg sources its components from pipelines trained with these configs.
SOURCED = {"textcat": "textcat.cfg", "qa": "qa.cfg", "translation": "translation.cfg"}
# Not spacy train configs: read by `spacy-mbert pretrain` (tests/pretrain/test_config.py).
OTHER_CONFIGS = {"pretrain.cfg"}


def test_every_shipped_config_is_tested():
    shipped = {path.name for path in (ROOT / "configs").glob("*.cfg")}
    assert shipped == set(CONFIGS) | {"multitask.cfg"} | OTHER_CONFIGS


def converted(config_name, tmp_path):
    task, train, dev = CONFIGS[config_name]
    convert(task, ROOT / "corpus" / train, tmp_path / "train.spacy")
    convert(task, ROOT / "corpus" / dev, tmp_path / "dev.spacy")
    return {"paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "dev.spacy")}


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_config_passes_debug_config(config_name, tmp_path, tiny_wordpiece_dir, capsys):
    from spacy.cli.debug_config import debug_config

    overrides = {**converted(config_name, tmp_path), "paths.encoder": str(tiny_wordpiece_dir)}
    debug_config(ROOT / "configs" / config_name, overrides=overrides)
    assert "Config is valid" in capsys.readouterr().out


@pytest.mark.parametrize("base", [None, "mbert_base"])
def test_multitask_config_assembles_the_sourced_pipelines(tmp_path, tiny_wordpiece_dir, base):
    """What ``spacy assemble configs/multitask.cfg`` does, with initialized (untrained) sources:
    with adapters on the base (``--paths.base mbert_base``) the encoder's weights are stored once,
    with full fine-tuning (``null``) once per head."""
    sources = {}
    for key, config_name in SOURCED.items():
        overrides = {
            **converted(config_name, tmp_path / key),
            "paths.encoder": str(tiny_wordpiece_dir),
            "paths.base": base,
        }
        nlp = init_nlp(load_config(ROOT / "configs" / config_name, overrides=overrides, interpolate=False))
        nlp.to_disk(tmp_path / key / "pipeline")
        sources[f"paths.{key}"] = str(tmp_path / key / "pipeline")
    config = load_config(ROOT / "configs" / "multitask.cfg", overrides=sources, interpolate=False)
    nlp = load_model_from_config(config, auto_fill=True)
    assert nlp.pipe_names == ["mbert_base", "transformer", "textcat", "mbert_qa", "mbert_translator"]
    nlp.to_disk(tmp_path / "multitask")
    weights = sorted(str(path.relative_to(tmp_path / "multitask")) for path in (tmp_path / "multitask").rglob("*.pt"))
    if base is None:
        assert weights == [f"{name}/model.weights.pt" for name in ("mbert_qa", "mbert_translator", "transformer")]
    else:
        assert weights == ["mbert_base/model.weights.pt"]
