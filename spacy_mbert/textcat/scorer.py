"""Scoring text classification for ``spacy-mbert evaluate``: accuracy, macro-F1, AUC per language.

The numbers are spaCy's own (``Scorer.score_cats`` with the component's labels
and settings, as ``pipe.score`` computes them), plus the accuracy of exclusive
classes; textcat JSONL can be scored directly, without converting it first.
"""

import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example

from ..data_files import PathLike
from ..errors import DataFormatError, UserError
from ..task_registry import UNDETERMINED, Metric, clear_placeholder_langs, task_scorer


def _positive_gold_labels(docs: Iterable[Doc]) -> set:
    return {label for doc in docs for label, value in doc.cats.items() if value and value > 0}


def check_textcat_labels(refs: Sequence[Doc], pipe: Any, data_path: Path) -> None:
    """Reject gold labels the component does not have (labels that are 0.0 everywhere don't count)."""
    model_labels = list(pipe.labels)
    unknown = sorted(_positive_gold_labels(refs) - set(model_labels))
    if unknown:
        raise UserError(
            f"{data_path}: gold label(s) {', '.join(map(repr, unknown))} are not labels of the model's "
            f"'{pipe.name}' component (it has: {', '.join(model_labels) or 'no labels'}); "
            f"evaluate with data for this model or retrain it with these labels"
        )
    if not _positive_gold_labels(refs):
        raise UserError(
            f"{data_path}: no doc has a gold label in doc.cats; convert the data with `spacy-mbert convert textcat`"
        )


def read_textcat_for_eval(
    path: Path, *, nlp: Language, pipe: Any, lang: Optional[str], labels: Optional[Sequence[str]]
) -> List[Doc]:
    """Read textcat JSONL (``{"text", "label"|"labels", "lang"?}``) into reference docs.

    Lines without a language code (and no ``lang``) get ``doc._.lang = None``. A JSONL line lists
    all its gold labels, so the component's labels it doesn't mention are set to 0.0 (not missing).
    """
    read = _textcat_reader()
    docs, _ = read(path, nlp=nlp, lang=lang or UNDETERMINED, labels=labels)
    for doc in docs:
        for label in pipe.labels:
            doc.cats.setdefault(label, 0.0)
    return clear_placeholder_langs(docs)


def _textcat_reader() -> Callable[..., Tuple[List[Doc], List[str]]]:
    try:
        from .convert import read_textcat
    except ImportError:
        return read_textcat_minimal
    return read_textcat


def read_textcat_minimal(
    path: PathLike, *, nlp: Language, lang: Optional[str] = None, labels: Optional[Sequence[str]] = None
) -> Tuple[List[Doc], List[str]]:
    """Fallback JSONL reader (when ``spacy_mbert.convert`` is unavailable); same contract as ``convert.read_textcat``."""
    path = Path(path)
    records = []
    with path.open(encoding="utf8") as file:
        for lineno, line in enumerate(file, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{where}: invalid JSON: {err.msg}; fix the syntax there") from None
            if not isinstance(obj, dict):
                raise DataFormatError(f'{where}: expected a JSON object like {{"text": "...", "label": "..."}}')
            text = obj.get("text")
            if not isinstance(text, str) or not text.strip():
                raise DataFormatError(f'{where}: "text" must be a non-empty string; add the text to classify')
            if "label" in obj:
                gold = [obj["label"]]
            elif "labels" in obj and isinstance(obj["labels"], list):
                gold = obj["labels"]
            else:
                raise DataFormatError(f'{where}: no label field; add "label": "..." or "labels": [...]')
            if not gold or not all(isinstance(label, str) and label.strip() for label in gold):
                raise DataFormatError(f"{where}: labels must be non-empty strings, got {gold!r}; fix the label")
            record_lang = obj.get("lang") or lang
            if record_lang is None:
                raise DataFormatError(f'{where}: no language code: add a "lang" field or pass --lang XX')
            records.append((where, text, gold, record_lang))
    if not records:
        raise DataFormatError(
            f'{path}: no examples; add one JSON object per line, like {{"text": "...", "label": "..."}}'
        )
    label_set = list(labels) if labels is not None else sorted({label for _, _, gold, _ in records for label in gold})
    docs = []
    for where, text, gold, record_lang in records:
        extra = sorted(set(gold) - set(label_set))
        if extra:
            raise DataFormatError(
                f"{where}: label {extra[0]!r} is not in the label set ({', '.join(label_set)}); fix it"
            )
        doc = nlp.make_doc(text)
        doc._.lang = record_lang
        doc.cats = {label: 1.0 if label in gold else 0.0 for label in label_set}
        docs.append(doc)
    return docs, label_set


def _cats_scores(examples: Sequence[Example], pipe: Any, *, multi_label: bool) -> Dict[str, Any]:
    """``Scorer.score_cats`` with the component's labels and cfg, as ``pipe.score`` calls it."""
    cfg = getattr(pipe, "cfg", {}) or {}
    return Scorer.score_cats(
        examples,
        "cats",
        labels=list(pipe.labels),
        multi_label=multi_label,
        positive_label=cfg.get("positive_label"),
        threshold=cfg.get("threshold"),
    )


def _per_label(scores: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
    return {label: dict(prf) for label, prf in scores["cats_f_per_type"].items()}


def exclusive_accuracy(examples: Sequence[Example], labels: Sequence[str]) -> float:
    """Share of examples whose highest-scoring predicted label is the gold label.

    Only ``labels`` are considered; a doc without a positive gold label counts as wrong.
    """
    if not examples:
        return 0.0
    labels = set(labels)
    correct = 0
    for eg in examples:
        gold = {k: v for k, v in eg.reference.cats.items() if k in labels}
        pred = {k: v for k, v in eg.predicted.cats.items() if k in labels}
        if not gold or not pred:
            continue
        gold_label, gold_score = max(gold.items(), key=lambda item: item[1])
        pred_label = max(pred.items(), key=lambda item: item[1])[0]
        correct += bool(gold_score and gold_score > 0 and pred_label == gold_label)
    return correct / len(examples)


@task_scorer(
    "textcat",
    metrics=(Metric("accuracy", "accuracy"), Metric("macro_f", "macro-F1")),
    main="accuracy",
    check=check_textcat_labels,
    read=read_textcat_for_eval,
    suffixes=(".jsonl",),
)
def score_textcat(examples: Sequence[Example], pipe: Any) -> Dict[str, Any]:
    """Exclusive classes: accuracy and macro-F (``cats_macro_f``), plus per-label P/R/F."""
    scores = _cats_scores(examples, pipe, multi_label=False)
    return {
        "accuracy": exclusive_accuracy(examples, pipe.labels),
        "macro_f": scores["cats_macro_f"],
        "per_label": _per_label(scores),
    }


@task_scorer(
    "textcat_multilabel",
    metrics=(Metric("micro_f", "micro-F1"), Metric("macro_f", "macro-F1"), Metric("macro_auc", "macro-AUC")),
    main="macro_f",
    check=check_textcat_labels,
    read=read_textcat_for_eval,
    suffixes=(".jsonl",),
)
def score_textcat_multilabel(examples: Sequence[Example], pipe: Any) -> Dict[str, Any]:
    """Multilabel: micro/macro-F at the component's threshold and macro ROC AUC, plus per-label P/R/F."""
    scores = _cats_scores(examples, pipe, multi_label=True)
    return {
        "micro_f": scores["cats_micro_f"],
        "macro_f": scores["cats_macro_f"],
        "macro_auc": scores["cats_macro_auc"],
        "per_label": _per_label(scores),
    }
