"""SQuAD v1.1 / MLQA exact match and F1, unanswerable questions, per-language breakdown."""

import pytest
import spacy
from spacy.training import Example

from spacy_mbert.qa.scorer import exact_match, f1, make_qa_scorer, mixed_segmentation, normalize_answer, score_question


@pytest.mark.parametrize(
    "text,expected",
    [
        ("The Quick, brown fox!", "quick brown fox"),  # lower case, punctuation, article
        ("  an   apple a day ", "apple day"),  # articles as words only, whitespace collapsed
        ("theatre", "theatre"),  # "the" inside a word stays
        ("Denver Broncos.", "denver broncos"),
        ("«Paris»", "«paris»"),  # SQuAD v1.1 removes ASCII punctuation only
    ],
)
def test_squad_v11_normalization(text, expected):
    assert normalize_answer(text) == expected
    assert normalize_answer(text, "en") == expected


def test_squad_v11_exact_and_f1():
    assert exact_match("the Denver Broncos", "Denver Broncos") == 1.0
    assert f1("Denver Broncos", "Denver Broncos won") == pytest.approx(0.8)  # P = 1, R = 2/3
    assert f1("Carolina Panthers", "Denver Broncos") == 0.0
    assert f1("x y y", "y y z") == pytest.approx(2 / 3)  # token counts, not sets


def test_max_over_gold_answers():
    golds = ["Denver Broncos", "The Denver Broncos", "Broncos"]
    assert score_question("Broncos", golds, "en") == (1.0, 1.0)
    exact, f1_value = score_question("Denver", golds, "en")
    assert exact == 0.0 and f1_value == pytest.approx(2 / 3)


def test_mlqa_languages_remove_their_own_articles_and_unicode_punctuation():
    assert exact_match("la ciudad", "Ciudad", "es") == 1.0
    assert exact_match("der Bahnhof", "Bahnhof", "de") == 1.0
    assert exact_match("der Bahnhof", "Bahnhof", "en") == 0.0  # English articles only
    assert exact_match("القاهرة", "قاهرة", "ar") == 1.0  # MLQA removes "ال"
    assert exact_match("¿Qué?", "qué", "es") == 1.0
    assert normalize_answer("«Paris»", "de") == "paris"


def test_mlqa_chinese_is_scored_by_characters():
    assert mixed_segmentation("北京市 is big，ok") == ["北", "京", "市", "is", "big", "，", "ok"]
    assert normalize_answer("北京。", "zh") == "北 京"
    assert exact_match("北京。", "北京", "zh") == 1.0
    assert f1("北京市", "北京", "zh") == pytest.approx(0.8)  # P = 2/3, R = 1
    assert f1("北京市", "北京", "en") == 0.0  # without segmentation: one token each


@pytest.mark.parametrize(
    "lang,prediction,gold,expected",
    [
        ("ja", "東京タワー", "東京", 2 * (2 / 5) / (2 / 5 + 1)),
        ("th", "กรุงเทพ", "กรุงเทพมหานคร", 2 * (7 / 13) / (1 + 7 / 13)),
        ("zh-Hans", "天安门", "北京天安门", 2 * (3 / 5) / (1 + 3 / 5)),
    ],
)
def test_languages_without_spaces_score_characters(lang, prediction, gold, expected):
    assert f1(prediction, gold, lang) == pytest.approx(expected)


def test_unanswerable_questions():
    assert score_question("", [], "en") == (1.0, 1.0)
    assert score_question("Broncos", [], "en") == (0.0, 0.0)
    assert score_question("", ["Broncos"], "en") == (0.0, 0.0)


def _example(nlp, text, lang, golds, prediction):
    reference = nlp.make_doc(text)
    reference._.lang = lang
    # DocBin gives gold answers back as a tuple.
    reference._.answers = tuple(
        {"text": g, "start_char": text.index(g), "end_char": text.index(g) + len(g)} for g in golds
    )
    predicted = nlp.make_doc(text)
    predicted._.answers = (
        [] if prediction is None else [{"text": prediction, "start_char": 0, "end_char": 1, "score": 1.0}]
    )
    return Example(predicted, reference)


def test_registered_scorer_reports_overall_and_per_language():
    nlp = spacy.blank("xx")
    examples = [
        _example(nlp, "The Denver Broncos won.", "en", ["Denver Broncos"], "Denver Broncos"),
        _example(nlp, "The Denver Broncos won.", "en", ["Denver Broncos"], "Denver"),
        _example(nlp, "北京是中国的首都。", "zh", ["北京"], "北京是"),
        _example(nlp, "Nobody knows.", "en", [], None),
        _example(nlp, "Nobody knows.", None, [], "Nobody"),
    ]
    scorer = spacy.registry.scorers.get("spacy-mbert.qa_scorer.v1")()
    assert scorer is make_qa_scorer()
    scores = scorer(examples)
    en_f1 = (1.0 + 2 / 3 + 1.0) / 3
    assert scores["qa_per_lang"]["en"] == {"exact": pytest.approx(2 / 3), "f1": pytest.approx(en_f1), "n": 3}
    assert scores["qa_per_lang"]["zh"] == {"exact": 0.0, "f1": pytest.approx(0.8), "n": 1}
    assert scores["qa_per_lang"]["unknown"] == {"exact": 0.0, "f1": 0.0, "n": 1}
    assert scores["qa_exact"] == pytest.approx(2 / 5)
    assert scores["qa_f1"] == pytest.approx((1.0 + 2 / 3 + 0.8 + 1.0 + 0.0) / 5)
    assert scorer([]) == {"qa_exact": None, "qa_f1": None, "qa_per_lang": {}}
