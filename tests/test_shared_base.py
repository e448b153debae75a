"""Heads with LoRA adapters on one shared ``mbert_base`` (``encoder/base.py``, ``on_base.py``, ``adapters.py``).

The heads are trained separately, each in its own pipeline built from the shipped
config with ``paths.base = "mbert_base"`` (as the demo does), then assembled with
``configs/multitask.cfg`` as ``spacy assemble`` does.
"""

import random

import pytest
import spacy
import torch
from spacy.training import Example
from spacy.util import fix_random_seed, load_config, load_model_from_config
from transformers import AutoModel

from spacy_mbert.checkpoints.tiny import build_tiny
from spacy_mbert.errors import UserError

from .conftest import ROOT, blank_xx, corpus_text_files
from .qa.test_component import QUESTION, fresh_docs, toy_examples
from .test_textcat import HELD_OUT_FRAMES, _accuracy, _exclusive_examples
from .translation.test_component import COPY_TEXTS, copy_examples

LORA = {"@misc": "spacy-mbert.LoRA.v1", "rank": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["query", "value"]}
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
# A tiny random encoder needs far larger rates than a pretrained one; the adapters step at
# 10x this (LoRA.v1's learn_rate_scale).
SCHEDULE = {"training.optimizer.learn_rate.warmup_steps": 2, "training.optimizer.learn_rate.initial_rate": 5e-4}


def pipeline_from_config(name, encoder_dir, base="mbert_base", **overrides):
    fix_random_seed(0)
    settings = {"paths.encoder": str(encoder_dir), "paths.base": base, **SCHEDULE, **overrides}
    config = load_config(ROOT / "configs" / f"{name}.cfg", overrides=settings, interpolate=True)
    return load_model_from_config(config, auto_fill=True, validate=True)


def train(nlp, examples, steps, batch_size=10, seed=0):
    rng = random.Random(seed)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(rng.sample(examples, min(batch_size, len(examples))), sgd=optimizer, drop=0.0)
        optimizer.step_schedules()
    return nlp


def textcat_on_base(encoder_dir, steps=200):
    nlp = pipeline_from_config(
        "textcat",
        encoder_dir,
        **{
            "components.transformer.model.adapter.dropout": 0.0,
            # The shipped textcat configs step the adapter at 40x (chosen for e5-small on SIB-200);
            # SCHEDULE's rate is already sized for a tiny random encoder at 10x.
            "components.transformer.model.adapter.learn_rate_scale": 10.0,
            "training.optimizer.learn_rate.total_steps": steps,
        },
    )
    return train(nlp, _exclusive_examples(nlp), steps)


def qa_on_base(encoder_dir, steps=600):
    nlp = pipeline_from_config(
        "qa",
        encoder_dir,
        **{
            "components.mbert_qa.model.max_seq_length": 64,
            "components.mbert_qa.model.doc_stride": 16,
            "components.mbert_qa.model.transformer_config": NO_DROPOUT,
            "components.mbert_qa.model.adapter.dropout": 0.0,
            "training.optimizer.learn_rate.total_steps": steps,
        },
    )
    examples = toy_examples(nlp, 400, 100)
    train(nlp, examples, steps)
    return nlp, toy_examples(nlp, 40, 10, seed=1000, exclude=examples)


def translator_on_base(encoder_dir, steps=450):
    # 450, not 300: with spacy-mbert.AdamW.v1's global-norm clipping the adapter learned
    # the copy task more slowly; at 300 steps 3-5 of 6 copies, depending on test order.
    nlp = pipeline_from_config(
        "translation",
        encoder_dir,
        **{
            "components.mbert_translator.num_beams": 2,
            "components.mbert_translator.max_length": 32,
            "components.mbert_translator.model.adapter.dropout": 0.0,
            "training.optimizer.learn_rate.total_steps": steps,
        },
    )
    return train(nlp, copy_examples(nlp), steps, batch_size=4)


@pytest.fixture(scope="module")
def heads(tiny_wordpiece_dir, tmp_path_factory):
    """Three heads trained separately on one base checkpoint, saved, and assembled with multitask.cfg."""
    out = tmp_path_factory.mktemp("heads")
    textcat = textcat_on_base(tiny_wordpiece_dir)
    qa, held_out = qa_on_base(tiny_wordpiece_dir)
    translator = translator_on_base(tiny_wordpiece_dir)
    for key, nlp in (("textcat", textcat), ("qa", qa), ("translation", translator)):
        nlp.to_disk(out / key)
    multitask = assemble(out)
    return {"textcat": textcat, "qa": qa, "translation": translator, "multitask": multitask, "held_out": held_out}


def assemble(sources_dir, **sources):
    paths = {f"paths.{key}": str(sources.get(key, sources_dir / key)) for key in ("textcat", "qa", "translation")}
    config = load_config(ROOT / "configs" / "multitask.cfg", overrides=paths, interpolate=False)
    return load_model_from_config(config, auto_fill=True)


def outputs(nlp, held_out):
    """What each head gives: categories, answers and translations, on new docs."""
    texts = [eg.reference.text for eg in _exclusive_examples(nlp, HELD_OUT_FRAMES)]
    return {
        "cats": [doc.cats for doc in nlp.pipe(texts, disable=["mbert_qa", "mbert_translator"])],
        "answers": [doc._.answers for doc in nlp.pipe(fresh_docs(nlp, held_out), disable=["mbert_translator"])],
        "translations": [doc._.translation for doc in nlp.pipe(COPY_TEXTS, disable=["mbert_qa"])],
    }


def test_adapter_textcat_learns_its_toy_task(heads):
    # Training sentences: on a frozen *random* base, new frames (HELD_OUT_FRAMES) scored
    # 0.44-0.89 over three tiny-encoder builds, too noisy to assert; QA below is held out.
    textcat = heads["textcat"]
    assert _accuracy(textcat, _exclusive_examples(textcat))[0] >= 0.9


def test_adapter_qa_learns_its_toy_task_on_held_out_questions(heads):
    assert heads["qa"].evaluate(heads["held_out"])["qa_f1"] >= 0.7


def test_adapter_translator_learns_to_copy(heads):
    docs = list(heads["translation"].pipe(COPY_TEXTS))
    assert sum(doc._.translation == text for doc, text in zip(docs, COPY_TEXTS)) >= 4, [d._.translation for d in docs]


def test_training_leaves_the_base_bitwise_unchanged(heads, tiny_wordpiece_dir):
    original = AutoModel.from_pretrained(str(tiny_wordpiece_dir), add_pooling_layer=False).state_dict()
    for key in ("textcat", "qa", "translation"):
        trained = heads[key].get_pipe("mbert_base").network.state_dict()
        assert trained.keys() == original.keys()
        assert all(torch.equal(trained[name], original[name]) for name in original), key


def test_the_assembled_pipeline_stores_the_base_once(heads, tmp_path):
    nlp = heads["multitask"]
    nlp.to_disk(tmp_path / "multitask")
    weight_files = [path.relative_to(tmp_path / "multitask") for path in (tmp_path / "multitask").rglob("*.pt")]
    assert [str(path) for path in weight_files] == ["mbert_base/model.weights.pt"]
    base_size = (tmp_path / "multitask" / "mbert_base" / "model.weights.pt").stat().st_size
    for head in ("transformer", "mbert_qa", "mbert_translator"):
        head_size = sum(path.stat().st_size for path in (tmp_path / "multitask" / head).iterdir())
        assert head_size < base_size / 3, head
    # In memory too: every head's base tensors are the base's own storage.
    base = nlp.get_pipe("mbert_base")
    pointer = base.network.embeddings.word_embeddings.weight.data_ptr()
    for head in ("transformer", "mbert_qa", "mbert_translator"):
        network = next(shim._model for node in nlp.get_pipe(head).model.walk() for shim in node.shims)
        assert pointer in {tensor.data_ptr() for tensor in network.state_dict().values()}, head


def test_assembled_outputs_equal_the_separate_pipelines(heads):
    held_out = heads["held_out"]
    multitask = outputs(heads["multitask"], held_out)
    textcat, qa, translator = heads["textcat"], heads["qa"], heads["translation"]
    texts = [eg.reference.text for eg in _exclusive_examples(textcat, HELD_OUT_FRAMES)]
    assert multitask["cats"] == [doc.cats for doc in textcat.pipe(texts)]
    assert multitask["answers"] == [doc._.answers for doc in qa.pipe(fresh_docs(qa, held_out))]
    assert multitask["translations"] == [doc._.translation for doc in translator.pipe(COPY_TEXTS)]


def test_disk_and_bytes_round_trips_give_identical_outputs(heads, tmp_path):
    nlp, held_out = heads["multitask"], heads["held_out"]
    expected = outputs(nlp, held_out)
    nlp.to_disk(tmp_path / "multitask")
    assert outputs(spacy.load(tmp_path / "multitask"), held_out) == expected
    from_bytes = spacy.blank("xx").from_config(nlp.config).from_bytes(nlp.to_bytes())
    assert outputs(from_bytes, held_out) == expected


def test_heads_of_different_bases_are_refused(heads, tmp_path, tiny_wordpiece_dir):
    other = build_tiny(tmp_path / "other-encoder", texts=corpus_text_files(), seed=1)
    qa = pipeline_from_config("qa", other)
    qa.initialize(lambda: toy_examples(qa, 4, 0))
    qa.to_disk(tmp_path / "qa-other")
    heads["textcat"].to_disk(tmp_path / "textcat")
    heads["translation"].to_disk(tmp_path / "translation")
    with pytest.raises(UserError) as error:
        assemble(tmp_path, qa=tmp_path / "qa-other")
    message = str(error.value)
    assert "\n" not in message
    assert str(other) in message and str(tiny_wordpiece_dir) in message, message


def test_full_fine_tuning_and_adapter_heads_in_one_pipeline(heads, tmp_path, tiny_wordpiece_dir):
    full_qa = pipeline_from_config("qa", tiny_wordpiece_dir, base=None)
    full_qa.initialize(lambda: toy_examples(full_qa, 4, 0))
    heads["textcat"].to_disk(tmp_path / "textcat")
    full_qa.to_disk(tmp_path / "qa")
    heads["translation"].to_disk(tmp_path / "translation")
    nlp = assemble(tmp_path)
    nlp.to_disk(tmp_path / "mixed")
    weights = sorted(str(p.relative_to(tmp_path / "mixed")) for p in (tmp_path / "mixed").rglob("*.pt"))
    assert weights == ["mbert_base/model.weights.pt", "mbert_qa/model.weights.pt"]
    loaded = spacy.load(tmp_path / "mixed")
    questions = heads["held_out"][:5]
    assert [d._.answers for d in loaded.pipe(fresh_docs(loaded, questions))] == [
        d._.answers for d in full_qa.pipe(fresh_docs(full_qa, questions))
    ]
    assert [d._.translation for d in loaded.pipe(COPY_TEXTS)] == [
        d._.translation for d in heads["translation"].pipe(COPY_TEXTS)
    ]


def test_a_head_without_its_base_fails_with_one_line(tiny_wordpiece_dir):
    nlp = blank_xx()
    model = {"name": str(tiny_wordpiece_dir), "max_seq_length": 64, "doc_stride": 16, "base": "mbert_base"}
    nlp.add_pipe("mbert_qa", config={"model": model})
    doc = nlp.make_doc("code Paris here.")
    doc._.question = QUESTION
    with pytest.raises(UserError, match="add an 'mbert_base' component named 'mbert_base'") as error:
        nlp.initialize(lambda: [Example(doc, doc)])
    assert "\n" not in str(error.value)


def test_a_base_no_head_uses_loads_and_saves_nothing(tiny_wordpiece_dir, tmp_path):
    nlp = pipeline_from_config("textcat", tiny_wordpiece_dir, base=None)
    nlp.initialize(lambda: _exclusive_examples(nlp)[:6])
    assert not nlp.get_pipe("mbert_base").is_loaded
    nlp.to_disk(tmp_path / "full")
    assert sum(p.stat().st_size for p in (tmp_path / "full" / "mbert_base").iterdir()) < 10_000
    assert [str(p.relative_to(tmp_path / "full")) for p in (tmp_path / "full").rglob("*.pt")] == [
        "transformer/model.weights.pt"
    ]


def test_only_the_adapter_and_own_layers_train(heads):
    network = heads["qa"].get_pipe("mbert_qa").model.shims[0]._model
    trainable = [name for name, parameter in network.named_parameters() if parameter.requires_grad]
    assert trainable and all("lora_" in name or name.startswith("qa_outputs.") for name in trainable), trainable
    translator = heads["translation"].get_pipe("mbert_translator").model.shims[0]._model
    names = [name for name, parameter in translator.named_parameters() if parameter.requires_grad]
    # The translator's new cross-attention and its output layer train fully, without an adapter.
    assert any(".crossattention." in name and "lora_" not in name for name in names)
    assert not any(".crossattention." in name and "lora_" in name for name in names)
    assert any("word_embeddings" in name for name in names)


def _one_step_changes(encoder_dir, learn_rate_scale):
    """How far one update moves a LoRA weight and a weight of the head's own layer."""
    fix_random_seed(0)
    nlp = blank_xx()
    nlp.add_pipe("mbert_base", config={"model": {"name": str(encoder_dir)}})
    adapter = {**LORA, "learn_rate_scale": learn_rate_scale}
    model = {"name": str(encoder_dir), "max_seq_length": 64, "doc_stride": 16, "base": "mbert_base"}
    nlp.add_pipe("mbert_qa", config={"model": {**model, "adapter": adapter, "transformer_config": NO_DROPOUT}})
    examples = toy_examples(nlp, 8, 0)
    optimizer = nlp.initialize(lambda: examples)
    network = nlp.get_pipe("mbert_qa").model.shims[0]._model
    before = {name: p.detach().clone() for name, p in network.named_parameters() if p.requires_grad}
    nlp.update(examples, sgd=optimizer)
    after = dict(network.named_parameters())
    change = {name: (after[name].detach() - value).abs().max().item() for name, value in before.items()}
    lora = next(name for name in change if "lora_B" in name)
    return change[lora], change["qa_outputs.weight"]


def test_adapter_weights_step_at_their_learn_rate_scale(tiny_wordpiece_dir):
    lora_1, own_1 = _one_step_changes(tiny_wordpiece_dir, 1.0)
    lora_10, own_10 = _one_step_changes(tiny_wordpiece_dir, 10.0)
    # Adam's first step is about lr * sign(gradient): ten times as far for the adapter, the same for the head.
    assert lora_10 == pytest.approx(10 * lora_1, rel=0.05)
    assert own_10 == pytest.approx(own_1, rel=1e-4)


def test_a_checkpoint_without_pooler_is_the_same_base_at_every_load(tiny_wordpiece_dir, tmp_path):
    """e5-small ships no pooler weights: a pooler initialized at random would make every load another base."""
    import shutil

    from transformers import BertModel

    encoder = tmp_path / "no-pooler"
    shutil.copytree(tiny_wordpiece_dir, encoder)
    full = BertModel.from_pretrained(str(tiny_wordpiece_dir))
    without = BertModel(full.config, add_pooling_layer=False)
    without.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("pooler.")})
    without.save_pretrained(str(encoder))
    fingerprints = []
    for seed in (0, 1):
        torch.manual_seed(seed)  # another random state, as a second pipeline in one process has
        nlp = blank_xx()
        nlp.add_pipe("mbert_base", config={"model": {"name": str(encoder)}})
        model = {"name": str(encoder), "max_seq_length": 64, "doc_stride": 16, "base": "mbert_base"}
        nlp.add_pipe("mbert_qa", config={"model": model})
        nlp.initialize(lambda nlp=nlp: toy_examples(nlp, 4, 0))
        fingerprints.append(nlp.get_pipe("mbert_base").cfg["fingerprint"])
    assert fingerprints[0] == fingerprints[1]
