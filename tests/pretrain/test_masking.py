import numpy
import pytest

from spacy_mbert.pretrain.masking import IGNORE_INDEX, mask_tokens

MASK_ID = 4
SPECIAL_IDS = [0, 1, 2, 3, 4]
VOCAB = 30000


def _batch(rows=200, length=500, seed=1):
    rng = numpy.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=(rows, length))
    special = numpy.zeros(ids.shape, dtype=bool)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    special[:, 0] = special[:, -1] = True
    # Some padded rows.
    ids[::7, 400:] = 0
    special[::7, 400:] = True
    return ids, special


def _mask(ids, special, seed=0, **kwargs):
    return mask_tokens(
        ids,
        special,
        mask_prob=0.15,
        rng=numpy.random.default_rng(seed),
        mask_token_id=MASK_ID,
        vocab_size=VOCAB,
        special_token_ids=SPECIAL_IDS,
        **kwargs,
    )


def test_masking_statistics():
    ids, special = _batch()
    inputs, labels = _mask(ids, special)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & special).any()
    assert (inputs[special] == ids[special]).all(), "specials are never replaced"
    assert (labels[chosen] == ids[chosen]).all()
    assert (inputs[~chosen] == ids[~chosen]).all(), "only chosen pieces change"
    assert chosen.sum() / (~special).sum() == pytest.approx(0.15, abs=0.01)
    n = chosen.sum()
    masked = chosen & (inputs == MASK_ID)
    kept = chosen & (inputs == ids)
    randomized = chosen & (inputs != ids) & (inputs != MASK_ID)
    assert masked.sum() / n == pytest.approx(0.8, abs=0.02)
    assert randomized.sum() / n == pytest.approx(0.1, abs=0.02)
    assert kept.sum() / n == pytest.approx(0.1, abs=0.02)
    assert not numpy.isin(inputs[randomized], SPECIAL_IDS).any(), "random pieces are never specials"
    assert inputs.dtype == labels.dtype == numpy.int64


def test_masking_is_seeded_and_works_on_1d():
    ids, special = _batch(rows=3, length=100)
    a = _mask(ids, special, seed=5)
    b = _mask(ids, special, seed=5)
    c = _mask(ids, special, seed=6)
    assert all((x == y).all() for x, y in zip(a, b))
    assert not (a[1] == c[1]).all()
    inputs, labels = _mask(ids[0], special[0])
    assert inputs.shape == labels.shape == ids[0].shape


def test_always_at_least_one_target():
    ids = numpy.array([2, 10, 11, 3])
    special = numpy.array([True, False, False, True])
    for seed in range(50):
        _, labels = mask_tokens(
            ids, special, mask_prob=0.01, rng=numpy.random.default_rng(seed), mask_token_id=MASK_ID, vocab_size=VOCAB
        )
        assert (labels != IGNORE_INDEX).sum() >= 1
        assert labels[0] == labels[-1] == IGNORE_INDEX
    # Nothing eligible: nothing chosen.
    _, labels = mask_tokens(
        ids[[0, 3]], special[[0, 3]], rng=numpy.random.default_rng(0), mask_token_id=MASK_ID, vocab_size=VOCAB
    )
    assert (labels == IGNORE_INDEX).all()


def _words(rows=100, length=400, seed=2):
    """Word index per piece (words of 1-4 pieces), -1 on specials."""
    rng = numpy.random.default_rng(seed)
    words = numpy.zeros((rows, length), dtype=numpy.int64)
    for row in range(rows):
        sizes = rng.integers(1, 5, size=length)
        words[row] = numpy.repeat(numpy.arange(length), sizes)[:length]
    return words


def test_whole_word_masking_masks_all_pieces_of_a_word():
    ids, special = _batch(rows=100, length=400)
    words = _words()
    words[special] = -1
    inputs, labels = _mask(ids, special, whole_word_ids=words)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & special).any()
    n_words = n_chosen_words = 0
    for row in range(ids.shape[0]):
        for word in numpy.unique(words[row][words[row] >= 0]):
            in_word = (words[row] == word) & ~special[row]
            states = chosen[row][in_word]
            assert states.all() or not states.any(), f"row {row}, word {word} partly masked"
            n_words += 1
            n_chosen_words += bool(states.any())
    assert n_chosen_words / n_words == pytest.approx(0.15, abs=0.015)
    assert chosen.sum() / (~special).sum() == pytest.approx(0.15, abs=0.015)
    masked = chosen & (inputs == MASK_ID)
    assert masked.sum() / chosen.sum() == pytest.approx(0.8, abs=0.03)


def test_whole_word_ids_only_need_to_be_unique_per_row():
    # Two rows that reuse the same word indices are masked independently.
    ids = numpy.full((2, 2000), 100)
    special = numpy.zeros(ids.shape, dtype=bool)
    words = numpy.tile(numpy.arange(2000) // 2, (2, 1))
    _, labels = _mask(ids, special, whole_word_ids=words)
    chosen = labels != IGNORE_INDEX
    assert not (chosen[0] == chosen[1]).all()
