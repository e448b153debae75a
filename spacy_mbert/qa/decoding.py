"""From start/end logits to answers: n-best span search over the windows of one question.

This is ``postprocess_qa_predictions`` of Hugging Face's ``utils_qa.py``:

- per window, the ``n_best_size`` best start and end wordpieces are paired; a pair
  is a candidate when both lie in the context, ``end >= start`` and it spans at
  most ``max_answer_length`` wordpieces; its score is ``start_logit + end_logit``;
- the null ("no answer") score is the *minimum* over the windows of the [CLS]
  start + end logits (the window most sure that there is an answer decides);
- with ``allow_no_answer`` (SQuAD 2.0), a span is an answer only when its score
  beats ``null_score + null_threshold``.

Differences, all so that answers are clean slices of the context:

- the top starts/ends are taken among *context* wordpieces (HF takes them over all
  positions and drops the invalid ones, so it can end up with fewer candidates);
- candidates are character spans: the same span found in two overlapping windows
  is one candidate (with its best score), whitespace at either end is trimmed by
  moving the offsets, and a span never ends between a letter and its combining
  marks (Devanagari or Thai vowel signs, Arabic harakat);
- with ``align_to_words`` (as the HF ``question-answering`` pipeline), a span that
  starts or ends inside a word ("scor" of "scoring") grows to the whole word. Words
  end at whitespace and punctuation, as BERT's (and ``MultilingualTokenizer``'s) do;
  scripts written without spaces (CJK, kana, Thai, Lao, Khmer, Myanmar, Tibetan)
  are left alone, since a "word" there can be a whole clause.

Only offsets ever move: the answer text is always ``context[start_char:end_char]``.

``score`` is a probability: the softmax of the candidate scores over the n-best
list (plus the null score with ``allow_no_answer``), as utils_qa computes it.
"""

import unicodedata
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy

from .features import CLS_INDEX

# Joiners glue the characters on either side into one visible unit.
_JOINERS = ("\u200c", "\u200d")


@dataclass
class Prediction:
    """The decoded answers to one question, and the scores behind the no-answer decision.

    answers (List[Dict]): ``{"text", "start_char", "end_char", "score"}``, best first.
    best_score (Optional[float]): start + end logit of the best span (None: no valid span).
    null_score (Optional[float]): The no-answer score (None: no window).
    """

    answers: List[Dict] = field(default_factory=list)
    best_score: Optional[float] = None
    null_score: Optional[float] = None

    @property
    def margin(self) -> Optional[float]:
        """How much the best span beats "no answer" (compare with ``null_threshold``)."""
        if self.best_score is None or self.null_score is None:
            return None
        return self.best_score - self.null_score


def window_spans(
    start_logits: numpy.ndarray,
    end_logits: numpy.ndarray,
    offsets: numpy.ndarray,
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Candidate spans of one window: ``(scores, start_chars, end_chars)``, unsorted.

    start_logits, end_logits: The window's logits (padding beyond ``len(offsets)`` is ignored).
    offsets: ``(n, 2)`` character offsets into the context, ``-1`` outside it.
    """
    n = len(offsets)
    start_logits, end_logits = start_logits[:n], end_logits[:n]
    context = numpy.flatnonzero(offsets[:, 0] >= 0)
    if len(context) == 0:
        empty = numpy.zeros(0)
        return empty, empty.astype(numpy.int64), empty.astype(numpy.int64)
    starts = context[_top(start_logits[context], n_best_size)]
    ends = context[_top(end_logits[context], n_best_size)]
    scores = start_logits[starts][:, None] + end_logits[ends][None, :]
    length = ends[None, :] - starts[:, None] + 1
    valid = (length >= 1) & (length <= max_answer_length)
    start_chars = numpy.broadcast_to(offsets[starts, 0][:, None], valid.shape)
    end_chars = numpy.broadcast_to(offsets[ends, 1][None, :], valid.shape)
    return scores[valid], start_chars[valid], end_chars[valid]


def _top(values: numpy.ndarray, k: int) -> numpy.ndarray:
    # Stable, so equal logits rank by position (deterministic answers).
    return numpy.argsort(-values, kind="stable")[:k]


def null_score(start_logits: Sequence[numpy.ndarray], end_logits: Sequence[numpy.ndarray]) -> Optional[float]:
    """The no-answer score: min over windows of start[CLS] + end[CLS] (utils_qa)."""
    if not len(start_logits):
        return None
    return float(min(s[CLS_INDEX] + e[CLS_INDEX] for s, e in zip(start_logits, end_logits)))


def decode(
    context: str,
    start_logits: Sequence[numpy.ndarray],
    end_logits: Sequence[numpy.ndarray],
    offsets: Sequence[numpy.ndarray],
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    top_k: int = 1,
    allow_no_answer: bool = False,
    null_threshold: float = 0.0,
    align_to_words: bool = True,
) -> Prediction:
    """The best answers to one question from the logits of all its windows.

    context (str): The context the offsets point into.
    start_logits, end_logits, offsets: One entry per window of this question.
    n_best_size (int): Start and end candidates per window, and length of the n-best list.
    max_answer_length (int): Longest answer in wordpieces.
    top_k (int): Answers to return (fewer when there are fewer candidates).
    allow_no_answer (bool): SQuAD 2.0 mode: return no answer unless a span beats the null score.
    null_threshold (float): Added to the null score; higher means "no answer" more often.
    align_to_words (bool): Grow spans that cut a word to the whole word (space-separated scripts).
    RETURNS (Prediction): The answers, best first, with the scores behind them.
    """
    parts = [
        window_spans(s, e, o, n_best_size=n_best_size, max_answer_length=max_answer_length)
        for s, e, o in zip(start_logits, end_logits, offsets)
    ]
    candidates = _nbest(context, parts, n_best_size, align_to_words)
    null = null_score(start_logits, end_logits)
    prediction = Prediction(best_score=candidates[0][0] if candidates else None, null_score=null)
    if not candidates:
        return prediction
    scores = numpy.array([score for score, _ in candidates] + ([null] if allow_no_answer else []))
    probs = _softmax(scores)
    for (score, (start, end)), prob in zip(candidates, probs):
        if len(prediction.answers) >= top_k:
            break
        if allow_no_answer and not score > null + null_threshold:
            break  # Sorted: no later span beats the null score either.
        prediction.answers.append(
            {"text": context[start:end], "start_char": start, "end_char": end, "score": float(prob)}
        )
    return prediction


def _nbest(context: str, parts, n_best_size: int, align_to_words: bool) -> List[Tuple[float, Tuple[int, int]]]:
    """Distinct clean character spans, best first, at most ``n_best_size``."""
    if not parts:
        return []
    scores = numpy.concatenate([p[0] for p in parts])
    starts = numpy.concatenate([p[1] for p in parts])
    ends = numpy.concatenate([p[2] for p in parts])
    seen = set()
    candidates = []
    for i in numpy.argsort(-scores, kind="stable"):
        span = clean_span(context, int(starts[i]), int(ends[i]), align_to_words=align_to_words)
        if span is None or span in seen:
            continue
        seen.add(span)
        candidates.append((float(scores[i]), span))
        if len(candidates) >= n_best_size:
            break
    return candidates


def clean_span(context: str, start: int, end: int, *, align_to_words: bool = False) -> Optional[Tuple[int, int]]:
    """Adjust character offsets so the span has no outer whitespace and cuts no character
    (nor, with ``align_to_words``, a word of a space-separated script).

    SentencePiece offsets may include the space the "▁" marker stands for, and a
    wordpiece may end before a combining mark; only the offsets move, so the text
    stays an exact slice of the context. None when nothing but whitespace is left.
    """
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    if start >= end:
        return None
    while start > 0 and _is_mark(context[start]) and not context[start - 1].isspace():
        start -= 1
    while end < len(context):
        if _is_mark(context[end]):
            end += 1
        elif context[end] in _JOINERS and end + 1 < len(context) and not context[end + 1].isspace():
            end += 2
        else:
            break
    if align_to_words:
        while start > 0 and _in_word(context[start - 1]) and _in_word(context[start]):
            start -= 1
        while end < len(context) and _in_word(context[end - 1]) and _in_word(context[end]):
            end += 1
    return start, end


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


# Scripts written without spaces: a run of their letters is not one word.
_NO_SPACE_SCRIPTS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana extensions
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x3134F),  # CJK ideographs
)


def _in_word(char: str) -> bool:
    """Inside a word of a space-separated script: not whitespace, not punctuation (BERT's
    definition, as ``MultilingualTokenizer`` splits), not a character of a script without spaces."""
    if char.isspace():
        return False
    code = ord(char)
    # BERT counts all non-alphanumeric ASCII as punctuation ("$", "^", "`").
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return False
    if unicodedata.category(char)[0] in "PZ":
        return False
    return not any(first <= code <= last for first, last in _NO_SPACE_SCRIPTS)


def _softmax(scores: numpy.ndarray) -> numpy.ndarray:
    exp = numpy.exp(scores - scores.max())
    return exp / exp.sum()


def best_null_threshold(
    margins: Sequence[Optional[float]], answer_f1: Sequence[float], unanswerable: Sequence[bool]
) -> Tuple[float, float]:
    """The ``null_threshold`` that maximizes mean F1 on dev data (SQuAD 2.0's best_f1_thresh).

    margins: Per question, best span score minus null score (None: no span at all).
    answer_f1: Per question, F1 of the best span against the gold answers.
    unanswerable: Per question, whether the gold says "no answer".
    RETURNS (Tuple[float, float]): The threshold (answer iff margin > threshold) and the mean F1 it gives.
    """
    n = len(margins)
    if n == 0:
        return 0.0, 0.0
    values = numpy.array([-numpy.inf if m is None else m for m in margins], dtype=float)
    if_null = numpy.array(unanswerable, dtype=float)
    gains = numpy.array(answer_f1, dtype=float) - if_null
    order = numpy.argsort(-values, kind="stable")
    values, gains = values[order], gains[order]
    # totals[k]: F1 sum when exactly the k largest margins are answered.
    totals = if_null.sum() + numpy.concatenate([[0.0], numpy.cumsum(gains)])
    allowed = numpy.ones(n + 1, dtype=bool)
    allowed[1:n] = values[:-1] > values[1:]  # A threshold cannot split tied margins.
    allowed[1:] &= numpy.isfinite(values)  # Questions without a span can't be answered.
    k = int(numpy.flatnonzero(allowed)[numpy.argmax(totals[allowed])])
    if k == 0:
        threshold = float(values[0]) if numpy.isfinite(values[0]) else 0.0
    elif k < n and numpy.isfinite(values[k]):
        threshold = float((values[k - 1] + values[k]) / 2)  # Midway: robust to small shifts.
    else:
        threshold = float(values[k - 1] - 1.0)
    return threshold, float(totals[k] / n)
