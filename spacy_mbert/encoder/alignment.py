"""Token ↔ wordpiece alignment from a fast tokenizer's character offsets, in numpy.

The same result as spacy-transformers' ``get_alignment_via_offset_mapping``
(a ``Ragged`` with, for each token of each doc, the sorted indices of its
wordpieces in the flattened, padded wordpiece batch), computed with array
operations per window instead of a loop that creates a ``Token`` object per
token per window and keys a dict by them. Those objects are most of the Python
allocations of a prediction batch, and allocations are what trigger Python's
full garbage collections, which take about a second each once a pipeline is
loaded (hundreds of thousands of live objects).

A wordpiece belongs to every token one of its characters is in; a token's
character range is extended by one position (its trailing space), so a piece
that starts in the whitespace after a token (SentencePiece's "▁") belongs to it.
"""

from typing import Dict, List, Sequence

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Span
from thinc.types import Ragged


def align_by_offsets(spans: Sequence[Span], offset_mapping) -> Ragged:
    """Align the tokens of the spans' docs with the wordpieces of the spans.

    spans (Sequence[Span]): One span per wordpiece row, docs in any order (a doc's
        tokens are numbered from the doc's first span on, all its tokens included).
    offset_mapping: (rows, width, 2) character offsets of each wordpiece in its
        span's text, as a fast tokenizer returns them ((0, 0) for special tokens
        and padding).
    RETURNS (Ragged): For each token, its wordpieces' indices into the rows
        flattened (row * width + position), sorted.
    """
    offsets = numpy.asarray(offset_mapping, dtype="int64")
    if len(spans) != offsets.shape[0]:
        raise ValueError("Cannot align batches of different sizes.")
    width = offsets.shape[1] if offsets.ndim == 3 else 0
    first_token: Dict[int, int] = {}  # id(doc) -> position of its first token
    token_arrays: Dict[int, numpy.ndarray] = {}
    n_tokens = 0
    tokens_found: List[numpy.ndarray] = []
    pieces_found: List[numpy.ndarray] = []
    for row, span in enumerate(spans):
        doc = span.doc
        key = id(doc)
        if key not in first_token:
            first_token[key] = n_tokens
            n_tokens += len(doc)
            token_arrays[key] = doc.to_array([IDX, LENGTH]).astype("int64").reshape(-1, 2)
        if len(span) == 0 or width == 0:
            continue
        char_to_token = _char_to_token(token_arrays[key][span.start : span.end], span.end_char - span.start_char)
        pieces, chars = _piece_chars(offsets[row])
        inside = (chars >= 0) & (chars < len(char_to_token))
        pieces, tokens = pieces[inside], char_to_token[chars[inside]]
        aligned = tokens >= 0
        tokens_found.append(first_token[key] + span.start + tokens[aligned])
        pieces_found.append(row * width + pieces[aligned])
    if not tokens_found:
        return Ragged(numpy.zeros((0,), dtype="i"), numpy.zeros((n_tokens,), dtype="i"))
    n_positions = max(1, len(spans) * width)
    # One entry per (token, wordpiece) pair, sorted by token, then wordpiece; pairs
    # seen twice (a token in two overlapping windows maps to distinct pieces, but
    # a piece of several characters in one token is found once per character) count once.
    pairs = numpy.unique(numpy.concatenate(tokens_found) * n_positions + numpy.concatenate(pieces_found))
    lengths = numpy.bincount(pairs // n_positions, minlength=n_tokens)
    return Ragged((pairs % n_positions).astype("i"), lengths.astype("i"))


def _char_to_token(token_array: numpy.ndarray, text_length: int) -> numpy.ndarray:
    """For each character of a span's text (and one past its end), the span token it is in, or -1.

    Each token covers its characters and the one after them; where that next
    character starts the following token, the following token has it.
    """
    starts = token_array[:, 0] - token_array[0, 0]
    covered = token_array[:, 1] + 1
    char_to_token = numpy.full(text_length + 1, -1, dtype="int64")
    positions = numpy.repeat(starts, covered) + _ranges(covered)
    keep = positions <= text_length
    char_to_token[positions[keep]] = numpy.repeat(numpy.arange(len(starts)), covered)[keep]
    char_to_token[starts] = numpy.arange(len(starts))  # a token's start is its own
    return char_to_token


def _piece_chars(row_offsets: numpy.ndarray):
    """(piece index, character) for every character of every wordpiece of one row."""
    sizes = numpy.clip(row_offsets[:, 1] - row_offsets[:, 0], 0, None)
    pieces = numpy.repeat(numpy.arange(len(row_offsets)), sizes)
    chars = numpy.repeat(row_offsets[:, 0], sizes) + _ranges(sizes)
    return pieces, chars


def _ranges(sizes: numpy.ndarray) -> numpy.ndarray:
    """0..size-1 for each size, concatenated."""
    total = int(sizes.sum())
    return numpy.arange(total) - numpy.repeat(numpy.cumsum(sizes) - sizes, sizes)
