"""``encoder/tokenize.py``: windows tokenized once give exactly what spacy-transformers' tokenization gives."""

import logging

import numpy
import pytest
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from transformers import AutoTokenizer

from spacy_mbert.encoder.span_getters import configure_wordpiece_strided_spans
from spacy_mbert.encoder.tokenize import special_template, tokenize_windows

from .conftest import THAI_TEXT, blank_xx

TEXTS = [
    "Wir sprechen heute über Fußball.",
    "",
    "   ",
    "Trailing whitespace stays out of the window. ",
    "東京は日本の首都です。北京天安门",
    "@user ohhh I ❤️ it!!! 😂😂 #blessed",
    "cafe\u0301 na\u00efve \u200b zero-width",
    THAI_TEXT,
    " ".join(["The lighthouse keeper watched enormous waves crash against the rocks."] * 40),  # many windows
]


@pytest.fixture(params=["tiny_wordpiece_dir", "tiny_unigram_dir"])
def tokenizer(request):
    return AutoTokenizer.from_pretrained(str(request.getfixturevalue(request.param)))


def test_reused_wordpieces_are_what_the_window_text_tokenizes_to(tokenizer):
    nlp = blank_xx()
    docs = [nlp.make_doc(text) for text in TEXTS]
    spans = configure_wordpiece_strided_spans(window=16, stride=12)
    spans.set_tokenizer(tokenizer)
    nested, pieces = spans.spans_and_pieces(docs)
    assert sum(p is not None for p in pieces) == sum(len(doc) > 0 for doc in docs)
    template = special_template(tokenizer)
    assert template is not None
    ours = tokenize_windows(tokenizer, docs, nested, pieces, template)
    reference = huggingface_tokenize(tokenizer, [span.text for spans_ in nested for span in spans_])
    for key in ("input_ids", "attention_mask", "token_type_ids", "offset_mapping"):
        if key in reference:
            numpy.testing.assert_array_equal(ours[key], reference[key], err_msg=key)
        else:
            assert key not in ours, key
    assert ours["input_texts"] == reference["input_texts"]
    assert ours["pad_token"] == reference["pad_token"]


def test_a_window_longer_than_the_encoder_logs_no_indexing_warning(tiny_unigram_dir, caplog):
    """The 3,000-character word is one window of 2,400 pieces, split over rows (windows.py), not cut:
    Hugging Face's "Token indices sequence length is longer ..." warning would be untrue."""
    from .conftest import transformer_pipeline
    from .test_span_getters import LONG_WORD_TEXT

    nlp = transformer_pipeline(tiny_unigram_dir)
    nlp.initialize()
    with caplog.at_level(logging.WARNING, logger="transformers"):
        nlp(LONG_WORD_TEXT)
    assert not [r for r in caplog.records if "sequence length is longer" in r.getMessage()]
