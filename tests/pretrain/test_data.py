import json
from collections import Counter

import pytest
from transformers import AutoTokenizer

from spacy_mbert.errors import DataFormatError, UserError
from spacy_mbert.pretrain.data import (
    Document,
    LanguageSampler,
    language_probabilities,
    pack_documents,
    read_documents,
    split_heldout,
)

from .conftest import ENGLISH, MULTILINGUAL

# ----------------------------------------------------------------- reading


def test_reads_jsonl_and_txt_with_languages(tmp_path):
    txt = tmp_path / "de.txt"
    txt.write_text("Erster Satz.\n\n   \nZweiter Satz.\n", encoding="utf8")
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text(
        '{"text": "Hello.", "lang": "en"}\n\n{"text": "Sans langue."}\n{"text": "  ", "lang": "fr"}\n',
        encoding="utf8",
    )
    docs = read_documents([txt, jsonl], ["de", "fr"])
    assert [(d.text, d.lang, d.line) for d in docs] == [
        ("Erster Satz.", "de", 1),
        ("Zweiter Satz.", "de", 4),
        ("Hello.", "en", 1),
        ("Sans langue.", "fr", 3),
    ]
    # One --lang for all files; none at all: "unknown".
    assert {d.lang for d in read_documents([txt], ["xx"])} == {"xx"}
    assert {d.lang for d in read_documents([txt, jsonl])} == {"unknown", "en"}


def test_project_corpus_reads():
    docs = read_documents([MULTILINGUAL, ENGLISH])
    counts = Counter(d.lang for d in docs)
    assert len(counts) == 9 and counts["unknown"] == 40 and counts["zh"] == 25


@pytest.mark.parametrize(
    "content,match",
    [
        ('{"text": "ok"}\n{"text": "broken"\n', r"bad\.jsonl:2: invalid JSON"),
        ('{"text": "ok"}\n\n{"lang": "en"}\n', r'bad\.jsonl:3: field "text" is missing'),
        ('{"text": 5}\n', r'bad\.jsonl:1: field "text" must be a string'),
        ('["text"]\n', r"bad\.jsonl:1: expected a JSON object"),
        ('{"text": "x", "lang": 3}\n', r'bad\.jsonl:1: field "lang"'),
    ],
)
def test_bad_jsonl_names_file_line_and_field(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf8")
    with pytest.raises(DataFormatError, match=match) as error:
        read_documents([path])
    assert "\n" not in str(error.value)


def test_missing_file_and_json_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_documents([tmp_path / "nope.txt"])
    (tmp_path / "a.json").write_text('{"text": "x"}', encoding="utf8")
    with pytest.raises(UserError, match="use JSONL"):
        read_documents([tmp_path / "a.json"])
    with pytest.raises(UserError, match="2 languages for 1 text files"):
        read_documents([ENGLISH], ["en", "de"])


# ----------------------------------------------------------------- held-out split


def test_heldout_split_is_deterministic_and_disjoint():
    docs = read_documents([MULTILINGUAL, ENGLISH])
    train, heldout = split_heldout(docs, 0.1)
    assert {d.text for d in train}.isdisjoint(d.text for d in heldout)
    assert len(train) + len(heldout) == len(docs)
    held = Counter(d.lang for d in heldout)
    assert held == {**{lang: 2 for lang in ("ar", "de", "en", "es", "fr", "ja", "ru", "zh")}, "unknown": 4}
    # Independent of file order.
    _, again = split_heldout(list(reversed(docs)), 0.1)
    assert {d.text for d in again} == {d.text for d in heldout}


def test_heldout_at_least_one_per_language_when_possible():
    docs = [Document("solo", "aa"), Document("one", "bb"), Document("two", "bb"), Document("two", "bb")]
    train, heldout = split_heldout(docs, 0.01)
    assert [d.lang for d in heldout] == ["bb"]
    assert "aa" in {d.lang for d in train}
    # Duplicates of a held-out text are not trained on.
    assert heldout[0].text not in {d.text for d in train}
    assert split_heldout(docs, 0.0) == (docs, [])


# ----------------------------------------------------------------- packing


@pytest.fixture(params=["wordpiece", "unigram"])
def tokenizer(request, tiny_wordpiece_dir, tiny_unigram_dir):
    path = tiny_wordpiece_dir if request.param == "wordpiece" else tiny_unigram_dir
    return AutoTokenizer.from_pretrained(str(path))


@pytest.mark.parametrize("max_length", [16, 64])
def test_packing_keeps_every_piece_in_order(tokenizer, max_length):
    docs = read_documents([MULTILINGUAL, ENGLISH])
    packed = pack_documents(tokenizer, docs, max_length)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    for lang, group in packed.items():
        lang_docs = [d.text for d in docs if d.lang == lang]
        expected = [i for ids in tokenizer(lang_docs, add_special_tokens=False)["input_ids"] for i in ids]
        lengths = [len(seq) for seq in group.input_ids]
        # Full, but for one slot when a document ends just before it (no room for [SEP] + a piece).
        assert all(n >= max_length - 1 for n in lengths[:-1]) and lengths[-1] <= max_length
        assert sum(n < max_length for n in lengths[:-1]) <= len(lang_docs)
        assert group.n_docs == len(lang_docs) and group.n_pieces == len(expected)
        content = []
        separators = 0
        for seq, words in zip(group.input_ids, group.word_ids):
            assert seq[0] == cls_id and seq[-1] == sep_id
            assert len(words) == len(seq) and words[0] == words[-1] == -1
            inner = seq[1:-1].tolist()
            assert inner[0] != sep_id and inner[-1] != sep_id, "no empty documents"
            separators += inner.count(sep_id)
            content.extend(i for i in inner if i != sep_id)
            assert ((seq == sep_id) == (words == -1))[1:].all()
        assert content == expected, f"{lang}: pieces lost or reordered"
        assert separators <= len(lang_docs) - 1


def test_word_ids_follow_word_boundaries(tokenizer):
    docs = read_documents([MULTILINGUAL])
    packed = pack_documents(tokenizer, docs, 64)
    unigram = tokenizer.cls_token == "<s>"
    for group in packed.values():
        for seq, words in zip(group.input_ids, group.word_ids):
            pieces = tokenizer.convert_ids_to_tokens(seq.tolist())
            for i in range(2, len(seq) - 1):
                if words[i] < 0 or words[i - 1] < 0:
                    continue
                if unigram:
                    starts_word = pieces[i].startswith("▁")
                    assert (words[i] != words[i - 1]) == starts_word, pieces[i - 1 : i + 1]
                else:
                    continues = pieces[i].startswith("##")
                    assert (words[i] == words[i - 1]) == continues, pieces[i - 1 : i + 1]


def test_packing_needs_a_fast_tokenizer(tiny_wordpiece_dir):
    slow = AutoTokenizer.from_pretrained(str(tiny_wordpiece_dir), use_fast=False)
    with pytest.raises(UserError, match="fast"):
        pack_documents(slow, [Document("x", "en")])


# ----------------------------------------------------------------- sampling


def test_language_probabilities():
    counts = {"big": 1000, "mid": 100, "small": 10, "empty": 0}
    proportional = language_probabilities(counts, 1.0)
    assert proportional["big"] == pytest.approx(1000 / 1110)
    assert proportional["empty"] == 0.0
    uniform = language_probabilities(counts, 0.0)
    assert uniform == pytest.approx({"big": 1 / 3, "mid": 1 / 3, "small": 1 / 3, "empty": 0.0})
    smoothed = language_probabilities(counts, 0.7)
    assert sum(smoothed.values()) == pytest.approx(1.0)
    assert proportional["small"] < smoothed["small"] < uniform["small"]
    assert proportional["big"] > smoothed["big"] > uniform["big"]
    total = sum(n**0.7 for n in (1000, 100, 10))
    assert smoothed["mid"] == pytest.approx(100**0.7 / total)
    with pytest.raises(UserError):
        language_probabilities({"a": 0}, 0.7)
    with pytest.raises(UserError):
        language_probabilities({"a": 1}, -1)


def test_sampler_frequencies_match_probabilities():
    counts = {"big": 1000, "mid": 100, "small": 10}
    sampler = LanguageSampler(counts, 0.7, seed=0)
    drawn = sampler.sample(40000)
    frequencies = Counter(lang for lang, _ in drawn)
    for lang, p in language_probabilities(counts, 0.7).items():
        assert frequencies[lang] / 40000 == pytest.approx(p, abs=0.01)
    # Each pass over a language visits every sequence once.
    small = [index for lang, index in drawn if lang == "small"]
    for start in range(0, len(small) - 10, 10):
        assert sorted(small[start : start + 10]) == list(range(10))
    assert len(set(tuple(small[i : i + 10]) for i in range(0, 50, 10))) > 1, "reshuffled every pass"


def test_sampler_state_round_trip():
    counts = {"a": 7, "b": 3}
    first = LanguageSampler(counts, 0.7, seed=1)
    first.sample(25)
    state = json.loads(json.dumps(first.state_dict()))
    expected = first.sample(40)
    second = LanguageSampler(counts, 0.7, seed=1)
    second.load_state_dict(state)
    assert second.sample(40) == expected
    with pytest.raises(UserError, match="differs"):
        LanguageSampler({"a": 8, "b": 3}, 0.7, seed=1).load_state_dict(state)
