"""Reading task data files (JSON, JSON Lines, tab-separated lines) with errors that name the place.

The task converters (``textcat/convert.py``, ``qa/convert.py``,
``translation/convert.py``) read their formats with these helpers, so that every
malformed input raises one :class:`DataFormatError` naming the file, the line (or
JSON location) and the field, with the fix.
"""

import json
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc
from tqdm import tqdm

from .errors import DataFormatError, UserError

PathLike = Union[str, Path]

LANG_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def input_file(path: PathLike, *, what: str = "input file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what}; check the path")
    return path


def check_option_lang(lang: Optional[str]) -> None:
    if lang is not None and (not isinstance(lang, str) or not LANG_RE.match(lang)):
        raise UserError(f'--lang must be a language code like "de" or "zh-Hant", got {lang!r}')


def check_lang(value: Any, where: str) -> str:
    if not isinstance(value, str) or not LANG_RE.match(value):
        raise DataFormatError(f'{where}: "lang" must be a language code like "de" or "zh-Hant", got {value!r}; fix it')
    return value


def pick_lang(record_lang: Any, default: Optional[str], where: str) -> str:
    """The record's language code if present (null counts as absent), else the default."""
    if record_lang is not None:
        return check_lang(record_lang, where)
    if default is None:
        raise DataFormatError(f'{where}: no language code: add a "lang" field or pass --lang XX')
    return default


def make_doc(nlp: Language, text: str, where: str) -> Doc:
    if len(text) > nlp.max_length:
        raise DataFormatError(
            f"{where}: text has {len(text)} characters, over nlp.max_length ({nlp.max_length}); split it"
        )
    return nlp.make_doc(text)


def load_json(path: Path) -> Any:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not valid UTF-8 at byte {err.start}; re-save the file as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = " (expected one JSON document, not JSON Lines)" if err.msg == "Extra data" else ""
        raise DataFormatError(
            f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}{hint}; fix the syntax there"
        ) from None


def iter_lines(path: Path) -> Iterator[Tuple[int, str]]:
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


def iter_json_objects(path: Path, *, example: str, known: Sequence[str]) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Yield (line number, object) for each JSONL line; warn once about unknown fields."""
    unknown: Dict[str, int] = {}
    for lineno, line in iter_lines(path):
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(
                f"{where}: invalid JSON at column {err.colno}: {err.msg}; write one JSON object per line, like {example}"
            ) from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"{where}: expected a JSON object like {example}, got {json_type(obj)}")
        for field in obj:
            if field not in known:
                unknown.setdefault(field, lineno)
        yield lineno, obj
    if unknown:
        fields = ", ".join(f'"{name}" (first on line {line})' for name, line in unknown.items())
        warnings.warn(f"{path}: ignoring unknown fields {fields}; only {', '.join(known)} are read", stacklevel=3)


def get_text(obj: Dict[str, Any], field: str, *, where: str, what: str) -> str:
    if field not in obj:
        raise DataFormatError(f'{where}: "{field}" is missing; add the {what}')
    value = obj[field]
    if not isinstance(value, str):
        raise DataFormatError(f'{where}: "{field}" must be a string, got {json_type(value)}')
    if not value.strip():
        raise DataFormatError(f'{where}: "{field}" is empty; add the {what} or remove the line')
    return value
