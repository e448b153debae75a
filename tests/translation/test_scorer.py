"""spacy-mbert.translation_scorer.v1: sacreBLEU BLEU/chrF as fractions, per source language."""

import pytest
import sacrebleu
from spacy.training import Example
from spacy.util import registry

from spacy_mbert.errors import UserError
from spacy_mbert.translation.scorer import (
    bleu_tokenizer_for,
    check_references,
    read_references,
    score_for_evaluate,
    score_translations,
)

from ..conftest import CORPUS, blank_xx

PAIRS = [
    # (source, reference, hypothesis, lang)
    ("Wo ist der Bahnhof?", "Where is the train station?", "Where is the station?", "de"),
    ("Ich habe keine Zeit.", "I don't have time.", "I have no time.", "de"),
    ("¿Dónde está el museo?", "Where is the museum?", "Where is the museum?", "es"),
    ("我今天有点儿累。", "I am a bit tired today.", "Today I am tired.", "zh"),
    ("その店は月曜日が休みです。", "That shop is closed on Mondays.", "The shop closes Monday.", "ja"),
]


def make_examples(pairs=PAIRS, nlp=None):
    nlp = nlp or blank_xx()
    examples = []
    for source, reference, hypothesis, lang in pairs:
        predicted, gold = nlp.make_doc(source), nlp.make_doc(source)
        predicted._.translation, predicted._.lang = hypothesis, lang
        gold._.translation, gold._.lang = reference, lang
        examples.append(Example(predicted, gold))
    return examples


def test_matches_sacrebleu():
    scores = score_translations(make_examples(), target_lang="en")
    hyps = [p[2] for p in PAIRS]
    refs = [[p[1] for p in PAIRS]]
    assert scores["translation_bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, refs).score / 100)
    assert scores["translation_chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, refs).score / 100)
    assert 0 < scores["translation_bleu"] < 1 and 0 < scores["translation_chrf"] < 1


def test_per_language_groups():
    per_lang = score_translations(make_examples(), target_lang="en")["translation_per_lang"]
    assert list(per_lang) == ["de", "es", "ja", "zh"]
    assert [per_lang[lang]["n"] for lang in per_lang] == [2, 1, 1, 1]
    assert per_lang["es"]["bleu"] == pytest.approx(1.0) and per_lang["es"]["chrf"] == pytest.approx(1.0)
    de = [p for p in PAIRS if p[3] == "de"]
    assert per_lang["de"]["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu([p[2] for p in de], [[p[1] for p in de]]).score / 100
    )


def test_bleu_tokenizer_follows_target_language():
    assert bleu_tokenizer_for("zh") == "zh" and bleu_tokenizer_for("zh-Hant") == "zh"
    assert bleu_tokenizer_for("ja") == "char" and bleu_tokenizer_for("th") == "char"
    assert bleu_tokenizer_for("en") == "13a" and bleu_tokenizer_for(None) == "13a"
    # Chinese references without spaces: "zh" BLEU segments them, "13a" would see one word.
    pairs = [("x", "我爱北京天安门。", "我爱北京。", "en")]
    zh = score_translations(make_examples(pairs), target_lang="zh")["translation_bleu"]
    expected = sacrebleu.corpus_bleu(["我爱北京。"], [["我爱北京天安门。"]], tokenize="zh").score / 100
    assert zh == pytest.approx(expected) and zh > 0
    assert score_translations(make_examples(pairs), target_lang="en")["translation_bleu"] == 0.0
    explicit = score_translations(make_examples(pairs), target_lang="en", bleu_tokenize="char")["translation_bleu"]
    assert explicit == pytest.approx(
        sacrebleu.corpus_bleu(["我爱北京。"], [["我爱北京天安门。"]], tokenize="char").score / 100
    )


def test_missing_predictions_and_references():
    examples = make_examples()
    examples[0].predicted._.translation = None  # not translated: counts as ""
    examples[1].reference._.translation = None  # no reference: skipped
    scores = score_translations(examples, target_lang="en")
    assert scores["translation_per_lang"]["de"]["n"] == 1
    assert scores["translation_per_lang"]["de"]["bleu"] == 0.0
    empty = score_translations([], target_lang="en")
    assert empty == {"translation_bleu": 0.0, "translation_chrf": 0.0, "translation_per_lang": {}}


def test_unknown_language_and_bad_tokenizer():
    examples = make_examples()
    examples[0].reference._.lang = examples[0].predicted._.lang = None
    assert "unknown" in score_translations(examples)["translation_per_lang"]
    with pytest.raises(UserError, match="bleu_tokenize"):
        score_translations(examples, bleu_tokenize="no-such-tokenizer")


def test_registered_scorer_takes_component_settings():
    scorer = registry.scorers.get("spacy-mbert.translation_scorer.v1")()
    # spaCy passes the component's cfg (and labels) as keyword arguments.
    scores = scorer(make_examples(), target_lang="en", labels=())
    assert scores == score_translations(make_examples(), target_lang="en")


def test_evaluate_hooks(tmp_path):
    nlp = blank_xx()

    class Pipe:
        cfg = {"target_lang": "en"}
        scorer = registry.scorers.get("spacy-mbert.translation_scorer.v1")(bleu_tokenize="char")

    scores = score_for_evaluate(make_examples(), Pipe())
    assert set(scores) == {"translation_bleu", "translation_chrf"}
    assert scores["translation_bleu"] == pytest.approx(
        score_translations(make_examples(), bleu_tokenize="char")["translation_bleu"]
    )
    refs = read_references(CORPUS / "translation" / "dev.jsonl", nlp=nlp, pipe=Pipe())
    assert all(doc._.translation and doc._.lang for doc in refs)
    tsv = read_references(CORPUS / "translation" / "de-en.tsv", nlp=nlp, pipe=Pipe())
    assert {doc._.lang for doc in tsv} == {"de"}
    unnamed = tmp_path / "pairs.tsv"
    unnamed.write_text("Hallo\tHello\n", encoding="utf8")
    assert read_references(unnamed, nlp=nlp, pipe=Pipe())[0]._.lang is None
    assert read_references(unnamed, nlp=nlp, pipe=Pipe(), lang="de")[0]._.lang == "de"
    check_references(refs, Pipe(), tmp_path)
    for doc in refs:
        doc._.translation = None
    with pytest.raises(UserError, match="reference translation"):
        check_references(refs, Pipe(), tmp_path)
