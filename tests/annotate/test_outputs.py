"""What ``annotate`` writes (``annotate/outputs.py``) and the actor's work on a batch (``Annotator``), without Ray."""

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spacy_mbert.annotate import job
from spacy_mbert.annotate.inputs import parse_file
from spacy_mbert.annotate.job import Annotator, pipeline_factories
from spacy_mbert.annotate.outputs import JsonlWriter, ParquetWriter, Progress, fields_of
from spacy_mbert.errors import UserError

from ..qa.test_component import QUESTION
from ..test_shared_base import pipeline_from_config


@pytest.fixture(scope="module")
def qa_dir(tiny_wordpiece_dir, tmp_path_factory):
    from ..qa.test_component import toy_examples

    nlp = pipeline_from_config("qa", tiny_wordpiece_dir, base=None)
    nlp.initialize(lambda: toy_examples(nlp, 20, 5))
    path = tmp_path_factory.mktemp("annotate") / "qa"
    nlp.to_disk(path)
    return path


def test_fields_default_to_what_the_components_produce_and_are_checked():
    assert fields_of(["mbert_base", "mbert_transformer", "textcat", "mbert_qa"], None) == ["cats", "answers"]
    assert fields_of(["textcat", "mbert_translator"], ["translation"]) == ["translation"]
    with pytest.raises(UserError, match="unknown field 'labels'"):
        fields_of(["textcat"], ["labels"])
    with pytest.raises(UserError, match="produces 'answers'"):
        fields_of(["textcat"], ["answers"])
    with pytest.raises(UserError, match="no component that annotate can write"):
        fields_of(["mbert_transformer"], None)


def test_pipeline_factories_read_the_config_and_check_disable(textcat_dir):
    assert "textcat" in pipeline_factories(str(textcat_dir), [])
    assert "textcat" not in pipeline_factories(str(textcat_dir), ["textcat"])
    with pytest.raises(UserError, match="--disable: no component 'parser'"):
        pipeline_factories(str(textcat_dir), ["parser"])
    with pytest.raises(UserError, match="not found"):
        pipeline_factories("no_such_pipeline_xx", [])


def test_annotator_answers_rows_with_questions_and_keeps_bad_rows(qa_dir):
    lines = [
        json.dumps({"id": "q", "text": "Ada wohnt in Berlin.", "question": QUESTION}),
        json.dumps({"id": "no-question", "text": "Ada wohnt in Berlin."}),
        json.dumps({"id": "bad", "text": None}),
    ]
    batch = pa.Table.from_pylist(parse_file("\n".join(lines).encode(), "/x/in.jsonl", 0))
    out = Annotator(str(qa_dir), [], ["answers"], threads=1, use_gpu=False)(batch).to_pylist()
    assert [(r["line"], r["error"]) for r in out] == [(1, None), (2, None), (3, "missing text")]
    answers = json.loads(out[0]["result"])["answers"]
    text = "Ada wohnt in Berlin."
    assert answers and all(text[a["start_char"] : a["end_char"]] == a["text"] for a in answers)
    assert json.loads(out[1]["result"]) == {"answers": []}  # no question: passed over
    assert out[2]["result"] is None


def test_annotator_reports_a_row_the_pipeline_fails_on_and_annotates_the_rest(textcat_dir):
    annotator = Annotator(str(textcat_dir), [], ["cats"], threads=1, use_gpu=False)
    original = annotator.nlp.make_doc

    def make_doc(text):
        if text == "boom":
            raise ValueError("cannot tokenize this\nsecond line")
        return original(text)

    annotator.nlp.make_doc = make_doc
    rows = parse_file(b"ein Satz\nboom\nnoch einer\n", "/x/in.txt", 0)
    out = annotator(pa.Table.from_pylist(rows)).to_pylist()
    assert out[1]["error"] == "the pipeline failed on this row (ValueError: cannot tokenize this)"
    assert [json.loads(out[i]["result"])["cats"].keys() == {"food", "sports", "weather"} for i in (0, 2)] == [True] * 2


def test_jsonl_writer_cuts_back_to_the_checkpoint_on_resume(tmp_path):
    path = tmp_path / "out.jsonl"
    writer = JsonlWriter(path)
    writer.write({"id": 1})
    size = writer.checkpoint()
    writer.write({"id": 2})
    writer.file.write(b'{"id": 3, "ha')  # a row half-written when the job stopped
    writer.close()
    JsonlWriter(path, keep_bytes=size).close()
    assert path.read_text() == '{"id": 1}\n'


def test_parquet_writer_writes_whole_parts_and_drops_later_ones_on_resume(tmp_path, monkeypatch):
    monkeypatch.setattr("spacy_mbert.annotate.outputs.PARQUET_PART_ROWS", 2)
    out = tmp_path / "out.parquet"
    writer = ParquetWriter(out, ["cats", "answers"])
    rows = [
        {"id": i, "cats": {"a": 0.5}, "answers": [{"text": "x", "start_char": 0, "end_char": 1, "score": 0.1}]}
        for i in range(5)
    ]
    for row in rows[:3]:
        writer.write(row)
        writer.checkpoint()
    assert writer.parts == 1 and writer.pending() == 1
    ParquetWriter(out, ["cats", "answers"], keep_parts=0)
    assert not list(out.glob("part-*.parquet"))
    writer = ParquetWriter(out, ["cats", "answers"])
    for row in rows:
        writer.write(row)
        writer.checkpoint()
    writer.checkpoint(final=True)
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == ["0", "1", "2", "3", "4"]
    assert table.column("answers").to_pylist()[0][0]["text"] == "x"


def test_without_ray_the_command_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(UserError, match=r'install it with: pip install "spacy-mbert\[ray\]"'):
        job._ray("auto")


def test_output_format_comes_from_the_name_or_format():
    assert job._output_format(Path("out.jsonl"), None) == "jsonl"
    assert job._output_format(Path("out.parquet"), None) == "parquet"
    assert job._output_format(Path("out.data"), "parquet") == "parquet"
    with pytest.raises(UserError, match="name it .jsonl or .parquet"):
        job._output_format(Path("out.csv"), None)


def test_an_existing_output_is_not_overwritten_and_resume_needs_the_same_job(tmp_path):
    out = tmp_path / "out.jsonl"
    files = [tmp_path / "in.txt"]
    state = job._start_state(Progress(out), out, files, ["cats"], "jsonl", resume=False)
    assert state["position"] is None and state["docs"] == 0
    out.write_text("")
    with pytest.raises(UserError, match="exists; pass --resume"):
        job._start_state(Progress(out), out, files, ["cats"], "jsonl", resume=False)
    with pytest.raises(UserError, match="has no progress file"):
        job._start_state(Progress(out), out, files, ["cats"], "jsonl", resume=True)
    Progress(out).write(dict(state, position=[0, 3], docs=3))
    assert job._start_state(Progress(out), out, files, ["cats"], "jsonl", resume=True)["docs"] == 3
    with pytest.raises(UserError, match="the fields differ"):
        job._start_state(Progress(out), out, files, ["answers"], "jsonl", resume=True)


def test_summary_rate_after_startup_leaves_out_the_first_batch():
    """The actors' start-up is paid once per job: the rate after it excludes its seconds and its rows."""
    summary = job.Summary(docs=1000, errors=24, seconds=30.0, startup_seconds=10.0, startup_rows=64, output="o.jsonl")
    assert summary.docs_per_second == pytest.approx(1000 / 30)
    assert summary.docs_per_second_after_startup == pytest.approx((1024 - 64) / 20)
    assert "33.3 docs/s (30.0 s; after 10.0 s of start-up, 48.0 docs/s)" in summary.line()
    assert job.Summary(docs=5, seconds=1.0, startup_seconds=1.0).docs_per_second_after_startup == 0.0
