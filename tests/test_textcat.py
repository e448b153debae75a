"""``spacy-mbert.ClsPoolTextCat.v1`` and the ``cls_pool`` layer, on the tiny offline encoders."""

import random
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import fix_random_seed, load_config, load_model_from_config
from spacy_transformers.data_classes import TransformerData
from thinc.api import Adam, chain, set_dropout_rate
from transformers.file_utils import ModelOutput

from spacy_mbert.errors import UserError
from spacy_mbert.textcat import ClsPoolTextCat
from spacy_mbert.textcat.layers import cls_pool, content_positions

from .conftest import blank_xx, transformer_pipeline

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# Separable toy tasks: the class is given by one keyword, in three languages,
# inside frames shared by all classes.
KEYWORDS = {
    "sports": ["football", "Fußball", "fútbol"],
    "food": ["soup", "Suppe", "sopa"],
    "weather": ["rain", "Regen", "lluvia"],
}
FRAMES = [
    "I talked about {} yesterday.",
    "Wir sprechen heute über {}.",
    "Hablamos de {} con mis amigos.",
    "{} again, said the old man.",
]
HELD_OUT_FRAMES = ["Do you like {}?", "Magst du {} sehr?", "Me gusta {} mucho."]
LABELS = sorted(KEYWORDS)
LONG_TEXT = (
    "The lighthouse keeper watched unbelievably enormous waves crash against Felsen und "
    "Klippen, 北京天安门 while the sailors sang songs about distant harbours."
)


def _head(**settings):
    return {"model": {"@architectures": "spacy-mbert.ClsPoolTextCat.v1", **settings}}


def _strided(*, window, stride):
    return {"@span_getters": "spacy-transformers.strided_spans.v1", "window": window, "stride": stride}


def _flat_strings(trf_data):
    """The wordpiece strings at each flat index (n_windows * seq_len), padding as "<pad>"."""
    seq_len = trf_data.model_output["last_hidden_state"].shape[1]
    return [s for window in trf_data.wordpieces.strings for s in window + ["<pad>"] * (seq_len - len(window))]


def _pipeline_from_config(name, encoder_dir, *, steps):
    """The shipped config, with the schedule shortened to ``steps`` updates."""
    fix_random_seed(0)
    config = load_config(
        CONFIGS / f"{name}.cfg",
        overrides={
            "paths.encoder": str(encoder_dir),
            # A tiny random encoder needs a larger rate and fewer steps than a real one.
            "training.max_steps": steps,
            "training.optimizer.learn_rate.warmup_steps": 2,
            "training.optimizer.learn_rate.initial_rate": 2e-3,
        },
        interpolate=True,
    )
    return load_model_from_config(config, auto_fill=True, validate=True)


def _train(nlp, examples, steps, batch_size=12, seed=0):
    random.Random(seed).shuffle(examples)
    optimizer = nlp.initialize(lambda: examples)
    losses = {}
    for step in range(steps):
        start = (step * batch_size) % len(examples)
        batch = (examples + examples)[start : start + batch_size]
        nlp.update(batch, sgd=optimizer, drop=0.1, losses=losses)
        optimizer.step_schedules()  # as spaCy's training loop does (warmup, decay)
    return losses


def _exclusive_examples(nlp, frames=FRAMES):
    examples = []
    for label, words in KEYWORDS.items():
        for word in words:
            for frame in frames:
                doc = nlp.make_doc(frame.format(word))
                examples.append(Example.from_dict(doc, {"cats": {name: float(name == label) for name in LABELS}}))
    return examples


@pytest.fixture(scope="module")
def trained_textcat(tiny_wordpiece_dir):
    """An exclusive textcat trained on the toy task with the shipped config's optimizer."""
    nlp = _pipeline_from_config("textcat", tiny_wordpiece_dir, steps=60)
    examples = _exclusive_examples(nlp)
    _train(nlp, examples, steps=60)
    return nlp, examples


def _accuracy(nlp, examples):
    docs = list(nlp.pipe(eg.reference.text for eg in examples))
    gold = [max(eg.reference.cats, key=eg.reference.cats.get) for eg in examples]
    return numpy.mean([max(doc.cats, key=doc.cats.get) == g for doc, g in zip(docs, gold)]), docs


def test_exclusive_training_learns_toy_task(trained_textcat):
    nlp, examples = trained_textcat
    accuracy, docs = _accuracy(nlp, examples)
    assert accuracy >= 0.9
    for doc in docs:
        assert sorted(doc.cats) == LABELS
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    # It learned the keywords, not the training sentences: new frames work too.
    held_out, _ = _accuracy(nlp, _exclusive_examples(nlp, HELD_OUT_FRAMES))
    assert held_out >= 0.75


def test_multilabel_training_learns_toy_task(tiny_wordpiece_dir):
    nlp = _pipeline_from_config("textcat_multilabel", tiny_wordpiece_dir, steps=80)
    labels = ["sports", "weather"]
    examples = []
    for frame in FRAMES:
        for sport in ["", *KEYWORDS["sports"]]:
            for weather in ["", *KEYWORDS["weather"]]:
                words = " and ".join(w for w in (sport, weather) if w) or "nothing"
                cats = {"sports": float(bool(sport)), "weather": float(bool(weather))}
                examples.append(Example.from_dict(nlp.make_doc(frame.format(words)), {"cats": cats}))
    _train(nlp, examples, steps=80, batch_size=16)
    correct = []
    for doc, eg in zip(nlp.pipe(eg.reference.text for eg in examples), examples):
        assert 0.0 <= min(doc.cats.values()) and max(doc.cats.values()) <= 1.0
        correct.extend((doc.cats[name] >= 0.5) == bool(eg.reference.cats[name]) for name in labels)
    assert numpy.mean(correct) >= 0.9


def test_output_layers_get_the_cross_entropy_gradient():
    """spaCy's get_loss passes ``scores - truths``; the head must turn it into dCE/dinput."""
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(5, 4)).astype("f")
    for exclusive, factory in ((True, "textcat"), (False, "textcat_multilabel")):
        nlp = blank_xx()
        component = nlp.add_pipe(factory, config=_head(exclusive_classes=exclusive, depth=0, dropout=0.0))
        for label in "ABC":
            component.add_label(label)
        head = chain(*component.model.layers[2:])  # everything after the pooling
        head.initialize(X=X)
        output = component.model.get_ref("output_layer")
        output.set_param("W", rng.normal(size=(3, 4)).astype("f"))
        output.set_param("b", rng.normal(size=(3,)).astype("f"))
        truths = numpy.eye(3, dtype="f")[[0, 1, 2, 1, 0]]
        if not exclusive:
            truths[[0, 3], 2] = 1.0
        examples = [Example.from_dict(nlp.make_doc("x"), {"cats": dict(zip("ABC", map(float, row)))}) for row in truths]
        scores, backprop = head.begin_update(X)
        _, d_scores = component.get_loss(examples, scores)
        d_X = backprop(d_scores)

        def mean_cross_entropy(X_):
            logits = X_ @ output.get_param("W").T + output.get_param("b")
            if exclusive:
                log_p = logits - numpy.log(numpy.exp(logits).sum(axis=1, keepdims=True))
                return -(truths * log_p).sum() / len(X_)
            p = 1 / (1 + numpy.exp(-logits))
            return -(truths * numpy.log(p) + (1 - truths) * numpy.log(1 - p)).sum() / len(X_)

        numeric = numpy.zeros_like(X, dtype="float64")
        for index in numpy.ndindex(*X.shape):
            step = numpy.zeros_like(X, dtype="float64")
            step[index] = 1e-4
            numeric[index] = (mean_cross_entropy(X + step) - mean_cross_entropy(X - step)) / 2e-4
        numpy.testing.assert_allclose(d_X, numeric, rtol=1e-3, atol=1e-4)


def test_long_document_pools_each_content_wordpiece_once(tiny_wordpiece_dir):
    nlp = transformer_pipeline(tiny_wordpiece_dir, get_spans=_strided(window=8, stride=6))
    nlp.initialize()
    doc = nlp(LONG_TEXT)
    trf_data = doc._.trf_data
    hidden = trf_data.model_output["last_hidden_state"]
    n_windows, seq_len, _ = hidden.shape
    assert n_windows >= 3
    align = trf_data.align
    lengths = align.lengths
    token_of = numpy.repeat(numpy.arange(len(lengths)), lengths)
    windows_of_token = [set(align.dataXd[token_of == t] // seq_len) for t in range(len(doc))]
    assert sum(len(w) > 1 for w in windows_of_token) >= 2, "windows must overlap for this test"

    # The selection is the whole text's wordpieces, each once, in order, no specials/padding.
    selected = content_positions(trf_data)
    strings = _flat_strings(trf_data)
    tokenizer = nlp.get_pipe("transformer").model.tokenizer
    assert [strings[i] for i in selected] == tokenizer.tokenize(LONG_TEXT)
    # ... and a token in the overlap of two windows is read from the first one.
    chosen = set(selected.tolist())
    for t, windows in enumerate(windows_of_token):
        positions = [p for p in align.dataXd[token_of == t] if p in chosen]
        assert {p // seq_len for p in positions} == ({min(windows)} if windows else set())

    # Synthetic states: dim 0 = token number (content) or 100 * (window + 1) ([CLS]),
    # dim 1 = 1 on aligned wordpieces, dim 2 = 1 on everything else.
    states = numpy.zeros((n_windows * seq_len, 3), dtype="f")
    states[:, 2] = 1.0
    for t in range(len(doc)):
        states[align.dataXd[token_of == t]] = [t + 1, 1.0, 0.0]
    states[numpy.arange(n_windows) * seq_len, 0] = 100 * (numpy.arange(n_windows) + 1)
    synthetic = TransformerData(
        wordpieces=trf_data.wordpieces,
        model_output=ModelOutput(last_hidden_state=states.reshape(n_windows, seq_len, 3)),
        align=align,
    )
    # Wordpieces per token, counting each token once (as a whole-text tokenization would).
    pieces = numpy.array([len(tokenizer.tokenize(token.text)) for token in doc], dtype="f")
    expected_mean = ((numpy.arange(len(doc)) + 1) * pieces).sum() / pieces.sum()
    pool = cls_pool(pooling="mean+max")
    pool.initialize(X=[synthetic])
    Y, backprop = pool.begin_update([synthetic])
    cls_part, mean_part, max_part = Y[0].reshape(3, 3)
    numpy.testing.assert_allclose(cls_part, [100 * (n_windows + 1) / 2, 0.0, 1.0], rtol=1e-6)
    numpy.testing.assert_allclose(mean_part, [expected_mean, 1.0, 0.0], rtol=1e-5)
    numpy.testing.assert_allclose(max_part, [len(doc), 1.0, 0.0], rtol=1e-6)

    # Mean pooling's gradient reaches the [CLS] states and each content wordpiece once.
    pool = cls_pool(pooling="mean")
    pool.initialize(X=[synthetic])
    _, backprop = pool.begin_update([synthetic])
    (d_data,) = backprop(numpy.ones((1, 6), dtype="f"))
    d_states = d_data.model_output["last_hidden_state"].reshape(-1, 3)
    touched = numpy.flatnonzero(d_states[:, 0])
    cls_positions = numpy.arange(n_windows) * seq_len
    assert sorted(touched) == sorted([*cls_positions, *selected])
    numpy.testing.assert_allclose(d_states[cls_positions], 1.0 / n_windows)
    numpy.testing.assert_allclose(d_states[selected], 1.0 / len(selected))
    for t in range(len(doc)):
        assert len(set(numpy.flatnonzero(d_states[:, 0])) & set(align.dataXd[token_of == t])) == pieces[t]


@pytest.fixture(params=["wordpiece", "unigram"])
def encoder_dir(request, tiny_wordpiece_dir, tiny_unigram_dir):
    return tiny_wordpiece_dir if request.param == "wordpiece" else tiny_unigram_dir


def test_selection_is_the_whole_text_tokenization(encoder_dir):
    """M-BERT (WordPiece, [CLS]/[SEP]) and XLM-R-style (Unigram, <s>/</s>) checkpoints alike."""
    nlp = transformer_pipeline(encoder_dir, get_spans=_strided(window=5, stride=3))
    nlp.initialize()
    tokenizer = nlp.get_pipe("transformer").model.tokenizer
    for doc in nlp.pipe([LONG_TEXT, "Hello  world \n\n again", "   "]):
        trf_data = doc._.trf_data
        strings = _flat_strings(trf_data)
        assert [strings[i] for i in content_positions(trf_data)] == tokenizer.tokenize(doc.text)


def test_empty_docs_score_zero_and_whitespace_docs_a_distribution(trained_textcat):
    """An empty doc gets all-zero scores whatever else is in the batch, as spaCy's textcat gives a
    batch of empty docs; a whitespace-only doc has tokens (and a [CLS] window) and is classified."""
    nlp, _ = trained_textcat
    texts = ["", "   ", "\n\n", "Hablamos de sopa."]
    for doc in [*nlp.pipe(texts), nlp(""), nlp("  ")]:
        assert all(numpy.isfinite(v) for v in doc.cats.values())
        if not len(doc):
            assert set(doc.cats.values()) == {0.0}
    model = nlp.get_pipe("textcat").model
    docs = list(nlp.get_pipe("transformer").pipe(nlp.make_doc(t) for t in texts))
    for batch in (docs, docs[:1], docs[1:]):
        scores = model.predict(batch)  # the model itself, without textcat.predict's all-empty shortcut
        assert numpy.isfinite(scores).all()
        expected = [0.0 if len(doc) == 0 else 1.0 for doc in batch]
        numpy.testing.assert_allclose(scores.sum(axis=1), expected, rtol=1e-5)
    # The pooled row of a doc without transformer output is all zeros.
    pool = model.get_ref("pool")
    pooled = pool.predict([TransformerData.empty(), docs[-1]._.trf_data])
    assert pooled.shape == (2, pool.get_dim("nO")) and not pooled[0].any() and pooled[1].any()
    # Training on a batch with empty and whitespace-only docs works too.
    cats = {label: float(label == "food") for label in LABELS}
    examples = [Example.from_dict(nlp.make_doc(text), {"cats": cats}) for text in texts]
    losses = nlp.update(examples, sgd=None)
    assert numpy.isfinite(losses["textcat"])


def test_empty_docs_pass_no_gradient(trained_textcat):
    """In training, an empty doc in the batch changes nothing but the batch size the mean loss
    divides by: the gradient of [doc, ""] is half that of [doc] (mean_loss), with no dropout."""
    nlp, _ = trained_textcat
    model = nlp.get_pipe("textcat").model
    output_layer = model.get_ref("output_layer")
    docs = list(nlp.get_pipe("transformer").pipe(nlp.make_doc(t) for t in ["Hablamos de sopa.", ""]))
    truths = numpy.asarray([[float(label == "food") for label in LABELS]] * 2, dtype="f")

    def output_gradient(batch):
        for name in output_layer.param_names:
            output_layer.set_grad(name, output_layer.ops.alloc(output_layer.get_param(name).shape))
        set_dropout_rate(model, 0.0)
        scores, backprop = model.begin_update(batch)
        backprop(scores - truths[: len(batch)])
        return {name: output_layer.get_grad(name).copy() for name in output_layer.param_names}

    alone, with_empty = output_gradient(docs[:1]), output_gradient(docs)
    assert all(numpy.abs(alone[name]).sum() > 0 for name in alone)
    for name in alone:
        numpy.testing.assert_allclose(with_empty[name], alone[name] / 2, rtol=1e-5, atol=1e-8)
    for name in output_layer.param_names:  # leave no gradient behind in the shared fixture
        output_layer.set_grad(name, output_layer.ops.alloc(output_layer.get_param(name).shape))


def test_gradient_reaches_the_transformer(tiny_wordpiece_dir):
    nlp = transformer_pipeline(tiny_wordpiece_dir)
    textcat = nlp.add_pipe("textcat", config=_head(exclusive_classes=True))
    examples = _exclusive_examples(nlp)[::4]
    nlp.initialize(lambda: examples)
    transformer = nlp.get_pipe("transformer")
    assert transformer.listening_components == ["textcat"]
    parameters = list(transformer.model.transformer.parameters())
    optimizer = Adam(1e-3, L2=0.0)  # no weight decay: weights move only by their gradient

    # The very first update must already reach the encoder: a zero-initialised
    # output layer would block it, and at fine-tuning learning rates the encoder
    # then gets gradients below Adam's epsilon for a long time.
    def gradient_norm(grad_factor):
        for parameter in parameters:
            parameter.grad = None
        textcat.model.get_ref("pool").attrs["grad_factor"] = grad_factor
        nlp.update(examples, sgd=False)  # backprop without an optimizer step
        return sum(float(p.grad.abs().sum()) for p in parameters if p.grad is not None)

    assert gradient_norm(0.0) == 0.0
    assert gradient_norm(1.0) > 0.0
    embeddings = transformer.model.transformer.embeddings.word_embeddings.weight
    before = embeddings.detach().clone()
    nlp.update(examples, sgd=optimizer)
    assert not bool((embeddings.detach() == before).all())


def test_serialization_round_trip(trained_textcat, tmp_path):
    nlp, examples = trained_textcat
    texts = [eg.reference.text for eg in examples[:6]] + [LONG_TEXT, ""]
    expected = [doc.cats for doc in nlp.pipe(texts)]

    def assert_same(other):
        for cats, doc in zip(expected, other.pipe(texts)):
            assert list(cats) == list(doc.cats)
            numpy.testing.assert_allclose(list(cats.values()), list(doc.cats.values()), rtol=1e-5, atol=1e-6)

    copy = load_model_from_config(nlp.config, auto_fill=False)
    copy.from_bytes(nlp.to_bytes())
    assert_same(copy)
    nlp.to_disk(tmp_path / "pipeline")
    assert_same(spacy.load(tmp_path / "pipeline"))

    # After training, a new label can still be added, as with spaCy's own textcat.
    copy.get_pipe("textcat").add_label("music")
    grown = copy("Hablamos de sopa con mis amigos.").cats
    assert list(grown) == [*LABELS, "music"] and grown["music"] < 1e-6


def test_invalid_pooling_gives_one_line_error():
    with pytest.raises(UserError) as info:
        ClsPoolTextCat(exclusive_classes=True, pooling="cls")
    message = str(info.value)
    assert "\n" not in message
    assert '"cls"' in message and "pooling" in message
    assert all(f'"{name}"' in message for name in ("mean", "max", "mean+max"))
    # The same error when the bad value comes from a config.
    nlp = blank_xx()
    with pytest.raises(UserError, match="pooling"):
        nlp.add_pipe("textcat", config=_head(exclusive_classes=True, pooling="sum"))
