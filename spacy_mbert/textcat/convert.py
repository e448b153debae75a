"""Text-classification JSON Lines -> docs with ``doc.cats`` (``spacy-mbert convert textcat``).

One object per line, either all exclusive ``{"text": "...", "label": "pos"}`` or
all multilabel ``{"text": "...", "labels": ["a", "b"]}``; optional ``"lang"``.
``doc.cats`` covers the whole label set (1.0 for gold labels, 0.0 for the rest).
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc

from ..data_files import (
    PathLike,
    check_option_lang,
    get_text,
    input_file,
    iter_json_objects,
    json_type,
    load_json,
    make_doc,
    pick_lang,
)
from ..errors import DataFormatError

_TEXTCAT_FIELDS = ("text", "label", "labels", "lang")
_TEXTCAT_EXAMPLE = '{"text": "...", "label": "..."}'


def read_textcat(
    path: PathLike,
    *,
    nlp: Language,
    lang: Optional[str] = None,
    labels: Optional[Sequence[str]] = None,
) -> Tuple[List[Doc], List[str]]:
    """Read a text-classification JSONL file into docs with ``doc.cats``.

    path (PathLike): JSONL file, all ``"label"`` (exclusive) or all ``"labels"`` (multilabel).
    nlp (Language): Pipeline whose ``make_doc`` tokenizes the texts.
    lang (Optional[str]): Language code for lines without a ``"lang"`` field.
    labels (Optional[Sequence[str]]): Closed label set; ``None`` for the sorted union of the file's labels.
    RETURNS (Tuple[List[Doc], List[str]]): The docs and the label set their ``cats`` cover.
    """
    docs, label_set, _ = textcat_docs([Path(path)], nlp=nlp, lang=lang, labels=labels)
    return docs, label_set


def read_labels(path: PathLike) -> List[str]:
    """Read a closed label set: a JSON list of strings, e.g. ``["negative", "positive"]``.

    path (PathLike): The labels file (``spacy init labels`` writes this format for textcat).
    RETURNS (List[str]): The labels, in file order.
    """
    path = input_file(path, what="labels file")
    data = load_json(path)
    if not isinstance(data, list):
        raise DataFormatError(
            f'{path}: expected a JSON list of labels like ["negative", "positive"], got {json_type(data)}'
        )
    return check_label_set(data, where=str(path))


@dataclass
class _TextcatRecord:
    where: str
    lineno: int
    text: str
    labels: List[str]
    style: str  # "label" (exclusive) or "labels" (multilabel)
    lang: str


def textcat_docs(
    paths: Sequence[Path], *, nlp: Language, lang: Optional[str], labels: Optional[Sequence[str]]
) -> Tuple[List[Doc], List[str], bool]:
    """Docs, label set and multilabel flag for one or more textcat files (one style throughout)."""
    check_option_lang(lang)
    records: List[_TextcatRecord] = []
    first: Optional[Tuple[Path, str]] = None
    for path in paths:
        file_records = _parse_textcat(input_file(path), lang=lang)
        style = file_records[0].style
        if first is not None and style != first[1]:
            raise DataFormatError(
                f'{path}: uses "{style}" but {first[0]} uses "{first[1]}"; convert exclusive ("label") '
                f'and multilabel ("labels") files separately'
            )
        first = first or (path, style)
        records.extend(file_records)
    label_set = _resolve_labels(records, labels)
    docs = [_textcat_doc(nlp, record, label_set) for record in records]
    return docs, label_set, records[0].style == "labels"


def _parse_textcat(path: Path, *, lang: Optional[str]) -> List[_TextcatRecord]:
    records: List[_TextcatRecord] = []
    for lineno, obj in iter_json_objects(path, example=_TEXTCAT_EXAMPLE, known=_TEXTCAT_FIELDS):
        where = f"{path}:{lineno}"
        text = get_text(obj, "text", where=where, what="text to classify")
        style = _label_style(obj, where)
        if records and style != records[0].style:
            raise DataFormatError(
                f'{where}: uses "{style}" but line {records[0].lineno} uses "{records[0].style}"; a file must be all '
                f'exclusive ("label": "...") or all multilabel ("labels": [...])'
            )
        gold = _get_gold_labels(obj, style, where)
        records.append(_TextcatRecord(where, lineno, text, gold, style, pick_lang(obj.get("lang"), lang, where)))
    if not records:
        raise DataFormatError(f"{path}: no examples; add one JSON object per line, like {_TEXTCAT_EXAMPLE}")
    return records


def _label_style(obj: Dict[str, Any], where: str) -> str:
    if "label" in obj and "labels" in obj:
        raise DataFormatError(
            f'{where}: has both "label" and "labels"; use "label" for one class per text or "labels" for several'
        )
    if "label" in obj:
        return "label"
    if "labels" in obj:
        return "labels"
    raise DataFormatError(
        f'{where}: no label field; add "label": "..." (one class per text) or "labels": [...] (several)'
    )


def _get_gold_labels(obj: Dict[str, Any], style: str, where: str) -> List[str]:
    if style == "label":
        value = obj["label"]
        if not isinstance(value, str) or not value.strip():
            raise DataFormatError(f'{where}: "label" must be a non-empty string, got {value!r}; fix the label')
        return [value]
    values = obj["labels"]
    if not isinstance(values, list):
        raise DataFormatError(
            f'{where}: "labels" must be a list of strings, got {json_type(values)}; write "labels": ["..."]'
        )
    if not values:
        raise DataFormatError(f'{where}: "labels" is empty; list at least one label')
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise DataFormatError(f'{where}: "labels"[{i}] must be a non-empty string, got {value!r}; fix the label')
    return list(values)


def check_label_set(labels: Sequence[Any], *, where: str) -> List[str]:
    if isinstance(labels, str):
        raise DataFormatError(f"{where}: the label set must be a list of labels, not the string {labels!r}")
    labels = list(labels)
    if not labels:
        raise DataFormatError(f"{where}: the label set is empty; list at least one label")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise DataFormatError(f"{where}: label [{i}] must be a non-empty string, got {label!r}; fix it")
    duplicates = sorted(label for label, n in Counter(labels).items() if n > 1)
    if duplicates:
        raise DataFormatError(f"{where}: label {duplicates[0]!r} is listed more than once; list each label once")
    return labels


def _resolve_labels(records: Sequence[_TextcatRecord], labels: Optional[Sequence[str]]) -> List[str]:
    if labels is None:
        return sorted({label for record in records for label in record.labels})
    label_set = check_label_set(labels, where="labels")
    allowed = set(label_set)
    for record in records:
        for i, label in enumerate(record.labels):
            if label not in allowed:
                field = '"label"' if record.style == "label" else f'"labels"[{i}]'
                raise DataFormatError(
                    f"{record.where}: {field} {label!r} is not in the label set ({', '.join(label_set)}); "
                    f"fix the label or add it to the labels file"
                )
    return label_set


def _textcat_doc(nlp: Language, record: _TextcatRecord, label_set: Sequence[str]) -> Doc:
    doc = make_doc(nlp, record.text, record.where)
    doc._.lang = record.lang
    gold = set(record.labels)
    doc.cats = {label: 1.0 if label in gold else 0.0 for label in label_set}
    return doc
