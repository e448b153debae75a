"""The ``mbert_qa`` component on the tiny offline encoders: training, answering, saving, ``spacy train``."""

import json
import os
import random
import re
import shutil
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from spacy.util import fix_random_seed, minibatch

from spacy_mbert.convert import convert
from spacy_mbert.errors import EncoderNotFoundError, UserError
from spacy_mbert.qa import QuestionAnswerer
from spacy_mbert.qa.convert import ANSWER_LABEL
from spacy_mbert.qa.model import get_tokenizer, get_transformer

from ..conftest import CORPUS, blank_xx, run_python

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
QUESTION = "What is the code?"
FILLER = "the old man walked to market and bought bread with his friend near river".split()
WORDS = FILLER + "Paris Berlin Madrid London Tokyo Moscow Cairo Lima Rome Oslo".split()
EPOCHS = 24
LEARN_RATE = 4e-3  # a tiny random encoder needs a far larger rate than M-BERT's 3e-5
# The learning tests score on held-out examples: new texts from the same generator, none of
# them a training text. The tiny encoders only generalise (rather than memorise the training
# answers) with a few hundred examples: trained on 26, wordpiece scored 0.94 F1 on them but
# 0.19-0.27 on held-out texts (one that only recognised the city names would get roughly
# 0.5: most answers are filler words that also occur elsewhere in the text). Measured on 100 held-out examples, with dropout off:
# - wordpiece, 400 + 100 unanswerable, 24 epochs of 10 at 2e-3: 0.93-0.99 F1 over 18 runs
#   (its vocabulary, so its initial weights, differs from build to build); every held-out
#   unanswerable question recognised.
# - unigram, 1000, 12 epochs of 30 at 4e-3: 0.90-0.96 over 4 training seeds (0.96 with seed 0).
QA_EXAMPLES = (400, 100, 24, 2e-3, 10)  # answerable, unanswerable, epochs, learn rate, batch size
UNIGRAM_QA_EXAMPLES = (1000, 0, 12, 4e-3, 30)
HELD_OUT = (40, 10)  # answerable, unanswerable
MIN_HELD_OUT_F1 = 0.8
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def toy_examples(nlp, n_answerable=20, n_unanswerable=6, seed=0, exclude=()):
    """The answer is the word after "code"; without "code" in the text there is none.

    The answerable examples come first. Texts in ``exclude`` (e.g. the training texts, for a
    held-out set) are drawn again.
    """
    rng = random.Random(seed)
    exclude = {eg.reference.text if isinstance(eg, Example) else eg for eg in exclude}
    examples = []
    while len(examples) < n_answerable + n_unanswerable:
        words = [rng.choice(FILLER) for _ in range(rng.randint(5, 10))]
        answers = []
        if len(examples) < n_answerable:
            answer = rng.choice(WORDS)
            position = rng.randint(0, len(words))
            words[position:position] = ["code", answer]
            start = len(" ".join(words[: position + 1])) + 1
            answers = [{"text": answer, "start_char": start, "end_char": start + len(answer)}]
        text = " ".join(words) + "."
        if text in exclude:
            continue
        assert all(text[a["start_char"] : a["end_char"]] == a["text"] for a in answers)
        reference = nlp.make_doc(text)
        reference._.question, reference._.answers, reference._.lang = QUESTION, tuple(answers), "en"
        predicted = nlp.make_doc(text)
        predicted._.question = QUESTION
        examples.append(Example(predicted, reference))
    return examples


def qa_pipeline(encoder_dir, **config):
    nlp = blank_xx()
    model = {"name": str(encoder_dir), "max_seq_length": 64, "doc_stride": 16, **config.pop("model", {})}
    nlp.add_pipe("mbert_qa", config={"allow_no_answer": True, "model": model, **config})
    return nlp


def train(nlp, examples, epochs=EPOCHS, learn_rate=LEARN_RATE, seed=0, batch_size=10):
    fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    rng = random.Random(seed)
    examples = list(examples)
    for _ in range(epochs):
        rng.shuffle(examples)
        for batch in minibatch(examples, batch_size):
            nlp.update(batch, sgd=optimizer)
    return nlp


def fresh_docs(nlp, examples):
    docs = []
    for eg in examples:
        doc = nlp.make_doc(eg.reference.text)
        doc._.question = eg.reference._.question
        docs.append(doc)
    return docs


def train_and_hold_out(nlp, sizes, data_seed=0):
    """Train on toy examples; return held-out ones (answerable first) whose texts it never saw."""
    n_answerable, n_unanswerable, epochs, learn_rate, batch_size = sizes
    examples = toy_examples(nlp, n_answerable, n_unanswerable, seed=data_seed)
    train(nlp, examples, epochs=epochs, learn_rate=learn_rate, batch_size=batch_size)
    held_out = toy_examples(
        nlp, HELD_OUT[0], HELD_OUT[1] if n_unanswerable else 0, seed=data_seed + 1000, exclude=examples
    )
    assert not {eg.reference.text for eg in held_out} & {eg.reference.text for eg in examples}
    return held_out


@pytest.fixture(scope="module")
def trained(tiny_wordpiece_dir):
    """The trained pipeline and held-out examples (HELD_OUT[0] answerable, then unanswerable)."""
    nlp = qa_pipeline(tiny_wordpiece_dir, model={"transformer_config": NO_DROPOUT})
    held_out = train_and_hold_out(nlp, QA_EXAMPLES)
    return nlp, held_out


def test_tiny_encoder_learns_the_toy_task(trained):
    """Scored on held-out texts: finding the word after "code", not recalling training answers."""
    nlp, held_out = trained
    scores = nlp.evaluate(held_out)
    assert scores["qa_f1"] >= MIN_HELD_OUT_F1, scores
    assert scores["qa_per_lang"]["en"]["n"] == len(held_out)
    # Unanswerable held-out questions are mostly recognised as such.
    docs = list(nlp.pipe(fresh_docs(nlp, held_out[HELD_OUT[0] :])))
    assert len(docs) == HELD_OUT[1] and all(not eg.reference._.answers for eg in held_out[HELD_OUT[0] :])
    assert sum(doc._.answers == [] for doc in docs) >= 0.75 * HELD_OUT[1]


def test_answers_are_exact_and_set_as_spans(trained):
    nlp, examples = trained
    for doc in nlp.pipe(fresh_docs(nlp, examples[:10])):
        for answer in doc._.answers:
            assert set(answer) == {"text", "start_char", "end_char", "score"}
            assert doc.text[answer["start_char"] : answer["end_char"]] == answer["text"] == answer["text"].strip()
        assert [s.text for s in doc.spans["answers"]] == [a["text"] for a in doc._.answers]
        assert all(s.label_ == "ANSWER" for s in doc.spans["answers"])


def test_answer_api_equals_per_doc_predictions(trained):
    nlp, examples = trained
    qa = nlp.get_pipe("mbert_qa")
    context = examples[0].reference.text
    questions = [QUESTION, "code?", "Which word follows the code?", "", "What is the code?"]
    docs = []
    for question in questions:
        doc = nlp.make_doc(context)
        doc._.question = question
        docs.append(doc)
    expected = [doc._.answers for doc in nlp.pipe(docs)]
    found = qa.answer(context, questions)
    assert found[3] == [] and expected[3] == []

    def same_answers(got, want):
        assert [(a["text"], a["start_char"], a["end_char"]) for a in got] == [
            (a["text"], a["start_char"], a["end_char"]) for a in want
        ]
        assert [a["score"] for a in got] == pytest.approx([a["score"] for a in want], abs=1e-4)

    for got, want in zip(found, expected):
        same_answers(got, want)
    same_answers(qa.answer(context, QUESTION), found[0])  # batched with other questions: padding differs
    qa.cfg["allow_no_answer"] = False  # SQuAD 1.1 mode: always top_k spans when there are enough
    try:
        assert len(qa.answer(context, QUESTION, top_k=3)) == 3
    finally:
        qa.cfg["allow_no_answer"] = True
    assert qa.answer("   ", [QUESTION]) == [[]]


def test_batches_of_windows_restore_input_order(trained):
    nlp, examples = trained
    qa = nlp.get_pipe("mbert_qa")
    long_context = " ".join(eg.reference.text for eg in examples[:12])  # several windows
    questions = [QUESTION, "code", "What is the code word?"]
    big = qa.answer(long_context, questions, top_k=3)
    batch_size = qa.cfg["batch_size"]
    qa.cfg["batch_size"] = 2
    try:
        small = qa.answer(long_context, questions, top_k=3)
    finally:
        qa.cfg["batch_size"] = batch_size
    for got, want in zip(small, big):
        assert [(a["start_char"], a["end_char"]) for a in got] == [(a["start_char"], a["end_char"]) for a in want]
        assert all(long_context[a["start_char"] : a["end_char"]] == a["text"] for a in got)


def test_docs_without_question_or_text_get_no_answers(trained):
    nlp, _ = trained
    docs = [nlp.make_doc("code Paris here."), nlp.make_doc(""), nlp.make_doc("code Oslo.")]
    docs[1]._.question = QUESTION
    docs[2]._.question = "   "
    for doc in nlp.pipe(docs):
        assert doc._.answers == [] and list(doc.spans["answers"]) == []
    # Silent at inference: in a multitask pipeline most docs are not questions.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nlp("code Paris here.")._.answers == []


def test_evaluation_warns_when_questions_were_lost(trained):
    nlp, held_out = trained
    lost = [Example(nlp.make_doc(eg.reference.text), eg.reference) for eg in held_out[:3]]
    with pytest.warns(UserWarning, match="3 of 3 examples have gold answers but no doc._.question"):
        assert nlp.evaluate(lost)["qa_f1"] == 0.0


def test_multilingual_answers_map_to_exact_offsets(trained):
    nlp, _ = trained
    qa = nlp.get_pipe("mbert_qa")
    for context in [
        "北京是中国的首都。 code 天安门 很大。",
        "القاهرة هي code عاصمة مصر.",
        "चंदनपुर की code हिन्दी पत्रिका।",
    ]:
        doc = nlp.make_doc(context)
        doc._.question = QUESTION
        doc = nlp(doc)
        for answer in qa.answer(context, QUESTION, top_k=5) + doc._.answers:
            assert context[answer["start_char"] : answer["end_char"]] == answer["text"] == answer["text"].strip()
        # Answers grow to whole words (align_to_words), and CJK characters are tokens of
        # their own, so with the multilingual tokenizer every answer here is a span.
        assert [s.text for s in doc.spans["answers"]] == [a["text"] for a in doc._.answers]
        assert [(s.start_char, s.end_char) for s in doc.spans["answers"]] == [
            (a["start_char"], a["end_char"]) for a in doc._.answers
        ]


def test_serialization_round_trips_give_identical_answers(trained, tmp_path):
    nlp, examples = trained
    docs = fresh_docs(nlp, examples)
    expected = [doc._.answers for doc in nlp.pipe(docs)]
    qa = nlp.get_pipe("mbert_qa")
    qa.cfg["top_k"] = 2  # saved with the component
    expected_top2 = qa.answer(examples[0].reference.text, QUESTION)
    qa.cfg["top_k"] = 1

    copy = qa_pipeline("/no/such/encoder")  # never loaded: the weights come from the bytes
    copy.get_pipe("mbert_qa").from_bytes(qa.to_bytes())
    assert [doc._.answers for doc in copy.pipe(fresh_docs(copy, examples))] == expected

    qa.cfg["top_k"] = 2
    nlp.to_disk(tmp_path / "pipeline")
    qa.cfg["top_k"] = 1
    loaded = spacy.load(tmp_path / "pipeline")
    loaded_qa = loaded.get_pipe("mbert_qa")
    assert isinstance(loaded_qa, QuestionAnswerer) and loaded_qa.cfg["top_k"] == 2
    assert loaded_qa.answer(examples[0].reference.text, QUESTION) == expected_top2
    loaded_qa.cfg["top_k"] = 1
    assert [doc._.answers for doc in loaded.pipe(fresh_docs(loaded, examples))] == expected


def test_corrupted_model_file_fails_with_one_line(trained, tmp_path):
    nlp, _ = trained
    nlp.to_disk(tmp_path / "pipeline")
    model_file = tmp_path / "pipeline" / "mbert_qa" / "model"
    model_file.write_bytes(model_file.read_bytes()[:5000])
    with pytest.raises(UserError, match="corrupted or truncated"):
        spacy.load(tmp_path / "pipeline")


def test_tune_null_threshold_on_dev(trained):
    nlp, examples = trained
    qa = nlp.get_pipe("mbert_qa")
    before = dict(qa.cfg)
    try:
        result = qa.tune_null_threshold(examples)
        assert qa.cfg["null_threshold"] == result["null_threshold"] and qa.cfg["allow_no_answer"]
        assert result["qa_f1"] >= nlp.evaluate(examples)["qa_f1"] - 1e-9
    finally:
        qa.cfg.update(before)


def test_logits_equal_hugging_face_on_run_qa_features(tiny_unigram_dir):
    """Same windows, same model: padding per batch (ours) or to max_length (run_qa) changes nothing."""
    nlp = qa_pipeline(tiny_unigram_dir)
    nlp.initialize()
    qa = nlp.get_pipe("mbert_qa")
    tokenizer, hf_model = get_tokenizer(qa.model), get_transformer(qa.model)
    context = " ".join(["The observatory was built in 1962 on a hill above the town."] * 8)
    questions, contexts = [QUESTION, "When was it built?", "北京？"], [context, context, "北京是中国的首都。"]
    features = tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=64,
        stride=16,
        return_overflowing_tokens=True,
        padding="max_length",
        return_tensors="pt",
    )
    inputs = {k: v for k, v in features.items() if k in tokenizer.model_input_names}
    hf_model.eval()
    with torch.no_grad():
        expected = hf_model(**inputs)
    windows = qa._encode(questions, contexts)
    starts, ends = qa._logits(windows)
    assert len(windows) == len(expected.start_logits) > len(questions)
    for i, window in enumerate(windows):
        numpy.testing.assert_allclose(starts[i], expected.start_logits[i, : len(window)].numpy(), atol=1e-4)
        numpy.testing.assert_allclose(ends[i], expected.end_logits[i, : len(window)].numpy(), atol=1e-4)


def test_training_in_chunks_gives_the_gradient_of_the_whole_batch(tiny_wordpiece_dir):
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    nlp = qa_pipeline(tiny_wordpiece_dir, model={"transformer_config": no_dropout})
    examples = toy_examples(nlp, 6, 2)
    nlp.initialize(lambda: examples)
    qa = nlp.get_pipe("mbert_qa")
    losses = {}
    for chunk_size in (32, 3):
        qa.cfg["max_batch_windows"] = chunk_size
        losses[chunk_size] = qa.update(examples)["mbert_qa"]
    assert losses[3] == pytest.approx(losses[32], rel=1e-4)


def test_unigram_encoder_learns_and_saves(tiny_unigram_dir, tmp_path):
    nlp = qa_pipeline(tiny_unigram_dir, allow_no_answer=False, model={"transformer_config": NO_DROPOUT})
    held_out = train_and_hold_out(nlp, UNIGRAM_QA_EXAMPLES)
    scores = nlp.evaluate(held_out)
    assert scores["qa_f1"] >= MIN_HELD_OUT_F1, scores
    expected = [doc._.answers for doc in nlp.pipe(fresh_docs(nlp, held_out))]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert [doc._.answers for doc in loaded.pipe(fresh_docs(loaded, held_out))] == expected


def test_initialize_fails_clearly(tmp_path):
    nlp = qa_pipeline(tmp_path / "missing-encoder")
    with pytest.raises(EncoderNotFoundError, match="does not exist"):
        nlp.initialize(lambda: toy_examples(nlp, 2, 0))
    qa = nlp.get_pipe("mbert_qa")
    with pytest.raises(UserError, match="not initialized"):
        qa.answer("code Paris.", QUESTION)
    with pytest.raises(UserError, match="top_k"):
        qa_pipeline(tmp_path, top_k=0)


def test_initialize_needs_questions(tiny_wordpiece_dir):
    nlp = qa_pipeline(tiny_wordpiece_dir)
    doc = nlp.make_doc("code Paris here")
    doc._.answers = ({"text": "Paris", "start_char": 5, "end_char": 10},)
    with pytest.raises(UserError, match="doc._.question"):
        nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
    nlp.initialize()  # no data: just loads the encoder


def _require_entry_points():
    factories = {ep.name for ep in entry_points(group="spacy_factories")}
    scorers = {ep.name for ep in entry_points(group="spacy_scorers")}
    if "mbert_qa" not in factories or "spacy-mbert.qa_scorer.v1" not in scorers:
        pytest.fail(
            "spacy-mbert's mbert_qa factory / qa scorer entry points are not installed, so a plain "
            "`spacy.load` or `spacy train` cannot find the component: declare them in pyproject.toml "
            "([project.entry-points.spacy_factories] and [...spacy_scorers]) and run `pip install -e .`"
        )


def test_spacy_train_and_offline_load(tiny_wordpiece_dir, tmp_path, offline_env):
    _require_entry_points()
    encoder = shutil.copytree(tiny_wordpiece_dir, tmp_path / "encoder")
    # What `spacy-mbert convert qa corpus/qa/<split>.json <split>.spacy` writes (in-process: faster).
    data = {split: tmp_path / f"{split}.spacy" for split in ("train", "dev")}
    for split, path in data.items():
        assert convert("qa", CORPUS / "qa" / f"{split}.json", path)["docs"] > 10
    result = _run(
        [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(CONFIGS / "qa.cfg"),
            "--output",
            str(tmp_path / "out"),
            "--paths.train",
            str(data["train"]),
            "--paths.dev",
            str(data["dev"]),
            "--paths.encoder",
            str(encoder),
            "--training.max_steps",
            "4",
            "--training.eval_frequency",
            "2",
            "--components.mbert_qa.model.max_seq_length",
            "128",
            "--components.mbert_qa.model.doc_stride",
            "32",
        ]
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert re.search(r"QA_F1", result.stdout), result.stdout
    shutil.rmtree(encoder)  # everything must come from inside the pipeline now
    context = "北京是中国的首都，也是一座历史悠久的城市。"
    code = (
        "import json, spacy\n"
        f"nlp = spacy.load({str(tmp_path / 'out' / 'model-last')!r})\n"
        f"doc = nlp.make_doc({context!r})\n"
        "doc._.question = '中国的首都是哪里？'\n"
        "doc = nlp(doc)\n"
        "print(json.dumps({'doc': doc._.answers, 'api': nlp.get_pipe('mbert_qa').answer(doc.text, ['首都？'], top_k=2)}))\n"
    )
    loaded = run_python(code, env={**offline_env, "OMP_NUM_THREADS": "1"})
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    output = json.loads(loaded.stdout.strip().splitlines()[-1])
    for answer in output["doc"] + output["api"][0]:
        assert context[answer["start_char"] : answer["end_char"]] == answer["text"]
    assert len(output["api"][0]) <= 2


def _run(command):
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the one_torch_thread fixture, for the subprocess
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("sort_buffer", [0, 256])
def test_pipe_reads_ahead_and_keeps_order(trained, sort_buffer):
    nlp, examples = trained
    qa = nlp.get_pipe("mbert_qa")
    contexts = [eg.reference.text for eg in examples[:6]] + [" ".join(eg.reference.text for eg in examples[:8])]
    pairs = [(context, question) for context in contexts for question in (QUESTION, "code?")]

    def docs():
        for context, question in pairs:
            doc = nlp.make_doc(context)
            doc._.question = question
            yield doc

    alone = [[(a["start_char"], a["end_char"]) for a in nlp(doc)._.answers] for doc in docs()]
    saved = qa.sort_buffer
    qa.sort_buffer = sort_buffer
    try:
        found = list(nlp.pipe(docs(), batch_size=3))
    finally:
        qa.sort_buffer = saved
    assert [(doc.text, doc._.question) for doc in found] == pairs
    assert [[(a["start_char"], a["end_char"]) for a in doc._.answers] for doc in found] == alone


def test_displacy_shows_the_answers_in_context(trained):
    """The README's example: ``displacy`` renders ``doc.spans["answers"]`` (style "span")."""
    from spacy import displacy

    nlp, held_out = trained
    doc = next(doc for doc in nlp.pipe(fresh_docs(nlp, held_out[: HELD_OUT[0]])) if len(doc.spans["answers"]))
    html = displacy.render(doc, style="span", options={"spans_key": "answers"}, jupyter=False)
    assert doc.spans["answers"][0].text in html and ANSWER_LABEL in html
