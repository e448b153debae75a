"""Question + context pairs as BERT inputs: overlapping windows over long contexts.

The windows are exactly what Hugging Face's ``run_qa.py`` builds with

    tokenizer(questions, contexts, truncation="only_second", max_length=max_seq_length,
              stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)

i.e. ``[CLS] question [SEP] context-window [SEP]`` (or the tokenizer's own pair
template, e.g. XLM-R's ``<s> q </s></s> c </s>``), consecutive context windows
sharing ``doc_stride`` wordpieces. ``tests/qa/test_features.py`` checks the ids
against that call. They are assembled here from separately tokenized questions
and contexts instead, so that a context asked several questions (SQuAD has ~5 per
paragraph; ``QuestionAnswerer.answer`` any number) is tokenized once.

Each window keeps the character offsets of its context wordpieces into the
original context string (``-1`` for question and special tokens), which is what
makes every answer an exact slice of the context, in every script.
"""

import weakref
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy

from ..errors import UserError

# The [CLS] position, where a window points when it holds no answer.
CLS_INDEX = 0


@dataclass
class Window:
    """One model input: a question with one window of its context.

    example (int): Index of the (question, context) pair the window belongs to.
    input_ids (List[int]): Wordpiece ids, special tokens included.
    token_type_ids (Optional[List[int]]): Segment ids (None when the tokenizer has none, e.g. XLM-R).
    offsets (numpy.ndarray): ``(len(input_ids), 2)`` character offsets into the context;
        ``-1`` for question and special tokens.
    start_position, end_position (int): Training targets (wordpiece indices of the gold
        answer in this window, or ``CLS_INDEX`` when the window does not contain it).
    """

    example: int
    input_ids: List[int]
    token_type_ids: Optional[List[int]]
    offsets: numpy.ndarray
    start_position: int = CLS_INDEX
    end_position: int = CLS_INDEX

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def offset_mapping(self) -> List[Optional[Tuple[int, int]]]:
        """``run_qa.py``'s view of the offsets: ``None`` outside the context."""
        return [None if start < 0 else (int(start), int(end)) for start, end in self.offsets]


@dataclass
class PaddedBatch:
    """Windows padded to the longest one in the batch (not to ``max_seq_length``)."""

    input_ids: numpy.ndarray
    attention_mask: numpy.ndarray
    token_type_ids: Optional[numpy.ndarray]
    lengths: List[int] = field(default_factory=list)


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a (question, context) pair."""

    prefix: Tuple[int, ...]
    middle: Tuple[int, ...]
    suffix: Tuple[int, ...]
    # Segment ids of prefix + question, and of middle + context + suffix (None: no segments).
    first_type: Optional[int]
    second_type: Optional[int]
    prefix_types: Tuple[int, ...] = ()
    middle_types: Tuple[int, ...] = ()
    suffix_types: Tuple[int, ...] = ()

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


_TEMPLATES: "weakref.WeakKeyDictionary[object, PairTemplate]" = weakref.WeakKeyDictionary()


def pair_template(tokenizer) -> PairTemplate:
    """Read the pair template off the tokenizer itself (BERT, XLM-R, ... all differ)."""
    cached = _TEMPLATES.get(tokenizer)
    if cached is not None:
        return cached
    encoding = tokenizer("a", "b", return_token_type_ids="token_type_ids" in tokenizer.model_input_names)
    ids = encoding["input_ids"]
    types = encoding.get("token_type_ids")
    seq = encoding.sequence_ids()
    first = [i for i, s in enumerate(seq) if s == 0]
    second = [i for i, s in enumerate(seq) if s == 1]
    if not first or not second:
        raise UserError(
            f"The tokenizer {type(tokenizer).__name__} does not encode question/context pairs; "
            f"use a BERT-family encoder with a fast tokenizer."
        )
    spans = ((0, first[0]), (first[-1] + 1, second[0]), (second[-1] + 1, len(ids)))
    template = PairTemplate(
        prefix=tuple(ids[spans[0][0] : spans[0][1]]),
        middle=tuple(ids[spans[1][0] : spans[1][1]]),
        suffix=tuple(ids[spans[2][0] : spans[2][1]]),
        first_type=None if types is None else types[first[0]],
        second_type=None if types is None else types[second[0]],
        prefix_types=() if types is None else tuple(types[a] for a in range(*spans[0])),
        middle_types=() if types is None else tuple(types[a] for a in range(*spans[1])),
        suffix_types=() if types is None else tuple(types[a] for a in range(*spans[2])),
    )
    _TEMPLATES[tokenizer] = template
    return template


def check_window_settings(max_seq_length: int, doc_stride: int) -> None:
    """Reject settings that leave no room for a context window (HF fails later, less clearly)."""
    if max_seq_length < 16 or doc_stride < 0 or doc_stride > max_seq_length - 8:
        raise UserError(
            f"QuestionAnswering needs max_seq_length >= 16 and 0 <= doc_stride <= max_seq_length - 8 "
            f"(got max_seq_length={max_seq_length}, doc_stride={doc_stride}); doc_stride is the overlap "
            f"between windows, e.g. max_seq_length = 384 and doc_stride = 128."
        )


def encode_pairs(
    tokenizer,
    questions: Sequence[str],
    contexts: Sequence[str],
    *,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    answers: Optional[Sequence[Optional[Tuple[int, int]]]] = None,
) -> List[Window]:
    """Encode (question, context) pairs into windows, in example order.

    tokenizer: A Hugging Face fast tokenizer.
    questions, contexts (Sequence[str]): Aligned lists; repeated contexts are tokenized once.
    max_seq_length (int): Longest window in wordpieces, special tokens included.
    doc_stride (int): Wordpieces shared by consecutive windows of a long context.
    answers (Optional[Sequence[Optional[Tuple[int, int]]]]): Gold ``(start_char, end_char)``
        per pair (None: unanswerable) to set the training positions.
    RETURNS (List[Window]): All windows; ``window.example`` is the pair's index.
    """
    check_window_settings(max_seq_length, doc_stride)
    if len(questions) != len(contexts):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
    template = pair_template(tokenizer)
    context_ids, context_offsets, context_index = tokenize_contexts(tokenizer, contexts)
    question_ids = tokenize_questions(tokenizer, questions, max_seq_length - doc_stride - template.num_special - 1)
    windows: List[Window] = []
    for i, q_ids in enumerate(question_ids):
        c = context_index[i]
        gold = answers[i] if answers is not None else None
        windows.extend(
            _pair_windows(i, q_ids, context_ids[c], context_offsets[c], template, max_seq_length, doc_stride, gold)
        )
    return windows


def tokenize_contexts(tokenizer, contexts: Sequence[str]) -> Tuple[List[List[int]], List[numpy.ndarray], List[int]]:
    """Tokenize each distinct context once (one batched call); return ids, offsets and each pair's index."""
    index: Dict[str, int] = {}
    unique: List[str] = []
    pair_index = []
    for context in contexts:
        if context not in index:
            index[context] = len(unique)
            unique.append(context)
        pair_index.append(index[context])
    if not unique:
        return [], [], []
    encoded = tokenizer(
        unique,
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    offsets = [numpy.asarray(o, dtype=numpy.int64).reshape(-1, 2) for o in encoded["offset_mapping"]]
    return encoded["input_ids"], offsets, pair_index


def tokenize_questions(tokenizer, questions: Sequence[str], max_tokens: int) -> List[List[int]]:
    """Question ids, left-stripped as in run_qa (leading spaces waste window room).

    A question longer than ``max_tokens`` is cut there: Hugging Face raises instead,
    because no context window would fit next to it.
    """
    if not questions:
        return []
    stripped = [question.lstrip() for question in questions]
    ids = tokenizer(
        stripped, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False, verbose=False
    )["input_ids"]
    return [q[:max_tokens] for q in ids]


def _pair_windows(
    example: int,
    q_ids: List[int],
    c_ids: List[int],
    c_offsets: numpy.ndarray,
    template: PairTemplate,
    max_seq_length: int,
    doc_stride: int,
    gold: Optional[Tuple[int, int]],
) -> List[Window]:
    room = max_seq_length - template.num_special - len(q_ids)
    windows = []
    for start, stop in window_ranges(len(c_ids), room, doc_stride):
        window = _assemble(example, q_ids, c_ids[start:stop], c_offsets[start:stop], template)
        if gold is not None:
            window.start_position, window.end_position = answer_positions(window.offsets, *gold)
        windows.append(window)
    return windows


def window_ranges(n_tokens: int, room: int, stride: int) -> List[Tuple[int, int]]:
    """Context token ranges, as the tokenizers library's overflow: windows of ``room`` tokens
    starting every ``room - stride`` tokens, up to the first one that reaches the end."""
    if n_tokens <= room:
        return [(0, n_tokens)]
    ranges = []
    for start in range(0, n_tokens, room - stride):
        stop = min(start + room, n_tokens)
        ranges.append((start, stop))
        if stop == n_tokens:
            break
    return ranges


def _assemble(example: int, q_ids, c_ids, c_offsets: numpy.ndarray, t: PairTemplate) -> Window:
    input_ids = [*t.prefix, *q_ids, *t.middle, *c_ids, *t.suffix]
    token_type_ids = None
    if t.first_type is not None:
        token_type_ids = [
            *t.prefix_types,
            *[t.first_type] * len(q_ids),
            *t.middle_types,
            *[t.second_type] * len(c_ids),
            *t.suffix_types,
        ]
    offsets = numpy.full((len(input_ids), 2), -1, dtype=numpy.int64)
    first = len(t.prefix) + len(q_ids) + len(t.middle)
    offsets[first : first + len(c_ids)] = c_offsets
    return Window(example, input_ids, token_type_ids, offsets)


def answer_positions(offsets: numpy.ndarray, start_char: int, end_char: int) -> Tuple[int, int]:
    """Wordpiece start/end of a gold answer, as ``prepare_train_features`` in run_qa.py.

    The start is the last context piece starting at or before ``start_char``, the end
    the first one ending at or after ``end_char``; both ``CLS_INDEX`` when the answer
    is not entirely inside the window.
    """
    context = numpy.flatnonzero(offsets[:, 0] >= 0)
    if len(context) == 0:
        return CLS_INDEX, CLS_INDEX
    first, last = context[0], context[-1]
    if not (offsets[first, 0] <= start_char and offsets[last, 1] >= end_char):
        return CLS_INDEX, CLS_INDEX
    starts = offsets[first : last + 1, 0]
    ends = offsets[first : last + 1, 1]
    start = first + int(numpy.flatnonzero(starts <= start_char)[-1])
    end = first + int(numpy.flatnonzero(ends >= end_char)[0])
    return start, end


def pad_windows(windows: Sequence[Window], pad_id: int) -> PaddedBatch:
    """Pad to the longest window of this batch: sorted batches then carry almost no padding."""
    lengths = [len(w) for w in windows]
    width = max(lengths)
    input_ids = numpy.full((len(windows), width), pad_id, dtype=numpy.int64)
    mask = numpy.zeros((len(windows), width), dtype=numpy.int64)
    has_types = windows[0].token_type_ids is not None
    types = numpy.zeros((len(windows), width), dtype=numpy.int64) if has_types else None
    for row, window in enumerate(windows):
        input_ids[row, : len(window)] = window.input_ids
        mask[row, : len(window)] = 1
        if types is not None:
            types[row, : len(window)] = window.token_type_ids
    return PaddedBatch(input_ids, mask, types, lengths)
