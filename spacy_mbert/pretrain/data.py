"""Raw text for masked-LM pretraining: reading, held-out split, packing and language sampling.

- Reading: ``.txt`` (one document per line, blank lines skipped) or ``.jsonl``
  (``{"text": ..., "lang": ...}``, ``lang`` optional). A document's language is its
  ``lang`` field, else the ``--lang`` given for its file, else ``"unknown"``.
- Held-out split: per language, a fixed fraction of the documents chosen by a hash
  of their text (independent of seed and file order), never trained on.
- Packing: documents of one language are tokenized without specials and
  concatenated, separated by [SEP], into full ``[CLS] … [SEP]`` sequences of
  ``max_length`` pieces (``max_length - 1`` where a document ends one slot before
  the end, which leaves no room for [SEP] and a piece); only each language's last
  sequence is shorter, so there is no padding waste but in that one.
- Sampling: each training sequence's language is drawn with p_l ∝ n_l^α, where
  n_l is the number of packed training *sequences* of language l (≈ its tokens
  / max_length); within a language, sequences are visited in a seeded random
  order, reshuffled on every pass.
"""

import hashlib
import json
import math
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy

from ..errors import DataFormatError, UserError

UNKNOWN_LANG = "unknown"
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class Document:
    text: str
    lang: str
    source: str = ""
    line: int = 0


def read_documents(paths: Sequence[Union[str, Path]], langs: Optional[Sequence[str]] = None) -> List[Document]:
    """Read documents from .txt / .jsonl files.

    paths (Sequence[Path]): Text files.
    langs (Sequence[str], optional): One language for all files, or one per file (used for
        .txt files and JSONL records without "lang").
    """
    langs = list(langs or [])
    if len(langs) > 1 and len(langs) != len(paths):
        raise UserError(f"Got {len(langs)} languages for {len(paths)} text files; give one for all, or one per file.")
    documents: List[Document] = []
    for index, path in enumerate(paths):
        default = langs[index] if len(langs) > 1 else (langs[0] if langs else None)
        documents.extend(read_file(Path(path), default))
    return documents


def read_file(path: Path, lang: Optional[str] = None) -> Iterable[Document]:
    if not path.is_file():
        raise UserError(f"Text file not found: {path}. Pass existing .txt or .jsonl files with --text.")
    suffix = path.suffix.lower()
    default = lang or UNKNOWN_LANG
    documents = []
    with path.open(encoding="utf8") as file:
        try:
            if suffix in JSONL_SUFFIXES:
                for number, line in enumerate(file, 1):
                    if line.strip():
                        doc = _parse_jsonl_line(path, number, line, default)
                        if doc is not None:
                            documents.append(doc)
            elif suffix == ".json":
                raise UserError(
                    f'{path}: .json is not supported for pretraining; use JSONL (one {{"text": ..., '
                    f'"lang": ...}} object per line, .jsonl) or plain text (.txt, one document per line).'
                )
            else:
                for number, line in enumerate(file, 1):
                    text = line.strip()
                    if text:
                        documents.append(Document(text, default, str(path), number))
        except UnicodeDecodeError as error:
            raise DataFormatError(
                f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); re-encode the file as UTF-8."
            ) from None
    return documents


def _parse_jsonl_line(path: Path, number: int, line: str, default: str) -> Optional[Document]:
    where = f"{path}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataFormatError(
            f"{where}: invalid JSON ({error.msg}, column {error.colno}); each line must be one object "
            f'like {{"text": "...", "lang": "en"}}.'
        ) from None
    if not isinstance(record, dict):
        raise DataFormatError(f'{where}: expected a JSON object with a "text" field, got {type(record).__name__}.')
    if "text" not in record:
        raise DataFormatError(
            f'{where}: field "text" is missing (keys: {", ".join(sorted(record)) or "none"}); every '
            f'line needs {{"text": "..."}} and may have "lang".'
        )
    text = record["text"]
    if not isinstance(text, str):
        raise DataFormatError(f'{where}: field "text" must be a string, got {type(text).__name__}.')
    lang = record.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise DataFormatError(f'{where}: field "lang" must be a language code string like "en", got {lang!r}.')
    text = text.strip()
    if not text:
        return None
    return Document(text, (lang or "").strip() or default, str(path), number)


def group_by_lang(documents: Iterable[Document]) -> Dict[str, List[Document]]:
    groups: Dict[str, List[Document]] = defaultdict(list)
    for doc in documents:
        groups[doc.lang].append(doc)
    return dict(sorted(groups.items()))


def _text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf8")).digest()


def split_heldout(
    documents: Sequence[Document], fraction: float, max_docs: int = 1000
) -> Tuple[List[Document], List[Document]]:
    """Split into (train, held-out): per language ``round(n * fraction)`` documents, at least
    one when the language has two or more, at most ``max_docs`` (0: no cap).

    Which documents are held out depends only on their text (a hash), so the split is
    the same for every seed and file order. Training documents whose text equals a
    held-out document's are dropped, so held-out text is never trained on.
    """
    if fraction <= 0:
        return list(documents), []
    train: List[Document] = []
    heldout: List[Document] = []
    for lang, docs in group_by_lang(documents).items():
        unique = sorted({doc.text for doc in docs}, key=_text_key)
        count = max(1, round(len(unique) * fraction)) if len(unique) >= 2 else 0
        if max_docs:
            count = min(count, max_docs)
        held_texts = set(unique[:count])
        seen = set()
        for doc in docs:
            if doc.text in held_texts:
                if doc.text not in seen:
                    heldout.append(doc)
                    seen.add(doc.text)
            else:
                train.append(doc)
    return train, heldout


def remove_overlap(train: Sequence[Document], heldout: Sequence[Document]) -> Tuple[List[Document], int]:
    """Drop training documents whose text is also held out; return them and how many went."""
    held = {doc.text for doc in heldout}
    kept = [doc for doc in train if doc.text not in held]
    return kept, len(train) - len(kept)


def cap_per_lang(documents: Sequence[Document], max_docs: int) -> List[Document]:
    """Keep at most ``max_docs`` documents per language (chosen by text hash; 0: all)."""
    if not max_docs:
        return list(documents)
    kept: List[Document] = []
    for docs in group_by_lang(documents).values():
        if len(docs) > max_docs:
            order = sorted(range(len(docs)), key=lambda i: _text_key(docs[i].text))
            docs = [docs[i] for i in sorted(order[:max_docs])]
        kept.extend(docs)
    return kept


@dataclass
class PackedLanguage:
    """A language's packed sequences: piece ids and word indices (-1 for specials)."""

    input_ids: List[numpy.ndarray] = field(default_factory=list)
    word_ids: List[numpy.ndarray] = field(default_factory=list)
    n_docs: int = 0
    n_pieces: int = 0  # text pieces, without specials

    def __len__(self) -> int:
        return len(self.input_ids)


def special_ids_of(tokenizer) -> List[int]:
    """Ids of special tokens that are never masked or used as random replacements ([UNK] excepted)."""
    unk = tokenizer.unk_token_id
    return sorted({int(i) for i in tokenizer.all_special_ids if i is not None and i != unk})


def pack_documents(
    tokenizer, documents: Sequence[Document], max_length: int = 128, batch_size: int = 1000
) -> Dict[str, PackedLanguage]:
    """Tokenize and pack documents per language into ``[CLS] doc [SEP] doc … [SEP]`` sequences.

    Sequences are full (``max_length`` pieces, or one less where a document ends one
    slot before the end) except the last of each language; a document that does not
    fit continues in the next sequence; documents within a sequence are separated by [SEP].
    """
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(
            f"Pretraining needs a fast (Rust) tokenizer for word boundaries, but "
            f"{type(tokenizer).__name__} is not one; use a checkpoint with a tokenizer.json."
        )
    if max_length < 4:
        raise UserError("--max-length must leave room for [CLS], a piece and [SEP].")
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise UserError(
            f"The tokenizer ({type(tokenizer).__name__}) has no [CLS]/[SEP] (or <s>/</s>) tokens; BERT-style pretraining needs both."
        )
    packed: Dict[str, PackedLanguage] = {}
    for lang, docs in group_by_lang(documents).items():
        packer = _Packer(cls_id, sep_id, max_length)
        for start in range(0, len(docs), batch_size):
            texts = [doc.text for doc in docs[start : start + batch_size]]
            encoding = tokenizer(
                texts,
                add_special_tokens=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )
            for index, ids in enumerate(encoding["input_ids"]):
                if ids:
                    words = [-1 if w is None else w for w in encoding.word_ids(index)]
                    packer.add(ids, words)
        packer.flush()
        packed[lang] = PackedLanguage(packer.sequences, packer.words, len(docs), packer.n_pieces)
    return packed


class _Packer:
    def __init__(self, cls_id: int, sep_id: int, max_length: int):
        self.cls_id, self.sep_id, self.max_length = cls_id, sep_id, max_length
        self.sequences: List[numpy.ndarray] = []
        self.words: List[numpy.ndarray] = []
        self.ids: List[int] = [cls_id]
        self.wids: List[int] = [-1]
        self.word_offset = 0
        self.n_pieces = 0

    def add(self, ids: Sequence[int], words: Sequence[int]) -> None:
        self.n_pieces += len(ids)
        # Separate from the previous document, if a piece of this one fits after the [SEP].
        if len(self.ids) > 1:
            if len(self.ids) + 3 > self.max_length:
                self.flush()
            else:
                self.ids.append(self.sep_id)
                self.wids.append(-1)
        offset = self.word_offset
        self.word_offset += max(words, default=-1) + 1
        position = 0
        while position < len(ids):
            room = self.max_length - 1 - len(self.ids)
            chunk = slice(position, position + room)
            self.ids.extend(ids[chunk])
            self.wids.extend(w + offset if w >= 0 else -1 for w in words[chunk])
            position += room
            if len(self.ids) == self.max_length - 1:
                self.flush()

    def flush(self) -> None:
        if len(self.ids) > 1:
            self.sequences.append(numpy.asarray(self.ids + [self.sep_id], dtype=numpy.int32))
            self.words.append(numpy.asarray(self.wids + [-1], dtype=numpy.int32))
        self.ids, self.wids = [self.cls_id], [-1]


def fingerprint(packed: Mapping[str, PackedLanguage], extra: Iterable[str] = ()) -> str:
    """A hash of the packed data, to check that a resumed run sees the same data."""
    digest = hashlib.sha1()
    for lang in sorted(packed):
        digest.update(lang.encode("utf8") + b"\0")
        for ids in packed[lang].input_ids:
            digest.update(ids.tobytes())
            digest.update(b"\1")
    for item in extra:
        digest.update(item.encode("utf8") + b"\0")
    return digest.hexdigest()


def language_probabilities(counts: Mapping[str, float], alpha: float = 0.7) -> Dict[str, float]:
    """Exponentially smoothed sampling probabilities p_l ∝ n_l^α, normalized (M-BERT: α=0.7).

    counts (Mapping[str, float]): Amount of data per language (here: packed sequences).
        Languages with a count of 0 get probability 0.
    alpha (float): 1 samples in proportion to the data, 0 uniformly over languages;
        values in between up-sample small languages.
    """
    if alpha < 0:
        raise UserError(f"alpha must be >= 0, got {alpha}.")
    negative = [lang for lang, n in counts.items() if n < 0]
    if negative:
        raise UserError(f"Negative data counts for {', '.join(negative)}.")
    weights = {lang: (float(n) ** alpha if n > 0 else 0.0) for lang, n in counts.items()}
    total = math.fsum(weights.values())
    if total <= 0:
        raise UserError("No training data: every language has 0 sequences. Check the --text files.")
    return {lang: weight / total for lang, weight in weights.items()}


class LanguageSampler:
    """Draws (language, sequence index) pairs; its whole state can be saved and restored.

    The language of each sequence is drawn with :func:`language_probabilities`; each
    language's sequences are visited in a random order that is reshuffled after
    every pass over them.
    """

    def __init__(self, counts: Mapping[str, int], alpha: float, seed: int):
        self.langs = sorted(lang for lang, n in counts.items() if n > 0)
        self.counts = {lang: int(counts[lang]) for lang in self.langs}
        probabilities = language_probabilities(self.counts, alpha)
        self.probabilities = {lang: probabilities[lang] for lang in self.langs}
        self._p = numpy.asarray([self.probabilities[lang] for lang in self.langs], dtype=numpy.float64)
        self._p /= self._p.sum()
        self.seed = seed
        self.rng = numpy.random.default_rng([seed, 0x5A4D])
        self.epoch = {lang: 0 for lang in self.langs}
        self.position = {lang: 0 for lang in self.langs}
        self._orders: Dict[str, Tuple[Tuple[str, int], numpy.ndarray]] = {}

    def _order(self, lang: str) -> numpy.ndarray:
        key = (lang, self.epoch[lang])
        cached = self._orders.get(lang)
        if cached is None or cached[0] != key:
            rng = numpy.random.default_rng([self.seed, zlib.crc32(lang.encode("utf8")), self.epoch[lang]])
            self._orders[lang] = (key, rng.permutation(self.counts[lang]))
        return self._orders[lang][1]

    def sample(self, n: int) -> List[Tuple[str, int]]:
        """The next ``n`` (language, sequence index) pairs."""
        choices = self.rng.choice(len(self.langs), size=n, p=self._p)
        drawn = []
        for choice in choices:
            lang = self.langs[int(choice)]
            if self.position[lang] >= self.counts[lang]:
                self.epoch[lang] += 1
                self.position[lang] = 0
            drawn.append((lang, int(self._order(lang)[self.position[lang]])))
            self.position[lang] += 1
        return drawn

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "epoch": dict(self.epoch),
            "position": dict(self.position),
            "counts": dict(self.counts),
        }

    def load_state_dict(self, state: Mapping) -> None:
        if dict(state["counts"]) != self.counts:
            raise UserError(
                "The training data differs from the checkpoint's (sequences per language "
                f"{dict(state['counts'])} then, {self.counts} now); resume with the same --text files "
                "and settings, or start a new OUTPUT_DIR."
            )
        self.rng.bit_generator.state = state["rng"]
        self.epoch = dict(state["epoch"])
        self.position = dict(state["position"])
