"""Translation pairs -> docs with ``doc._.translation`` (``spacy-mbert convert translation``).

``.tsv`` with ``source<TAB>target`` per line (no header), or ``.jsonl`` with
``{"source": "...", "target": "..."}`` and optional ``"lang"``. ``doc.text`` is
the source, ``doc._.translation`` the target. A ``.tsv`` file has no per-line
language: pass ``lang`` or name the file ``<src>-<tgt>.tsv`` (``deu-eng.tsv``,
``de-en.tsv``); the part before the ``-`` is taken as the source language.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from spacy.language import Language
from spacy.tokens import Doc

from ..data_files import (
    PathLike,
    check_option_lang,
    get_text,
    input_file,
    iter_json_objects,
    iter_lines,
    make_doc,
    pick_lang,
)
from ..errors import DataFormatError, UserError

_PAIR_NAME_RE = re.compile(r"^([A-Za-z]{2,3})-([A-Za-z]{2,3})$")
_PAIR_FIELDS = ("source", "target", "lang")
_PAIR_EXAMPLE = '{"source": "...", "target": "..."}'


def read_pairs(path: PathLike, *, nlp: Language, lang: Optional[str] = None) -> List[Doc]:
    """Read translation pairs (``.tsv`` or ``.jsonl``) into docs with ``doc._.translation``.

    path (PathLike): ``.tsv`` (``source<TAB>target``, no header) or ``.jsonl`` (``{"source", "target"}``).
    nlp (Language): Pipeline whose ``make_doc`` tokenizes the sources.
    lang (Optional[str]): Source language code; for ``.tsv`` it may instead come from a file
        name like ``de-en.tsv``, for ``.jsonl`` from a ``"lang"`` field.
    RETURNS (List[Doc]): Docs whose text is the source and ``_.translation`` the target.
    """
    path = input_file(path)
    check_option_lang(lang)
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
        raise DataFormatError(
            f"{path}: no language code: pass --lang XX or name the file <src>-<tgt>.tsv (e.g. de-en.tsv)"
        )
    records = []
    for lineno, line in iter_lines(path):
        where = f"{path}:{lineno}"
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataFormatError(
                f"{where}: expected 2 tab-separated columns (source<TAB>target), found {len(columns)}; "
                f"{'separate source and target with a tab' if len(columns) == 1 else 'remove the extra columns'}"
            )
        for index, (name, value) in enumerate(zip(("source", "target"), columns), start=1):
            if not value.strip():
                raise DataFormatError(
                    f"{where}: column {index} ({name}) is empty; add the {name} text or remove the line"
                )
        records.append(_PairRecord(where, columns[0], columns[1], lang))
    return records


def _parse_jsonl_pairs(path: Path, *, lang: Optional[str]) -> List[_PairRecord]:
    records = []
    for lineno, obj in iter_json_objects(path, example=_PAIR_EXAMPLE, known=_PAIR_FIELDS):
        where = f"{path}:{lineno}"
        source = get_text(obj, "source", where=where, what="source text")
        target = get_text(obj, "target", where=where, what="target text")
        records.append(_PairRecord(where, source, target, pick_lang(obj.get("lang"), lang, where)))
    return records


def _pair_doc(nlp: Language, record: _PairRecord) -> Doc:
    doc = make_doc(nlp, record.source, record.where)
    doc._.lang = record.lang
    doc._.translation = record.target
    return doc
