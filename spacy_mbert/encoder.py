"""The M-BERT transformer: spacy-transformers' model, loaded offline-first and saved whole.

``spacy-mbert.MBertTransformer.v1`` is spacy-transformers' ``TransformerModel``
with three changes that matter to multilingual users:

- loading tries the local cache/directory first and, when the weights cannot be
  had, fails with one line that names the model and the fix (instead of a long
  huggingface_hub traceback);
- checkpoints whose tokenizer is only a ``tokenizer.json`` (XLM-R-vocabulary
  models such as multilingual-e5) load, train and save — spacy-transformers
  1.4 assumes a vocab file and crashes on them;
- the saved pipeline carries weights, config and tokenizer, so ``spacy.load``
  needs neither network nor cache, and a corrupted file gives a clear error
  (the weights are saved with a SHA-256 checksum, so changed bytes are caught too);
- nothing of a long doc is dropped: the default windows
  (``spacy-mbert.wordpiece_strided_spans.v1``) fit the encoder, and a single
  spaCy token longer than a window is split over several encoder rows where
  spacy-transformers would cut it (other over-long windows are cut with a warning).
"""

import hashlib
import os
import warnings
from io import BytesIO
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy
import srsly
import torch
from spacy.tokens import Doc, Span
from spacy.util import SimpleFrozenDict, registry
from spacy_transformers.align import get_alignment
from spacy_transformers.data_classes import FullTransformerBatch, HFObjects, WordpieceBatch
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.layers.transformer_model import TransformerModel, huggingface_tokenize
from spacy_transformers.truncate import truncate_oversize_splits
from spacy_transformers.util import make_tempdir, maybe_flush_pytorch_cache
from thinc.api import ArgsKwargs, Model, get_torch_default_device
from thinc.types import Ragged

from .alignment import align_by_offsets
from .errors import EncoderNotFoundError, UserError, WeightsChecksumError
from .span_getters import configure_wordpiece_strided_spans
from .weights_file import WEIGHTS_FILE_KEY, ChecksumCheck, read_state, save_state

DEFAULT_ENCODER = "bert-base-multilingual-cased"
# Key of the weights' SHA-256 (hex) in the saved shim dict, next to "state".
WEIGHTS_CHECKSUM_KEY = "state_sha256"


@registry.architectures("spacy-mbert.MBertTransformer.v1")
def MBertTransformer(
    name: str = DEFAULT_ENCODER,
    get_spans: Optional[Callable] = None,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
) -> Model[List[Doc], FullTransformerBatch]:
    """A BERT-family encoder for the ``transformer`` component.

    name (str): Hub name (e.g. "bert-base-multilingual-cased") or local checkpoint directory.
    get_spans (Callable[[List[Doc]], List[List[Span]]]): Splits docs into windows; defaults
        to ``spacy-mbert.wordpiece_strided_spans.v1``: windows of 128 tokens with a stride
        of 96, shortened where they would have more wordpieces than the encoder takes.
        A span getter with a ``set_tokenizer`` method is given the tokenizer before each use.
    tokenizer_config (dict): Keyword arguments for ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): Keyword arguments for ``AutoConfig.from_pretrained``.
    mixed_precision (bool): Run the forward pass in mixed precision (GPU).
    grad_scaler_config (dict): Settings for the gradient scaler used with mixed precision.
    """
    if get_spans is None:
        get_spans = configure_wordpiece_strided_spans(window=128, stride=96)
    return MBertTransformerModel(
        name,
        get_spans,
        tokenizer_config=dict(tokenizer_config),
        transformer_config=dict(transformer_config),
        mixed_precision=mixed_precision,
        grad_scaler_config=dict(grad_scaler_config),
    )


class MBertTransformerModel(TransformerModel):
    """``TransformerModel`` with offline-first loading and tokenizer.json-safe serialization."""

    def __init__(
        self,
        name: str,
        get_spans: Callable,
        tokenizer_config: dict = {},
        transformer_config: dict = {},
        mixed_precision: bool = False,
        grad_scaler_config: dict = {},
    ):
        super().__init__(
            name, get_spans, dict(tokenizer_config), dict(transformer_config),
            mixed_precision, dict(grad_scaler_config),
        )
        self.init = _init_transformer
        self._func = _forward
        self.layers[0].shims[0] = MBertShim(
            self.layers[0].shims[0]._hfmodel,
            mixed_precision=mixed_precision,
            grad_scaler_config=dict(grad_scaler_config),
        )
        # Prediction runs windows in length-sorted groups of 16 (less padding).
        self.layers[0].shims[0].length_sorted_rows = 16

    def from_bytes(self, bytes_data: bytes) -> "MBertTransformerModel":
        try:
            return super().from_bytes(bytes_data)
        except WeightsChecksumError as error:
            raise error.naming("The transformer model file") from None
        except UserError:
            raise
        except Exception as error:  # msgpack and torch raise many unrelated types
            raise UserError(
                f"The transformer model file is corrupted or truncated ({type(error).__name__}: "
                f"{_first_line(error)}); re-save or re-download the pipeline."
            ) from None

    def copy(self) -> "MBertTransformerModel":
        copied = super().copy()
        copied.__class__ = MBertTransformerModel
        copied.init = _init_transformer
        copied._func = _forward
        return copied


def _first_line(error: Exception, limit: int = 120) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else ""


def _forward(model: TransformerModel, docs: List[Doc], is_train: bool) -> Tuple[FullTransformerBatch, Callable]:
    """spacy-transformers' forward pass, except for what happens to windows that are too long.

    spacy-transformers cuts every window to the tokenizer's ``model_max_length``
    wordpieces and drops the rest without a word. Here a window that is one spaCy
    token too long for the encoder is split over several rows instead (nothing is
    dropped), and any other window that is too long is cut with a warning that
    names the span getter that avoids it.
    """
    tokenizer = model.tokenizer
    get_spans = model.attrs["get_spans"]
    if hasattr(get_spans, "set_tokenizer"):
        # Set on every call: after spacy.load or a copy, the tokenizer is another object.
        get_spans.set_tokenizer(tokenizer)
    nested_spans = get_spans(docs)
    flat_spans = [span for doc_spans in nested_spans for span in doc_spans]
    maybe_flush_pytorch_cache(chance=model.attrs.get("flush_cache_chance", 0))
    batch_encoding = huggingface_tokenize(tokenizer, [span.text for span in flat_spans])
    wordpieces = WordpieceBatch.from_batch_encoding(batch_encoding)
    if "offset_mapping" in batch_encoding:
        align = align_by_offsets(flat_spans, batch_encoding["offset_mapping"])
    else:
        align = get_alignment(flat_spans, wordpieces.strings, tokenizer.all_special_tokens)
    nested_spans, wordpieces, align = fit_windows(nested_spans, wordpieces, align, tokenizer)
    model_output, bp_tensors = model.layers[0](wordpieces, is_train)
    output = FullTransformerBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output, align=align)

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        bp_tensors(d_output.model_output)
        return docs

    return output, backprop


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
            f"{int(lengths[cut[0]])} for {_preview(span.text)}; the wordpieces past {max_length} are not read. "
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
        strings=strings, input_ids=new_ids, attention_mask=new_mask,
        lengths=[len(cols) for _, cols in new_rows], token_type_ids=new_types,
    )
    return new_nested, batch, new_align


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _init_transformer(model: TransformerModel, X=None, Y=None) -> None:
    if model.attrs["has_transformer"]:
        return
    hf_objects = load_pretrained(
        model.attrs["name"], model._init_tokenizer_config, model._init_transformer_config
    )
    # Sets the weights, the tokenizer and the output width (nO).
    model.attrs["set_transformer"](model, hf_objects)


def load_pretrained(
    name: Union[str, Path],
    tokenizer_config: Dict,
    transformer_config: Dict,
    *,
    model_cls=None,
) -> HFObjects:
    """Load tokenizer and weights from a local directory, the local cache, or the Hub.

    name (Union[str, Path]): Hub name or local checkpoint directory.
    tokenizer_config (Dict): Keyword arguments for ``AutoTokenizer.from_pretrained``.
    transformer_config (Dict): Keyword arguments for ``AutoConfig.from_pretrained``.
    model_cls: The ``transformers`` auto class to build (``AutoModel`` by default;
        e.g. ``AutoModelForQuestionAnswering`` adds a freshly initialised head).

    Raises EncoderNotFoundError (one line, with the fix) when the weights cannot be had.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    model_cls = model_cls or AutoModel
    source = _resolve_source(str(name))
    local_only = Path(source).is_dir() or _hub_offline()
    try:
        kwargs = {"local_files_only": True}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **tokenizer_config, **kwargs)
        except OSError:
            if local_only:
                raise
            kwargs = {}  # Not cached yet: allow the download.
            tokenizer = AutoTokenizer.from_pretrained(source, **tokenizer_config)
        config = AutoConfig.from_pretrained(source, **transformer_config, return_dict=True, **kwargs)
        transformer = model_cls.from_pretrained(source, config=config, **kwargs)
    except (OSError, ValueError) as error:
        raise EncoderNotFoundError(_not_found_message(str(name), error)) from None
    transformer.to(get_torch_default_device())
    check_vocabularies_match(str(name), tokenizer, transformer.config)
    return HFObjects(tokenizer, transformer, _vocab_file_contents(tokenizer))


def _resolve_source(name: str) -> str:
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and path.exists()
    if path.is_dir():
        if not (path / "config.json").exists():
            found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
            raise EncoderNotFoundError(
                f"'{name}' is a directory but not a Hugging Face checkpoint: it has no config.json "
                f"(found: {found}). Point `name` at a directory written by `save_pretrained` or "
                f"`spacy-mbert init-encoder`."
            )
        return str(path.resolve())
    if looks_like_path:
        raise EncoderNotFoundError(
            f"Encoder directory '{name}' does not exist. Point `name` at a checkpoint directory, "
            f"or build one offline with `spacy-mbert init-encoder e5-small {name}`."
        )
    return name


def _hub_offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _not_found_message(name: str, error: Exception) -> str:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"Could not load the encoder '{name}': it is not a local checkpoint directory, not in the "
        f"Hugging Face cache, and could not be downloaded ({reason[:160]}). Set the model's `name` to "
        f"a local directory, e.g. `--components.transformer.model.name encoders/e5-small` after "
        f"`spacy-mbert init-encoder e5-small encoders/e5-small`, or download '{name}' where the Hub "
        f"is reachable and copy the directory here."
    )


def check_vocabularies_match(name: str, tokenizer, config) -> None:
    """Fail early when the tokenizer's ids do not mean what the weights were trained on.

    Two checks: the tokenizer can produce ids the embedding matrix does not have
    (a larger vocabulary), or it has exactly as many pieces as the embeddings but
    another padding id than the model's config (another model's vocabulary of the
    same size: every id would silently stand for another piece).

    The padding ids are compared only when the sizes are equal: checkpoints that
    reuse another model's vocabulary with a larger embedding matrix keep their
    architecture's default config, e.g. Multilingual-MiniLM and multilingual-e5-small,
    BERT configs (pad_token_id 0) with XLM-R's tokenizer (<pad> = 1, 250,002 pieces
    for 250,037 embeddings); for BERT the padding id only matters at initialization.
    """
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise UserError(
            f"Encoder '{name}': its tokenizer has {len(tokenizer)} pieces but the model's embeddings "
            f"only {vocab_size}; the tokenizer files belong to another model. Use the tokenizer "
            f"saved with these weights."
        )
    expected, found = getattr(config, "pad_token_id", None), getattr(tokenizer, "pad_token_id", None)
    if len(tokenizer) == vocab_size and isinstance(expected, int) and isinstance(found, int) and expected != found:
        raise UserError(
            f"Encoder '{name}': its tokenizer gives the padding token {tokenizer.pad_token!r} the id {found} but "
            f"the model's config has pad_token_id = {expected}; the tokenizer files belong to another model with "
            f"a vocabulary of the same size ({vocab_size}). Put the tokenizer files saved with these weights "
            f"into '{name}'."
        )


def _vocab_file_contents(tokenizer) -> Optional[bytes]:
    # XLM-R-style fast tokenizers loaded from tokenizer.json alone have
    # `vocab_file = None`; spacy-transformers would open(None) here.
    vocab_file = getattr(tokenizer, "vocab_file", None)
    if vocab_file and Path(vocab_file).is_file():
        return Path(vocab_file).read_bytes()
    return None


class MBertShim(HFShim):
    """HFShim whose serialization works for tokenizer.json-only checkpoints.

    The format is the same msgpack dict as spacy-transformers' HFShim, so pipelines
    stay loadable by either. Pass ``model_cls`` (e.g. ``AutoModelForQuestionAnswering``)
    to wrap a model with a task head; the head's weights are saved with the rest.

    In prediction, the windows of a batch go through the encoder at most
    ``max_windows_per_pass`` at a time: spacy-transformers runs all the windows of
    a batch in one pass, so a single long doc (a 100,000-character doc has ~200-1,000
    windows) would need activation memory in proportion to its length. The outputs
    are the same, concatenated.
    """

    max_windows_per_pass: int = 64
    # > 0: sort the windows by length and run them this many at a time, each group
    # cut to its own longest window (see ``_predict_by_length``). Set by
    # MBertTransformerModel; task models that pad per length-sorted batch themselves
    # (QA) leave it off.
    length_sorted_rows: int = 0
    # Set by weights_file.weights_beside during a component's to_disk/from_disk: the
    # weights then live in this file instead of inside the model bytes.
    weights_path: Optional[Path] = None

    def predict(self, inputs: ArgsKwargs):
        n_rows = _batch_rows(inputs)
        with torch.inference_mode():
            if self.length_sorted_rows > 0 and n_rows > 1 and self._right_padded(inputs):
                return self._predict_by_length(inputs, n_rows)
            step = self.max_windows_per_pass
            if n_rows <= step:
                return super().predict(inputs)
            outputs = []
            for start in range(0, n_rows, step):
                outputs.append(super().predict(_slice_rows(inputs, start, start + step, n_rows)))
            return _concat_rows(outputs)

    def _right_padded(self, inputs: ArgsKwargs) -> bool:
        mask = inputs.kwargs.get("attention_mask")
        tokenizer = self._hfmodel.tokenizer
        return (
            isinstance(mask, torch.Tensor) and mask.dim() == 2
            and getattr(tokenizer, "padding_side", "right") == "right"
        )

    def _predict_by_length(self, inputs: ArgsKwargs, n_rows: int):
        """Run the windows longest first, in groups padded only to their own longest window.

        spacy-transformers pads every window of a batch to the batch's longest one,
        so a batch of sentences of mixed length spends up to half its time on
        padding. The outputs are put back in input order and padded with zeros to
        the batch's width (spacy-transformers never reads padded positions).
        """
        mask = inputs.kwargs["attention_mask"]
        width = mask.shape[1]
        lengths = mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True, stable=True)
        step = max(1, min(self.length_sorted_rows, self.max_windows_per_pass))
        outputs = []
        for start in range(0, n_rows, step):
            rows = order[start : start + step]
            group_width = max(1, int(lengths[rows].max()))
            group = _take_rows(inputs, rows, n_rows, width, group_width)
            outputs.append(_pad_sequence_dim(HFShim.predict(self, group), group_width, width))
        joined = _concat_rows(outputs)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n_rows, device=order.device)
        return _take_output_rows(joined, inverse, n_rows)

    def to_bytes(self) -> bytes:
        hf_model = self._hfmodel
        if hf_model.transformer is None:
            return super().to_bytes()
        tokenizer = hf_model.tokenizer
        tok_dict: Dict[str, object] = {"kwargs": {"use_fast": tokenizer.is_fast}}
        with make_tempdir() as temp_dir:
            if hf_model.vocab_file_contents is not None and hasattr(tokenizer, "vocab_file"):
                # Slow-tokenizer vocab files may live in a cache that is gone by now.
                vocab_path = temp_dir / tokenizer.vocab_files_names["vocab_file"]
                vocab_path.write_bytes(hf_model.vocab_file_contents)
                tokenizer.vocab_file = str(vocab_path)
            tokenizer.save_pretrained(str(temp_dir))
            for path in temp_dir.glob("**/*"):
                if path.is_file():
                    tok_dict[path.name] = path.read_bytes()
        msg = {
            "config": hf_model.transformer.config.to_dict(),
            "tokenizer": tok_dict,
            "_init_tokenizer_config": {},
            "_init_transformer_config": {},
        }
        if self.weights_path is not None:
            # to_disk of this package's components: the weights go to their own file.
            msg["state"] = None
            msg[WEIGHTS_FILE_KEY] = self.weights_path.name
            msg[WEIGHTS_CHECKSUM_KEY] = save_state(self._model, self.weights_path)
        else:
            weights = BytesIO()
            torch.save(self._model.state_dict(), weights)
            msg["state"] = weights.getvalue()
            # Checked by from_bytes: bytes changed on disk or in transfer would
            # otherwise load as (slightly) different weights without any error.
            msg[WEIGHTS_CHECKSUM_KEY] = hashlib.sha256(msg["state"]).hexdigest()
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "MBertShim":
        try:
            msg = srsly.msgpack_loads(bytes_data)
            config_dict, tok_dict = msg["config"], dict(msg["tokenizer"])
        except Exception as error:  # msgpack raises several unrelated types
            raise UserError(
                f"The transformer weights are corrupted or truncated ({type(error).__name__}: "
                f"{_first_line(error)}); re-save or re-download the pipeline."
            ) from None
        if not config_dict:
            self._hfmodel = HFObjects(
                None, None, None, msg["_init_tokenizer_config"], msg["_init_transformer_config"]
            )
            return self
        # Weights in their own file: their checksum is computed alongside what follows.
        check = _start_weights_check(self, msg) if msg.get(WEIGHTS_FILE_KEY) else None
        with make_tempdir() as temp_dir:
            config_file = temp_dir / "config.json"
            srsly.write_json(config_file, config_dict)
            config = self.config_cls.from_pretrained(str(config_file))
            tok_kwargs = tok_dict.pop("kwargs", {})
            for file_name, data in tok_dict.items():
                (temp_dir / file_name).write_bytes(data)
            tokenizer = self.tokenizer_cls.from_pretrained(str(temp_dir), **tok_kwargs)
            vocab_file_contents = _vocab_file_contents(tokenizer)
        device = get_torch_default_device()
        if check is not None:
            state = _read_weights_file(check, device)
        else:
            check_weights_checksum(msg)
            state = None
        try:
            if state is None:
                # pop: the serialized weights are freed as soon as they are read.
                state = torch.load(BytesIO(msg.pop("state")), map_location=device, weights_only=True)
            transformer = _build_with_weights(self.model_cls, config, state)
        except Exception as error:
            if check is not None:
                check.verify()  # changed bytes explain a failure best
            raise UserError(
                f"The transformer weights in this pipeline could not be read ({type(error).__name__}: "
                f"{_first_line(error)}); the file is corrupted, truncated or from an incompatible "
                f"model. Re-save or re-download the pipeline."
            ) from None
        if check is not None:
            check.verify()
        transformer.to(device)
        self._model = transformer
        self._hfmodel = HFObjects(tokenizer, transformer, vocab_file_contents, SimpleFrozenDict(), SimpleFrozenDict())
        return self


def _start_weights_check(shim: "MBertShim", msg: Dict) -> ChecksumCheck:
    """Start checking the weights file of a shim saved by a component's to_disk (see weights_file.py)."""
    if shim.weights_path is None:
        raise UserError(
            f"These weights were saved to a separate file ({msg[WEIGHTS_FILE_KEY]}) by to_disk, so they "
            f"load only from the pipeline directory: use spacy.load(path) or from_disk(path), not from_bytes."
        )
    return ChecksumCheck(shim.weights_path.parent / str(msg[WEIGHTS_FILE_KEY]), msg.get(WEIGHTS_CHECKSUM_KEY))


def _read_weights_file(check: ChecksumCheck, device) -> Dict[str, torch.Tensor]:
    """The weights of the file ``check`` is checking, memory-mapped."""
    try:
        return read_state(check.path, device=device, check=check)
    except UserError:
        raise
    except Exception as error:  # torch raises many unrelated types for a damaged zip
        raise UserError(
            f"The transformer weights file {check.path} could not be read ({type(error).__name__}: "
            f"{_first_line(error)}); it is corrupted or truncated. Re-save or re-download the pipeline."
        ) from None


def _build_with_weights(model_cls, config, state: Dict[str, torch.Tensor]):
    """The network of ``config`` whose parameters *are* the loaded tensors.

    Building it normally would first fill every parameter with random values (a
    second copy of the weights, and seconds of work for a large model) only to
    overwrite them. Instead the parameters are left unfilled and the loaded
    tensors are assigned to them; ties between weights (an output layer tied to
    the word embeddings, BERTShare) are then restored, since assigning replaces
    the tied parameter objects one by one.
    """
    from transformers.modeling_utils import no_init_weights

    cls = _model_class(model_cls, config)
    with no_init_weights():
        transformer = cls._from_config(config) if cls is not model_cls else model_cls.from_config(config)
    transformer.load_state_dict(state, assign=True)
    after_load = getattr(model_cls, "after_load", None)
    if after_load is not None:
        after_load(transformer)
    if hasattr(transformer, "tie_weights"):
        transformer.tie_weights()
    return transformer


def _model_class(model_cls, config):
    """The class ``model_cls.from_config(config)`` would build.

    An auto class (``AutoModel``) finds it by asking its mapping for every model
    type it knows, which imports ~700 modules of transformers (1 s); asking for
    the config's type imports only that model's module.
    """
    mapping = getattr(model_cls, "_model_mapping", None)
    if mapping is None:
        return model_cls
    try:
        from transformers.models.auto.auto_factory import _get_model_class

        return _get_model_class(config, mapping)
    except (ImportError, KeyError, ValueError):
        return model_cls


def check_weights_checksum(msg: Dict) -> None:
    """Raise WeightsChecksumError when the saved weights are not the bytes that were saved.

    msg (Dict): A shim's saved dict. Files saved before checksums were added have
        none and are not checked.
    """
    expected = msg.get(WEIGHTS_CHECKSUM_KEY)
    if expected is None:
        return
    state = msg.get("state")
    found = hashlib.sha256(state).hexdigest() if isinstance(state, bytes) else "missing"
    if found != expected:
        raise WeightsChecksumError(
            "is corrupted: its weights do not match the SHA-256 checksum saved with them (expected "
            f"{str(expected)[:12]}…, found {found[:12]}…), so bytes changed after saving (disk or transfer "
            "error); re-save or re-download the pipeline."
        )


def _batch_rows(inputs: ArgsKwargs) -> int:
    """The batch size shared by all input tensors (0 when they do not share one)."""
    values = (*inputs.args, *inputs.kwargs.values())
    rows = {value.shape[0] for value in values if isinstance(value, torch.Tensor) and value.dim()}
    return rows.pop() if len(rows) == 1 else 0


def _slice_rows(inputs: ArgsKwargs, start: int, stop: int, n_rows: int) -> ArgsKwargs:
    def cut(value):
        is_batch = isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == n_rows
        return value[start:stop] if is_batch else value

    return ArgsKwargs(
        args=tuple(cut(value) for value in inputs.args),
        kwargs={key: cut(value) for key, value in inputs.kwargs.items()},
    )


def _take_rows(inputs: ArgsKwargs, rows: torch.Tensor, n_rows: int, width: int, keep: int) -> ArgsKwargs:
    """The given rows of every batch tensor, cut to the first ``keep`` positions."""

    def take(value):
        if not (isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == n_rows):
            return value
        value = value[rows.to(value.device)]
        return value[:, :keep] if value.dim() >= 2 and value.shape[1] == width else value

    return ArgsKwargs(
        args=tuple(take(value) for value in inputs.args),
        kwargs={key: take(value) for key, value in inputs.kwargs.items()},
    )


def _pad_sequence_dim(output, group_width: int, width: int):
    """Zero-pad (batch, sequence, ...) tensors of a model output from ``group_width`` to ``width``."""
    from transformers.utils import ModelOutput

    if isinstance(output, torch.Tensor):
        if output.dim() == 3 and output.shape[1] == group_width and group_width < width:
            return torch.nn.functional.pad(output, (0, 0, 0, width - group_width))
        return output
    if isinstance(output, ModelOutput):
        return type(output)(**{key: _pad_sequence_dim(output[key], group_width, width) for key in output.keys()})
    if isinstance(output, (tuple, list)):
        return type(output)(_pad_sequence_dim(item, group_width, width) for item in output)
    return output


def _take_output_rows(output, rows: torch.Tensor, n_rows: int):
    """Reorder the batch rows of a model output (ModelOutput, tuples of tensors, tensors)."""
    from transformers.utils import ModelOutput

    if isinstance(output, torch.Tensor):
        return output[rows.to(output.device)] if output.dim() and output.shape[0] == n_rows else output
    if isinstance(output, ModelOutput):
        return type(output)(**{key: _take_output_rows(output[key], rows, n_rows) for key in output.keys()})
    if isinstance(output, (tuple, list)):
        return type(output)(_take_output_rows(item, rows, n_rows) for item in output)
    return output


def _concat_rows(outputs: list):
    """Join the outputs of consecutive row slices (ModelOutput, tuples of tensors, tensors)."""
    from transformers.utils import ModelOutput

    head = outputs[0]
    if isinstance(head, torch.Tensor):
        return torch.cat(outputs, dim=0) if head.dim() else head
    if isinstance(head, ModelOutput):
        return type(head)(**{key: _concat_rows([output[key] for output in outputs]) for key in head.keys()})
    if isinstance(head, (tuple, list)):
        return type(head)(_concat_rows(list(items)) for items in zip(*outputs))
    return head
