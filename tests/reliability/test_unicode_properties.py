"""Arbitrary Unicode through every component (issue #9, part 1): nothing crashes, nothing moves.

Inputs: any code point of any plane (lone surrogates excluded: they are not text), plus
pieces chosen to be hard — combining marks, RTL text and bidi controls, zero-width
characters, NUL and other controls, emoji ZWJ/flag/keycap/skin-tone sequences, special-token
strings, characters outside the BMP — and very long single "words" (100-3,000 characters
without a separator). The spaCy tokenizer alone is covered by ``tests/test_tokenizer.py``
(700 examples); here the inputs go through the trained pipelines of ``conftest.py``.

Run with ``--hypothesis-show-statistics`` to see how many examples each property ran.
"""

import math

import numpy
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .conftest import LABELS, QUESTION, qa_doc

ANY_CHAR = st.characters(exclude_categories=("Cs",))
ANY_TEXT = st.text(alphabet=ANY_CHAR, max_size=120)
TRICKY = st.sampled_from(
    # separators, zero-width and format characters, bidi controls, controls
    list(" \t\n\r\u00a0\u3000\u2028\u2029\u200b\u200c\u200d\u2060\ufeff\u200e\u200f\u202a\u202e\u202c\u2066\u2069")
    + list("\x00\x01\x1b\x7f\x85\ufffd\uffff")
    + list(".,!?¿。、「」()[]\"'")
    + [
        "[SEP]",
        "[CLS]",
        "[MASK]",
        "<s>",
        "</s>",
        "<mask>",
        "##",
        "▁",  # special-token strings
        "code",
        "Paris",
        "code Paris",  # what the QA model learned to answer
        "football",
        "Suppe",
        "lluvia",  # what the text classifier learned
        "我",
        "愛",
        "𠀀",
        "ภาษาไทย",
        "مرحبا",
        "שלום",
        "नमस्ते",
        "क्ष",
        "Ελλάδα",
        "ﬁ",
        "１２",
        "e\u0301",
        "a\u0308\u0323",
        "ก\u0e31\u0e49",  # combining marks
        "👩\u200d👩\u200d👧",
        "🇩🇪",
        "1\ufe0f\u20e3",
        "👍🏽",
        "🏳️\u200d🌈",  # emoji sequences
        "𝔘𝔫𝔦",
        "\U0010fffd",
        "\U000e0001",  # other planes, private use, tags
    ]
)
MIXED_TEXT = st.lists(st.one_of(TRICKY, st.text(alphabet=ANY_CHAR, max_size=5)), max_size=30).map("".join)
# One "word" of 100-3,000 characters: a repeated character, or random non-separator characters.
NO_SEPARATOR = st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc"))
LONG_WORD = st.one_of(
    st.tuples(NO_SEPARATOR, st.integers(100, 3000)).map(lambda pair: pair[0] * pair[1]),
    st.text(alphabet=NO_SEPARATOR, min_size=100, max_size=400),
)
TEXT = st.one_of(ANY_TEXT, MIXED_TEXT, LONG_WORD)
# The number of examples per property; together the file runs in well under a minute here.
EXAMPLES = {"textcat": 1000, "textcat_batches": 200, "qa_pipeline": 600, "qa_api": 300, "translator": 300}
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _assert_probabilities(doc):
    cats = doc.cats
    assert sorted(cats) == LABELS
    values = list(cats.values())
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values), cats
    if len(doc):
        # Exclusive classes. A doc without tokens ("") gets spaCy's all-zero row when it is
        # alone in its batch: see test_long_and_empty.py::test_empty_doc_scores_do_not_depend_on_the_batch.
        assert sum(values) == pytest.approx(1.0, abs=1e-5), cats


@settings(max_examples=EXAMPLES["textcat"], **SETTINGS)
@given(text=TEXT)
def test_textcat_keeps_text_and_gives_probabilities(textcat_nlp, text):
    doc = textcat_nlp(text)
    assert doc.text == text
    _assert_probabilities(doc)
    event(f"{'long' if len(text) >= 100 else 'short'} text")


@settings(max_examples=EXAMPLES["textcat_batches"], **SETTINGS)
@given(texts=st.lists(TEXT, min_size=1, max_size=6))
def test_textcat_pipe_returns_every_text_in_order(textcat_nlp, texts):
    docs = list(textcat_nlp.pipe(texts, batch_size=4))
    assert [doc.text for doc in docs] == texts
    for doc in docs:
        _assert_probabilities(doc)


def _assert_answers(context, answers, top_k):
    assert isinstance(answers, list) and len(answers) <= top_k
    for answer in answers:
        assert set(answer) == {"text", "start_char", "end_char", "score"}
        start, end = answer["start_char"], answer["end_char"]
        assert isinstance(start, int) and isinstance(end, int)
        assert 0 <= start < end <= len(context)
        assert context[start:end] == answer["text"] == answer["text"].strip()
        assert math.isfinite(answer["score"]) and 0.0 <= answer["score"] <= 1.0
    scores = [answer["score"] for answer in answers]
    assert scores == sorted(scores, reverse=True)
    # Shown by --hypothesis-show-statistics: how many examples were checked on real answers.
    event(f"{'some' if answers else 'no'} answers")
    if any(not answer["text"].isascii() for answer in answers):
        event("a non-ASCII answer")


@pytest.fixture(scope="module")
def qa_always_answers(qa_nlp):
    """SQuAD 1.1 mode with 3 answers per question: every question gets spans to check."""
    qa = qa_nlp.get_pipe("mbert_qa")
    before = dict(qa.cfg)
    qa.cfg.update(allow_no_answer=False, top_k=3)
    yield qa_nlp
    qa.cfg.clear()
    qa.cfg.update(before)


@settings(max_examples=EXAMPLES["qa_pipeline"], **SETTINGS)
@given(context=TEXT, question=st.one_of(st.just(QUESTION), ANY_TEXT, MIXED_TEXT))
def test_qa_answers_are_exact_slices_of_the_context(qa_always_answers, context, question):
    nlp = qa_always_answers
    doc = nlp(qa_doc(nlp, context, question))
    assert doc.text == context and doc._.question == question
    _assert_answers(context, doc._.answers, top_k=3)
    if not context.strip() or not question.strip():
        assert doc._.answers == []
    # Spans exist exactly for the answers whose offsets are token boundaries.
    spans = list(doc.spans["answers"])
    answer_offsets = [(a["start_char"], a["end_char"]) for a in doc._.answers]
    assert all((span.start_char, span.end_char) in answer_offsets for span in spans)
    for start, end in answer_offsets:
        aligned = doc.char_span(start, end, alignment_mode="strict") is not None
        assert aligned == ((start, end) in [(s.start_char, s.end_char) for s in spans])


@settings(max_examples=EXAMPLES["qa_api"], **SETTINGS)
@given(context=TEXT, questions=st.lists(st.one_of(st.just(QUESTION), MIXED_TEXT), min_size=1, max_size=4))
def test_qa_answer_api_on_any_text(qa_always_answers, context, questions):
    qa = qa_always_answers.get_pipe("mbert_qa")
    results = qa.answer(context, questions, top_k=2)
    assert len(results) == len(questions)
    for question, answers in zip(questions, results):
        _assert_answers(context, answers, top_k=2)
        if not context.strip() or not question.strip():
            assert answers == []


# Long "words" make sentences longer than max_source_length: cut between words, with a warning
# (tested in test_long_and_empty.py).
@pytest.mark.filterwarnings("ignore:mbert_translator.*max_source_length:UserWarning")
@settings(max_examples=EXAMPLES["translator"], **SETTINGS)
@given(texts=st.lists(TEXT, min_size=1, max_size=3))
def test_translator_gives_a_string_for_any_text(translator_nlp, texts):
    docs = list(translator_nlp.pipe(texts))
    assert [doc.text for doc in docs] == texts
    for doc in docs:
        assert isinstance(doc._.translation, str)
        if not doc.text.strip():
            assert doc._.translation == ""


def test_textcat_on_texts_bert_deletes_or_cannot_read(textcat_nlp):
    """Texts made only of what BERT deletes (controls, zero-width) or of [UNK]s still classify."""
    for text in ["\x00" * 50, "\u200b\u200d\ufeff", "\U0010fffd" * 30, "\x7f" * 2000, "[SEP]" * 300]:
        doc = textcat_nlp(text)
        assert doc.text == text
        _assert_probabilities(doc)
        assert numpy.isfinite(list(doc.cats.values())).all()
