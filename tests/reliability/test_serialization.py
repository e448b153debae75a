"""Serialization (issue #9, part 5).

- One pipeline with every component (transformer + textcat, mbert_qa, mbert_translator)
  round-trips through ``to_bytes``/``from_bytes`` and ``to_disk``/``spacy.load`` with
  identical outputs, per pipeline and per component.
- It loads in a fresh interpreter with ``HF_HUB_OFFLINE=1``, an empty Hugging Face cache and
  the encoder directory gone.
- Weights saved on a GPU load on the CPU. No GPU here: the test makes ``torch.save`` tag every
  tensor as a CUDA tensor (as it does on a GPU), which only loads with ``map_location``.
- A truncated, emptied or overwritten model file of any component fails with one line that
  says so and how to fix it.
"""

import io
import json
import shutil

import numpy
import pytest
import spacy
import torch
from spacy.util import load_model_from_config

from spacy_mbert.encoder.weights_file import WEIGHTS_FILE
from spacy_mbert.errors import UserError

from ..conftest import blank_xx, run_python
from .conftest import QUESTION

TEXTS = [
    "Hablamos de sopa con mis amigos.",
    "code Paris.",
    "",
    "我今天有点儿累。 code 北京",
    "Wo ist der Bahnhof?  code Lima",
]
COMPONENT_FILES = ["transformer/model", "textcat/model", "mbert_qa/model", "mbert_translator/model"]


@pytest.fixture(scope="module")
def full_nlp(textcat_nlp, qa_nlp, translator_nlp):
    """The three trained pipelines' components in one pipeline."""
    nlp = blank_xx()
    nlp.add_pipe("transformer", source=textcat_nlp)
    nlp.add_pipe("textcat", source=textcat_nlp)
    nlp.add_pipe("mbert_qa", source=qa_nlp)
    nlp.add_pipe("mbert_translator", source=translator_nlp)
    return nlp


def outputs(nlp, texts=TEXTS):
    docs = [nlp.make_doc(text) for text in texts]
    for doc in docs:
        doc._.question = QUESTION
    return [
        {"text": doc.text, "cats": doc.cats, "answers": doc._.answers, "translation": doc._.translation}
        for doc in nlp.pipe(docs)
    ]


def assert_same_outputs(got, want):
    assert [o["text"] for o in got] == [o["text"] for o in want]
    for a, b in zip(got, want):
        assert list(a["cats"]) == list(b["cats"])
        numpy.testing.assert_allclose(list(a["cats"].values()), list(b["cats"].values()), atol=1e-5)
        assert [(x["text"], x["start_char"], x["end_char"]) for x in a["answers"]] == [
            (x["text"], x["start_char"], x["end_char"]) for x in b["answers"]
        ]
        assert [x["score"] for x in a["answers"]] == pytest.approx([x["score"] for x in b["answers"]], abs=1e-5)
        assert a["translation"] == b["translation"]


@pytest.fixture(scope="module")
def expected(full_nlp):
    result = outputs(full_nlp)
    # The outputs are worth comparing: probabilities, answers and translations.
    assert all(sum(o["cats"].values()) == pytest.approx(1.0, abs=1e-5) for o in result if o["text"])
    assert any(o["answers"] for o in result) and any(o["translation"] for o in result)
    return result


@pytest.fixture(scope="module")
def saved_dir(full_nlp, tmp_path_factory):
    path = tmp_path_factory.mktemp("full") / "pipeline"
    full_nlp.to_disk(path)
    return path


def test_pipeline_bytes_round_trip(full_nlp, expected):
    copy = load_model_from_config(full_nlp.config, auto_fill=False)
    copy.from_bytes(full_nlp.to_bytes())
    assert copy.pipe_names == ["transformer", "textcat", "mbert_qa", "mbert_translator"]
    assert_same_outputs(outputs(copy), expected)


def test_pipeline_disk_round_trip(saved_dir, expected):
    assert_same_outputs(outputs(spacy.load(saved_dir)), expected)


@pytest.mark.parametrize("name", ["transformer+textcat", "mbert_qa", "mbert_translator"])
def test_component_bytes_and_disk_round_trips(full_nlp, expected, name, tmp_path):
    """Each component on its own, into a fresh pipeline whose other components are loaded as saved."""
    names = name.split("+")
    for method in ("bytes", "disk"):
        fresh = load_model_from_config(full_nlp.config, auto_fill=False)
        # Everything else from the whole pipeline; then the component(s) under test on their own.
        fresh.from_bytes(full_nlp.to_bytes(exclude=names), exclude=names)
        for component in names:
            source, target = full_nlp.get_pipe(component), fresh.get_pipe(component)
            if method == "bytes":
                target.from_bytes(source.to_bytes())
            else:
                source.to_disk(tmp_path / component)
                target.from_disk(tmp_path / component)
        assert_same_outputs(outputs(fresh), expected)


def test_loads_offline_with_an_empty_cache_and_no_encoder(
    saved_dir, expected, offline_env, tiny_wordpiece_dir, tmp_path
):
    code = (
        "import json, spacy\n"
        f"nlp = spacy.load({str(saved_dir)!r})\n"
        f"docs = [nlp.make_doc(t) for t in {TEXTS!r}]\n"
        "for doc in docs:\n"
        f"    doc._.question = {QUESTION!r}\n"
        "out = [{'text': d.text, 'cats': d.cats, 'answers': d._.answers, 'translation': d._.translation} for d in nlp.pipe(docs)]\n"
        "print(json.dumps(out))\n"
    )
    hidden = tiny_wordpiece_dir.with_name(tiny_wordpiece_dir.name + "-hidden")
    tiny_wordpiece_dir.rename(hidden)
    try:
        result = run_python(code, env={**offline_env, "OMP_NUM_THREADS": "1"})
    finally:
        hidden.rename(tiny_wordpiece_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_outputs(json.loads(result.stdout.strip().splitlines()[-1]), expected)


def _as_if_saved_on_gpu(monkeypatch):
    """Make torch.save record every tensor as living on cuda:0, as it does for a model on a GPU."""
    import torch.serialization

    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a GPU-saved pipeline on a machine without one")
def test_pipeline_saved_on_a_gpu_loads_on_the_cpu(full_nlp, expected, monkeypatch):
    with monkeypatch.context() as patch:
        _as_if_saved_on_gpu(patch)
        data = full_nlp.to_bytes()
        probe = io.BytesIO()
        torch.save({"w": torch.zeros(2)}, probe)
    # The simulation is faithful: such a file needs map_location on a machine without CUDA.
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(io.BytesIO(probe.getvalue()), weights_only=True)
    copy = load_model_from_config(full_nlp.config, auto_fill=False)
    copy.from_bytes(data)
    assert_same_outputs(outputs(copy), expected)
    for name in ("transformer", "mbert_qa", "mbert_translator"):
        shim = next(shim for node in copy.get_pipe(name).model.walk() for shim in node.shims)
        parameters = list(shim._model.parameters())
        assert parameters and all(p.device.type == "cpu" for p in parameters)


def _damage(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "cut-tail":
        return data[:-64]
    if how == "empty":
        return b""
    return b"<html>404 Not Found</html>" * 8  # "overwritten": e.g. a failed download saved as the file


@pytest.mark.parametrize("how", ["truncated", "cut-tail", "empty", "overwritten"])
@pytest.mark.parametrize("component_file", COMPONENT_FILES)
def test_damaged_model_file_fails_with_one_line(saved_dir, tmp_path, component_file, how):
    damaged = shutil.copytree(saved_dir, tmp_path / "pipeline")
    path = damaged / component_file
    path.write_bytes(_damage(path.read_bytes(), how))
    with pytest.raises(UserError) as info:
        spacy.load(damaged)
    message = str(info.value)
    assert "\n" not in message
    assert "corrupted or truncated" in message and "re-save or re-download" in message


FILE_NAMES = {
    "transformer": "The transformer model file",
    "mbert_qa": "The 'mbert_qa' component's model file",
    "mbert_translator": "The 'mbert_translator' component's model file",
}
WEIGHTS_FILES = [f"{name}/{WEIGHTS_FILE}" for name in FILE_NAMES]


@pytest.mark.parametrize("weights_file", WEIGHTS_FILES)
def test_flipped_bytes_in_the_weights_are_detected(saved_dir, tmp_path, weights_file):
    """The weights are saved with their SHA-256; before, changed bytes loaded silently and the
    pipeline predicted with damaged weights."""
    damaged = shutil.copytree(saved_dir, tmp_path / "pipeline")
    path = damaged / weights_file
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the tensors, the bulk of the file
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    with pytest.raises(UserError) as info:
        spacy.load(damaged)
    message = str(info.value)
    assert "\n" not in message and message.startswith(FILE_NAMES[weights_file.split("/")[0]])
    assert "corrupted" in message and "SHA-256" in message and "re-save or re-download" in message
    assert WEIGHTS_FILE in message


def test_weights_check_can_be_switched_off(saved_dir, tmp_path, monkeypatch):
    """SPACY_MBERT_VERIFY_WEIGHTS=0 skips the SHA-256 at load (faster for large encoders)."""
    damaged = shutil.copytree(saved_dir, tmp_path / "pipeline")
    path = damaged / WEIGHTS_FILES[0]
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    path.write_bytes(bytes(data))
    monkeypatch.setenv("SPACY_MBERT_VERIFY_WEIGHTS", "0")
    spacy.load(damaged)  # loads: the damage goes unnoticed, as documented
    monkeypatch.setenv("SPACY_MBERT_VERIFY_WEIGHTS", "1")
    with pytest.raises(UserError, match="SHA-256"):
        spacy.load(damaged)


@pytest.mark.parametrize("how", ["truncated", "empty", "missing"])
@pytest.mark.parametrize("weights_file", WEIGHTS_FILES)
def test_damaged_or_missing_weights_file_fails_with_one_line(saved_dir, tmp_path, weights_file, how):
    damaged = shutil.copytree(saved_dir, tmp_path / "pipeline")
    path = damaged / weights_file
    if how == "missing":
        path.unlink()
    else:
        path.write_bytes(_damage(path.read_bytes(), how))
    with pytest.raises(UserError) as info:
        spacy.load(damaged)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert ("missing its weights file" if how == "missing" else "corrupted") in message


def test_weights_are_saved_beside_the_model_file_and_memory_mapped(saved_dir, expected, tmp_path):
    """The model files hold no weights (a few MB at most), and a loaded pipeline can be saved
    back over the directory it was loaded from (its memory-mapped weights stay valid)."""
    for name in FILE_NAMES:
        assert (saved_dir / name / WEIGHTS_FILE).stat().st_size > (saved_dir / name / "model").stat().st_size
    again = shutil.copytree(saved_dir, tmp_path / "pipeline")
    nlp = spacy.load(again)
    nlp.to_disk(again)
    assert_same_outputs(outputs(nlp), expected)
    assert_same_outputs(outputs(spacy.load(again)), expected)


def _strip_checksums(data: bytes) -> bytes:
    """A model file as saved before checksums: the same msgpack without "state_sha256" in any shim."""
    import srsly

    from spacy_mbert.encoder import WEIGHTS_CHECKSUM_KEY

    def strip(shim_bytes: bytes) -> bytes:
        msg = srsly.msgpack_loads(shim_bytes)
        assert WEIGHTS_CHECKSUM_KEY in msg
        del msg[WEIGHTS_CHECKSUM_KEY]
        return srsly.msgpack_dumps(msg)

    msg = srsly.msgpack_loads(data)  # a thinc model: the shims' bytes are inside
    msg["shims"] = [[strip(shim) for shim in shims] for shims in msg["shims"]]
    return srsly.msgpack_dumps(msg)


def test_pipelines_saved_without_checksums_still_load(saved_dir, expected, tmp_path):
    old = shutil.copytree(saved_dir, tmp_path / "pipeline")
    for component_file in ("transformer/model", "mbert_qa/model", "mbert_translator/model"):
        path = old / component_file
        stripped = _strip_checksums(path.read_bytes())
        assert b"state_sha256" not in stripped
        path.write_bytes(stripped)
    assert_same_outputs(outputs(spacy.load(old)), expected)
