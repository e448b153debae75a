"""Detokenization: WordPiece words back to running text in the target script."""

import pytest
from transformers import AutoTokenizer

from spacy_mbert.translation.detokenize import decode, is_wordpiece, join_words, remove_no_space_script_spaces


def wp(text: str, lang: str = "en") -> str:
    """Detokenize a space-separated WordPiece decoding."""
    return join_words(text.split(" "), lang)


@pytest.mark.parametrize(
    "decoded, lang, expected",
    [
        ("我 爱 北 京", "zh", "我爱北京"),
        ("我 爱 北 京 。", "zh", "我爱北京。"),
        ("你 想 喝 点 什 么 ？", "zh", "你想喝点什么？"),
        ("私 は 学 生 です 。", "ja", "私は学生です。"),
        ("その 店 は 月 曜 日 が 休 み です 。", "ja", "その店は月曜日が休みです。"),
        # Chinese/Japanese targets: no spaces next to CJK characters at all.
        ("我 用 iPhone 手 机", "zh", "我用iPhone手机"),
        ("我 有 3 个 苹 果", "zh", "我有3个苹果"),
        # Other targets: only between two CJK characters (e.g. a name in an English sentence).
        ("He visited 北 京 yesterday .", "en", "He visited 北京 yesterday."),
        # Korean keeps its spaces (Hangul is not split by BERT).
        ("저는 학생 입니다 .", "ko", "저는 학생 입니다."),
    ],
)
def test_no_space_scripts(decoded, lang, expected):
    assert wp(decoded, lang) == expected


@pytest.mark.parametrize(
    "decoded, lang, expected",
    [
        ("Where is the nearest train station ?", "en", "Where is the nearest train station?"),
        ("I don ' t have time , sorry !", "en", "I don't have time, sorry!"),
        ("Can you pass me the salt , please ?", "en", "Can you pass me the salt, please?"),
        ("It ' s ( almost ) done : yes ; no .", "en", "It's (almost) done: yes; no."),
        ('He said " yes " .', "en", 'He said "yes".'),
        ('" Hi " , he said', "en", '"Hi", he said'),
        ("a well - known and / or good idea", "en", "a well-known and/or good idea"),
        (
            "It costs 3 . 5 euros at 10 : 30 , or 1 , 000 in total .",
            "en",
            "It costs 3.5 euros at 10:30, or 1,000 in total.",
        ),
        ("Numbers 2 , 3 and 4", "en", "Numbers 2, 3 and 4"),
        ("¿ Qué hora es ? ¡ Vamos !", "es", "¿Qué hora es? ¡Vamos!"),
        ("l ' homme est là .", "fr", "l'homme est là."),
        # French typography: spaces before ; : ! ? and inside « ».
        ("Comment allez - vous ? « Bien » .", "fr", "Comment allez-vous ? « Bien »."),
        ("Привет , мир !", "ru", "Привет, мир!"),
    ],
)
def test_punctuation_spacing(decoded, lang, expected):
    assert wp(decoded, lang) == expected


def test_only_no_space_rule():
    assert remove_no_space_script_spaces("我 爱 北 京 , ok .") == "我爱北京 , ok ."
    assert remove_no_space_script_spaces("我 用 iPhone", "zh") == "我用iPhone"


def test_empty():
    assert join_words([]) == ""
    assert join_words(["", ""]) == ""


def test_wordpiece_decode_joins_continuations(tiny_wordpiece_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_wordpiece_dir))
    assert is_wordpiece(tokenizer)
    continued = 0
    for text, lang in [
        ("I don't have time today.", "en"),
        ("Wo ist der nächste Bahnhof?", "de"),
        ("Kannst du mir bitte das Salz geben?", "de"),
        ("Unbelievably enthusiastic lighthouse keepers.", "en"),
        ("我今天有点儿累。", "zh"),
        ("日本語を勉強して二年になります。", "ja"),
    ]:
        ids = tokenizer(text)["input_ids"]
        continued += any(piece.startswith("##") for piece in tokenizer.convert_ids_to_tokens(ids))
        assert decode(tokenizer, ids, lang) == text
    # The tiny vocabulary is trained on corpus/: which words it splits changes with the corpus;
    # some of these must be split, or the continuation joining is not exercised.
    assert continued >= 2


def test_sentencepiece_decode_is_left_as_is(tiny_unigram_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_unigram_dir))
    assert not is_wordpiece(tokenizer)
    for text, lang in [("I don't have time today.", "en"), ("我今天有点儿累。", "zh"), ("Comment allez-vous ?", "fr")]:
        assert decode(tokenizer, tokenizer(text)["input_ids"], lang) == text
