"""Input files and rows of ``annotate`` (``annotate/inputs.py``): every row kept, bad ones with their reason."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spacy_mbert.annotate.inputs import input_files, parse_file
from spacy_mbert.errors import UserError


def test_jsonl_rows_keep_their_line_and_bad_rows_their_reason():
    lines = [
        json.dumps({"id": "a", "text": "Hallo Welt", "lang": "de"}),
        "{broken",
        "",  # a blank line is no record
        json.dumps({"id": 7, "text": "", "question": "Wer?"}),
        json.dumps({"id": "b"}),
        json.dumps({"id": "c", "text": ["not", "a", "string"]}),
        json.dumps({"text": "no id"}),
        json.dumps([1, 2]),
        json.dumps({"id": "d", "text": "ok", "lang": 5}),
    ]
    data = "\n".join(lines).encode() + b'\n{"id": "e", "text": "caf\xe9"}\n'
    rows = parse_file(data, "/x/in.jsonl", 3)
    assert [(r["file"], r["line"]) for r in rows] == [(3, n) for n in (1, 2, 4, 5, 6, 7, 8, 9, 10)]
    by_line = {r["line"]: r for r in rows}
    assert by_line[1]["error"] is None and by_line[1]["text"] == "Hallo Welt" and by_line[1]["lang"] == "de"
    assert json.loads(by_line[1]["id"]) == "a"
    assert by_line[4]["error"] is None and json.loads(by_line[4]["id"]) == 7 and by_line[4]["question"] == "Wer?"
    reasons = {line: by_line[line]["error"] for line in (2, 5, 6, 7, 8, 9, 10)}
    assert reasons[2].startswith("invalid JSON")
    assert reasons[5] == "missing text"
    assert reasons[6] == "text must be a string (got list)"
    assert reasons[7] == "missing id"
    assert reasons[8] == "not a JSON object (got list)"
    assert reasons[9] == "lang must be a string (got int)"
    assert reasons[10].startswith("undecodable bytes (not UTF-8)")
    assert json.loads(by_line[10]["id"]) == "e"  # the id is kept for the errors file where it can be read


def test_text_files_give_one_doc_per_line_with_the_line_number_as_id():
    rows = parse_file("eins\r\nzwei\n\n\U0001f600 drei\n".encode(), "/x/in.txt", 0)
    assert [(json.loads(r["id"]), r["text"]) for r in rows] == [
        (1, "eins"),
        (2, "zwei"),
        (3, ""),
        (4, "\U0001f600 drei"),
    ]


def test_resume_skips_rows_at_or_before_the_position():
    data = b"a\nb\nc\nd\n"
    assert [r["line"] for r in parse_file(data, "/x/in.txt", 2, after=(2, 2))] == [3, 4]
    assert [r["line"] for r in parse_file(data, "/x/in.txt", 3, after=(2, 2))] == [1, 2, 3, 4]


def test_parquet_rows_are_numbered_and_checked(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b", None], "text": ["Hallo", None, "x"]}), path)
    rows = parse_file(path.read_bytes(), str(path), 0)
    assert [(r["line"], r["error"]) for r in rows] == [(1, None), (2, "missing text"), (3, "missing id")]
    broken = parse_file(b"PAR1 not really", str(path), 0)
    assert len(broken) == 1 and broken[0]["error"].startswith("unreadable Parquet file")


def test_input_files_from_a_file_a_directory_and_a_glob(tmp_path):
    for name in ("b.jsonl", "a.txt", "c.parquet", "notes.md"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in input_files(str(tmp_path))] == ["a.txt", "b.jsonl", "c.parquet"]
    assert [p.name for p in input_files(str(tmp_path / "*.jsonl"))] == ["b.jsonl"]
    assert input_files(str(tmp_path / "a.txt"))[0].is_absolute()
    with pytest.raises(UserError, match="unknown input format '.md'"):
        input_files(str(tmp_path / "notes.md"))
    with pytest.raises(UserError, match="No input files"):
        input_files(str(tmp_path / "*.csv"))
