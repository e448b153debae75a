"""Read-ahead for ``nlp.pipe``: batch docs by length over more than one ``batch_size``.

A component's ``predict`` can sort its batch by length so that padded batches
waste little work, but ``nlp.pipe(texts, batch_size=64)`` hands each component
64 docs at a time, in input order, and a batch of 64 sentences of mixed length
is padded to its longest. Reading further ahead (``sort_buffer`` docs) lets
docs of similar length share a padded batch; the docs still come out in input
order. The read-ahead stops early at a token budget, so a stream of very long
docs does not pile up in memory.
"""

from typing import Iterable, Iterator, List, Sequence

from spacy.tokens import Doc

# Tokens held by one read-ahead buffer at most (beyond ``batch_size`` docs).
MAX_READ_AHEAD_TOKENS = 16384


def read_ahead(stream: Iterable[Doc], batch_size: int, sort_buffer: int, max_tokens: int) -> Iterator[List[Doc]]:
    """Lists of consecutive docs: at least ``batch_size``, more up to ``sort_buffer`` docs or ``max_tokens`` tokens."""
    batch_size = max(1, batch_size)
    buffer: List[Doc] = []
    n_tokens = 0
    for doc in stream:
        buffer.append(doc)
        n_tokens += len(doc)
        if len(buffer) >= batch_size and (len(buffer) >= sort_buffer or n_tokens >= max_tokens):
            yield buffer
            buffer, n_tokens = [], 0
    if buffer:
        yield buffer


class ReadAheadPipe:
    """Mixin for a ``TrainablePipe`` whose ``predict`` batches by length: ``pipe`` reads ahead.

    The component sets ``sort_buffer`` (docs to read ahead; 0: ``batch_size``).
    """

    sort_buffer: int = 0

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotate a stream of docs, ``sort_buffer`` at a time; yields them in input order."""
        error_handler = self.get_error_handler()
        for docs in read_ahead(stream, batch_size, self.sort_buffer, MAX_READ_AHEAD_TOKENS):
            try:
                self.set_annotations(docs, self.predict(docs))
                yield from docs
            except Exception as error:
                error_handler(self.name, self, docs, error)


def length_batches(lengths: Sequence[int], batch_size: int, *, longest_first: bool = True) -> List[List[int]]:
    """Indices of the items, sorted by length and cut into batches of ``batch_size``.

    A padded batch costs as much as its longest item times its size, so items of
    similar length should share one. The sort is stable (items of equal length
    keep their order), and the caller puts each result back at its item's index.

    lengths (Sequence[int]): The length of each item (wordpieces, tokens, ...).
    batch_size (int): Most items per batch (at least 1).
    longest_first (bool): Longest batch first, so that running out of memory
        shows on the first batch and not after all the others.
    RETURNS (List[List[int]]): Item indices, one list per batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i] if longest_first else lengths[i])
    step = max(1, batch_size)
    return [order[start : start + step] for start in range(0, len(order), step)]
