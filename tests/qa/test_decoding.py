"""n-best span search: best spans, limits, "no answer", and exact offsets in every script."""

import numpy
import pytest
from transformers import AutoTokenizer

from spacy_mbert.qa.decoding import best_null_threshold, clean_span, decode, null_score, window_spans
from spacy_mbert.qa.features import encode_pairs

# One window: [CLS] q [SEP] "Hello"(0-5) "big"(6-9) "world"(10-15) "!"(15-16) [SEP]
CONTEXT = "Hello big world!"
OFFSETS = numpy.array([[-1, -1], [-1, -1], [-1, -1], [0, 5], [6, 9], [10, 15], [15, 16], [-1, -1]])


def _logits(start_at=(), end_at=(), cls=(0.0, 0.0), n=len(OFFSETS)):
    """Logits that are 0 everywhere but at the given (position, value) pairs, and [CLS]."""
    start, end = numpy.zeros(n, dtype="f"), numpy.zeros(n, dtype="f")
    start[0], end[0] = cls
    for position, value in start_at:
        start[position] = value
    for position, value in end_at:
        end[position] = value
    return start, end


def _decode(start, end, offsets=OFFSETS, context=CONTEXT, **kwargs):
    return decode(context, [start], [end], [offsets], **kwargs)


def test_best_span_from_hand_made_logits():
    start, end = _logits(start_at=[(4, 5.0)], end_at=[(5, 4.0)])
    prediction = _decode(start, end)
    assert prediction.answers[0]["text"] == "big world"
    assert (prediction.answers[0]["start_char"], prediction.answers[0]["end_char"]) == (6, 15)
    assert prediction.best_score == pytest.approx(9.0)
    assert 0.0 < prediction.answers[0]["score"] <= 1.0


def test_invalid_spans_are_never_answers():
    # The highest logits are on the question, [CLS] and an end before the start.
    start, end = _logits(
        start_at=[(1, 50.0), (3, -20.0), (4, -20.0), (5, 3.0)], end_at=[(2, 50.0), (4, 9.0), (6, 1.0)], cls=(40.0, 40.0)
    )
    answers = _decode(start, end, top_k=20).answers
    assert answers, "a valid span exists"
    for answer in answers:
        assert answer["end_char"] > answer["start_char"] >= 0
    assert answers[0]["text"] == "world!"  # start 5, end 6: end 4 would come before it


def test_n_best_list_is_ordered_and_distinct():
    start, end = _logits(start_at=[(3, 3.0), (4, 2.0), (5, 1.0)], end_at=[(5, 3.0), (4, 2.0)])
    answers = _decode(start, end, top_k=4).answers
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)
    assert [a["text"] for a in answers[:2]] == ["Hello big world", "Hello big"]
    assert len({(a["start_char"], a["end_char"]) for a in answers}) == len(answers)


def test_max_answer_length_limits_the_span_in_wordpieces():
    start, end = _logits(start_at=[(3, 5.0)], end_at=[(6, 5.0), (4, 1.0)])
    assert _decode(start, end).answers[0]["text"] == "Hello big world!"
    assert _decode(start, end, max_answer_length=2).answers[0]["text"] == "Hello big"


def test_n_best_size_limits_the_candidates_per_window():
    start, end = _logits(start_at=[(3, 5.0), (4, 4.0)], end_at=[(4, 5.0), (5, 4.0)])
    assert len(_decode(start, end, top_k=10, n_best_size=1).answers) == 1
    assert len(_decode(start, end, top_k=10, n_best_size=2).answers) == 2


def test_no_answer_when_null_score_wins_and_threshold_moves_the_decision():
    start, end = _logits(start_at=[(4, 3.0)], end_at=[(4, 3.0)], cls=(2.0, 2.0))  # span 6, null 4
    assert _decode(start, end).answers[0]["text"] == "big"  # SQuAD 1.1 mode: always a span
    assert _decode(start, end, allow_no_answer=True).answers[0]["text"] == "big"
    assert _decode(start, end, allow_no_answer=True, null_threshold=2.5).answers == []
    assert _decode(start, end, allow_no_answer=True, null_threshold=1.5).answers[0]["text"] == "big"
    start, end = _logits(start_at=[(4, 3.0)], end_at=[(4, 3.0)], cls=(5.0, 5.0))
    prediction = _decode(start, end, allow_no_answer=True)
    assert prediction.answers == [] and prediction.margin == pytest.approx(-4.0)


def test_null_score_is_the_minimum_over_windows():
    starts = [numpy.array([1.0, 0.0]), numpy.array([-2.0, 0.0])]
    ends = [numpy.array([1.0, 0.0]), numpy.array([0.5, 0.0])]
    assert null_score(starts, ends) == pytest.approx(-1.5)


def test_same_span_from_two_windows_is_one_candidate():
    start, end = _logits(start_at=[(4, 3.0)], end_at=[(4, 3.0)])
    weaker, _ = _logits(start_at=[(4, 2.0)])
    prediction = decode(CONTEXT, [start, weaker], [end, end], [OFFSETS, OFFSETS], top_k=5)
    assert [a["text"] for a in prediction.answers].count("big") == 1
    assert prediction.best_score == pytest.approx(6.0)


def test_whitespace_is_trimmed_by_moving_offsets():
    context = "a  big\tdeal \n"
    assert clean_span(context, 1, 6) == (3, 6)
    assert clean_span(context, 6, 13) == (7, 11)
    assert clean_span(context, 1, 3) is None


def test_spans_never_cut_a_letter_from_its_marks():
    context = "हिन्दी भाषा"  # ह + ि (vowel sign) + न + ् (virama) + द + ी
    assert context[slice(*clean_span(context, 0, 1))] == "हि"
    assert context[slice(*clean_span(context, 1, 3))] == "हिन्"
    assert context[slice(*clean_span(context, 0, 5))] == "हिन्दी"
    assert context[slice(*clean_span(context, 7, 8))] == "भा"


@pytest.mark.parametrize(
    "context,piece,expected",
    [
        ("won by scoring 23–16 points", "scor", "scoring"),
        ("won by scoring 23–16 points", "ori", "scoring"),
        ("won by scoring 23–16 points", "23", "23"),  # "–" is punctuation: a word boundary
        ("عاصمة مصر", "ع", "عاصمة"),
        ("चंदनपुर की पत्रिका", "चंद", "चंदनपुर"),
        ("我爱北京天安门", "天安", "天安"),  # no spaces in Chinese: no words to grow to
        ("เมืองหลวงคือกรุงเทพ", "กรุง", "กรุง"),
    ],
)
def test_align_to_words_grows_cut_words_in_space_separated_scripts(context, piece, expected):
    start = context.index(piece)
    aligned = clean_span(context, start, start + len(piece), align_to_words=True)
    assert context[slice(*aligned)] == expected
    assert context[slice(*clean_span(context, start, start + len(piece)))] == piece  # off: exact pieces


def test_best_null_threshold_maximizes_f1():
    # Answerable questions have high margins, unanswerable ones low: a threshold in between wins.
    margins = [5.0, 3.0, -1.0, -2.0, None]
    answer_f1 = [1.0, 1.0, 0.0, 0.0, 0.0]
    unanswerable = [False, False, True, True, True]
    threshold, f1 = best_null_threshold(margins, answer_f1, unanswerable)
    assert -1.0 < threshold < 3.0 and f1 == pytest.approx(1.0)
    threshold, f1 = best_null_threshold([1.0, 2.0], [1.0, 0.5], [False, False])
    assert threshold < 1.0 and f1 == pytest.approx(0.75)  # answer everything


SCRIPTS = [
    ("zh", "北京是中国的首都，也是一座历史悠久的城市。", "首都是哪里？", "北京"),
    ("zh", "我爱北京天安门。 The main telescope", "哪里？", "天安门"),
    ("ar", "القاهرة هي عاصمة مصر وأكبر مدنها.", "ما هي عاصمة مصر؟", "القاهرة"),
    ("ar", "القاهرة هي عاصمة مصر وأكبر مدنها.", "ما هي؟", "مصر"),
    ("th", "เมืองหลวงของประเทศไทยคือ กรุงเทพมหานคร ครับ", "เมืองหลวงคืออะไร", "กรุงเทพมหานคร"),
    ("hi", "चंदनपुर की हिन्दी पत्रिका बहुत पुरानी है।", "कौन सी भाषा?", "हिन्दी"),
    ("en", "The main  telescope was designed by Margaret Hollis.", "Who?", "Margaret Hollis"),
]


@pytest.fixture(params=["wordpiece", "unigram"], scope="module")
def tokenizer(request, tiny_wordpiece_dir, tiny_unigram_dir):
    path = tiny_wordpiece_dir if request.param == "wordpiece" else tiny_unigram_dir
    return AutoTokenizer.from_pretrained(str(path))


def _logits_pointing_at(window, start_char, end_char):
    """High start logit on every piece overlapping the answer's first character, high end on its last."""
    offsets = window.offsets
    starts = numpy.flatnonzero((offsets[:, 0] <= start_char) & (offsets[:, 1] > start_char))
    ends = numpy.flatnonzero((offsets[:, 0] < end_char) & (offsets[:, 1] >= end_char))
    start = numpy.zeros(len(window), dtype="f")
    end = numpy.zeros(len(window), dtype="f")
    start[starts[-1]] = 10.0
    end[ends[0]] = 10.0
    return start, end


@pytest.mark.parametrize("lang,context,question,answer", SCRIPTS, ids=[f"{s[0]}-{s[3]}" for s in SCRIPTS])
def test_answers_are_exact_slices_in_every_script(tokenizer, lang, context, question, answer):
    (window,) = encode_pairs(tokenizer, [question], [context], max_seq_length=128, doc_stride=32)
    start_char = context.index(answer)
    start, end = _logits_pointing_at(window, start_char, start_char + len(answer))
    best = decode(context, [start], [end], [window.offsets]).answers[0]
    assert context[best["start_char"] : best["end_char"]] == best["text"]
    assert best["text"] == answer
    assert best["text"] == best["text"].strip()


@pytest.mark.parametrize("lang,context,question,answer", SCRIPTS, ids=[f"{s[0]}-{s[3]}" for s in SCRIPTS])
def test_random_logits_give_clean_exact_answers(tokenizer, lang, context, question, answer):
    (window,) = encode_pairs(tokenizer, [question], [context], max_seq_length=128, doc_stride=32)
    rng = numpy.random.default_rng(0)
    for _ in range(20):
        start, end = rng.normal(size=(2, len(window))).astype("f")
        for found in decode(context, [start], [end], [window.offsets], top_k=20).answers:
            text = context[found["start_char"] : found["end_char"]]
            assert text == found["text"] and text == text.strip() and text
            assert not (found["end_char"] < len(context) and _is_mark(context[found["end_char"]]))
            assert not _is_mark(context[found["start_char"]])


def _is_mark(char):
    import unicodedata

    return unicodedata.category(char).startswith("M")


def test_window_spans_ignore_padding():
    start, end = _logits(start_at=[(4, 1.0)], end_at=[(4, 1.0)], n=len(OFFSETS) + 3)
    start[-2:] = end[-2:] = 100.0  # padding positions
    scores, starts, ends = window_spans(start, end, OFFSETS)
    assert scores.max() == pytest.approx(2.0) and (starts >= 0).all()
