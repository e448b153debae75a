"""``spacy-mbert.PieceAlignedTokenizer.v1``: tokens that never cut one of the encoder's pieces.

SentencePiece vocabularies (XLM-R, multilingual-e5, the default encoder) do not
respect BERT's boundaries: "北京", "14:30", "3.000" or ")." can be one piece. This
tokenizer keeps only the BERT boundaries (``spacy_mbert.tokenizer``) that are also
boundaries between the encoder's own pieces, from the fast tokenizer's character
offsets, so every piece of *any* vocabulary lies inside one spaCy token, with
tokens as fine as that allows. ``doc.text`` is always the input text.
"""

import itertools
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple, Union

import srsly
from spacy.tokens import Doc
from spacy.util import minibatch, registry
from spacy.vocab import Vocab

from .errors import EncoderNotFoundError, UserError, corrupted_file_errors
from .tokenizer import _is_separator, _pattern


def split_piece_aligned_words(text: str, offsets: Iterable[Tuple[int, int]]) -> Tuple[List[str], List[bool]]:
    """Split ``text`` at BERT's boundaries, except where a boundary would cut one of the encoder's pieces.

    offsets: the ``(start, end)`` character offsets of the encoder's pieces in
        ``text`` (a fast tokenizer's offset mapping, special tokens excluded).
        A piece counts from its first to its last non-separator character:
        SentencePiece's "▁" pieces may include or exclude the space they stand
        for, and a piece with empty offsets (or only whitespace) constrains nothing.
    Pieces may overlap (a character the normalizer expands, "㍻" -> "平成",
    gives several pieces with the same offsets) and need not cover the text.
    ``"".join(words[i] + " " * spaces[i])`` is ``text``, as for :func:`split_bert_words`.
    """
    length = len(text)
    depth = [0] * (length + 1)
    for start, end in offsets:
        start, end = max(int(start), 0), min(int(end), length)
        while start < end and _is_separator(ord(text[start])):
            start += 1
        while end > start and _is_separator(ord(text[end - 1])):
            end -= 1
        if end - start > 1:
            depth[start + 1] += 1  # cuts before text[start + 1 .. end - 1] would split this piece
            depth[end] -= 1
    # inside[p] > 0: text[p - 1] and text[p] belong to one piece, no token boundary between them.
    inside = list(itertools.accumulate(depth))
    words: List[str] = []
    spaces: List[bool] = []
    group_start, group_end, group_is_space = -1, -1, False
    for match in _pattern(()).finditer(text):
        start, end = match.span()
        if group_start >= 0 and inside[start] > 0:
            group_end, group_is_space = end, False
            continue
        if group_start >= 0:
            _append_word(words, spaces, text[group_start:group_end], group_is_space)
        group_start, group_end, group_is_space = start, end, match.lastindex == 1
    if group_start >= 0:
        _append_word(words, spaces, text[group_start:group_end], group_is_space)
    return words, spaces


def _append_word(words: List[str], spaces: List[bool], piece: str, is_space: bool) -> None:
    # As split_bert_words: one space after a token is its trailing whitespace.
    if is_space and words and not spaces[-1] and piece[0] == " ":
        spaces[-1] = True
        piece = piece[1:]
    if piece:
        words.append(piece)
        spaces.append(False)


class PieceAlignedTokenizer:
    """Callable spaCy tokenizer: BERT's boundaries that the encoder's pieces do not cross.

    ``tokenizer(text) -> Doc``; ``doc.text == text`` always. Every piece of the
    encoder's tokenizer, for the text as a whole, lies inside one spaCy token
    (a piece of only whitespace may lie in a token's trailing space instead).
    A window of a long doc that the transformer tokenizes on its own can start
    with slightly different pieces (SentencePiece segments a run without spaces
    as a whole and adds a "▁"): with e5-small, 1 of 1,446 windows starting
    inside a Chinese sentence, none of 1,318 Japanese ones.

    The encoder's tokenizer is loaded when first needed (``nlp.initialize()``,
    the first text, or saving), not when the pipeline is built from its config:
    ``spacy.load`` builds the tokenizer from the config and then reads the copy
    saved in the pipeline's ``tokenizer/tokenizer.json``, so the encoder
    directory need not exist any more.
    """

    def __init__(self, vocab: Vocab, encoder: Optional[str] = None, backend=None):
        self.vocab = vocab
        self.encoder = encoder
        self._backend = backend

    @property
    def backend(self):
        """The encoder's ``tokenizers.Tokenizer`` (no truncation, no padding)."""
        if self._backend is None:
            if not self.encoder:
                raise UserError(
                    "spacy-mbert.PieceAlignedTokenizer.v1 has no encoder: set `encoder` in [nlp.tokenizer] "
                    "to the transformer's checkpoint directory or name."
                )
            self._backend = load_piece_tokenizer(self.encoder)
        return self._backend

    def initialize(self, get_examples=None, *, nlp=None) -> None:
        """Load the encoder's tokenizer now, so that a wrong `encoder` fails before training starts."""
        self.backend

    def __call__(self, text: str) -> Doc:
        return self._make_doc(text, self._offsets([text])[0])

    def pipe(self, texts: Iterable[str], batch_size: int = 1000) -> Iterator[Doc]:
        for batch in minibatch(texts, size=batch_size):
            for text, offsets in zip(batch, self._offsets(batch)):
                yield self._make_doc(text, offsets)

    def _make_doc(self, text: str, offsets) -> Doc:
        words, spaces = split_piece_aligned_words(text, offsets)
        return Doc(self.vocab, words=words, spaces=spaces)

    def _offsets(self, texts: List[str]) -> List[List[Tuple[int, int]]]:
        if len(texts) == 1:
            return [self.backend.encode(texts[0], add_special_tokens=False).offsets]
        return [encoding.offsets for encoding in self.backend.encode_batch(texts, add_special_tokens=False)]

    # Serialization stores the encoder's tokenizer itself (its tokenizer.json),
    # so a saved pipeline tokenizes the same way without the encoder directory.
    def to_bytes(self, **kwargs) -> bytes:
        return srsly.msgpack_dumps({"encoder": self.encoder, "tokenizer_json": self.backend.to_str()})

    def from_bytes(self, data: bytes, **kwargs) -> "PieceAlignedTokenizer":
        with corrupted_file_errors("The piece-aligned tokenizer's data"):
            msg = srsly.msgpack_loads(data)
            self._backend = _backend_from_json(msg["tokenizer_json"])
        return self

    def to_disk(self, path: Union[str, Path], **kwargs) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "tokenizer.json").write_text(self.backend.to_str(), encoding="utf8")
        srsly.write_json(path / "cfg", {"encoder": self.encoder})

    def from_disk(self, path: Union[str, Path], **kwargs) -> "PieceAlignedTokenizer":
        file = Path(path) / "tokenizer.json"
        if not file.is_file():
            raise UserError(
                f"'{file}' is missing: this pipeline was not saved with spacy-mbert.PieceAlignedTokenizer.v1's "
                f"data. Re-save it with nlp.to_disk, or copy tokenizer.json from the encoder into '{path}'."
            )
        with corrupted_file_errors(f"The piece-aligned tokenizer's file '{file}'"):
            self._backend = _backend_from_json(file.read_text(encoding="utf8"))
        return self


def _backend_from_json(data: str):
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(data)
    # Every piece of any length of text: the tokenizer.json may carry the model's
    # truncation (512) and padding, which would drop or add pieces.
    backend.no_truncation()
    backend.no_padding()
    return backend


def load_piece_tokenizer(encoder: Union[str, Path]):
    """The ``tokenizers.Tokenizer`` of an encoder, resolved as the transformer resolves ``model.name``.

    A local directory is used as it is (never the network); a name is taken from
    the Hugging Face cache, and downloaded only when not cached and the Hub is not
    switched off (``HF_HUB_OFFLINE``). Loading through ``AutoTokenizer`` applies
    what ``tokenizer_config.json`` changes in the fast tokenizer, so the pieces
    are the ones the transformer sees. Raises EncoderNotFoundError (one line).
    """
    from transformers import AutoTokenizer

    from .encoder.loading import hub_offline

    name = str(encoder)
    path = Path(name).expanduser()
    setting = "Set `encoder` in [nlp.tokenizer] (spacy-mbert.PieceAlignedTokenizer.v1)"
    if path.is_dir():
        source, local_only = str(path.resolve()), True
    elif name.startswith((".", "/", "~")) or (os.sep in name and path.exists()):
        raise EncoderNotFoundError(
            f"Encoder directory '{name}' does not exist. {setting} to the transformer's checkpoint directory, "
            f"e.g. after `spacy-mbert init-encoder e5-small {name}`."
        )
    else:
        source, local_only = name, hub_offline()
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, local_files_only=True)
        except OSError:
            if local_only:
                raise
            tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
    except (OSError, ValueError) as error:
        if path.is_dir() and (path / "tokenizer.json").is_file():
            # A bare tokenizer.json (no tokenizer_config.json/config.json to name the class).
            return _backend_from_json((path / "tokenizer.json").read_text(encoding="utf8"))
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        where = (
            "a directory without a loadable tokenizer"
            if path.is_dir()
            else "not a local directory, not in the Hugging Face cache, and not downloadable"
        )
        raise EncoderNotFoundError(
            f"Could not load the tokenizer of encoder '{name}': {where} ({reason}). {setting} to the "
            f"transformer's checkpoint directory, e.g. after `spacy-mbert init-encoder e5-small encoders/e5-small`."
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(
            f"Encoder '{name}' has only a slow (Python) tokenizer, which gives no character offsets: "
            f"save a fast one (tokenizer.json) into the checkpoint, or use spacy-mbert.MultilingualTokenizer.v1."
        )
    return _backend_from_json(tokenizer.backend_tokenizer.to_str())


@registry.tokenizers("spacy-mbert.PieceAlignedTokenizer.v1")
def create_piece_aligned_tokenizer(encoder: str) -> Callable[["spacy.Language"], PieceAlignedTokenizer]:  # noqa: F821
    """Tokenizer for ``lang = "xx"`` pipelines whose tokens never cut one of the encoder's pieces.

    Use it for SentencePiece encoders (XLM-R, multilingual-e5: the default
    e5-small), whose pieces cross BERT's boundaries ("北京", "14:30", "!!" are one
    piece each), so that each piece maps to one token. BERT-style
    ``spacy-mbert.MultilingualTokenizer.v1`` stays the default and the choice for
    WordPiece encoders: there the two give the same tokens, except that it also
    keeps other vocabularies' special-token strings ("<s>") whole, and it needs no
    encoder files.

    encoder (str): The encoder whose pieces must not be cut: a checkpoint directory
        or a Hugging Face name, found as the transformer's ``model.name`` is (a
        directory is never looked up online). Give the transformer's own value
        (e.g. ``${paths.encoder}``): the guarantee holds for that vocabulary only.
        It is read at ``nlp.initialize()`` or the first text, not when the config
        is loaded; a saved pipeline keeps the tokenizer in ``tokenizer/tokenizer.json``,
        so ``spacy.load`` does not need it.
    """

    def make_tokenizer(nlp) -> PieceAlignedTokenizer:
        return PieceAlignedTokenizer(nlp.vocab, encoder)

    return make_tokenizer
