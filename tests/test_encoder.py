import shutil

import numpy
import pytest
import spacy

from spacy_mbert.encoder import load_pretrained
from spacy_mbert.encoders.tiny import build_tiny
from spacy_mbert.errors import EncoderNotFoundError, UserError

from .conftest import corpus_text_files, run_python, transformer_pipeline

TEXTS = ["Hello world, this is spaCy.", "我爱北京天安门。", "مرحبا بالعالم", ""]


def _hidden_states(nlp, texts=TEXTS):
    # An empty doc has no windows and so no tensors.
    return [doc._.trf_data.tensors[0].copy() if doc._.trf_data.tensors else numpy.zeros(0) for doc in nlp.pipe(texts)]


@pytest.fixture(params=["wordpiece", "unigram"])
def encoder_dir(request, tiny_wordpiece_dir, tiny_unigram_dir):
    return tiny_wordpiece_dir if request.param == "wordpiece" else tiny_unigram_dir


def test_saves_and_loads_offline_with_empty_cache(encoder_dir, tmp_path, offline_env):
    nlp = transformer_pipeline(encoder_dir)
    nlp.initialize()
    expected = _hidden_states(nlp)
    nlp.to_disk(tmp_path / "pipeline")
    # Hide the encoder directory: everything must come from inside the pipeline.
    hidden = encoder_dir.with_name(encoder_dir.name + "-hidden")
    encoder_dir.rename(hidden)
    try:
        code = (
            "import spacy, numpy\n"
            f"nlp = spacy.load({str(tmp_path / 'pipeline')!r})\n"
            f"for i, doc in enumerate(nlp.pipe({TEXTS!r})):\n"
            "    tensors = doc._.trf_data.tensors\n"
            f"    numpy.save({str(tmp_path)!r} + f'/out{{i}}.npy', tensors[0] if tensors else numpy.zeros(0))\n"
        )
        result = run_python(code, env=offline_env)
    finally:
        hidden.rename(encoder_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    for i, before in enumerate(expected):
        numpy.testing.assert_allclose(before, numpy.load(tmp_path / f"out{i}.npy"), rtol=1e-5, atol=1e-5)


def test_tokenizer_json_only_checkpoint_has_no_vocab_file(tiny_unigram_dir):
    hf = load_pretrained(str(tiny_unigram_dir), {"use_fast": True}, {})
    assert getattr(hf.tokenizer, "vocab_file", None) is None
    assert hf.vocab_file_contents is None
    assert not list(tiny_unigram_dir.glob("*.model")) and not (tiny_unigram_dir / "vocab.txt").exists()


def test_to_bytes_round_trip(encoder_dir):
    nlp = transformer_pipeline(encoder_dir)
    nlp.initialize()
    expected = _hidden_states(nlp)
    other = transformer_pipeline(encoder_dir)
    other.from_bytes(nlp.to_bytes())
    for before, after in zip(expected, _hidden_states(other)):
        numpy.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-5)


def test_missing_hub_model_offline_gives_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nlp = transformer_pipeline("bert-base-multilingual-cased")
    with pytest.raises(EncoderNotFoundError) as info:
        nlp.initialize()
    message = str(info.value)
    assert "\n" not in message
    assert "'bert-base-multilingual-cased'" in message
    assert "local directory" in message and "init-encoder" in message


def test_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(EncoderNotFoundError, match=r"no config\.json \(found: notes\.txt\)"):
        load_pretrained(str(tmp_path), {}, {})


def test_missing_directory(tmp_path):
    with pytest.raises(EncoderNotFoundError, match="does not exist"):
        load_pretrained(str(tmp_path / "nope"), {}, {})


def test_tokenizer_from_another_model_is_rejected(tmp_path, tiny_wordpiece_dir):
    small = build_tiny(tmp_path / "small", texts=corpus_text_files()[:1], vocab_size=120)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny_wordpiece_dir / name, small / name)
    with pytest.raises(UserError, match="tokenizer has .* pieces but the model's embeddings only"):
        load_pretrained(str(small), {}, {})


def test_corrupted_pipeline_weights_give_clear_error(tmp_path, tiny_wordpiece_dir):
    nlp = transformer_pipeline(tiny_wordpiece_dir)
    nlp.initialize()
    nlp.to_disk(tmp_path / "pipeline")
    model_file = tmp_path / "pipeline" / "transformer" / "model"
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupted or truncated"):
        spacy.load(tmp_path / "pipeline")


def test_registered_names_resolve_through_entry_points():
    code = (
        "import sys, spacy\n"
        "from spacy.util import registry\n"
        "assert 'spacy_mbert' not in sys.modules\n"
        "registry.architectures.get('spacy-mbert.MBertTransformer.v1')\n"
        "registry.tokenizers.get('spacy-mbert.MultilingualTokenizer.v1')\n"
        "registry.readers.get('spacy-mbert.Corpus.v1')\n"
        "print('ok')\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
