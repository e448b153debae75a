import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from spacy_mbert.tokenizer import pieces_crossing_tokens, split_bert_words

from .conftest import blank_xx

# Every plane, combining marks, RTL and bidi controls, zero-width and control
# characters; only lone surrogates are excluded (they are not valid text).
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200)
TRICKY = st.sampled_from(
    list(" \t\n\r\u00a0\u3000\u2028\u200b\u200d\u200e\u202e\ufeff\x00\x1c\x85\ufffd.,!?¿。、「」")
    + [
        "[SEP]",
        "[CLS]",
        "<mask>",
        "我",
        "愛",
        "ภาษา",
        "مرحبا",
        "नमस्ते",
        "Ελλάδα",
        "👩‍👩‍👧",
        "🇩🇪",
        "e\u0301",
        "ﬁ",
        "１２",
    ]
)
MIXED_TEXT = st.lists(st.one_of(TRICKY, st.text(max_size=5)), max_size=40).map("".join)


@pytest.fixture(scope="module")
def nlp():
    return blank_xx()


@pytest.mark.parametrize(
    "text,words",
    [
        ("Hello, world!", ["Hello", ",", "world", "!"]),
        ("我爱北京天安门。", ["我", "爱", "北", "京", "天", "安", "门", "。"]),
        ("東京タワーは333m", ["東", "京", "タワーは333m"]),  # kana are not CJK ideographs for BERT
        ("مرحبا بالعالم!", ["مرحبا", "بالعالم", "!"]),
        ("नमस्ते, दुनिया।", ["नमस्ते", ",", "दुनिया", "।"]),
        ("ภาษาไทยง่าย", ["ภาษาไทยง่าย"]),  # BERT does not split Thai
        ("e-mail: a@b.de", ["e", "-", "mail", ":", "a", "@", "b", ".", "de"]),
        ("zero\u200bwidth", ["zero\u200bwidth"]),  # BERT removes U+200B, gluing the word
        ("a\u3000b", ["a", "\u3000", "b"]),
        ("two  spaces\n\nand lines", ["two", " ", "spaces", "\n\n", "and", "lines"]),
        # The encoder's tokenizer reads these strings as special tokens: keep them whole.
        ("a[SEP]b [MASK]. <s>x</s>", ["a", "[SEP]", "b", "[MASK]", ".", "<s>", "x", "</s>"]),
    ],
)
def test_splits_where_bert_does(nlp, text, words):
    doc = nlp(text)
    assert [token.text for token in doc] == words
    assert doc.text == text


@pytest.mark.parametrize("text", ["", " ", "   ", "\n", " \t \u3000 "])
def test_empty_and_whitespace_only(nlp, text):
    doc = nlp(text)
    assert doc.text == text
    assert all(token.is_space for token in doc)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(ANY_TEXT, MIXED_TEXT))
def test_text_is_preserved(nlp, text):
    doc = nlp(text)
    assert doc.text == text
    assert all(token.text for token in doc)


@pytest.fixture(scope="module")
def wordpiece_tokenizer(tiny_wordpiece_dir):
    return AutoTokenizer.from_pretrained(str(tiny_wordpiece_dir))


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(ANY_TEXT, MIXED_TEXT))
# Found by hypothesis: U+2B820..U+2B91F are CJK to Python BERT, not to the Rust tokenizer.
@example(text="0\U0002b820")
def test_every_wordpiece_falls_inside_one_token(nlp, wordpiece_tokenizer, text):
    doc = nlp(text)
    offsets = wordpiece_tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    assert pieces_crossing_tokens(doc, offsets) == []


def test_wordpiece_alignment_on_corpus(nlp, wordpiece_tokenizer):
    from spacy_mbert.checkpoints.tiny import iter_text

    from .conftest import corpus_text_files

    texts = [text for path in corpus_text_files() for text in iter_text(path)]
    assert len(texts) > 500
    for text in texts:
        offsets = wordpiece_tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        assert pieces_crossing_tokens(nlp(text), offsets) == [], text


@settings(max_examples=100, deadline=None)
@given(text=ANY_TEXT)
def test_split_is_deterministic_and_complete(text):
    words, spaces = split_bert_words(text)
    assert "".join(w + (" " if s else "") for w, s in zip(words, spaces)) == text
