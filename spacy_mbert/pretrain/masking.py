"""BERT's masked-LM corruption: 15% of pieces, of which 80% [MASK], 10% random, 10% kept."""

from typing import Optional, Sequence, Tuple

import numpy

IGNORE_INDEX = -100


def mask_tokens(
    input_ids,
    special_mask,
    *,
    mask_prob: float = 0.15,
    rng: numpy.random.Generator,
    mask_token_id: int,
    vocab_size: int,
    whole_word_ids=None,
    special_token_ids: Optional[Sequence[int]] = None,
    replace_prob: float = 0.8,
    random_prob: float = 0.1,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Choose pieces to predict and corrupt them as BERT does.

    input_ids (array[int], 1D or 2D): Piece ids (rows of a batch, padded or not).
    special_mask (array[bool], same shape): True for [CLS], [SEP], padding and other
        specials; they are never chosen and never replaced.
    mask_prob (float): Probability that a piece (or, with ``whole_word_ids``, a word) is
        chosen for prediction.
    rng (numpy.random.Generator): Source of randomness; the same state gives the same masks.
    mask_token_id (int): Id of [MASK].
    vocab_size (int): Random replacements are drawn from ``range(vocab_size)``.
    whole_word_ids (array[int], same shape, optional): Word index of each piece (-1 for
        specials); a word is chosen or not as a whole (whole-word masking). Indices only
        need to be unique within a row.
    special_token_ids (Sequence[int], optional): Ids never used as random replacements.
    replace_prob, random_prob (float): Of the chosen pieces, the share replaced by [MASK]
        and by a random piece (the rest are kept), decided per piece.

    RETURNS (inputs, labels): Corrupted copy of ``input_ids`` and labels that hold the
        original id where a piece was chosen and -100 elsewhere. If nothing was chosen but
        something could be, one eligible piece (or word) is chosen, so a batch always has
        a loss. The generator is consumed by a fixed amount for a given shape.
    """
    ids = numpy.asarray(input_ids)
    special = numpy.asarray(special_mask, dtype=bool)
    if special.shape != ids.shape:
        raise ValueError(f"special_mask has shape {special.shape}, input_ids {ids.shape}")
    eligible = ~special
    if whole_word_ids is None:
        chosen = (rng.random(ids.shape) < mask_prob) & eligible
    else:
        chosen = _choose_words(numpy.asarray(whole_word_ids), eligible, mask_prob, rng)
    if not chosen.any() and eligible.any():
        positions = numpy.flatnonzero(eligible.ravel())
        pick = positions[rng.integers(len(positions))]
        if whole_word_ids is None:
            chosen.ravel()[pick] = True
        else:
            words = numpy.asarray(whole_word_ids)
            row = numpy.unravel_index(pick, ids.shape)[0] if ids.ndim > 1 else None
            same_word = words == words.ravel()[pick]
            if row is not None:
                same_row = numpy.zeros(ids.shape, dtype=bool)
                same_row[row] = True
                same_word &= same_row
            chosen |= same_word & eligible

    decision = rng.random(ids.shape)
    allowed = numpy.arange(vocab_size)
    if special_token_ids is not None:
        allowed = numpy.setdiff1d(allowed, numpy.asarray(list(special_token_ids), dtype=allowed.dtype))
    random_ids = allowed[rng.integers(0, len(allowed), size=ids.shape)]

    labels = numpy.where(chosen, ids, IGNORE_INDEX).astype(numpy.int64)
    inputs = ids.astype(numpy.int64, copy=True)
    to_mask = chosen & (decision < replace_prob)
    to_random = chosen & (decision >= replace_prob) & (decision < replace_prob + random_prob)
    inputs[to_mask] = mask_token_id
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


def _choose_words(words: numpy.ndarray, eligible: numpy.ndarray, mask_prob: float, rng) -> numpy.ndarray:
    """Choose each word (all its pieces) with probability ``mask_prob``."""
    if words.shape != eligible.shape:
        raise ValueError(f"whole_word_ids has shape {words.shape}, input_ids {eligible.shape}")
    words = words.astype(numpy.int64)
    if words.ndim == 2:
        # Make the word indices unique across rows.
        span = int(words.max(initial=0)) + 2
        words = words + (numpy.arange(words.shape[0], dtype=numpy.int64)[:, None] * span)
    elif words.ndim != 1:
        raise ValueError("input_ids must be 1D or 2D")
    keys, inverse = numpy.unique(words, return_inverse=True)
    # A draw per possible word slot keeps the generator's consumption fixed per shape.
    draws = rng.random(words.size)[: len(keys)]
    return (draws < mask_prob)[inverse.reshape(words.shape)] & eligible
