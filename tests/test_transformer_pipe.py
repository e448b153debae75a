"""``mbert_transformer``: ``nlp.pipe`` batches docs by length over a read-ahead buffer.

The buffer changes which docs share a batch, never the output: each doc's
``trf_data`` is the same as when it is processed alone, and docs come out in order.
"""

import numpy
import pytest

from spacy_mbert.batching import read_ahead

from .conftest import blank_xx

TEXTS = [
    "Short one.",
    "A somewhat longer sentence about lighthouses and the sea, with commas, and more words.",
    "",
    "北京天安门广场上人很多。",
    "Mittellanger Satz über Klippen.",
] * 7


@pytest.fixture(scope="module")
def nlp(tiny_wordpiece_dir):
    nlp = blank_xx()
    nlp.add_pipe("mbert_transformer", config={"model": {"name": str(tiny_wordpiece_dir)}})
    nlp.initialize()
    return nlp


@pytest.mark.parametrize("sort_buffer,batch_size", [(0, 4), (256, 4), (8, 3), (256, 64)])
def test_pipe_matches_one_doc_at_a_time(nlp, sort_buffer, batch_size):
    trf = nlp.get_pipe("mbert_transformer")
    trf.sort_buffer = sort_buffer
    alone = [nlp(text)._.trf_data for text in TEXTS]
    docs = list(nlp.pipe(TEXTS, batch_size=batch_size))
    assert [doc.text for doc in docs] == TEXTS
    for doc, expected in zip(docs, alone):
        found = doc._.trf_data
        assert list(found.wordpieces.lengths) == list(expected.wordpieces.lengths)
        if not expected.tensors:  # the empty doc
            assert not found.tensors
            continue
        states_found, states_expected = found.tensors[0], expected.tensors[0]
        for row, length in enumerate(expected.wordpieces.lengths):
            numpy.testing.assert_allclose(states_found[row, :length], states_expected[row, :length], atol=1e-5)
        numpy.testing.assert_array_equal(found.align.lengths, expected.align.lengths)


def test_read_ahead_sizes():
    nlp = blank_xx()
    docs = [nlp.make_doc("one two three")] * 10  # 3 tokens each
    # At least batch_size docs, up to sort_buffer docs...
    assert [len(b) for b in read_ahead(iter(docs), 2, 4, max_tokens=100)] == [4, 4, 2]
    # ...but no more once they hold max_tokens tokens.
    assert [len(b) for b in read_ahead(iter(docs), 2, 8, max_tokens=9)] == [3, 3, 3, 1]
    # sort_buffer 0: batches of batch_size, as spacy-transformers reads them.
    assert [len(b) for b in read_ahead(iter(docs), 3, 0, max_tokens=100)] == [3, 3, 3, 1]
    assert list(read_ahead(iter([]), 3, 8, max_tokens=100)) == []


def test_sort_buffer_is_configurable(tiny_wordpiece_dir):
    nlp = blank_xx()
    trf = nlp.add_pipe("mbert_transformer", config={"sort_buffer": 32, "model": {"name": str(tiny_wordpiece_dir)}})
    assert trf.sort_buffer == 32
