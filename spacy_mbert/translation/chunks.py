"""Sources longer than the encoder's input, cut into sentence-sized chunks to translate one by one.

The translator's encoder reads at most ``max_source_length`` wordpieces (128 by
default, at most 512 for BERT). A longer source used to be cut to that length,
so the translation of a long doc covered only its beginning. Now such a source
is split into sentences, consecutive sentences are packed into chunks that fit,
each chunk is translated on its own and the translations are joined: nothing of
the source is left out. (The model is trained on sentence pairs, so a chunk of
whole sentences is the input it knows best.)

Sentences end at ``. ! ? …`` followed by whitespace, at ``。！？؟।॥`` (no space
needed: Chinese and Japanese put none) and at line breaks. A single sentence
longer than the limit is cut between words (at a wordpiece boundary inside a
word only when one word alone is too long), and :func:`source_chunks` reports
it, so the caller can warn: translating half-sentences is worse than raising
``max_source_length``.
"""

import re
from typing import List, Sequence, Tuple

_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？؟।॥])\s*|\s*\n\s*")


def split_sentences(text: str) -> List[Tuple[int, int]]:
    """(start, end) character offsets of the sentences of ``text``, stripped, non-empty, in order."""
    spans = []
    start = 0
    for match in _SENTENCE_BREAK.finditer(text):
        if match.start() > start:
            spans.append((start, match.start()))
        start = max(start, match.end())
    if start < len(text):
        spans.append((start, len(text)))
    stripped = []
    for begin, end in spans:
        piece = text[begin:end]
        left = len(piece) - len(piece.lstrip())
        right = len(piece.rstrip())
        if right > left:
            stripped.append((begin + left, begin + right))
    return stripped


def source_chunks(tokenizer, text: str, max_length: int) -> Tuple[List[str], int]:
    """Split ``text`` into chunks of whole sentences of at most ``max_length`` wordpieces each.

    tokenizer: The encoder's Hugging Face tokenizer (fast, for cutting long sentences).
    text (str): A source text.
    max_length (int): Most wordpieces per chunk, the tokenizer's special tokens included.
    RETURNS (Tuple[List[str], int]): The chunks, in order, and the wordpieces of the
        longest sentence that had to be cut between words (0 when none had to be).
    """
    budget = max(1, max_length - tokenizer.num_special_tokens_to_add(pair=False))
    sentences = split_sentences(text)
    if not sentences:
        return [], 0
    counts = [
        len(ids)
        for ids in tokenizer([text[a:b] for a, b in sentences], add_special_tokens=False, verbose=False)["input_ids"]
    ]
    chunks: List[str] = []
    longest_cut = 0
    group: List[Tuple[int, int]] = []
    size = 0

    def flush():
        nonlocal group, size
        if group:
            chunks.append(text[group[0][0] : group[-1][1]])
        group, size = [], 0

    for (begin, end), count in zip(sentences, counts):
        if count > budget:
            flush()
            parts = _cut_sentence(tokenizer, text[begin:end], budget)
            chunks.extend(parts)
            if len(parts) > 1:
                longest_cut = max(longest_cut, count)
            continue
        if size + count > budget:
            flush()
        group.append((begin, end))
        size += count
    flush()
    return chunks, longest_cut


def _cut_sentence(tokenizer, sentence: str, budget: int) -> List[str]:
    """Cut one sentence into parts of at most ``budget`` wordpieces, between words where possible."""
    if not getattr(tokenizer, "is_fast", False):
        return [sentence]  # No character offsets: left whole (the caller's length check warns).
    encoding = tokenizer(sentence, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets: Sequence[Tuple[int, int]] = encoding["offset_mapping"]
    words = encoding.word_ids()
    parts = []
    start = 0
    n = len(offsets)
    while start < n:
        stop = min(start + budget, n)
        if stop < n:
            # Back up to the first piece of a word, unless the part would then be empty.
            word_start = stop
            while word_start > start and words[word_start] is not None and words[word_start] == words[word_start - 1]:
                word_start -= 1
            if word_start > start:
                stop = word_start
        part = sentence[offsets[start][0] : offsets[stop - 1][1]].strip()
        if part:
            parts.append(part)
        start = stop
    return parts
