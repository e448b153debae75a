"""Convert raw task data into ``.spacy`` files (``DocBin`` with user data).

Every converted doc carries ``doc._.lang`` so that evaluation can be broken
down per language. Input formats:

- ``textcat``: JSON Lines, one object per line, either all exclusive
  ``{"text": "...", "label": "pos"}`` or all multilabel
  ``{"text": "...", "labels": ["a", "b"]}``; optional ``"lang"``. ``doc.cats``
  covers the whole label set (1.0 for gold labels, 0.0 for the rest).
- ``qa``: SQuAD v1.1 / v2.0 JSON (``data[].paragraphs[].qas[]``); optional
  ``"lang"`` on each article or at the top level. One doc per question:
  ``doc.text`` is the context, ``doc._.question`` the question,
  ``doc._.answers`` the gold answers (``[]`` when ``is_impossible``),
  ``doc.user_data["qa_id"]`` the question id, and ``doc.spans["answers"]`` the
  answers that align to token boundaries.
- ``translation``: ``.tsv`` with ``source<TAB>target`` per line (no header), or
  ``.jsonl`` with ``{"source": "...", "target": "..."}`` and optional
  ``"lang"``. ``doc.text`` is the source, ``doc._.translation`` the target.
  A ``.tsv`` file has no per-line language: pass ``lang`` or name the file
  ``<src>-<tgt>.tsv`` (``deu-eng.tsv``, ``de-en.tsv``); the part before the
  ``-`` is taken as the source language.

A language code on a record wins over the ``lang`` option. Blank lines are
skipped; anything else that cannot be converted raises :class:`DataFormatError`
naming the file, the line (or JSON location) and the field. Unknown JSONL
fields are ignored with one warning per file.
"""

import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from tqdm import tqdm

from .errors import DataFormatError, UserError
from .extensions import install_extensions

PathLike = Union[str, Path]

TASKS = ("textcat", "qa", "translation")
# Files picked up when ``convert`` is given a directory.
TASK_SUFFIXES = {"textcat": (".jsonl",), "qa": (".json",), "translation": (".tsv", ".jsonl")}
ANSWER_SPANS_KEY = "answers"

_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")
_PAIR_NAME_RE = re.compile(r"^([A-Za-z]{2,3})-([A-Za-z]{2,3})$")
_TEXTCAT_FIELDS = ("text", "label", "labels", "lang")
_PAIR_FIELDS = ("source", "target", "lang")
_TEXTCAT_EXAMPLE = '{"text": "...", "label": "..."}'
_PAIR_EXAMPLE = '{"source": "...", "target": "..."}'


# --------------------------------------------------------------------------- public API


def make_nlp() -> Language:
    """A blank ``xx`` pipeline with the BERT-aligned ``MultilingualTokenizer``."""
    install_extensions()
    return spacy.blank("xx", config={"nlp": {"tokenizer": {"@tokenizers": "spacy-mbert.MultilingualTokenizer.v1"}}})


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
    docs, label_set, _ = _textcat_docs([Path(path)], nlp=nlp, lang=lang, labels=labels)
    return docs, label_set


def read_squad(path: PathLike, *, nlp: Language, lang: Optional[str] = None) -> List[Doc]:
    """Read a SQuAD v1.1 / v2.0 JSON file into one doc per question.

    path (PathLike): SQuAD JSON file (``data[].paragraphs[].qas[]``).
    nlp (Language): Pipeline whose ``make_doc`` tokenizes the contexts.
    lang (Optional[str]): Language code for articles without a ``"lang"`` (article or top level).
    RETURNS (List[Doc]): Docs with ``_.question``, ``_.answers``, ``_.lang``, ``user_data["qa_id"]``
        and ``spans["answers"]``.
    """
    path = _input_file(path)
    _check_option_lang(lang)
    root = _load_json(path)
    data = _squad_data(root, path)
    top_lang = _optional_lang(root, f"{path}: lang")
    seen_ids: Dict[str, str] = {}
    docs: List[Doc] = []
    for i, article in enumerate(tqdm(data, desc=path.name, unit=" articles", disable=None, leave=False)):
        docs.extend(_squad_article(article, i, path=path, nlp=nlp, lang=top_lang or lang, seen_ids=seen_ids))
    if not docs:
        raise DataFormatError(f"{path}: no questions; add qas to data[].paragraphs[]")
    return docs


def read_pairs(path: PathLike, *, nlp: Language, lang: Optional[str] = None) -> List[Doc]:
    """Read translation pairs (``.tsv`` or ``.jsonl``) into docs with ``doc._.translation``.

    path (PathLike): ``.tsv`` (``source<TAB>target``, no header) or ``.jsonl`` (``{"source", "target"}``).
    nlp (Language): Pipeline whose ``make_doc`` tokenizes the sources.
    lang (Optional[str]): Source language code; for ``.tsv`` it may instead come from a file
        name like ``de-en.tsv``, for ``.jsonl`` from a ``"lang"`` field.
    RETURNS (List[Doc]): Docs whose text is the source and ``_.translation`` the target.
    """
    path = _input_file(path)
    _check_option_lang(lang)
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        records = _parse_tsv_pairs(path, lang=lang)
    elif suffix == ".jsonl":
        records = _parse_jsonl_pairs(path, lang=lang)
    else:
        raise UserError(
            f"{path}: unsupported file type {suffix or '(none)'!r} for translation pairs; "
            f"use .tsv (source<TAB>target) or .jsonl ({_PAIR_EXAMPLE})"
        )
    if not records:
        raise DataFormatError(f"{path}: no examples; add one source/target pair per line")
    return [_pair_doc(nlp, record) for record in records]


def read_labels(path: PathLike) -> List[str]:
    """Read a closed label set: a JSON list of strings, e.g. ``["negative", "positive"]``.

    path (PathLike): The labels file (``spacy init labels`` writes this format for textcat).
    RETURNS (List[str]): The labels, in file order.
    """
    path = _input_file(path, what="labels file")
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataFormatError(f'{path}: expected a JSON list of labels like ["negative", "positive"], got {_json_type(data)}')
    return _check_label_set(data, where=str(path))


def write_docbin(docs: Sequence[Doc], path: PathLike) -> Path:
    """Save docs, with their user data (``doc._`` values), as a ``.spacy`` file.

    docs (Sequence[Doc]): The docs to save.
    path (PathLike): Output file; parent directories are created.
    RETURNS (Path): The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return path


def convert(
    task: str,
    input_path: PathLike,
    output_path: PathLike,
    *,
    lang: Optional[str] = None,
    labels_path: Optional[PathLike] = None,
    nlp: Optional[Language] = None,
) -> Dict[str, Any]:
    """Convert a task's raw data into one ``.spacy`` file and summarize it.

    task (str): "textcat" (exclusive or multilabel, decided by the file), "qa" or "translation".
    input_path (PathLike): A data file, or a directory whose matching files (``TASK_SUFFIXES``,
        not recursive) are converted in sorted order into one output.
    output_path (PathLike): The ``.spacy`` file to write, or an existing directory
        (then ``<input stem>.spacy`` inside it).
    lang (Optional[str]): Language code for records that carry none.
    labels_path (Optional[PathLike]): textcat only: JSON list of the allowed labels.
    nlp (Optional[Language]): Pipeline for tokenization; default: ``make_nlp()``.
    RETURNS (Dict[str, Any]): {"task", "inputs", "docs", "per_lang", "output"}, plus
        "labels" and "multilabel" (textcat) or "unanswerable" and "unaligned_answers" (qa).
    """
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
    _check_option_lang(lang)
    if labels_path is not None and task != "textcat":
        raise UserError(f"--labels only applies to the textcat task, not {task!r}; remove it")
    input_path = Path(input_path)
    inputs = _input_files(task, input_path)
    output = _output_file(output_path, input_path)
    nlp = nlp if nlp is not None else make_nlp()
    summary: Dict[str, Any] = {"task": task, "inputs": [str(p) for p in inputs]}
    if task == "textcat":
        labels = read_labels(labels_path) if labels_path is not None else None
        docs, label_set, multilabel = _textcat_docs(inputs, nlp=nlp, lang=lang, labels=labels)
        summary.update(labels=label_set, multilabel=multilabel)
    elif task == "qa":
        docs = _squad_docs(inputs, nlp=nlp, lang=lang)
        summary.update(_qa_stats(docs))
    else:
        docs = [doc for path in inputs for doc in read_pairs(path, nlp=nlp, lang=lang)]
    write_docbin(docs, output)
    summary.update(docs=len(docs), per_lang=per_lang_counts(docs), output=str(output))
    return summary


def per_lang_counts(docs: Sequence[Doc]) -> Dict[str, int]:
    """Number of docs per ``doc._.lang``, sorted by language code.

    docs (Sequence[Doc]): The docs to count.
    RETURNS (Dict[str, int]): {lang: count}.
    """
    return dict(sorted(Counter(doc._.lang for doc in docs).items()))


# --------------------------------------------------------------------------- shared helpers


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _input_file(path: PathLike, *, what: str = "input file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what}; check the path")
    return path


def _input_files(task: str, path: Path) -> List[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: no such file or directory; check the input path")
    suffixes = TASK_SUFFIXES[task]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise UserError(f"{path}: no {' or '.join(suffixes)} files to convert for {task}; check the input path")
    return files


def _output_file(output_path: PathLike, input_path: Path) -> Path:
    output = Path(output_path)
    if output.is_dir():
        output = output / f"{input_path.stem}.spacy"
    if output.suffix != ".spacy":
        raise UserError(f"{output}: the output file must end in .spacy (the corpus reader only loads .spacy files)")
    return output


def _check_option_lang(lang: Optional[str]) -> None:
    if lang is not None and (not isinstance(lang, str) or not _LANG_RE.match(lang)):
        raise UserError(f'--lang must be a language code like "de" or "zh-Hant", got {lang!r}')


def _check_lang(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _LANG_RE.match(value):
        raise DataFormatError(f'{where}: "lang" must be a language code like "de" or "zh-Hant", got {value!r}; fix it')
    return value


def _pick_lang(record_lang: Any, default: Optional[str], where: str) -> str:
    """The record's language code if present (null counts as absent), else the default."""
    if record_lang is not None:
        return _check_lang(record_lang, where)
    if default is None:
        raise DataFormatError(f'{where}: no language code: add a "lang" field or pass --lang XX')
    return default


def _make_doc(nlp: Language, text: str, where: str) -> Doc:
    if len(text) > nlp.max_length:
        raise DataFormatError(
            f"{where}: text has {len(text)} characters, over nlp.max_length ({nlp.max_length}); split it"
        )
    return nlp.make_doc(text)


def _load_json(path: Path) -> Any:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not valid UTF-8 at byte {err.start}; re-save the file as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = " (expected one JSON document, not JSON Lines)" if err.msg == "Extra data" else ""
        raise DataFormatError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}{hint}; fix the syntax there") from None


def _iter_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """Yield (1-based line number, line without its line break) for each non-blank line."""
    with path.open("rb") as file:
        lines = tqdm(file, desc=path.name, unit=" lines", disable=None, leave=False)
        for lineno, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataFormatError(
                    f"{path}:{lineno}: not valid UTF-8 at byte {err.start + 1} of the line; re-save the file as UTF-8"
                ) from None
            if lineno == 1:
                line = line.lstrip("\ufeff")
            line = line[:-1] if line.endswith("\n") else line
            line = line[:-1] if line.endswith("\r") else line
            if line.strip():
                yield lineno, line


def _iter_json_objects(path: Path, *, example: str, known: Sequence[str]) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Yield (line number, object) for each JSONL line; warn once about unknown fields."""
    unknown: Dict[str, int] = {}
    for lineno, line in _iter_lines(path):
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(
                f"{where}: invalid JSON at column {err.colno}: {err.msg}; write one JSON object per line, like {example}"
            ) from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"{where}: expected a JSON object like {example}, got {_json_type(obj)}")
        for field in obj:
            if field not in known:
                unknown.setdefault(field, lineno)
        yield lineno, obj
    if unknown:
        fields = ", ".join(f'"{name}" (first on line {line})' for name, line in unknown.items())
        warnings.warn(f"{path}: ignoring unknown fields {fields}; only {', '.join(known)} are read", stacklevel=3)


def _get_text(obj: Dict[str, Any], field: str, *, where: str, what: str) -> str:
    if field not in obj:
        raise DataFormatError(f'{where}: "{field}" is missing; add the {what}')
    value = obj[field]
    if not isinstance(value, str):
        raise DataFormatError(f'{where}: "{field}" must be a string, got {_json_type(value)}')
    if not value.strip():
        raise DataFormatError(f'{where}: "{field}" is empty; add the {what} or remove the line')
    return value


# --------------------------------------------------------------------------- textcat


@dataclass
class _TextcatRecord:
    where: str
    lineno: int
    text: str
    labels: List[str]
    style: str  # "label" (exclusive) or "labels" (multilabel)
    lang: str


def _textcat_docs(
    paths: Sequence[Path], *, nlp: Language, lang: Optional[str], labels: Optional[Sequence[str]]
) -> Tuple[List[Doc], List[str], bool]:
    """Docs, label set and multilabel flag for one or more textcat files (one style throughout)."""
    _check_option_lang(lang)
    records: List[_TextcatRecord] = []
    first: Optional[Tuple[Path, str]] = None
    for path in paths:
        file_records = _parse_textcat(_input_file(path), lang=lang)
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
    for lineno, obj in _iter_json_objects(path, example=_TEXTCAT_EXAMPLE, known=_TEXTCAT_FIELDS):
        where = f"{path}:{lineno}"
        text = _get_text(obj, "text", where=where, what="text to classify")
        style = _label_style(obj, where)
        if records and style != records[0].style:
            raise DataFormatError(
                f'{where}: uses "{style}" but line {records[0].lineno} uses "{records[0].style}"; a file must be all '
                f'exclusive ("label": "...") or all multilabel ("labels": [...])'
            )
        gold = _get_gold_labels(obj, style, where)
        records.append(_TextcatRecord(where, lineno, text, gold, style, _pick_lang(obj.get("lang"), lang, where)))
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
    raise DataFormatError(f'{where}: no label field; add "label": "..." (one class per text) or "labels": [...] (several)')


def _get_gold_labels(obj: Dict[str, Any], style: str, where: str) -> List[str]:
    if style == "label":
        value = obj["label"]
        if not isinstance(value, str) or not value.strip():
            raise DataFormatError(f'{where}: "label" must be a non-empty string, got {value!r}; fix the label')
        return [value]
    values = obj["labels"]
    if not isinstance(values, list):
        raise DataFormatError(f'{where}: "labels" must be a list of strings, got {_json_type(values)}; write "labels": ["..."]')
    if not values:
        raise DataFormatError(f'{where}: "labels" is empty; list at least one label')
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise DataFormatError(f'{where}: "labels"[{i}] must be a non-empty string, got {value!r}; fix the label')
    return list(values)


def _check_label_set(labels: Sequence[Any], *, where: str) -> List[str]:
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
    label_set = _check_label_set(labels, where="labels")
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
    doc = _make_doc(nlp, record.text, record.where)
    doc._.lang = record.lang
    gold = set(record.labels)
    doc.cats = {label: 1.0 if label in gold else 0.0 for label in label_set}
    return doc


# --------------------------------------------------------------------------- qa (SQuAD)


def _squad_data(root: Any, path: Path) -> List[Any]:
    if not isinstance(root, dict):
        raise DataFormatError(f'{path}: expected a SQuAD JSON object {{"data": [...]}}, got {_json_type(root)}')
    if "data" not in root:
        raise DataFormatError(f'{path}: "data" is missing; a SQuAD file looks like {{"version": "v2.0", "data": [...]}}')
    if not isinstance(root["data"], list):
        raise DataFormatError(f'{path}: "data" must be a list of articles, got {_json_type(root["data"])}')
    return root["data"]


def _expect_object(value: Any, where: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {_json_type(value)}")
    return value


def _expect_list(obj: Dict[str, Any], field: str, where: str) -> List[Any]:
    if field not in obj:
        raise DataFormatError(f'{where}: "{field}" is missing; add it (a list)')
    if not isinstance(obj[field], list):
        raise DataFormatError(f'{where}: "{field}" must be a list, got {_json_type(obj[field])}')
    return obj[field]


def _optional_lang(obj: Dict[str, Any], where: str) -> Optional[str]:
    value = obj.get("lang")
    return None if value is None else _check_lang(value, where)


def _squad_article(
    article: Any, i: int, *, path: Path, nlp: Language, lang: Optional[str], seen_ids: Dict[str, str]
) -> List[Doc]:
    where = f"{path}: data[{i}]"
    article = _expect_object(article, where)
    article_lang = _optional_lang(article, f"{where}.lang") or lang
    if article_lang is None:
        raise DataFormatError(f'{where}: no language code: add a "lang" field or pass --lang XX')
    docs = []
    for j, paragraph in enumerate(_expect_list(article, "paragraphs", where)):
        pwhere = f"{where}.paragraphs[{j}]"
        paragraph = _expect_object(paragraph, pwhere)
        context = _get_text(paragraph, "context", where=pwhere, what="context passage")
        qas = _expect_list(paragraph, "qas", pwhere)
        # Tokenize each context once; Doc.copy() is ~100x cheaper than make_doc.
        base = _make_doc(nlp, context, pwhere) if qas else None
        for k, qa in enumerate(qas):
            loc = f"data[{i}].paragraphs[{j}].qas[{k}]"
            docs.append(_squad_doc(base, qa, path=path, loc=loc, lang=article_lang, seen_ids=seen_ids))
    return docs


def _squad_id(qa: Dict[str, Any], *, path: Path, loc: str, seen_ids: Dict[str, str]) -> str:
    where = f"{path}: {loc}"
    value = qa.get("id")
    if value is None:
        raise DataFormatError(f'{where}: "id" is missing; give every question a unique "id"')
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise DataFormatError(f'{where}: "id" must be a non-empty string, got {value!r}')
    qid = str(value)
    if qid in seen_ids:
        raise DataFormatError(
            f'{where}: duplicate question id "{qid}" (first used at {seen_ids[qid]}); give every question a unique "id"'
        )
    seen_ids[qid] = loc
    return qid


def _squad_answers(qa: Dict[str, Any], context: str, where: str) -> List[Dict[str, Any]]:
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise DataFormatError(f'{where}: "is_impossible" must be true or false, got {impossible!r}')
    answers = qa.get("answers")
    if impossible:
        if answers:
            raise DataFormatError(
                f'{where}: "is_impossible" is true but "answers" has {len(answers)} entries; empty "answers" '
                f'(SQuAD v2.0 keeps them as "plausible_answers") or set "is_impossible": false'
            )
        return []
    fix = 'add the gold answers or set "is_impossible": true'
    if answers is None:
        raise DataFormatError(f'{where}: "answers" is missing; {fix}')
    if not isinstance(answers, list):
        raise DataFormatError(f'{where}: "answers" must be a list, got {_json_type(answers)}')
    if not answers:
        raise DataFormatError(f'{where}: "answers" is empty; {fix}')
    result: List[Dict[str, Any]] = []
    for a, answer in enumerate(answers):
        item = _squad_answer(answer, context, f"{where}: answers[{a}]")
        if all((item["start_char"], item["end_char"]) != (r["start_char"], r["end_char"]) for r in result):
            result.append(item)
    return result


def _squad_answer(answer: Any, context: str, where: str) -> Dict[str, Any]:
    """Validate one SQuAD answer; ``where`` is ``"<file>: <question>: answers[i]"``."""
    answer = _expect_object(answer, where)
    text = _get_text(answer, "text", where=where, what="answer text")
    start = answer.get("answer_start")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise DataFormatError(f'{where}.answer_start must be a character offset (an integer >= 0), got {start!r}; fix it')
    quoted = json.dumps(text, ensure_ascii=False)
    if start + len(text) > len(context):
        raise DataFormatError(
            f"{where}.answer_start={start} + the {len(text)} characters of {quoted} run past the end of the "
            f"context ({len(context)} characters); {_start_fix(context, text)}"
        )
    found = context[start:start + len(text)]
    if found != text:
        raise DataFormatError(
            f"{where}.answer_start={start} does not point at the answer text {quoted} "
            f"(context has {json.dumps(found, ensure_ascii=False)} there); {_start_fix(context, text)}"
        )
    return {"text": text, "start_char": start, "end_char": start + len(text)}


def _start_fix(context: str, text: str) -> str:
    position = context.find(text)
    if position < 0:
        return "fix answer_start or the answer text (it does not occur in the context)"
    return f"fix answer_start (the text first occurs at {position})"


def _squad_doc(base: Doc, qa: Any, *, path: Path, loc: str, lang: str, seen_ids: Dict[str, str]) -> Doc:
    """One doc per question: a copy of the tokenized context ``base`` with the question and answers."""
    qa = _expect_object(qa, f"{path}: {loc}")
    qid = _squad_id(qa, path=path, loc=loc, seen_ids=seen_ids)
    where = f'{path}: {loc} (id "{qid}")'
    question = _get_text(qa, "question", where=where, what="question")
    answers = _squad_answers(qa, base.text, where)
    doc = base.copy()
    doc._.lang = lang
    doc._.question = question
    doc._.answers = answers
    doc.user_data["qa_id"] = qid
    spans = [doc.char_span(a["start_char"], a["end_char"], label="ANSWER", alignment_mode="strict") for a in answers]
    doc.spans[ANSWER_SPANS_KEY] = [span for span in spans if span is not None]
    return doc


def _squad_docs(paths: Sequence[Path], *, nlp: Language, lang: Optional[str]) -> List[Doc]:
    """Docs of several SQuAD files; question ids must be unique across all of them."""
    docs: List[Doc] = []
    id_files: Dict[str, Path] = {}
    for path in paths:
        file_docs = read_squad(path, nlp=nlp, lang=lang)
        for doc in file_docs:
            qid = doc.user_data["qa_id"]
            if qid in id_files:
                raise DataFormatError(
                    f'{path}: question id "{qid}" is also used in {id_files[qid]}; give every question a unique "id"'
                )
            id_files[qid] = path
        docs.extend(file_docs)
    return docs


def _qa_stats(docs: Sequence[Doc]) -> Dict[str, int]:
    """Unanswerable questions, and gold answers kept only as char offsets (no token-aligned span)."""
    unaligned = sum(len(doc._.answers) - len(doc.spans[ANSWER_SPANS_KEY]) for doc in docs)
    return {"unanswerable": sum(1 for doc in docs if not doc._.answers), "unaligned_answers": unaligned}


# --------------------------------------------------------------------------- translation


@dataclass
class _PairRecord:
    where: str
    source: str
    target: str
    lang: str


def lang_from_filename(path: PathLike) -> Optional[str]:
    """The source language of a pair file named ``<src>-<tgt>.<ext>`` (``deu-eng.tsv`` -> "deu").

    path (PathLike): The file; its whole stem must be two 2-3 letter codes joined by "-".
    RETURNS (Optional[str]): The part before the "-", or ``None`` when the name does not match.
    """
    match = _PAIR_NAME_RE.match(Path(path).stem)
    return match.group(1) if match else None


def _parse_tsv_pairs(path: Path, *, lang: Optional[str]) -> List[_PairRecord]:
    lang = lang or lang_from_filename(path)
    if lang is None:
        raise DataFormatError(f"{path}: no language code: pass --lang XX or name the file <src>-<tgt>.tsv (e.g. de-en.tsv)")
    records = []
    for lineno, line in _iter_lines(path):
        where = f"{path}:{lineno}"
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataFormatError(
                f"{where}: expected 2 tab-separated columns (source<TAB>target), found {len(columns)}; "
                f"{'separate source and target with a tab' if len(columns) == 1 else 'remove the extra columns'}"
            )
        for index, (name, value) in enumerate(zip(("source", "target"), columns), start=1):
            if not value.strip():
                raise DataFormatError(f"{where}: column {index} ({name}) is empty; add the {name} text or remove the line")
        records.append(_PairRecord(where, columns[0], columns[1], lang))
    return records


def _parse_jsonl_pairs(path: Path, *, lang: Optional[str]) -> List[_PairRecord]:
    records = []
    for lineno, obj in _iter_json_objects(path, example=_PAIR_EXAMPLE, known=_PAIR_FIELDS):
        where = f"{path}:{lineno}"
        source = _get_text(obj, "source", where=where, what="source text")
        target = _get_text(obj, "target", where=where, what="target text")
        records.append(_PairRecord(where, source, target, _pick_lang(obj.get("lang"), lang, where)))
    return records


def _pair_doc(nlp: Language, record: _PairRecord) -> Doc:
    doc = _make_doc(nlp, record.source, record.where)
    doc._.lang = record.lang
    doc._.translation = record.target
    return doc
