"""Question/context windows: identical to Hugging Face's pair encoding, covering long contexts."""

import json

import numpy
import pytest
from transformers import AutoTokenizer

from spacy_mbert.errors import UserError
from spacy_mbert.qa.features import CLS_INDEX, answer_positions, encode_pairs, pad_windows, window_ranges

from ..conftest import CORPUS

# ~2,700 characters in four scripts; the answer sits near the end.
LONG_CONTEXT = " ".join(
    [
        "The Lake Varden Observatory was built in 1962 on a hill above the town of Eastmere.",
        "Die Sternwarte öffnet jeden Sommer ihre Türen für Besucher.",
        "北京是中国的首都，也是一座历史悠久的城市。",
        "القاهرة هي عاصمة مصر وأكبر مدنها.",
    ]
    * 12
    + ["Its main telescope was designed by the engineer Margaret Hollis."]
)
ANSWER = "Margaret Hollis"
QUESTION = "Who designed the main telescope?"


@pytest.fixture(params=["wordpiece", "unigram"])
def tokenizer(request, tiny_wordpiece_dir, tiny_unigram_dir):
    path = tiny_wordpiece_dir if request.param == "wordpiece" else tiny_unigram_dir
    return AutoTokenizer.from_pretrained(str(path))


def _hf_windows(tokenizer, questions, contexts, max_seq_length, doc_stride):
    """run_qa.py's prepare_*_features encoding."""
    return tokenizer(
        [q.lstrip() for q in questions],
        contexts,
        truncation="only_second",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


@pytest.mark.parametrize("max_seq_length,doc_stride", [(384, 128), (64, 16), (48, 0)])
def test_windows_equal_hugging_face_pair_encoding(tokenizer, max_seq_length, doc_stride):
    questions = [QUESTION, "  Wo?", "首都是哪里？", QUESTION]
    contexts = [LONG_CONTEXT, "Die Sternwarte öffnet im Sommer.", "北京是中国的首都。", LONG_CONTEXT]
    hf = _hf_windows(tokenizer, questions, contexts, max_seq_length, doc_stride)
    windows = encode_pairs(tokenizer, questions, contexts, max_seq_length=max_seq_length, doc_stride=doc_stride)
    assert len(windows) == len(hf["input_ids"]) > len(questions)
    for i, window in enumerate(windows):
        assert window.example == hf["overflow_to_sample_mapping"][i]
        assert window.input_ids == hf["input_ids"][i]
        assert window.token_type_ids == hf.get("token_type_ids", [None] * len(windows))[i]
        in_context = [s == 1 for s in hf.sequence_ids(i)]
        expected = [tuple(o) if c else None for o, c in zip(hf["offset_mapping"][i], in_context)]
        assert window.offset_mapping == expected


def test_long_context_windows_overlap_and_cover_every_character(tokenizer):
    windows = encode_pairs(tokenizer, [QUESTION], [LONG_CONTEXT], max_seq_length=64, doc_stride=16)
    assert len(LONG_CONTEXT) > 2000 and len(windows) > 10
    assert all(len(w) <= 64 for w in windows)
    covered = numpy.zeros(len(LONG_CONTEXT), dtype=bool)
    previous_pieces = None
    for window in windows:
        pieces = {tuple(o) for o in window.offsets if o[0] >= 0}
        for start, end in pieces:
            covered[start:end] = True
        if previous_pieces is not None:
            assert len(pieces & previous_pieces) == 16  # doc_stride pieces shared with the previous window
        previous_pieces = pieces
    uncovered = {LONG_CONTEXT[i] for i in numpy.flatnonzero(~covered)}
    assert uncovered <= {" "}, f"characters in no window: {uncovered}"


def test_training_positions_point_at_the_answer_in_the_last_window(tokenizer):
    start = LONG_CONTEXT.index(ANSWER)
    windows = encode_pairs(
        tokenizer,
        [QUESTION],
        [LONG_CONTEXT],
        max_seq_length=64,
        doc_stride=16,
        answers=[(start, start + len(ANSWER))],
    )
    with_answer = [w for w in windows if w.start_position != CLS_INDEX]
    assert with_answer == [windows[-1]]
    window = windows[-1]
    assert window.start_position <= window.end_position
    span_start = window.offsets[window.start_position, 0]
    span_end = window.offsets[window.end_position, 1]
    assert LONG_CONTEXT[span_start:span_end].strip() == ANSWER
    # Every other window points at [CLS], as do all windows of an unanswerable question.
    assert all((w.start_position, w.end_position) == (CLS_INDEX, CLS_INDEX) for w in windows[:-1])
    unanswerable = encode_pairs(tokenizer, [QUESTION], [LONG_CONTEXT], max_seq_length=64, doc_stride=16, answers=[None])
    assert {(w.start_position, w.end_position) for w in unanswerable} == {(CLS_INDEX, CLS_INDEX)}


def _run_qa_positions(features, i, start_char, end_char):
    """prepare_train_features of run_qa.py, verbatim but for names."""
    input_ids, offsets, sequence_ids = features["input_ids"][i], features["offset_mapping"][i], features.sequence_ids(i)
    token_start_index = 0
    while sequence_ids[token_start_index] != 1:
        token_start_index += 1
    token_end_index = len(input_ids) - 1
    while sequence_ids[token_end_index] != 1:
        token_end_index -= 1
    if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
        return CLS_INDEX, CLS_INDEX
    while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
        token_start_index += 1
    while offsets[token_end_index][1] >= end_char:
        token_end_index -= 1
    return token_start_index - 1, token_end_index + 1


def test_training_positions_equal_run_qa_on_the_corpus(tokenizer):
    data = json.loads((CORPUS / "qa" / "train.json").read_text(encoding="utf8"))
    questions, contexts, answers = [], [], []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                for answer in qa["answers"][:1]:
                    questions.append(qa["question"])
                    contexts.append(paragraph["context"])
                    answers.append((answer["answer_start"], answer["answer_start"] + len(answer["text"])))
    windows = encode_pairs(tokenizer, questions, contexts, max_seq_length=64, doc_stride=16, answers=answers)
    features = _hf_windows(tokenizer, questions, contexts, 64, 16)
    compared = 0
    for i, window in enumerate(windows):
        expected = _run_qa_positions(features, i, *answers[window.example])
        if features.sequence_ids(i)[expected[0]] is None and expected[0] != CLS_INDEX:
            # run_qa's start loop runs on through the final [SEP] (offsets (0, 0)) when the
            # answer starts at the last context piece; the piece itself is right.
            assert window.start_position == len(window) - 2
            continue
        assert (window.start_position, window.end_position) == expected
        compared += expected != (CLS_INDEX, CLS_INDEX)
    assert compared >= len(questions)  # every answer is found in at least one window


def test_answer_positions_follow_run_qa():
    # Context pieces "Hello"(0-5) "wor"(6-9) "##ld"(9-11); [CLS], question and [SEP] are -1.
    offsets = numpy.array([[-1, -1], [-1, -1], [-1, -1], [0, 5], [6, 9], [9, 11], [-1, -1]])
    assert answer_positions(offsets, 6, 11) == (4, 5)
    assert answer_positions(offsets, 7, 9) == (4, 4)  # inside a piece: the piece
    assert answer_positions(offsets, 0, 11) == (3, 5)
    assert answer_positions(offsets, 6, 12) == (CLS_INDEX, CLS_INDEX)  # runs past the window


def test_window_ranges_match_the_tokenizers_overflow():
    assert window_ranges(5, 10, 3) == [(0, 5)]
    assert window_ranges(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert window_ranges(11, 4, 1) == [(0, 4), (3, 7), (6, 10), (9, 11)]


def test_long_question_is_cut_instead_of_failing(tokenizer):
    question = "Who designed the telescope of the observatory above the town? " * 10
    windows = encode_pairs(tokenizer, [question], [LONG_CONTEXT], max_seq_length=48, doc_stride=16)
    assert windows and all(len(w) <= 48 for w in windows)
    assert all((w.offsets[:, 0] >= 0).sum() > 16 for w in windows[:-1])


def test_bad_window_settings_fail_with_the_fix(tokenizer):
    with pytest.raises(UserError, match="doc_stride"):
        encode_pairs(tokenizer, [QUESTION], [LONG_CONTEXT], max_seq_length=64, doc_stride=60)


def test_padding_is_per_batch(tokenizer):
    windows = encode_pairs(tokenizer, ["Wo?", QUESTION], ["kurz", LONG_CONTEXT], max_seq_length=384, doc_stride=128)
    batch = pad_windows(windows[:1], tokenizer.pad_token_id)
    assert batch.input_ids.shape == (1, len(windows[0])) and batch.attention_mask.all()
    batch = pad_windows(windows, tokenizer.pad_token_id)
    assert batch.input_ids.shape == (len(windows), max(len(w) for w in windows))
    assert batch.attention_mask.sum(axis=1).tolist() == [len(w) for w in windows]
    assert (batch.input_ids[0, len(windows[0]) :] == tokenizer.pad_token_id).all()
