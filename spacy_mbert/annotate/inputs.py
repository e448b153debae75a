"""Input files of ``spacy-mbert annotate``: which files, and their rows, bad ones kept as errors.

A row is a dict with the same keys whatever the format, so Ray Data can put rows of
every file in one Arrow table:

- ``file``, ``line``: the file's index in :func:`input_files`' list and the row's
  1-based line (JSONL, text) or row number (Parquet): together the row's position,
  which orders the output, makes resuming exact, and names the row in the errors file;
- ``id``: the row's id as JSON text (ids may be strings or integers);
- ``text``, ``question``, ``lang``: strings or None;
- ``error``: None, or why the row cannot be annotated (it goes to the errors file).
"""

import glob
import io
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import UserError

FORMATS = {".jsonl": "jsonl", ".parquet": "parquet", ".txt": "text"}
# A position: (file index, line).
Position = Tuple[int, int]


def input_files(spec: str) -> List[Path]:
    """The input files of ``spec`` (a file, a directory or a glob), sorted, as absolute paths."""
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix in FORMATS]
        where = f"directory {spec}"
    elif path.is_file():
        found = [path]
        where = f"file {spec}"
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
        where = f"pattern {spec}"
    if not found:
        raise UserError(f"No input files in {where}; give a .jsonl, .parquet or .txt file, a directory or a glob.")
    unknown = sorted(str(p) for p in found if p.suffix not in FORMATS)
    if unknown:
        raise UserError(
            f'{unknown[0]}: unknown input format \'{Path(unknown[0]).suffix}\'; use .jsonl ({{"id", "text"}} per line), '
            ".parquet (id and text columns) or .txt (one doc per line)."
        )
    return sorted(Path(os.path.abspath(p)) for p in found)


def parse_file(data: bytes, path: str, file_index: int, after: Optional[Position] = None) -> List[dict]:
    """The rows of one input file, in order; ``after``: skip rows at or before this position (resume)."""
    kind = FORMATS[Path(path).suffix]
    if kind == "parquet":
        rows = _parquet_rows(data, path)
    else:
        rows = _line_rows(data, kind)
    skip = after[1] if after is not None and after[0] == file_index else -1  # line 0: the whole file
    return [dict(row, file=file_index) for row in rows if row["line"] > skip]


def _row(line: int, record_id=None, text=None, question=None, lang=None, error=None) -> dict:
    return {
        "line": line,
        "id": None if record_id is None else json.dumps(record_id, ensure_ascii=False),
        "text": text,
        "question": question,
        "lang": lang,
        "error": error,
    }


def _line_rows(data: bytes, kind: str) -> List[dict]:
    rows = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf8")
        except UnicodeDecodeError as error:
            reason = f"undecodable bytes (not UTF-8) at byte {error.start} of the line"
            rows.append(_row(number, record_id=_id_despite(raw) if kind == "jsonl" else number, error=reason))
            continue
        if kind == "text":
            rows.append(_row(number, record_id=number, text=line))
        elif line.strip():  # a blank line in JSONL is no record
            rows.append(_json_row(number, line))
    return rows


def _id_despite(raw: bytes):
    """The id of a JSONL line with undecodable bytes, when the rest of it parses (for the errors file)."""
    try:
        record_id = json.loads(raw.decode("utf8", errors="replace")).get("id")
    except (ValueError, AttributeError):
        return None
    return record_id if isinstance(record_id, (str, int)) and not isinstance(record_id, bool) else None


def _json_row(number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return _row(number, error=f"invalid JSON ({error.msg} at column {error.colno})")
    if not isinstance(record, dict):
        return _row(number, error=f"not a JSON object (got {type(record).__name__})")
    return _record_row(number, record)


def _record_row(number: int, record: Dict) -> dict:
    record_id = record.get("id")
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        reason = (
            "missing id" if record_id is None else f"id must be a string or an integer (got {type(record_id).__name__})"
        )
        return _row(number, error=reason)
    text = record.get("text")
    if not isinstance(text, str):
        reason = "missing text" if text is None else f"text must be a string (got {type(text).__name__})"
        return _row(number, record_id=record_id, error=reason)
    for key in ("question", "lang"):
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            return _row(number, record_id=record_id, error=f"{key} must be a string (got {type(value).__name__})")
    return _row(number, record_id=record_id, text=text, question=record.get("question"), lang=record.get("lang"))


def _parquet_rows(data: bytes, path: str) -> List[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as error:  # pyarrow raises several types for a damaged file
        return [_row(0, error=f"unreadable Parquet file ({type(error).__name__}: {str(error).splitlines()[0]})")]
    return [_record_row(number, record) for number, record in enumerate(table.to_pylist(), start=1)]
