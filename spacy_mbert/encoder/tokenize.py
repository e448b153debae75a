"""The windows' wordpieces: tokenized once, reusing the span getter's counting pass where it can.

``wordpiece_strided_spans.v1`` tokenizes every doc's whole text to count wordpieces per
spaCy token; spacy-transformers then tokenizes every window's text again. For a doc that
is one window (a sentence, a tweet: nearly every doc of a textcat corpus), the window's
wordpieces are the counting pass's, between the tokenizer's special tokens, so
:func:`tokenize_windows` builds those rows from them (~5% of a textcat pass on sentences)
and tokenizes only the other windows. The result is what spacy-transformers'
``huggingface_tokenize`` returns for the same windows (the tests compare them), without
Hugging Face's "Token indices sequence length is longer than the specified maximum"
warning: a window longer than the encoder is split over rows (``windows.py``), so nothing
is lost to indexing errors.
"""

import weakref
from typing import List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc, Span
from transformers import BatchEncoding

# A doc's wordpieces without special tokens: (ids, character offsets), from the counting pass.
Pieces = Tuple[List[int], List[Tuple[int, int]]]
_PROBES = ("a b", "Hello, world")
_TEMPLATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def special_template(tokenizer) -> Optional[Tuple[List[int], List[int]]]:
    """(prefix, suffix): the special token ids ``tokenizer`` puts around one sequence, if it
    only ever adds the same ones (BERT's [CLS] … [SEP], XLM-R's <s> … </s>); else None.
    Worked out once per tokenizer object."""
    if tokenizer not in _TEMPLATES:
        _TEMPLATES[tokenizer] = _find_template(tokenizer)
    return _TEMPLATES[tokenizer]


def _find_template(tokenizer) -> Optional[Tuple[List[int], List[int]]]:
    found = set()
    for probe in _PROBES:
        full = tokenizer(probe, add_special_tokens=True, verbose=False)["input_ids"]
        bare = tokenizer(probe, add_special_tokens=False, verbose=False)["input_ids"]
        starts = [i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare]
        if len(starts) != 1 or not bare:
            return None
        found.add((tuple(full[: starts[0]]), tuple(full[starts[0] + len(bare) :])))
    if len(found) != 1:
        return None
    prefix, suffix = found.pop()
    return list(prefix), list(suffix)


def tokenize_windows(
    tokenizer,
    docs: Sequence[Doc],
    nested_spans: Sequence[Sequence[Span]],
    doc_pieces: Optional[Sequence[Optional[Pieces]]] = None,
    template: Optional[Tuple[List[int], List[int]]] = None,
) -> BatchEncoding:
    """``huggingface_tokenize`` of every window's text (input ids, attention mask, token
    type ids, offsets, wordpiece strings, padded to the longest), reusing ``doc_pieces``
    for windows that are their whole doc."""
    flat = [span for spans in nested_spans for span in spans]
    rows: List[Optional[Tuple[List[int], List[Tuple[int, int]]]]] = [None] * len(flat)
    if doc_pieces is not None and template is not None and getattr(tokenizer, "padding_side", "right") == "right":
        prefix, suffix = template
        row = 0
        for doc, spans, pieces in zip(docs, nested_spans, doc_pieces):
            whole = len(spans) == 1 and spans[0].start_char == 0 and spans[0].end_char == len(doc.text)
            if whole and pieces is not None:
                ids, offsets = pieces
                rows[row] = (
                    prefix + list(ids) + suffix,
                    [(0, 0)] * len(prefix) + [tuple(o) for o in offsets] + [(0, 0)] * len(suffix),
                )
            row += len(spans)
    todo = [i for i, row in enumerate(rows) if row is None]
    if todo:
        encoded = tokenizer(
            [flat[i].text for i in todo],
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,  # over-long windows are split over rows, not cut (windows.py)
        )
        for i, ids, offsets in zip(todo, encoded["input_ids"], encoded["offset_mapping"]):
            rows[i] = (ids, [tuple(o) for o in offsets])
    return _padded(tokenizer, rows)


def _padded(tokenizer, rows) -> BatchEncoding:
    width = max((len(ids) for ids, _ in rows), default=0)
    n = len(rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = numpy.full((n, width), pad_id, dtype="int64")
    attention_mask = numpy.zeros((n, width), dtype="int64")
    offsets = numpy.zeros((n, width, 2), dtype="int64")
    for i, (ids, row_offsets) in enumerate(rows):
        input_ids[i, : len(ids)] = ids
        attention_mask[i, : len(ids)] = 1
        if row_offsets:
            offsets[i, : len(ids)] = row_offsets
    data = {"input_ids": input_ids}
    if "token_type_ids" in tokenizer.model_input_names:
        data["token_type_ids"] = numpy.full((n, width), tokenizer.pad_token_type_id, dtype="int64")
        data["token_type_ids"][attention_mask == 1] = 0  # one sequence per row: segment 0
    data["attention_mask"] = attention_mask
    data["offset_mapping"] = offsets
    encoding = BatchEncoding(data)
    encoding["input_texts"] = [tokenizer.convert_ids_to_tokens(row) for row in input_ids]
    encoding["pad_token"] = tokenizer.pad_token
    return encoding
