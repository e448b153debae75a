"""``spacy-mbert.translation_scorer.v1``: sacreBLEU BLEU and chrF, overall and per source language.

Scores are **fractions (0-1)**: sacreBLEU's 0-100 numbers divided by 100, so
that they combine with other components' scores in spaCy's ``score_weights``
and match the convention of ``spacy-mbert evaluate`` (whose table and chart
show them as percentages again, i.e. on sacreBLEU's familiar scale).

The BLEU tokenizer follows the component's ``target_lang`` (passed to the
scorer from the component's ``cfg``): ``"zh"`` for Chinese, ``"char"`` for
languages without spaces between words (Japanese, Thai, ...) and sacreBLEU's
default ``"13a"`` otherwise. For Japanese, the WMT standard is ``"ja-mecab"``;
it needs ``pip install sacrebleu[ja]`` and is chosen by setting
``bleu_tokenize = "ja-mecab"``. chrF is whitespace-insensitive and needs no
tokenizer.
"""

from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from ..errors import UserError, first_line
from ..task_registry import UNDETERMINED, Metric, clear_placeholder_langs, task_scorer

UNKNOWN_LANG = "unknown"
# BLEU tokenizer for targets that need something other than "13a".
BLEU_TOKENIZE_BY_LANG = {
    "zh": "zh",
    "yue": "zh",
    "wuu": "zh",
    "cmn": "zh",
    "lzh": "zh",
    "ja": "char",
    "th": "char",
    "lo": "char",
    "km": "char",
    "my": "char",
}
DEFAULT_BLEU_TOKENIZE = "13a"


@registry.scorers("spacy-mbert.translation_scorer.v1")
def make_translation_scorer(bleu_tokenize: Optional[str] = None) -> Callable[..., Dict[str, Any]]:
    """BLEU and chrF of ``doc._.translation`` against the references, overall and per language.

    bleu_tokenize (Optional[str]): sacreBLEU tokenizer for BLEU ("13a", "zh", "char",
        "intl", "ja-mecab", ...); None picks it from the component's ``target_lang``.
    """
    return partial(score_translations, bleu_tokenize=bleu_tokenize)


def bleu_tokenizer_for(target_lang: Optional[str]) -> str:
    """The sacreBLEU tokenizer for BLEU in ``target_lang`` ("zh", "char" or "13a")."""
    base = (target_lang or "").lower().replace("_", "-").split("-")[0]
    return BLEU_TOKENIZE_BY_LANG.get(base, DEFAULT_BLEU_TOKENIZE)


def score_translations(
    examples: Iterable[Example],
    *,
    target_lang: Optional[str] = None,
    bleu_tokenize: Optional[str] = None,
    **kwargs: Any,
) -> Dict[str, Any]:
    """Corpus BLEU and chrF of the predicted ``doc._.translation`` against the reference's.

    examples (Iterable[Example]): Predicted docs with ``_.translation``, reference docs
        with the gold ``_.translation``; examples without a reference are skipped,
        a missing prediction counts as "". The language is the reference's (else the
        predicted doc's) ``_.lang``; docs without one are grouped as "unknown".
    target_lang (Optional[str]): The component's target language (selects the BLEU tokenizer).
    bleu_tokenize (Optional[str]): Explicit sacreBLEU tokenizer; overrides ``target_lang``.
    kwargs: Other component settings spaCy passes to scorers (ignored).
    RETURNS (Dict[str, Any]): ``{"translation_bleu", "translation_chrf"}`` (fractions 0-1;
        0.0 when nothing could be scored) and ``"translation_per_lang": {lang: {"bleu",
        "chrf", "n"}}``.
    """
    tokenize = bleu_tokenize or bleu_tokenizer_for(target_lang)
    pairs: List[Tuple[str, str, str]] = []
    for eg in examples:
        reference = eg.reference._.translation
        if not isinstance(reference, str):
            continue
        hypothesis = eg.predicted._.translation
        lang = eg.reference._.lang or eg.predicted._.lang or UNKNOWN_LANG
        pairs.append((hypothesis if isinstance(hypothesis, str) else "", reference, lang))
    groups: Dict[str, List[Tuple[str, str]]] = defaultdict(list)
    for hypothesis, reference, lang in pairs:
        groups[lang].append((hypothesis, reference))
    overall = corpus_scores([(h, r) for h, r, _ in pairs], tokenize=tokenize)
    return {
        "translation_bleu": overall["bleu"],
        "translation_chrf": overall["chrf"],
        "translation_per_lang": {
            lang: {**corpus_scores(groups[lang], tokenize=tokenize), "n": len(groups[lang])} for lang in sorted(groups)
        },
    }


def corpus_scores(pairs: Sequence[Tuple[str, str]], *, tokenize: str = DEFAULT_BLEU_TOKENIZE) -> Dict[str, float]:
    """sacreBLEU corpus BLEU and chrF of ``(hypothesis, reference)`` pairs, as fractions (0-1)."""
    if not pairs:
        return {"bleu": 0.0, "chrf": 0.0}
    BLEU, CHRF = _sacrebleu()
    hypotheses = [hypothesis for hypothesis, _ in pairs]
    references = [[reference for _, reference in pairs]]
    try:
        bleu = BLEU(tokenize=tokenize)
    except Exception as error:  # unknown name, or e.g. ja-mecab without its extra
        raise UserError(
            f"sacreBLEU cannot use the BLEU tokenizer {tokenize!r} ({first_line(error, 200)}); "
            f"set the scorer's bleu_tokenize to one of 13a, zh, char, intl."
        ) from None
    return {
        "bleu": bleu.corpus_score(hypotheses, references).score / 100.0,
        "chrf": CHRF().corpus_score(hypotheses, references).score / 100.0,
    }


def _sacrebleu():
    try:
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError:
        raise UserError(
            "Scoring translations needs sacrebleu: run `pip install sacrebleu` (or `pip install spacy-mbert[eval]`)."
        ) from None
    return BLEU, CHRF


# --------------------------------------------------------------------------- spacy-mbert evaluate
# The "mbert_translator" task of ``spacy_mbert.evaluate`` (see ``task_registry.py``).


def score_for_evaluate(examples: Sequence[Example], pipe: Any) -> Dict[str, Any]:
    """BLEU and chrF (fractions) for one group of examples, with the pipe's target language and scorer settings."""
    bleu_tokenize = getattr(getattr(pipe, "scorer", None), "keywords", {}).get("bleu_tokenize")
    scores = score_translations(
        examples, target_lang=getattr(pipe, "cfg", {}).get("target_lang"), bleu_tokenize=bleu_tokenize
    )
    return {"translation_bleu": scores["translation_bleu"], "translation_chrf": scores["translation_chrf"]}


def check_references(refs: Sequence[Doc], pipe: Any, data_path: Path) -> None:
    """Fail with one line when no reference doc has a translation to score against."""
    if not any(isinstance(doc._.translation, str) and doc._.translation.strip() for doc in refs):
        raise UserError(
            f"{data_path}: no doc has a reference translation (doc._.translation); convert parallel data with "
            f"`spacy-mbert convert translation`"
        )


def read_references(
    path: Path, *, nlp: Language, pipe: Any, lang: Optional[str] = None, labels: Optional[Sequence[str]] = None
) -> List[Doc]:
    """Read translation pairs (``.tsv`` / ``.jsonl``, as ``spacy-mbert convert translation`` does).

    Pairs without a language code (no ``lang``, no "lang" field, no ``de-en.tsv``-style
    file name) get ``doc._.lang = None`` and are grouped as "unknown".
    """
    from ..convert import lang_from_filename, read_pairs

    path = Path(path)
    fallback = lang or (lang_from_filename(path) if path.suffix.lower() == ".tsv" else None) or UNDETERMINED
    return clear_placeholder_langs(read_pairs(path, nlp=nlp, lang=fallback))


task_scorer(
    "mbert_translator",
    metrics=(Metric("translation_bleu", "BLEU"), Metric("translation_chrf", "chrF")),
    main="translation_bleu",
    check=check_references,
    read=read_references,
    suffixes=(".jsonl", ".tsv"),
)(score_for_evaluate)
