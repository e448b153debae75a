"""A spaCy tokenizer that splits where BERT's basic tokenizer does.

``spacy-mbert.MultilingualTokenizer.v1`` (the default) splits text exactly where
BERT's basic tokenizer does: whitespace, every punctuation character, every CJK
ideograph. WordPiece vocabularies (M-BERT and other BERT checkpoints) never
cross these boundaries, so each wordpiece falls inside exactly one spaCy token
and character offsets of answers, spans and long-text windows map exactly.
spaCy's default ``xx`` tokenizer, by contrast, leaves a whole Chinese sentence
as one token.

SentencePiece vocabularies (XLM-R, multilingual-e5, the default encoder) do not
respect those boundaries: "北京", "14:30", "3.000" or ")." can be one piece, so
with e5-small about 4% of the pieces cross these tokens. For them,
``spacy-mbert.PieceAlignedTokenizer.v1`` (``piece_tokenizer.py``) keeps only the BERT boundaries that are
also boundaries between the encoder's own pieces (from the fast tokenizer's
character offsets), so every piece of *any* vocabulary lies inside one spaCy
token, with tokens as fine as that allows ("北京" stays one token, "我" and
"爱" stay apart). Both keep ``doc.text`` equal to the input text, always.

The character classes follow BERT's reference ``BasicTokenizer`` and the Rust
``BertNormalizer`` + ``BertPreTokenizer`` of Hugging Face ``tokenizers``:

- separators: space, tab, newline, carriage return, Unicode ``Zs``, and the line
  and paragraph separators (U+2028, U+2029);
- control and format characters (Unicode ``C*``) are *removed* by BERT, which
  glues their neighbours together, so they never split a token here;
- punctuation: ASCII symbols and Unicode ``P*``, one token each;
- CJK ideographs (BERT's ``_is_chinese_char`` blocks), one token each.
"""

import functools
import re
import sys
import unicodedata
from typing import Callable, List, Sequence, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from spacy.vocab import Vocab

# The CJK Unified Ideographs blocks BERT isolates (tokenization_bert._is_chinese_char).
# The fast (Rust) tokenizers start the last extension block at U+2B920, not U+2B820
# as the Python one does; isolating only what both isolate keeps every wordpiece of
# either inside one token (a coarser token never breaks alignment).
_CJK_RANGES = [
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
]


def _is_separator(cp: int) -> bool:
    char = chr(cp)
    return char in " \t\n\r\u2028\u2029" or unicodedata.category(char) == "Zs"


def _is_punctuation(cp: int) -> bool:
    # BERT treats all non-letter/number ASCII as punctuation ("$", "^", "`"),
    # even where Unicode calls them symbols.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(chr(cp)).startswith("P")


def _ranges(predicate: Callable[[int], bool]) -> List[Tuple[int, int]]:
    """Collapse the code points matching ``predicate`` into (first, last) runs."""
    runs: List[Tuple[int, int]] = []
    start = None
    for cp in range(sys.maxunicode + 2):
        hit = cp <= sys.maxunicode and not (0xD800 <= cp <= 0xDFFF) and predicate(cp)
        if hit and start is None:
            start = cp
        elif not hit and start is not None:
            runs.append((start, cp - 1))
            start = None
    return runs


def _char_class(runs: List[Tuple[int, int]]) -> str:
    parts = []
    for first, last in runs:
        parts.append(re.escape(chr(first)) if first == last else f"{re.escape(chr(first))}-{re.escape(chr(last))}")
    return "".join(parts)


# Hugging Face tokenizers match special-token strings in raw text ("[SEP]" in a
# tweet becomes the separator), so such a string must stay one spaCy token.
DEFAULT_SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "<s>", "</s>", "<pad>", "<unk>", "<mask>")


@functools.lru_cache(maxsize=None)
def _character_classes() -> Tuple[str, str]:
    # Built on first use (scanning all code points takes ~0.4 s), not at import.
    return _char_class(_ranges(_is_separator)), _char_class(_ranges(_is_punctuation) + _CJK_RANGES)


@functools.lru_cache(maxsize=None)
def _pattern(special_tokens: Tuple[str, ...] = DEFAULT_SPECIAL_TOKENS) -> "re.Pattern[str]":
    separators, singles = _character_classes()
    # Alternatives, tried in order: a run of separators, a special-token string,
    # one punctuation or CJK character, or a run of anything else (a "word").
    specials = "|".join(re.escape(token) for token in sorted(special_tokens, key=len, reverse=True))
    return re.compile(
        f"([{separators}]+)|{f'({specials})|' if specials else ''}([{singles}])|([^{separators}{singles}]+)"
    )


def split_bert_words(
    text: str, special_tokens: Tuple[str, ...] = DEFAULT_SPECIAL_TOKENS
) -> Tuple[List[str], List[bool]]:
    """Split ``text`` into spaCy ``words`` and ``spaces`` at BERT's boundaries.

    A single space after a token becomes that token's trailing whitespace; any
    other run of separators becomes a whitespace token, as spaCy does.
    """
    words: List[str] = []
    spaces: List[bool] = []
    for match in _pattern(tuple(special_tokens)).finditer(text):
        piece = match.group(0)
        if match.lastindex != 1:
            words.append(piece)
            spaces.append(False)
            continue
        if words and not spaces[-1] and piece[0] == " ":
            spaces[-1] = True
            piece = piece[1:]
        if piece:
            words.append(piece)
            spaces.append(False)
    return words, spaces


class MultilingualTokenizer:
    """Callable spaCy tokenizer: ``tokenizer(text) -> Doc``; ``doc.text == text`` always."""

    def __init__(self, vocab: Vocab, special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS):
        self.vocab = vocab
        self.special_tokens = tuple(special_tokens)

    def __call__(self, text: str) -> Doc:
        words, spaces = split_bert_words(text, self.special_tokens)
        return Doc(self.vocab, words=words, spaces=spaces)

    def pipe(self, texts, batch_size: int = 1000):
        for text in texts:
            yield self(text)

    # The tokenizer has no state: serialization is a no-op, so pipelines that
    # use it save and load like any other.
    def to_bytes(self, **kwargs) -> bytes:
        return b""

    def from_bytes(self, data: bytes, **kwargs) -> "MultilingualTokenizer":
        return self

    def to_disk(self, path, **kwargs) -> None:
        pass

    def from_disk(self, path, **kwargs) -> "MultilingualTokenizer":
        return self


@registry.tokenizers("spacy-mbert.MultilingualTokenizer.v1")
def create_multilingual_tokenizer(
    special_tokens: List[str] = list(DEFAULT_SPECIAL_TOKENS),
) -> Callable[["spacy.Language"], MultilingualTokenizer]:  # noqa: F821
    """Tokenizer for ``lang = "xx"`` pipelines that splits where BERT does (the default).

    Every WordPiece piece (M-BERT, BERT-family encoders) lies inside one token.
    SentencePiece pieces can cross these boundaries (about 4% of e5-small's
    pieces, most of them in Chinese and Japanese): use
    ``spacy-mbert.PieceAlignedTokenizer.v1`` for such encoders.

    special_tokens (List[str]): Strings kept as one token because the encoder's
        tokenizer reads them as special tokens (BERT's and XLM-R's by default).
    """

    def make_tokenizer(nlp) -> MultilingualTokenizer:
        return MultilingualTokenizer(nlp.vocab, special_tokens)

    return make_tokenizer


def pieces_crossing_tokens(doc: Doc, offsets) -> List[Tuple[int, int]]:
    """The wordpiece ``(start, end)`` character offsets that do not fall inside exactly one token.

    ``offsets`` is a fast tokenizer's ``offset_mapping`` for ``doc.text``. Only a
    piece's non-whitespace characters count: SentencePiece offsets include the
    space that the "▁" marker stands for, and special tokens have empty offsets.
    """
    text = doc.text
    owner = [-1] * len(text)
    for token in doc:
        owner[token.idx : token.idx + len(token.text)] = [token.i] * len(token.text)
    crossing = []
    for start, end in offsets:
        owners = {owner[char] for char in range(start, end) if not text[char].isspace()}
        if len(owners) > 1:
            crossing.append((start, end))
    return crossing
