"""Long translator sources cut into sentence-sized chunks (``spacy_mbert/translation/chunks.py``)."""

import pytest
from transformers import AutoTokenizer

from spacy_mbert.translation.chunks import source_chunks, split_sentences


def _sentences(text):
    return [text[start:end] for start, end in split_sentences(text)]


def test_sentences_in_many_scripts():
    text = (
        "Where is the station? It is near. Wait…  Okay!\n\n"
        "我今天有点儿累。你呢？很好！"
        "هل أنت بخير؟ نعم. "
        "मैं ठीक हूँ। धन्यवाद॥\n"
        "Dr. Smith has 3.5 apples"
    )
    assert _sentences(text) == [
        "Where is the station?",
        "It is near.",
        "Wait…",
        "Okay!",
        "我今天有点儿累。",
        "你呢？",
        "很好！",
        "هل أنت بخير؟",
        "نعم.",
        "मैं ठीक हूँ।",
        "धन्यवाद॥",
        # An abbreviation is a (harmless) sentence break; a decimal point is not.
        "Dr.",
        "Smith has 3.5 apples",
    ]
    assert _sentences("") == [] and _sentences(" \n\t ") == [] and _sentences("no end") == ["no end"]


@pytest.fixture(params=["wordpiece", "unigram"])
def tokenizer(request, tiny_wordpiece_dir, tiny_unigram_dir):
    path = tiny_wordpiece_dir if request.param == "wordpiece" else tiny_unigram_dir
    return AutoTokenizer.from_pretrained(str(path))


def _words(text):
    return text.split()


def test_sentences_are_packed_into_chunks_that_fit(tokenizer):
    sentences = [f"The old man number {i} walked to the market." for i in range(40)] + ["我今天有点儿累。" * 3]
    text = " ".join(sentences)
    chunks, longest_cut = source_chunks(tokenizer, text, 32)
    assert longest_cut == 0 and len(chunks) > 5
    assert all(len(tokenizer(chunk)["input_ids"]) <= 32 for chunk in chunks)
    # Whole sentences, in order, none lost; consecutive short sentences share a chunk.
    assert [s for chunk in chunks for s in _sentences(chunk)] == _sentences(text)
    assert max(len(_sentences(chunk)) for chunk in chunks) >= 2
    assert source_chunks(tokenizer, "Short. Text.", 32) == (["Short. Text."], 0)


def test_a_sentence_too_long_is_cut_between_words(tokenizer):
    sentence = " ".join(f"word{i % 7} and more" for i in range(60)) + "."
    text = "Before. " + sentence + " After."
    chunks, longest_cut = source_chunks(tokenizer, text, 24)
    assert longest_cut == len(tokenizer(sentence, add_special_tokens=False)["input_ids"]) > 22
    assert chunks[0] == "Before." and chunks[-1] == "After."
    assert all(len(tokenizer(chunk)["input_ids"]) <= 24 for chunk in chunks)
    assert [w for chunk in chunks for w in _words(chunk)] == _words(text)  # cut between words


def test_a_word_too_long_is_cut_between_its_pieces(tokenizer):
    word = "abcdefghij" * 9  # (BERT reads a word of over 100 characters as one [UNK])
    chunks, longest_cut = source_chunks(tokenizer, "Ein " + word + " Ende", 16)
    assert longest_cut > 14 and all(len(tokenizer(chunk)["input_ids"]) <= 16 for chunk in chunks)
    assert "".join(chunks).replace(" ", "") == ("Ein" + word + "Ende")
