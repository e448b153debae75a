import json
import shutil

import numpy
import pytest
import spacy

from spacy_mbert.checkpoints.tiny import build_tiny
from spacy_mbert.encoder import load_pretrained
from spacy_mbert.errors import EncoderNotFoundError, UserError

from .conftest import ROOT, corpus_text_files, run_python, transformer_pipeline

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


def test_missing_hub_model_offline_gives_one_line_error(offline_env):
    """Offline with an empty Hugging Face cache, whatever this machine has cached.

    huggingface_hub and transformers fix their cache paths when imported, so this runs in a
    fresh interpreter started with an empty HF_HOME (see ``offline_env``), which first checks
    that both libraries really look there.
    """
    code = (
        "import json, os\n"
        "import huggingface_hub.constants as hub\n"
        "import transformers.utils.hub as th\n"
        "from spacy_mbert.errors import EncoderNotFoundError\n"
        "from tests.conftest import transformer_pipeline\n"
        "cache = os.path.realpath(os.environ['HF_HUB_CACHE'])\n"
        "used = {os.path.realpath(p) for p in (hub.HF_HUB_CACHE, th.TRANSFORMERS_CACHE)}\n"
        "assert used == {cache}, f'Hugging Face cache is {used}, not the empty {cache}'\n"
        "assert not os.path.exists(cache) or not os.listdir(cache), f'{cache} is not empty'\n"
        "nlp = transformer_pipeline('bert-base-multilingual-cased')\n"
        "try:\n"
        "    nlp.initialize()\n"
        "except EncoderNotFoundError as error:\n"
        "    print(json.dumps({'message': str(error)}))\n"
        "else:\n"
        "    raise SystemExit('the encoder loaded offline from an empty cache')\n"
    )
    result = run_python(code, env={**offline_env, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    message = json.loads(result.stdout.strip().splitlines()[-1])["message"]
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
        "spacy.blank('xx')\n"  # loads the spacy_factories entry points
        "assert spacy.language.Language.has_factory('mbert_transformer')\n"
        "import spacy_transformers\n"  # creates registry.span_getters
        "registry.span_getters.get('spacy-mbert.wordpiece_strided_spans.v1')\n"
        "print('ok')\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_prediction_runs_length_sorted_groups_with_the_same_outputs(tiny_wordpiece_dir):
    """Windows run longest first in groups cut to their own width; outputs match the padded batch."""
    texts = [
        "Hallo.",
        "",
        "Ein etwas längerer Satz über das Wetter in Berlin und Paris.",
        "東京",
        "x " * 60,
        "Bonjour !",
    ]
    nlp = transformer_pipeline(tiny_wordpiece_dir)
    nlp.initialize()
    shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
    assert shim.length_sorted_rows == 16
    widths = []
    hook = shim._model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    shim.length_sorted_rows = 2
    sorted_docs = list(nlp.pipe(texts, batch_size=len(texts)))
    hook.remove()
    shim.length_sorted_rows = 0
    padded_docs = list(nlp.pipe(texts, batch_size=len(texts)))
    assert len(widths) == 3 and widths[0][1] > widths[-1][1]  # groups of 2, longest first, narrower after
    for got, expected in zip(sorted_docs, padded_docs):
        # Compare the wordpieces the tokens align to (padded positions are never read).
        pieces = expected._.trf_data.align.data.ravel()
        assert numpy.array_equal(got._.trf_data.align.data.ravel(), pieces)
        if not len(pieces):  # the empty doc has no windows
            continue
        a, b = (doc._.trf_data.tensors[0] for doc in (got, expected))
        numpy.testing.assert_allclose(a.reshape(-1, a.shape[-1])[pieces], b.reshape(-1, b.shape[-1])[pieces], atol=1e-5)
        numpy.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-5)  # [CLS]
