"""``align_by_offsets`` gives exactly spacy-transformers' ``get_alignment_via_offset_mapping``.

Checked on WordPiece and SentencePiece (XLM-R-style) tokenizers, with overlapping
windows, several docs (one empty, one repeated), odd whitespace, pieces that span two
spaCy tokens, and scripts without spaces; and on random Unicode text.
"""

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc
from spacy_transformers.align import get_alignment_via_offset_mapping
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from spacy_transformers.span_getters import get_strided_spans
from transformers import AutoTokenizer

from spacy_mbert.encoder.alignment import align_by_offsets

from .conftest import THAI_TEXT, blank_xx

TEXTS = [
    "The lighthouse keeper watched enormous waves crash against Felsen und Klippen.",
    "",
    "北京天安门 广场上人很多。 مرحبا بالعالم! नमस्ते दुनिया",
    "  leading  and   double spaces\tand\ttabs\n\nnew lines  ",
    "can't won't e-mail U.S.A. 3.14 $5 (parens) [brackets] «quotes» — dashes…",
    THAI_TEXT[:300],
]


def _assert_same(spans, tokenizer):
    encoding = huggingface_tokenize(tokenizer, [span.text for span in spans])
    expected = get_alignment_via_offset_mapping(spans, encoding["offset_mapping"])
    found = align_by_offsets(spans, encoding["offset_mapping"])
    numpy.testing.assert_array_equal(found.lengths, expected.lengths)
    numpy.testing.assert_array_equal(found.dataXd, expected.dataXd)
    assert found.dataXd.dtype == expected.dataXd.dtype


@pytest.fixture(scope="module", params=["wordpiece", "unigram"])
def tokenizer(request, tiny_wordpiece_dir, tiny_unigram_dir):
    directory = tiny_wordpiece_dir if request.param == "wordpiece" else tiny_unigram_dir
    return AutoTokenizer.from_pretrained(str(directory))


def test_same_as_spacy_transformers_on_overlapping_windows(tokenizer):
    nlp = blank_xx()
    docs = [nlp.make_doc(text) for text in TEXTS]
    # A doc given twice, and docs not in input order: each doc's tokens are numbered once.
    docs = docs + [docs[0]]
    spans = [span for doc_spans in get_strided_spans(docs[::-1], window=7, stride=5) for span in doc_spans]
    _assert_same(spans, tokenizer)


def test_same_as_spacy_transformers_on_whole_docs(tokenizer):
    nlp = blank_xx()
    spans = [doc[:] for doc in (nlp.make_doc(text) for text in TEXTS) if len(doc)]
    _assert_same(spans, tokenizer)


def test_pieces_spanning_two_tokens(tokenizer):
    # spaCy tokens that the tokenizer joins ("can't" as one piece) and splits.
    doc = Doc(blank_xx().vocab, words=["ca", "n't", "do", "it", "!"], spaces=[False, True, True, False, False])
    _assert_same([doc[:], doc[1:4]], tokenizer)


def test_no_tokens():
    assert align_by_offsets([], numpy.zeros((0, 0, 2))).lengths.shape == (0,)


@settings(max_examples=60, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_same_as_spacy_transformers_on_random_text(tiny_unigram_dir, text):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_unigram_dir))
    doc = blank_xx().make_doc(text)
    spans = [span for doc_spans in get_strided_spans([doc], window=4, stride=3) for span in doc_spans]
    if spans:
        _assert_same(spans, tokenizer)
