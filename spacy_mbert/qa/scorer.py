"""``spacy-mbert.qa_scorer.v1``: SQuAD exact match and F1, overall and per language.

Per question, the prediction (the best ``doc._.answers`` entry, or "" for no
answer) is compared with every gold answer and the best match counts, as in the
official evaluation scripts. Answers are normalized first:

- by default as the official SQuAD v1.1 script: lower-case, remove ASCII
  punctuation, remove the English articles "a", "an", "the", collapse whitespace;
- for the languages of MLQA's script (``mlqa_evaluation_v1.py``: en, es, de, ar,
  hi, vi, zh) as that script: Unicode punctuation removed, the language's own
  articles removed; Chinese is segmented into single characters (plus whitespace
  tokens for Latin words and numbers), so F1 counts overlapping characters;
- for the other languages written without spaces (ja, th, lo, km, my, bo) in the
  same mixed way as Chinese: every CJK, kana, Thai, ... character is a token.

English keeps the SQuAD v1.1 normalization (it is identical to MLQA's except for
non-ASCII punctuation). Unanswerable questions (no gold answer) score 1 only when
the prediction is empty too, as in the SQuAD v2.0 script.
"""

import re
import string
import sys
import unicodedata
import warnings
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from ..extensions import has_text
from ..task_registry import UNDETERMINED, Metric, clear_placeholder_langs, task_scorer

_SQUAD_PUNCT = frozenset(string.punctuation)
_MLQA_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    # Verbatim from MLQA: it removes every "ال", also inside words.
    "ar": r"\sال^|ال",
    "hi": None,
    "zh": None,
}
MLQA_LANGS = frozenset(_MLQA_ARTICLES) - {"en"}
# Written without spaces between words: tokens are single characters of these scripts.
NO_SPACE_LANGS = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})
_CHAR_TOKEN_RANGES = (
    (0x4E00, 0x9FA5),  # MLQA's Chinese range, first: the official zh behaviour.
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),
    (0x9FA6, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2FA1F),  # more CJK ideographs
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1780, 0x17FF),  # Khmer
    (0x1000, 0x109F),  # Myanmar
    (0x0F00, 0x0FFF),  # Tibetan
)


@lru_cache(maxsize=1)
def _unicode_punct() -> frozenset:
    # MLQA's PUNCT: every Unicode P* character plus ASCII punctuation.
    chars = (chr(i) for i in range(sys.maxunicode + 1))
    return frozenset(c for c in chars if unicodedata.category(c).startswith("P")) | _SQUAD_PUNCT


def _base_lang(lang: Optional[str]) -> Optional[str]:
    return lang.replace("_", "-").split("-")[0].lower() if lang else None


def normalize_answer(text: str, lang: Optional[str] = None) -> str:
    """Normalize an answer for matching, as the official script for ``lang`` does (see module doc)."""
    lang = _base_lang(lang)
    if lang in NO_SPACE_LANGS or lang in MLQA_LANGS:
        return _normalize_mlqa(text, lang)
    return _normalize_squad(text)


def _normalize_squad(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _normalize_mlqa(text: str, lang: str) -> str:
    punct = _unicode_punct()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    articles = _MLQA_ARTICLES.get(lang)
    if articles:
        text = re.sub(articles, " ", text)
    tokens = mixed_segmentation(text) if lang in NO_SPACE_LANGS else text.split()
    return " ".join(token for token in tokens if token.strip())


def _is_char_token(char: str) -> bool:
    code = ord(char)
    return any(first <= code <= last for first, last in _CHAR_TOKEN_RANGES)


def mixed_segmentation(text: str) -> List[str]:
    """MLQA's segmentation: each CJK (Thai, kana, ...) character or punctuation mark is a token;
    runs of other characters are split at whitespace."""
    punct = _unicode_punct()
    tokens: List[str] = []
    pending = ""
    for char in text:
        if _is_char_token(char) or char in punct:
            tokens.extend(pending.split())
            pending = ""
            tokens.append(char)
        else:
            pending += char
    tokens.extend(pending.split())
    return tokens


def exact_match(prediction: str, gold: str, lang: Optional[str] = None) -> float:
    """1.0 when the normalized answers are equal."""
    return float(normalize_answer(prediction, lang) == normalize_answer(gold, lang))


def f1(prediction: str, gold: str, lang: Optional[str] = None) -> float:
    """Token-overlap F1 of the normalized answers (both empty: 1.0, one empty: 0.0)."""
    pred_tokens = normalize_answer(prediction, lang).split()
    gold_tokens = normalize_answer(gold, lang).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def max_over_golds(metric: Callable[..., float], prediction: str, golds: Sequence[str], lang: Optional[str]) -> float:
    """The best score against any gold answer; no gold answers means "unanswerable" (gold "")."""
    return max(metric(prediction, gold, lang) for gold in (list(golds) or [""]))


def prediction_text(answers: Optional[Iterable[Dict[str, Any]]]) -> str:
    """The text of the best answer, or "" for no answer."""
    answers = list(answers or [])
    return answers[0]["text"] if answers else ""


def gold_texts(answers: Optional[Iterable[Dict[str, Any]]]) -> List[str]:
    """Gold answer texts; [] for an unanswerable question."""
    return [answer["text"] for answer in answers or []]


def score_question(prediction: str, golds: Sequence[str], lang: Optional[str] = None) -> Tuple[float, float]:
    """(exact, f1) of one question."""
    return max_over_golds(exact_match, prediction, golds, lang), max_over_golds(f1, prediction, golds, lang)


def score_qa(examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
    """``qa_exact``, ``qa_f1`` (fractions, averaged over questions) and ``qa_per_lang``.

    The gold answers are ``eg.reference._.answers``, the prediction is the best of
    ``eg.predicted._.answers``; the language is ``eg.reference._.lang``.
    RETURNS (Dict[str, Any]): ``{"qa_exact", "qa_f1", "qa_per_lang": {lang: {"exact", "f1", "n"}}}``;
        ``qa_exact`` and ``qa_f1`` are None when there are no examples.
    """
    totals: Dict[str, List[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    exact_sum = f1_sum = 0.0
    n = 0
    examples = list(examples)
    warn_if_questions_lost(examples)
    for eg in examples:
        lang = eg.reference._.lang or eg.predicted._.lang
        exact, f1_value = score_question(
            prediction_text(eg.predicted._.answers), gold_texts(eg.reference._.answers), lang
        )
        group = totals[lang or "unknown"]
        group[0] += exact
        group[1] += f1_value
        group[2] += 1
        exact_sum += exact
        f1_sum += f1_value
        n += 1
    per_lang = {
        lang: {"exact": e / count, "f1": f / count, "n": int(count)} for lang, (e, f, count) in sorted(totals.items())
    }
    return {
        "qa_exact": exact_sum / n if n else None,
        "qa_f1": f1_sum / n if n else None,
        "qa_per_lang": per_lang,
    }


def warn_if_questions_lost(examples: List[Example]) -> None:
    """Warn when gold answers are scored against docs that had no question to answer.

    E.g. dev data read with ``spacy.Corpus.v1``, which drops ``doc._.question``: every
    answer would count as missed (F1 0) with nothing to say why.
    """
    lost = sum(
        1
        for eg in examples
        if eg.reference._.answers and not eg.predicted._.answers and not has_text(eg.predicted._.question)
    )
    if lost:
        warnings.warn(
            f"'mbert_qa' scoring: {lost} of {len(examples)} examples have gold answers but no doc._.question "
            f"on the predicted doc, so they count as unanswered; read the data with spacy-mbert.Corpus.v1 "
            f"(or set doc._.question) before evaluating."
        )


@registry.scorers("spacy-mbert.qa_scorer.v1")
def make_qa_scorer() -> Callable[..., Dict[str, Any]]:
    """The scorer of the ``mbert_qa`` component: SQuAD EM/F1 with per-language normalization."""
    return score_qa


# --------------------------------------------------------------------------- spacy-mbert evaluate
# The "mbert_qa" task of ``spacy_mbert.evaluate`` (see ``task_registry.py``).


def score_for_evaluate(examples: Sequence[Example], pipe: Any) -> Dict[str, Any]:
    """SQuAD exact match and F1: max over the gold answers, MLQA normalization per language."""
    scores = score_qa(examples)
    return {"qa_exact": scores["qa_exact"], "qa_f1": scores["qa_f1"]}


def read_references(
    path: Path, *, nlp: Language, pipe: Any, lang: Optional[str], labels: Optional[Sequence[str]]
) -> List[Doc]:
    """Read SQuAD JSON (``data[].paragraphs[].qas[]``) into reference docs.

    Articles without a language code (and no ``lang``) get ``doc._.lang = None``.
    """
    from .convert import read_squad

    return clear_placeholder_langs(read_squad(path, nlp=nlp, lang=lang or UNDETERMINED))


task_scorer(
    "mbert_qa",
    metrics=(Metric("qa_exact", "exact"), Metric("qa_f1", "F1")),
    main="qa_f1",
    read=read_references,
    suffixes=(".json",),
)(score_for_evaluate)
