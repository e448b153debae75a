"""What ``annotate`` writes: the fields of each doc, the output and errors files, and the progress file.

The driver writes rows in input order as they come back from Ray, and after every
batch records in ``<output>.progress.json`` the position of the last row written and
the size of what was written. ``--resume`` cuts the output and errors back to those
sizes (a row half-written when the job stopped is dropped), then skips the input up
to that position, so every row is written exactly once.

Output formats: JSONL (one file, ``id`` as given in the input), or Parquet (a
directory of part files, each written whole; ``id`` as a string, the column having
one type).
"""

import json
import os
from pathlib import Path
from typing import Dict, List, Optional

from spacy.tokens import Doc

from ..errors import UserError

# Field -> the factories whose components produce it.
FIELDS = {
    "cats": ("textcat", "textcat_multilabel"),
    "answers": ("mbert_qa",),
    "translation": ("mbert_translator",),
}
PARQUET_PART_ROWS = 10_000


def fields_of(factories: List[str], chosen: Optional[List[str]]) -> List[str]:
    """The fields to write: ``chosen`` (checked), or every field a component of the pipeline produces."""
    produced = [field for field, makers in FIELDS.items() if any(f in makers for f in factories)]
    if not chosen:
        if not produced:
            raise UserError(
                f"The pipeline has no component that annotate can write out (factories: {', '.join(factories)}); "
                f"it writes {', '.join(f'{k} ({v[0]})' for k, v in FIELDS.items())}."
            )
        return produced
    for field in chosen:
        if field not in FIELDS:
            raise UserError(f"--fields: unknown field '{field}'; choose from {', '.join(FIELDS)}.")
        if field not in produced:
            raise UserError(f"--fields: no enabled component of this pipeline produces '{field}' ({FIELDS[field][0]}).")
    return list(chosen)


def doc_fields(doc: Doc, fields: List[str]) -> Dict[str, object]:
    """The chosen fields of an annotated doc (JSON-ready)."""
    out: Dict[str, object] = {}
    if "cats" in fields:
        out["cats"] = {label: float(score) for label, score in doc.cats.items()}
    if "answers" in fields:
        answers = doc._.answers if doc._.question else None
        out["answers"] = [
            {
                "text": a["text"],
                "start_char": int(a["start_char"]),
                "end_char": int(a["end_char"]),
                "score": float(a["score"]) if a.get("score") is not None else None,
            }
            for a in answers or []
        ]
    if "translation" in fields:
        out["translation"] = doc._.translation
    return out


class Progress:
    """``<output>.progress.json``: the inputs, fields, the last position written and the sizes written."""

    def __init__(self, output: Path):
        self.path = Path(str(output) + ".progress.json")

    def read(self) -> Optional[dict]:
        if not self.path.exists():
            return None
        try:
            return json.loads(self.path.read_text(encoding="utf8"))
        except (OSError, ValueError) as error:
            raise UserError(f"{self.path}: unreadable progress file ({error}); delete the output to start again.")

    def write(self, state: dict) -> None:
        temp = self.path.with_name(self.path.name + ".tmp")
        temp.write_text(json.dumps(state), encoding="utf8")
        os.replace(temp, self.path)


class JsonlWriter:
    """Rows appended to a JSONL file; ``size()`` is what the progress file records."""

    def __init__(self, path: Path, keep_bytes: int = 0):
        self.path = Path(path)
        self.file = open(self.path, "ab" if keep_bytes else "wb")
        self.file.truncate(keep_bytes)  # resume: drop what was written after the last checkpoint
        self.file.seek(keep_bytes)

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record, ensure_ascii=False).encode("utf8") + b"\n")

    def checkpoint(self) -> int:
        self.file.flush()
        os.fsync(self.file.fileno())
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


class ParquetWriter:
    """Rows gathered into part files ``part-00000.parquet``, ... in a directory, each written whole."""

    def __init__(self, directory: Path, fields: List[str], keep_parts: int = 0):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("part-*.parquet"):
            if int(stale.stem.split("-")[1]) >= keep_parts:
                stale.unlink()  # resume: parts after the last checkpoint
        self.parts = keep_parts
        self.schema = _parquet_schema(fields)
        self.rows: List[dict] = []

    def write(self, record: dict) -> None:
        self.rows.append(dict(record, id=str(record["id"])))

    def pending(self) -> int:
        return len(self.rows)

    def checkpoint(self, *, final: bool = False) -> Optional[int]:
        """Write a part when enough rows are gathered (all of them when ``final``); the parts written."""
        if self.rows and (final or len(self.rows) >= PARQUET_PART_ROWS):
            import pyarrow as pa
            import pyarrow.parquet as pq

            path = self.directory / f"part-{self.parts:05d}.parquet"
            temp = path.with_name(path.name + ".tmp")
            pq.write_table(pa.Table.from_pylist(self.rows, schema=self.schema), temp)
            os.replace(temp, path)
            self.parts += 1
            self.rows = []
        return self.parts

    def close(self) -> None:
        pass


def _parquet_schema(fields: List[str]):
    import pyarrow as pa

    columns = [pa.field("id", pa.string())]
    if "cats" in fields:
        columns.append(pa.field("cats", pa.map_(pa.string(), pa.float64())))
    if "answers" in fields:
        answer = pa.struct(
            [("text", pa.string()), ("start_char", pa.int64()), ("end_char", pa.int64()), ("score", pa.float64())]
        )
        columns.append(pa.field("answers", pa.list_(answer)))
    if "translation" in fields:
        columns.append(pa.field("translation", pa.string()))
    return pa.schema(columns)
