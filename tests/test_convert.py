"""Tests for ``spacy_mbert.convert``: raw task data -> ``.spacy`` DocBins."""

import json
import re
from pathlib import Path

import pytest
from spacy.tokens import DocBin

from spacy_mbert.convert import (
    TASK_SUFFIXES,
    convert,
    lang_from_filename,
    make_nlp,
    read_labels,
    read_pairs,
    read_squad,
    read_textcat,
    write_docbin,
)
from spacy_mbert.errors import DataFormatError, UserError

CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpus"


@pytest.fixture(scope="module")
def nlp():
    return make_nlp()


def write_jsonl(path, rows):
    """Write rows (dicts, or raw strings written as-is) one per line."""
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_json(path, data):
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def read_back(path, nlp):
    return list(DocBin().from_disk(path).get_docs(nlp.vocab))


def assert_error(call, *fragments, exc=DataFormatError):
    """``call()`` raises ``exc`` with a one-line message containing every fragment."""
    with pytest.raises(exc, match=re.escape(fragments[0])) as info:
        call()
    message = str(info.value)
    for fragment in fragments[1:]:
        assert fragment in message, message
    assert "\n" not in message
    return message


def squad(paragraphs, **top):
    """A one-article SQuAD file body; ``top`` adds top-level fields (e.g. lang)."""
    return {"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}], **top}


def qa(qid, question, answers=None, impossible=None):
    item = {"id": qid, "question": question}
    if answers is not None:
        item["answers"] = [{"text": text, "answer_start": start} for text, start in answers]
    if impossible is not None:
        item["is_impossible"] = impossible
    return item


# --------------------------------------------------------------------------- textcat


def test_textcat_exclusive_roundtrip(tmp_path, nlp):
    src = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"text": "Das ist gut.", "label": "pos", "lang": "de"},
            {"text": "这很糟糕。", "label": "neg", "lang": "zh"},
            {"text": "Fine.", "label": "pos"},
        ],
    )
    summary = convert("textcat", src, tmp_path / "out" / "train.spacy", lang="en", nlp=nlp)
    assert summary == {
        "task": "textcat",
        "inputs": [str(src)],
        "labels": ["neg", "pos"],
        "multilabel": False,
        "docs": 3,
        "per_lang": {"de": 1, "en": 1, "zh": 1},
        "output": str(tmp_path / "out" / "train.spacy"),
    }
    docs = read_back(tmp_path / "out" / "train.spacy", nlp)
    assert [doc.text for doc in docs] == ["Das ist gut.", "这很糟糕。", "Fine."]
    assert [doc._.lang for doc in docs] == ["de", "zh", "en"]
    assert [doc.cats for doc in docs] == [
        {"neg": 0.0, "pos": 1.0},
        {"neg": 1.0, "pos": 0.0},
        {"neg": 0.0, "pos": 1.0},
    ]
    assert [t.text for t in docs[1]] == ["这", "很", "糟", "糕", "。"]


def test_textcat_multilabel_gives_several_positive_cats(tmp_path, nlp):
    src = write_jsonl(
        tmp_path / "ml.jsonl",
        [
            {"text": "sport and politics", "labels": ["sport", "politics"]},
            {"text": "just art", "labels": ["art", "art"]},
        ],
    )
    summary = convert("textcat", src, tmp_path / "ml.spacy", lang="en", nlp=nlp)
    assert summary["multilabel"] is True
    assert summary["labels"] == ["art", "politics", "sport"]
    docs = read_back(tmp_path / "ml.spacy", nlp)
    assert docs[0].cats == {"art": 0.0, "politics": 1.0, "sport": 1.0}
    assert docs[1].cats == {"art": 1.0, "politics": 0.0, "sport": 0.0}


def test_textcat_closed_label_set_from_file(tmp_path, nlp):
    src = write_jsonl(tmp_path / "dev.jsonl", [{"text": "ok", "label": "pos"}])
    labels = write_json(tmp_path / "labels.json", ["pos", "neutral", "neg"])
    summary = convert("textcat", src, tmp_path / "dev.spacy", lang="en", labels_path=labels, nlp=nlp)
    assert summary["labels"] == ["pos", "neutral", "neg"]
    assert read_back(tmp_path / "dev.spacy", nlp)[0].cats == {"pos": 1.0, "neutral": 0.0, "neg": 0.0}


def test_textcat_blank_lines_skipped_and_line_numbers_kept(tmp_path, nlp):
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": "x"}, "", "   ", {"text": "b", "label": "y"}])
    docs, labels = read_textcat(src, nlp=nlp, lang="en")
    assert [doc.text for doc in docs] == ["a", "b"] and labels == ["x", "y"]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a", "label": "x"}, "", {"text": "", "label": "y"}])
    assert_error(lambda: read_textcat(bad, nlp=nlp, lang="en"), f"{bad}:3:", '"text"')


def test_textcat_unknown_fields_warn_once(tmp_path, nlp):
    src = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {"text": "a", "label": "x", "id": 1},
            {"text": "b", "label": "x", "id": 2, "meta": {}},
        ],
    )
    with pytest.warns(UserWarning, match=re.escape('"id" (first on line 1), "meta" (first on line 2)')) as record:
        docs, _ = read_textcat(src, nlp=nlp, lang="en")
    assert len(docs) == 2 and len(record) == 1


@pytest.mark.parametrize(
    "lines,fragments",
    [
        (
            [
                '{"text": "a", "label": "x"',
            ],
            [":1: invalid JSON at column 27"],
        ),
        (['["a", "x"]'], [":1: expected a JSON object", "got a list"]),
        ([{"label": "x"}], [':1: "text" is missing']),
        ([{"text": "  ", "label": "x"}], [':1: "text" is empty']),
        ([{"text": 5, "label": "x"}], [':1: "text" must be a string, got a number']),
        ([{"text": "a"}], [":1: no label field", '"label"', '"labels"']),
        ([{"text": "a", "labels": []}], [':1: "labels" is empty']),
        ([{"text": "a", "labels": ["x", 3]}], [':1: "labels"[1] must be a non-empty string, got 3']),
        ([{"text": "a", "label": None}], [':1: "label" must be a non-empty string']),
        ([{"text": "a", "labels": "x"}], [':1: "labels" must be a list of strings, got a string']),
        ([{"text": "a", "label": "x", "labels": ["x"]}], [':1: has both "label" and "labels"']),
        (
            [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}, {"text": "c", "labels": ["x"]}],
            [':3: uses "labels" but line 1 uses "label"'],
        ),
        ([{"text": "a", "label": "x", "lang": "German"}], [':1: "lang" must be a language code', "'German'"]),
    ],
    ids=[
        "bad-json",
        "not-object",
        "missing-text",
        "empty-text",
        "non-string-text",
        "missing-label",
        "empty-labels",
        "non-string-labels",
        "null-label",
        "labels-not-list",
        "both-styles",
        "mixed-styles",
        "bad-lang",
    ],
)
def test_textcat_errors(tmp_path, nlp, lines, fragments):
    src = write_jsonl(tmp_path / "t.jsonl", lines)
    assert_error(lambda: read_textcat(src, nlp=nlp, lang="en"), f"{src}{fragments[0]}", *fragments[1:])


def test_textcat_unknown_label_in_closed_set(tmp_path, nlp):
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "meh"}])
    assert_error(
        lambda: read_textcat(src, nlp=nlp, lang="en", labels=["pos", "neg"]),
        f"{src}:2: \"label\" 'meh' is not in the label set (pos, neg)",
        "labels file",
    )
    multi = write_jsonl(tmp_path / "m.jsonl", [{"text": "b", "labels": ["pos", "meh"]}])
    assert_error(
        lambda: read_textcat(multi, nlp=nlp, lang="en", labels=["pos", "neg"]),
        f"{multi}:1: \"labels\"[1] 'meh' is not in the label set (pos, neg)",
    )


def test_textcat_empty_file(tmp_path, nlp):
    src = tmp_path / "empty.jsonl"
    src.write_text("\n\n", encoding="utf-8")
    assert_error(lambda: read_textcat(src, nlp=nlp, lang="en"), f"{src}: no examples")


def test_textcat_missing_language(tmp_path, nlp):
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": "x", "lang": "en"}, {"text": "b", "label": "x"}])
    assert_error(lambda: read_textcat(src, nlp=nlp), f'{src}:2: no language code: add a "lang" field or pass --lang XX')


def test_textcat_invalid_utf8(tmp_path, nlp):
    src = tmp_path / "t.jsonl"
    src.write_bytes(b'{"text": "a", "label": "x"}\n{"text": "\xff", "label": "x"}\n')
    assert_error(lambda: read_textcat(src, nlp=nlp, lang="en"), f"{src}:2: not valid UTF-8")


@pytest.mark.parametrize(
    "content,fragment",
    [
        ('{"labels": ["a"]}', "expected a JSON list of labels"),
        ('["a", "b", "a"]', "label 'a' is listed more than once"),
        ('["a", ""]', "label [1] must be a non-empty string"),
        ("[]", "the label set is empty"),
        ('["a",', "invalid JSON"),
    ],
    ids=["not-list", "duplicate", "empty-label", "empty-set", "bad-json"],
)
def test_labels_file_errors(tmp_path, content, fragment):
    path = tmp_path / "labels.json"
    path.write_text(content, encoding="utf-8")
    assert_error(lambda: read_labels(path), str(path), fragment)


# --------------------------------------------------------------------------- qa


def test_squad_roundtrip_offsets_cjk_arabic(tmp_path, nlp):
    data = {
        "version": "v2.0",
        "lang": "en",
        "data": [
            {
                "title": "zh",
                "lang": "zh",
                "paragraphs": [
                    {
                        "context": "北京是中国的首都。",
                        "qas": [
                            qa("z1", "哪个国家？", [("中国", 3), ("中国", 3)]),
                        ],
                    }
                ],
            },
            {
                "title": "ar",
                "lang": "ar",
                "paragraphs": [
                    {
                        "context": "عاصمة مصر هي القاهرة.",
                        "qas": [
                            qa("a1", "ما هي عاصمة مصر؟", [("القاهرة", 13)]),
                            qa("a2", "ما هي عاصمة فرنسا؟", [], impossible=True),
                        ],
                    }
                ],
            },
            {
                "title": "en",
                "paragraphs": [
                    {
                        "context": "The station is 10km from Bonn, not Berlin.",
                        "qas": [
                            qa("e1", "How far?", [("10", 15), ("10km", 15)]),
                        ],
                    }
                ],
            },
        ],
    }
    src = write_json(tmp_path / "dev.json", data)
    summary = convert("qa", src, tmp_path / "dev.spacy", nlp=nlp)
    assert summary["docs"] == 4 and summary["per_lang"] == {"ar": 2, "en": 1, "zh": 1}
    assert summary["unanswerable"] == 1 and summary["unaligned_answers"] == 1
    zh, ar, ar_impossible, en = read_back(tmp_path / "dev.spacy", nlp)

    assert (zh.text, zh._.lang, zh._.question, zh.user_data["qa_id"]) == (
        "北京是中国的首都。",
        "zh",
        "哪个国家？",
        "z1",
    )
    # DocBin reads user data back with msgpack use_list=False: lists come back as tuples.
    assert zh._.answers == ({"text": "中国", "start_char": 3, "end_char": 5},)  # duplicate answer deduped
    assert [(s.text, s.start_char, s.end_char, s.label_) for s in zh.spans["answers"]] == [("中国", 3, 5, "ANSWER")]

    assert list(ar._.answers) == [{"text": "القاهرة", "start_char": 13, "end_char": 20}]
    assert ar.text[13:20] == "القاهرة"
    assert [(s.text, s.start_char, s.end_char) for s in ar.spans["answers"]] == [("القاهرة", 13, 20)]
    assert (ar._.lang, ar.user_data["qa_id"]) == ("ar", "a1")

    assert list(ar_impossible._.answers) == [] and list(ar_impossible.spans["answers"]) == []
    assert ar_impossible._.question == "ما هي عاصمة فرنسا؟"

    # "10" ends inside the token "10km": kept as offsets, no span.
    assert en._.lang == "en"  # top-level lang
    assert list(en._.answers) == [
        {"text": "10", "start_char": 15, "end_char": 17},
        {"text": "10km", "start_char": 15, "end_char": 19},
    ]
    assert [s.text for s in en.spans["answers"]] == ["10km"]


def test_squad_lang_option_and_v11(tmp_path, nlp):
    v11 = {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [{"context": "Paris is in France.", "qas": [qa(17, "Where?", [("France", 12)])]}],
            }
        ],
    }
    docs = read_squad(write_json(tmp_path / "v11.json", v11), nlp=nlp, lang="fr")
    assert [(d._.lang, d.user_data["qa_id"], d._.answers[0]["end_char"]) for d in docs] == [("fr", "17", 18)]


def squad_error_cases():
    ok_context = "Bonn, not Berlin, was the capital."
    ok = qa("q1", "Which?", [("Bonn", 0)])
    return [
        ("missing-data", {"version": "v2.0"}, ['"data" is missing']),
        ("not-object", [1, 2], ["expected a SQuAD JSON object", "got a list"]),
        ("missing-context", squad([{"qas": [ok]}]), ['data[0].paragraphs[0]: "context" is missing']),
        ("empty-context", squad([{"context": "", "qas": [ok]}]), ['data[0].paragraphs[0]: "context" is empty']),
        ("missing-qas", squad([{"context": ok_context}]), ['data[0].paragraphs[0]: "qas" is missing']),
        (
            "missing-question",
            squad([{"context": ok_context, "qas": [{"id": "q1", "answers": []}]}]),
            ['data[0].paragraphs[0].qas[0] (id "q1"): "question" is missing'],
        ),
        (
            "empty-question",
            squad([{"context": ok_context, "qas": [qa("q1", " ", [("Bonn", 0)])]}]),
            ['data[0].paragraphs[0].qas[0] (id "q1"): "question" is empty'],
        ),
        (
            "missing-answers",
            squad([{"context": ok_context, "qas": [qa("q1", "Which?")]}]),
            ['qas[0] (id "q1"): "answers" is missing', '"is_impossible": true'],
        ),
        (
            "empty-answers",
            squad([{"context": ok_context, "qas": [qa("q1", "Which?", [])]}]),
            ['qas[0] (id "q1"): "answers" is empty'],
        ),
        (
            "impossible-with-answers",
            squad([{"context": ok_context, "qas": [qa("q1", "Which?", [("Bonn", 0)], impossible=True)]}]),
            ['"is_impossible" is true but "answers" has 1 entries'],
        ),
        (
            "wrong-start",
            squad([{"context": ok_context, "qas": [ok, qa("q7", "Which?", [("Berlin", 0)])]}]),
            [
                'data[0].paragraphs[0].qas[1] (id "q7"): answers[0].answer_start=0 does not point at the answer '
                'text "Berlin" (context has "Bonn, " there); fix answer_start (the text first occurs at 10)'
            ],
        ),
        (
            "start-past-end",
            squad([{"context": ok_context, "qas": [qa("q1", "Which?", [("capital.", 30)])]}]),
            ['qas[0] (id "q1"): answers[0].answer_start=30', "run past the end of the context (34 characters)"],
        ),
        (
            "negative-start",
            squad([{"context": ok_context, "qas": [qa("q1", "Which?", [("Bonn", -1)])]}]),
            ['qas[0] (id "q1"): answers[0].answer_start must be a character offset', "got -1"],
        ),
        (
            "empty-answer-text",
            squad([{"context": ok_context, "qas": [qa("q1", "Which?", [("", 0)])]}]),
            ['qas[0] (id "q1"): answers[0]: "text" is empty'],
        ),
        (
            "impossible-not-bool",
            squad([{"context": ok_context, "qas": [qa("q1", "Which?", [], impossible="no")]}]),
            ['qas[0] (id "q1"): "is_impossible" must be true or false'],
        ),
        (
            "answers-not-list",
            squad([{"context": ok_context, "qas": [{**ok, "answers": {"text": "Bonn"}}]}]),
            ['qas[0] (id "q1"): "answers" must be a list, got an object'],
        ),
        ("missing-paragraphs", {"data": [{"title": "t"}]}, ['data[0]: "paragraphs" is missing']),
        (
            "missing-id",
            squad([{"context": ok_context, "qas": [{"question": "Which?", "answers": []}]}]),
            ['data[0].paragraphs[0].qas[0]: "id" is missing'],
        ),
        (
            "duplicate-id",
            squad([{"context": ok_context, "qas": [ok]}, {"context": ok_context, "qas": [ok]}]),
            ['data[0].paragraphs[1].qas[0]: duplicate question id "q1" (first used at data[0].paragraphs[0].qas[0])'],
        ),
        ("no-questions", squad([{"context": ok_context, "qas": []}]), ["no questions"]),
        (
            "bad-lang",
            squad([{"context": ok_context, "qas": [ok]}], lang="english"),
            [': lang: "lang" must be a language code', "'english'"],
        ),
    ]


@pytest.mark.parametrize("name,data,fragments", squad_error_cases(), ids=[c[0] for c in squad_error_cases()])
def test_squad_errors(tmp_path, nlp, name, data, fragments):
    src = write_json(tmp_path / "train.json", data)
    message = assert_error(lambda: read_squad(src, nlp=nlp, lang="de"), fragments[0], *fragments[1:])
    assert message.startswith(f"{src}:")


def test_squad_invalid_json_names_line_and_column(tmp_path, nlp):
    src = tmp_path / "train.json"
    src.write_text('{"data": [\n  {"paragraphs": [}\n]}', encoding="utf-8")
    assert_error(lambda: read_squad(src, nlp=nlp, lang="de"), f"{src}:2:19: invalid JSON: Expecting value")
    jsonl = tmp_path / "lines.json"
    jsonl.write_text('{"data": []}\n{"data": []}\n', encoding="utf-8")
    assert_error(lambda: read_squad(jsonl, nlp=nlp, lang="de"), f"{jsonl}:2:1: invalid JSON: Extra data", "JSON Lines")


def test_squad_missing_language(tmp_path, nlp):
    src = write_json(tmp_path / "train.json", squad([{"context": "Bonn.", "qas": [qa("q1", "?", [("Bonn", 0)])]}]))
    assert_error(
        lambda: read_squad(src, nlp=nlp), f'{src}: data[0]: no language code: add a "lang" field or pass --lang XX'
    )


# --------------------------------------------------------------------------- translation


def test_pairs_tsv_lang_from_filename(tmp_path, nlp):
    src = tmp_path / "de-en.tsv"
    src.write_text("Guten Morgen.\tGood morning.\r\n\nDanke!\tThanks!\n", encoding="utf-8")
    summary = convert("translation", src, tmp_path, nlp=nlp)
    assert summary["output"] == str(tmp_path / "de-en.spacy")
    assert summary["docs"] == 2 and summary["per_lang"] == {"de": 2}
    docs = read_back(tmp_path / "de-en.spacy", nlp)
    assert [(d.text, d._.translation, d._.lang) for d in docs] == [
        ("Guten Morgen.", "Good morning.", "de"),
        ("Danke!", "Thanks!", "de"),
    ]
    # --lang wins over the file name
    assert read_pairs(src, nlp=nlp, lang="nds")[0]._.lang == "nds"


def test_pairs_jsonl_with_record_lang(tmp_path, nlp):
    src = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"source": "Good morning.", "target": "早上好。"},
            {"source": "مرحبا", "target": "Hello", "lang": "ar"},
        ],
    )
    docs = read_pairs(src, nlp=nlp, lang="en")
    assert [(d.text, d._.translation, d._.lang) for d in docs] == [
        ("Good morning.", "早上好。", "en"),
        ("مرحبا", "Hello", "ar"),
    ]


@pytest.mark.parametrize(
    "name,expected",
    [
        ("deu-eng.tsv", "deu"),
        ("de-en.tsv", "de"),
        ("DE-EN.tsv", "DE"),
        ("train.tsv", None),
        ("de-en-x.tsv", None),
    ],
)
def test_lang_from_filename(name, expected):
    assert lang_from_filename(name) == expected


@pytest.mark.parametrize(
    "content,fragments",
    [
        ("a\tb\nonly one column\n", [":2: expected 2 tab-separated columns", "found 1"]),
        ("a\tb\tCC-BY attribution\n", [":1: expected 2 tab-separated columns", "found 3"]),
        ("\tb\n", [":1: column 1 (source) is empty"]),
        ("a\t \n", [":1: column 2 (target) is empty"]),
    ],
    ids=["one-column", "three-columns", "empty-source", "empty-target"],
)
def test_pairs_tsv_errors(tmp_path, nlp, content, fragments):
    src = tmp_path / "de-en.tsv"
    src.write_text(content, encoding="utf-8")
    assert_error(lambda: read_pairs(src, nlp=nlp), f"{src}{fragments[0]}", *fragments[1:])


@pytest.mark.parametrize(
    "rows,fragment",
    [
        ([{"source": "a", "target": "b"}, {"target": "b"}], ':2: "source" is missing'),
        ([{"source": "a", "target": ""}], ':1: "target" is empty'),
        ([{"source": "a", "target": ["b"]}], ':1: "target" must be a string, got a list'),
        (["{'source': 'a'}"], ":1: invalid JSON at column 2"),
    ],
    ids=["missing-source", "empty-target", "non-string-target", "bad-json"],
)
def test_pairs_jsonl_errors(tmp_path, nlp, rows, fragment):
    src = write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert_error(lambda: read_pairs(src, nlp=nlp, lang="en"), f"{src}{fragment}")


def test_pairs_missing_language_and_bad_suffix(tmp_path, nlp):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("a\tb\n", encoding="utf-8")
    assert_error(lambda: read_pairs(tsv, nlp=nlp), f"{tsv}: no language code: pass --lang XX", "de-en.tsv")
    jsonl = write_jsonl(tmp_path / "pairs.jsonl", [{"source": "a", "target": "b"}])
    assert_error(lambda: read_pairs(jsonl, nlp=nlp), f'{jsonl}:1: no language code: add a "lang" field')
    csv = tmp_path / "pairs.csv"
    csv.write_text("a,b\n", encoding="utf-8")
    assert_error(lambda: read_pairs(csv, nlp=nlp, lang="en"), f"{csv}: unsupported file type '.csv'", exc=UserError)


def test_pairs_empty_file(tmp_path, nlp):
    src = tmp_path / "de-en.tsv"
    src.write_text("", encoding="utf-8")
    assert_error(lambda: read_pairs(src, nlp=nlp), f"{src}: no examples")


# --------------------------------------------------------------------------- convert()


def test_convert_directory_into_one_docbin(tmp_path, nlp):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "b.jsonl", [{"text": "second", "label": "y", "lang": "fr"}])
    write_jsonl(folder / "a.jsonl", [{"text": "first", "label": "x"}])
    (folder / "README.md").write_text("not data", encoding="utf-8")
    summary = convert("textcat", folder, tmp_path / "all.spacy", lang="en", nlp=nlp)
    assert summary["inputs"] == [str(folder / "a.jsonl"), str(folder / "b.jsonl")]
    assert summary["labels"] == ["x", "y"] and summary["per_lang"] == {"en": 1, "fr": 1}
    docs = read_back(tmp_path / "all.spacy", nlp)
    assert [(d.text, d.cats) for d in docs] == [("first", {"x": 1.0, "y": 0.0}), ("second", {"x": 0.0, "y": 1.0})]


def test_convert_directory_mixed_styles_and_cross_file_qa_ids(tmp_path, nlp):
    folder = tmp_path / "tc"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"text": "a", "label": "x"}])
    write_jsonl(folder / "b.jsonl", [{"text": "b", "labels": ["x"]}])
    assert_error(
        lambda: convert("textcat", folder, tmp_path / "o.spacy", lang="en", nlp=nlp),
        f'{folder / "b.jsonl"}: uses "labels" but {folder / "a.jsonl"} uses "label"',
    )
    qa_dir = tmp_path / "qa"
    qa_dir.mkdir()
    for name in ("a.json", "b.json"):
        write_json(qa_dir / name, squad([{"context": "Bonn.", "qas": [qa("q1", "?", [("Bonn", 0)])]}]))
    assert_error(
        lambda: convert("qa", qa_dir, tmp_path / "o.spacy", lang="de", nlp=nlp),
        f'{qa_dir / "b.json"}: question id "q1" is also used in {qa_dir / "a.json"}',
    )


def test_convert_usage_errors(tmp_path, nlp):
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": "x"}])
    assert_error(
        lambda: convert("ner", src, tmp_path / "o.spacy"),
        "unknown task 'ner'; use one of: textcat, qa, translation",
        exc=UserError,
    )
    assert_error(
        lambda: convert("qa", src, tmp_path / "o.spacy", labels_path=src),
        "--labels only applies to the textcat task",
        exc=UserError,
    )
    assert_error(
        lambda: convert("textcat", src, tmp_path / "o.json", lang="en", nlp=nlp), "must end in .spacy", exc=UserError
    )
    assert_error(
        lambda: convert("textcat", src, tmp_path / "o.spacy", lang="English"),
        "--lang must be a language code",
        exc=UserError,
    )
    assert_error(
        lambda: convert("textcat", tmp_path / "nope.jsonl", tmp_path / "o.spacy", lang="en"),
        "no such file or directory",
        exc=UserError,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_error(
        lambda: convert("qa", empty, tmp_path / "o.spacy", lang="en"), f"{empty}: no .json files", exc=UserError
    )
    assert not (tmp_path / "o.spacy").exists()


def test_write_docbin_keeps_user_data(tmp_path, nlp):
    doc = nlp.make_doc("hola")
    doc._.lang = "es"
    doc._.translation = "hello"
    path = write_docbin([doc], tmp_path / "deep" / "x.spacy")
    (back,) = read_back(path, nlp)
    assert (back.text, back._.lang, back._.translation) == ("hola", "es", "hello")


# --------------------------------------------------------------------------- shipped corpus


# corpus/<folder>/ -> (task, multilabel); corpus/raw/ is pretraining text, not converted.
CORPUS_TASKS = {
    "textcat": ("textcat", False),
    "textcat_multilabel": ("textcat", True),
    "qa": ("qa", None),
    "translation": ("translation", None),
}


def _corpus_records(path):
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        return sum(len(p["qas"]) for article in data for p in article["paragraphs"])
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


@pytest.mark.parametrize("folder", sorted(CORPUS_TASKS))
def test_corpus_files_convert_with_one_doc_per_record(tmp_path, nlp, folder):
    task, multilabel = CORPUS_TASKS[folder]
    directory = CORPUS_DIR / folder
    files = (
        sorted(p for p in directory.glob("*") if p.suffix in TASK_SUFFIXES[task] and p.name != "labels.json")
        if directory.is_dir()
        else []
    )
    stems = {path.stem for path in files}
    assert {"train", "dev"} <= stems, (
        f"{directory} lacks a train and a dev data file; found: {sorted(p.name for p in files)}"
    )
    labels = directory / "labels.json"
    for path in files:
        try:
            expected = _corpus_records(path)
        except (ValueError, KeyError) as error:
            pytest.fail(f"{path} is malformed: {type(error).__name__}: {error}")
        assert expected > 0, f"{path} holds no records"
        summary = convert(
            task, path, tmp_path / f"{path.stem}.spacy", nlp=nlp, labels_path=labels if labels.exists() else None
        )
        assert summary["docs"] == expected, path
        assert sum(summary["per_lang"].values()) == expected and None not in summary["per_lang"], path
        if multilabel is not None:
            assert summary["multilabel"] is multilabel, path


def test_sentiment_corpus_converts_with_balanced_classes_per_language(tmp_path, nlp):
    """corpus/sentiment: the README's sentiment example converts with its closed label set."""
    from collections import Counter

    corpus = Path(__file__).resolve().parent.parent / "corpus" / "sentiment"
    for split in ("train", "dev"):
        summary = convert(
            "textcat",
            corpus / f"{split}.jsonl",
            tmp_path / f"{split}.spacy",
            labels_path=corpus / "labels.json",
            nlp=nlp,
        )
        assert summary["labels"] == ["negative", "neutral", "positive"]
        docs = read_back(tmp_path / f"{split}.spacy", nlp)
        counts = Counter((doc._.lang, max(doc.cats, key=doc.cats.get)) for doc in docs)
        assert len({lang for lang, _ in counts}) == 6 and len(set(counts.values())) == 1, counts
