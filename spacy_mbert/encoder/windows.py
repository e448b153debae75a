"""Window fitting: every encoder row within the tokenizer's ``model_max_length``.

spacy-transformers cuts every window to ``model_max_length`` wordpieces and drops
the rest without a word. :func:`fit_windows` splits a window that is a single
spaCy token too long for the encoder over several rows instead (nothing is
dropped), and cuts any other window that is too long with a warning that names
the span getter that avoids it.
"""

import warnings
from typing import Dict, List, Tuple

import numpy
from spacy.tokens import Span
from spacy_transformers.data_classes import WordpieceBatch
from spacy_transformers.truncate import truncate_oversize_splits
from thinc.types import Ragged

from ..errors import preview


def fit_windows(
    nested_spans: List[List[Span]], wordpieces: WordpieceBatch, align: Ragged, tokenizer
) -> Tuple[List[List[Span]], WordpieceBatch, Ragged]:
    """Make every row fit ``tokenizer.model_max_length``.

    A row whose window is a single spaCy token is split into consecutive rows,
    each with the window's special tokens around a part of the token's wordpieces;
    the window's span is repeated once per row (spacy-transformers gives each doc
    one row per span), and the alignment points at the new rows. Other rows that
    are too long are cut as spacy-transformers cuts them, with a warning.
    """
    max_length = tokenizer.model_max_length
    lengths = numpy.asarray(wordpieces.attention_mask).sum(axis=1).astype("int64")
    long_rows = numpy.flatnonzero(lengths > max_length)
    if not len(long_rows):
        return nested_spans, wordpieces, align
    flat_spans = [span for doc_spans in nested_spans for span in doc_spans]
    seq_len = wordpieces.input_ids.shape[1]
    flat = numpy.asarray(align.dataXd).astype("int64").ravel()
    # Content of each splittable row: [first, last] aligned position (between the specials).
    content: Dict[int, Tuple[int, int]] = {}
    for row in long_rows.tolist():
        positions = flat[flat // seq_len == row] % seq_len
        if len(flat_spans[row]) == 1 and len(positions):
            first, last = int(positions.min()), int(positions.max())
            if max_length - first - (lengths[row] - 1 - last) >= 1:
                content[row] = (first, last)
    cut = [row for row in long_rows.tolist() if row not in content]
    if cut:
        span = flat_spans[cut[0]]
        warnings.warn(
            f"{len(cut)} window(s) have more wordpieces than the encoder takes ({max_length}), e.g. "
            f"{int(lengths[cut[0]])} for {preview(span.text)}; the wordpieces past {max_length} are not read. "
            f"Use get_spans = spacy-mbert.wordpiece_strided_spans.v1, which keeps windows within the limit."
        )
    if content:
        nested_spans, wordpieces, align = _split_rows(nested_spans, wordpieces, align, content, lengths, tokenizer)
    if cut:
        wordpieces, align = truncate_oversize_splits(wordpieces, align, max_length)
    return nested_spans, wordpieces, align


def _split_rows(nested_spans, wordpieces: WordpieceBatch, align: Ragged, content, lengths, tokenizer):
    """Split each row in ``content`` (row -> (first, last) content position) into rows that fit."""
    max_length = tokenizer.model_max_length
    ids = numpy.asarray(wordpieces.input_ids)
    types = None if wordpieces.token_type_ids is None else numpy.asarray(wordpieces.token_type_ids)
    # The old row and its positions, for each new row: a split row's parts each get
    # its prefix (e.g. [CLS]) and suffix (e.g. [SEP]).
    new_rows: List[Tuple[int, numpy.ndarray]] = []
    rows_per_old_row = []
    for row in range(ids.shape[0]):
        length = int(lengths[row])
        if row not in content:
            new_rows.append((row, numpy.arange(length)))
            rows_per_old_row.append(1)
            continue
        first, last = content[row]
        size = max_length - first - (length - 1 - last)
        starts = range(first, last + 1, size)
        for start in starts:
            stop = min(start + size, last + 1)
            new_rows.append((row, numpy.r_[0:first, start:stop, last + 1 : length]))
        rows_per_old_row.append(len(starts))
    new_len = max(len(cols) for _, cols in new_rows)
    new_ids = numpy.full((len(new_rows), new_len), tokenizer.pad_token_id or 0, dtype=ids.dtype)
    new_mask = numpy.zeros((len(new_rows), new_len), dtype=numpy.asarray(wordpieces.attention_mask).dtype)
    new_types = None if types is None else numpy.zeros((len(new_rows), new_len), dtype=types.dtype)
    strings: List[List[str]] = []
    index_map = numpy.full(ids.size, -1, dtype="int64")
    for i, (row, cols) in enumerate(new_rows):
        new_ids[i, : len(cols)] = ids[row, cols]
        new_mask[i, : len(cols)] = 1
        if new_types is not None:
            new_types[i, : len(cols)] = types[row, cols]
        padding = [tokenizer.pad_token] * (new_len - len(cols))
        strings.append([wordpieces.strings[row][col] for col in cols] + padding)
        index_map[row * ids.shape[1] + cols] = i * new_len + numpy.arange(len(cols))
    old_flat = numpy.asarray(align.dataXd)
    new_flat = index_map[old_flat.astype("int64").ravel()]
    if (new_flat < 0).any():  # Cannot happen: every aligned position is kept.
        raise RuntimeError("Splitting a long window lost an aligned wordpiece.")
    new_align = Ragged(new_flat.astype(old_flat.dtype), align.lengths)
    new_nested: List[List[Span]] = []
    row = 0
    for doc_spans in nested_spans:
        new_nested.append([])
        for span in doc_spans:
            new_nested[-1].extend([span] * rows_per_old_row[row])
            row += 1
    batch = WordpieceBatch(
        strings=strings,
        input_ids=new_ids,
        attention_mask=new_mask,
        lengths=[len(cols) for _, cols in new_rows],
        token_type_ids=new_types,
    )
    return new_nested, batch, new_align
