"""``spacy-mbert quantize``: bf16 and int8 encoders that spacy.load offline and predict as the fp32 pipeline."""

import subprocess
import sys

import numpy
import pytest
import spacy
import torch
from spacy.training import Example

from spacy_mbert.encoder.quantize import quantize_pipeline
from spacy_mbert.encoder.weights_file import WEIGHTS_FILE
from spacy_mbert.errors import UserError

from .conftest import run_python
from .test_textcat import _exclusive_examples, _pipeline_from_config, _train


@pytest.fixture(scope="module")
def fp32_pipeline(tiny_wordpiece_dir, tmp_path_factory):
    nlp = _pipeline_from_config("textcat", tiny_wordpiece_dir, steps=30)
    examples = _exclusive_examples(nlp)
    _train(nlp, examples, steps=30)
    path = tmp_path_factory.mktemp("fp32") / "pipeline"
    nlp.to_disk(path)
    return path, [eg.reference.text for eg in examples]


def _scores(nlp, texts):
    return numpy.array([[doc.cats[label] for label in sorted(doc.cats)] for doc in nlp.pipe(texts)])


@pytest.mark.parametrize("dtype,marker,tolerance", [("bf16", "bf16", 0.02), ("int8", "int8-dynamic", 0.05)])
def test_quantized_pipeline_loads_offline_and_predicts_like_fp32(
    fp32_pipeline, tmp_path, offline_env, dtype, marker, tolerance
):
    source, texts = fp32_pipeline
    out = tmp_path / dtype
    done = subprocess.run(
        [sys.executable, "-m", "spacy_mbert", "quantize", str(source), str(out), "--dtype", dtype],
        capture_output=True,
        text=True,
        env=offline_env,
    )
    assert done.returncode == 0, done.stderr
    assert f"{dtype} encoders in transformer" in done.stdout
    assert "Warning" not in done.stderr and "deprecated" not in done.stderr
    assert (out / "transformer" / WEIGHTS_FILE).stat().st_size < (source / "transformer" / WEIGHTS_FILE).stat().st_size

    quantized = spacy.load(out)
    shim = quantized.get_pipe("transformer").model.layers[0].shims[0]
    assert shim.quantized == marker
    seen = []
    query = shim._model.encoder.layer[0].attention.self.query
    query.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    expected, found = _scores(spacy.load(source), texts), _scores(quantized, texts)
    assert seen and seen[0] == (torch.bfloat16 if dtype == "bf16" else torch.float32)  # int8 layers return fp32
    assert numpy.abs(expected - found).max() < tolerance
    assert (expected.argmax(1) == found.argmax(1)).mean() >= 0.9
    # Inline serialization (no directory) keeps the scheme too.
    again = spacy.load(source).from_bytes(quantized.to_bytes())
    assert numpy.allclose(_scores(again, texts), found, atol=1e-5)

    # spacy.load in a fresh offline interpreter prints no torch deprecation warnings.
    loaded = run_python(f"import spacy; print(spacy.load({str(out)!r})('Regen heute.').cats)", env=offline_env)
    assert loaded.returncode == 0, loaded.stderr
    assert "deprecated" not in loaded.stderr


def test_pipeline_without_an_encoder_is_refused_in_one_line(tmp_path):
    nlp = spacy.blank("xx")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "plain")
    with pytest.raises(UserError, match="no encoder to quantize") as error:
        quantize_pipeline(str(tmp_path / "plain"), tmp_path / "out")
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="Unknown --dtype"):
        quantize_pipeline(str(tmp_path / "plain"), tmp_path / "out", dtype="fp8")


def test_bf16_weights_stay_bf16_in_memory_and_quantized_pipelines_refuse_training(fp32_pipeline, tmp_path):
    source, texts = fp32_pipeline
    quantize_pipeline(str(source), tmp_path / "bf16", dtype="bf16")
    nlp = spacy.load(tmp_path / "bf16")
    shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
    linear = shim._model.encoder.layer[0].intermediate.dense
    assert linear.weight.dtype == torch.bfloat16  # kept in bf16 in memory: no cast in every forward
    assert shim._model.embeddings.word_embeddings.weight.dtype == torch.float32
    examples = [Example.from_dict(nlp.make_doc(texts[0]), {"cats": dict.fromkeys(nlp.get_pipe("textcat").labels, 0.0)})]
    with pytest.raises(UserError, match="quantized for inference") as error:
        nlp.update(examples)
    assert "\n" not in str(error.value)
