"""``spacy-mbert.wordpiece_strided_spans.v1``: long-doc windows that fit the encoder.

spacy-transformers' ``strided_spans.v1`` cuts docs into windows of a fixed number
of *spaCy tokens*, and spacy-transformers then silently drops every wordpiece of
a window past the encoder's limit (512 for BERT). How many wordpieces a token
has depends on the script and the vocabulary: BERT does not split Thai, so a
Thai "token" is a whole phrase of ~25 wordpieces, 128 of them are ~3,300
wordpieces, and most of a Thai doc never reached the model.

This span getter makes the same windows (``window`` tokens starting every
``stride`` tokens, so consecutive windows overlap) as long as they fit, and cuts
a window short where its wordpieces would pass the limit; the next window then
starts proportionally earlier (``stride / window`` of the shortened window), so
windows still overlap and every token is in at least one. On text where 128
tokens fit in 512 wordpieces (nearly all text in space-separated and CJK
scripts) the windows are exactly ``strided_spans.v1``'s.

Counting wordpieces needs the encoder's tokenizer, which a span getter (called
with docs only) does not get from spaCy: ``spacy-mbert.MBertTransformer.v1``
hands it over with :meth:`WordpieceStridedSpans.set_tokenizer` before each use,
so the span getter uses the tokenizer saved in the pipeline (no network, and
always the one the windows are tokenized with).

A single spaCy token with more wordpieces than a window holds (a 3,000-character
"word" with an XLM-R-style vocabulary) gets a window of its own;
``MBertTransformer`` splits that window's wordpieces over as many encoder rows
as needed, so none is dropped (see ``spacy_mbert/encoder/windows.py``).
"""

from typing import List, Optional, Tuple

import numpy
from spacy.tokens import Doc, Span
from spacy.util import registry

from ..errors import UserError
from .tokenize import Pieces

# Windows whose estimated size is within this many wordpieces of the limit are
# tokenized to check: a token's wordpieces can differ slightly in context
# (SentencePiece's "▁" prefix) from its wordpieces alone, which the estimate sums.
_CHECK_MARGIN = 32


@registry.span_getters("spacy-mbert.wordpiece_strided_spans.v1")
def configure_wordpiece_strided_spans(
    window: int = 128,
    stride: int = 96,
    max_wordpieces: Optional[int] = None,
) -> "WordpieceStridedSpans":
    """Windows of up to ``window`` spaCy tokens every ``stride`` tokens, never longer than the encoder takes.

    Use it as the ``get_spans`` of ``spacy-mbert.MBertTransformer.v1`` (which gives it the tokenizer).

    window (int): Most spaCy tokens per window.
    stride (int): Tokens from the start of one window to the start of the next
        (1 <= stride <= window; window - stride tokens of overlap).
    max_wordpieces (Optional[int]): Most wordpieces per window, special tokens
        included; None: the tokenizer's ``model_max_length`` (512 for BERT), the
        length spacy-transformers would otherwise cut windows to. A lower value
        bounds memory per window; one token longer than it still gets a window of
        its own (split into rows only past ``model_max_length``).
    """
    return WordpieceStridedSpans(window=window, stride=stride, max_wordpieces=max_wordpieces)


class WordpieceStridedSpans:
    """The span getter of :func:`configure_wordpiece_strided_spans`; call it with a list of docs."""

    def __init__(self, *, window: int, stride: int, max_wordpieces: Optional[int] = None):
        if window < 1 or not 1 <= stride <= window:
            raise UserError(
                f"wordpiece_strided_spans needs window >= 1 and 1 <= stride <= window (got window={window}, "
                f"stride={stride}); a stride larger than the window would skip tokens."
            )
        if max_wordpieces is not None and max_wordpieces < 3:
            raise UserError(
                f"wordpiece_strided_spans: max_wordpieces must be at least 3 (got {max_wordpieces}); "
                f"use null for the encoder's limit."
            )
        self.window = window
        self.stride = stride
        self.max_wordpieces = max_wordpieces
        self._tokenizer = None
        self._max_length: Optional[int] = None
        self._n_special = 0

    def set_tokenizer(self, tokenizer) -> None:
        """Count wordpieces with ``tokenizer`` (``MBertTransformer`` calls this before each use)."""
        if tokenizer is self._tokenizer:
            return
        n_special = tokenizer.num_special_tokens_to_add(pair=False)
        limits = [self.max_wordpieces, tokenizer.model_max_length]
        # Tokenizers without a configured limit report a huge model_max_length (1e30):
        # spacy-transformers does not cut those windows either.
        limits = [limit for limit in limits if limit is not None and limit < 1_000_000]
        max_length = min(limits) if limits else None
        if max_length is not None and max_length <= n_special:
            raise UserError(
                f"wordpiece_strided_spans: a window of {max_length} wordpieces leaves no room next to the "
                f"tokenizer's {n_special} special tokens; raise max_wordpieces."
            )
        self._tokenizer, self._max_length, self._n_special = tokenizer, max_length, n_special

    def __call__(self, docs: List[Doc]) -> List[List[Span]]:
        return self.spans_and_pieces(docs)[0]

    def spans_and_pieces(self, docs: List[Doc]) -> Tuple[List[List[Span]], List[Optional[Pieces]]]:
        """The windows of every doc, and each doc's wordpieces from the counting pass
        (None where not counted), which ``MBertTransformer`` reuses (``tokenize.py``)."""
        if self._tokenizer is None:
            raise UserError(
                "spacy-mbert.wordpiece_strided_spans.v1 counts wordpieces with the encoder's tokenizer: use it "
                "as the get_spans of spacy-mbert.MBertTransformer.v1, which hands the tokenizer over."
            )
        pieces: List[Optional[Pieces]] = [None] * len(docs)
        counts = self._token_counts_batch(docs, pieces) if self._max_length is not None else [None] * len(docs)
        return [self.doc_spans(doc, doc_counts) for doc, doc_counts in zip(docs, counts)], pieces

    def __getstate__(self):
        # The tokenizer is set again by the transformer before use; not pickled/copied with the getter.
        state = dict(self.__dict__)
        state["_tokenizer"], state["_max_length"], state["_n_special"] = None, None, 0
        return state

    def doc_spans(self, doc: Doc, token_counts: Optional[numpy.ndarray] = None) -> List[Span]:
        """The windows of one doc, in order; every token is in at least one.

        token_counts (Optional[numpy.ndarray]): Wordpieces per token, if already counted.
        """
        n_tokens = len(doc)
        if n_tokens == 0:
            return []
        if self._max_length is None:
            budget = None
            prefix = None
        else:
            budget = self._max_length - self._n_special
            if token_counts is None:
                token_counts = self._token_counts_batch([doc])[0]
            prefix = numpy.concatenate([[0], numpy.cumsum(token_counts)])

        def fit(start: int) -> int:
            """End of the window starting at ``start``, by the wordpiece estimate (at least one token)."""
            stop = min(start + self.window, n_tokens)
            if prefix is None:
                return stop
            end = int(numpy.searchsorted(prefix, prefix[start] + budget, side="right")) - 1
            return max(start + 1, min(end, stop))

        spans = []
        start = 0
        while True:
            end = self._checked_end(doc, start, fit(start), prefix, budget)
            spans.append(doc[start:end])
            if end >= n_tokens:
                return spans
            size = end - start
            step = self.stride if size == self.window else max(1, size * self.stride // self.window)
            following = start + step
            # A window that would end where this one does adds nothing: start later
            # (at the latest at `end`, whose window reaches past it).
            while following < end and fit(following) <= end:
                following += 1
            start = following

    def _token_counts_batch(
        self, docs: List[Doc], pieces: Optional[List[Optional[Pieces]]] = None
    ) -> List[Optional[numpy.ndarray]]:
        """Wordpieces of each spaCy token, for each doc (None for empty docs); with a fast
        tokenizer, each doc's (ids, offsets) go into ``pieces`` too.

        With a fast tokenizer all texts are tokenized in one call (one batch
        in Rust instead of a Python call per doc) and each wordpiece is counted
        for the token its first character is in (or follows, in the token's
        trailing whitespace); otherwise each token is tokenized on its own. Both are
        exact for BERT's WordPiece, whose words are the MultilingualTokenizer's
        tokens; for SentencePiece a window's first token can gain a "▁", which
        the check in :meth:`_checked_end` catches.
        """
        counts: List[Optional[numpy.ndarray]] = [None] * len(docs)
        todo = [i for i, doc in enumerate(docs) if len(doc)]
        if not todo:
            return counts
        if getattr(self._tokenizer, "is_fast", False):
            encoded = self._tokenizer(
                [docs[i].text for i in todo], add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
            for i, doc_ids, doc_offsets in zip(todo, encoded["input_ids"], encoded["offset_mapping"]):
                doc = docs[i]
                if pieces is not None:
                    pieces[i] = (doc_ids, doc_offsets)
                offsets = numpy.asarray(doc_offsets, dtype="int64").reshape(-1, 2)
                starts = doc.to_array("IDX").astype("int64")
                owner = numpy.clip(numpy.searchsorted(starts, offsets[:, 0], side="right") - 1, 0, len(doc) - 1)
                counts[i] = numpy.bincount(owner, minlength=len(doc)).astype("int64")
            return counts
        for i in todo:
            encoded = self._tokenizer([token.text for token in docs[i]], add_special_tokens=False, verbose=False)
            counts[i] = numpy.array([len(ids) for ids in encoded["input_ids"]], dtype="int64")
        return counts

    def _checked_end(self, doc: Doc, start: int, end: int, prefix, budget) -> int:
        """Shorten the window until its text, tokenized as spacy-transformers will, fits."""
        if prefix is None or prefix[end] - prefix[start] <= budget - _CHECK_MARGIN:
            return end
        # One token alone may be too long: the transformer splits it over several rows.
        while end - start > 1:
            n_pieces = len(self._tokenizer(doc[start:end].text, add_special_tokens=True, verbose=False)["input_ids"])
            excess = n_pieces - self._max_length
            if excess <= 0:
                break
            # Drop tokens from the end until their estimated wordpieces cover the excess.
            cut = int(numpy.searchsorted(prefix, prefix[end] - excess, side="right")) - 1
            end = max(start + 1, min(cut, end - 1))
        return end
