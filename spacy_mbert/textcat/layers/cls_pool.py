"""``cls_pool``: one vector per doc from the wordpiece states, [CLS] included.

spacy-transformers' ``TransformerListener.v1`` pools wordpieces into spaCy
tokens and drops the special tokens, so a spaCy text classifier never sees the
[CLS] state Hugging Face classifiers are trained on. This layer reads the
wordpiece states directly and returns, per doc, ``[CLS] ⊕ Pool(h_1..h_T)``:

- ``[CLS]``: the mean over the doc's windows of each window's position-0 state
  (long docs are split into overlapping windows, each with its own [CLS]);
- ``Pool``: "mean", "max" or "mean+max" over the doc's *content* wordpieces,
  each counted exactly once: a spaCy token that falls in several overlapping
  windows contributes its wordpieces from the first window that contains it
  only (a token too long for one window, which the transformer splits over
  several windows of its own, contributes each part). Special tokens ([CLS],
  [SEP], <s>, </s>) and padding are never pooled.

A doc with no windows (empty text) gives an all-zero row; a doc with windows
but no content wordpieces (whitespace only) gives its [CLS] state and a zero
pool. The gradient goes back to exactly the positions read, as
``List[TransformerData]`` in the form the Transformer component expects from
its listeners (one entry per doc that has transformer output).
"""

from typing import Callable, List, Optional, Tuple

import numpy
from spacy_transformers.data_classes import TransformerData
from thinc.api import Model, get_array_module
from thinc.types import Floats2d, Ints1d
from transformers.file_utils import ModelOutput

from ...errors import UserError

InT = List[TransformerData]
OutT = Floats2d

POOLINGS = ("mean", "max", "mean+max")


def cls_pool(
    *,
    pooling: str = "mean",
    grad_factor: float = 1.0,
) -> Model[InT, OutT]:
    """Pool each doc's wordpiece states into ``[CLS] ⊕ Pool(content wordpieces)``.

    pooling (str): "mean" or "max" (output width 2 * nI) or "mean+max" (3 * nI)
        over the content wordpieces.
    grad_factor (float): Multiplies the gradient passed back to the transformer:
        0 freezes it with respect to this component.
    """
    check_pooling(pooling)
    return Model(
        "cls_pool",
        forward,
        init=init,
        dims={"nI": None, "nO": None},
        attrs={"pooling": pooling, "grad_factor": grad_factor},
    )


def check_pooling(pooling: str) -> None:
    """Raise a one-line UserError unless ``pooling`` is a known option."""
    if pooling not in POOLINGS:
        allowed = ", ".join(f'"{name}"' for name in POOLINGS)
        raise UserError(f'Unknown pooling "{pooling}": set pooling to one of {allowed}.')


def n_pieces(pooling: str) -> int:
    """How many widths the output has: [CLS] plus one per pooling operation."""
    return 1 + len(pooling.split("+"))


def init(model: Model[InT, OutT], X: Optional[InT] = None, Y=None) -> None:
    if model.has_dim("nI") is None and X is not None:
        width = _batch_width(X)
        if width is not None:
            model.set_dim("nI", width)
    if model.has_dim("nI") and model.has_dim("nO") is None:
        model.set_dim("nO", n_pieces(model.attrs["pooling"]) * model.get_dim("nI"))


def forward(model: Model[InT, OutT], trf_datas: InT, is_train: bool) -> Tuple[OutT, Callable]:
    ops = model.ops
    xp = ops.xp
    reductions = model.attrs["pooling"].split("+")
    grad_factor = model.attrs["grad_factor"]
    width = _batch_width(trf_datas)
    if width is None:
        width = model.get_dim("nI") if model.has_dim("nI") else 0
    Y = ops.alloc2f(len(trf_datas), n_pieces(model.attrs["pooling"]) * width)
    # Per doc with output: (row in Y, flat indices of its [CLS] states, flat
    # indices of its content wordpieces, argmax per column for max pooling).
    selections: List[Tuple[int, Ints1d, Ints1d, Optional[Ints1d]]] = []
    for i, trf_data in enumerate(trf_datas):
        hidden = _hidden(trf_data)
        if hidden is None or hidden.size == 0:
            continue  # Empty doc: all-zero row.
        n_windows, seq_len = hidden.shape[0], hidden.shape[1]
        states = hidden.reshape((n_windows * seq_len, width))
        cls_idx = ops.asarray1i(numpy.arange(n_windows, dtype="i") * seq_len)
        content_idx = ops.asarray1i(content_positions(trf_data))
        Y[i, :width] = states[cls_idx].astype("float32").mean(axis=0)
        which = None
        if len(content_idx):
            content = states[content_idx].astype("float32")
            for k, reduction in enumerate(reductions, start=1):
                if reduction == "mean":
                    Y[i, k * width : (k + 1) * width] = content.mean(axis=0)
                else:
                    which = content.argmax(axis=0)
                    Y[i, k * width : (k + 1) * width] = content[which, xp.arange(width)]
        selections.append((i, cls_idx, content_idx, which))

    def backprop(dY: OutT) -> List[TransformerData]:
        d_by_doc = {}
        for i, cls_idx, content_idx, which in selections:
            hidden = _hidden(trf_datas[i])
            d_states = ops.alloc2f(hidden.shape[0] * hidden.shape[1], width)
            d_states[cls_idx] = dY[i, :width] / len(cls_idx)
            if len(content_idx):
                d_content = ops.alloc2f(len(content_idx), width)
                for k, reduction in enumerate(reductions, start=1):
                    d_k = dY[i, k * width : (k + 1) * width]
                    if reduction == "mean":
                        d_content += d_k / len(content_idx)
                    else:
                        d_content[which, xp.arange(width)] += d_k
                # [CLS] positions and content positions never coincide.
                d_states[content_idx] += d_content
            if grad_factor != 1.0:
                d_states *= grad_factor
            d_by_doc[i] = d_states.reshape(hidden.shape).astype(hidden.dtype, copy=False)
        d_trf_datas: List[TransformerData] = []
        for i, trf_data in enumerate(trf_datas):
            hidden = _hidden(trf_data)
            if hidden is None:
                # Empty doc: the transformer produced nothing for it, and the
                # Transformer component expects no gradient entry for it.
                continue
            d_hidden = d_by_doc.get(i)
            if d_hidden is None:
                d_hidden = ops.alloc(hidden.shape, dtype=hidden.dtype)
            d_trf_datas.append(
                TransformerData(
                    model_output=ModelOutput(last_hidden_state=d_hidden),
                    wordpieces=trf_data.wordpieces,
                    align=trf_data.align,
                )
            )
        return d_trf_datas

    return Y, backprop


def content_positions(trf_data: TransformerData) -> numpy.ndarray:
    """Flat indices (into n_windows * seq_len) of the content wordpieces to pool.

    Each spaCy token's wordpieces are taken from the first window that contains
    the token, so wordpieces in the overlap of two windows are counted once.
    A token whose first window holds nothing else is one the transformer may
    have split over several such windows (``spacy_mbert.encoder.windows.fit_windows``:
    one token longer than a window): its wordpieces in every window that holds
    only it are taken. [CLS] (position 0 of each window), other special tokens
    (never aligned to a spaCy token) and padding are excluded. Sorted, without
    duplicates; computed on the CPU.
    """
    hidden = _hidden(trf_data)
    if hidden is None or hidden.size == 0:
        return numpy.zeros((0,), dtype="i")
    seq_len = hidden.shape[1]
    flat = _to_numpy(trf_data.align.dataXd).astype("int64").ravel()
    lengths = _to_numpy(trf_data.align.lengths).astype("int64")
    if flat.size == 0:
        return numpy.zeros((0,), dtype="i")
    token = numpy.repeat(numpy.arange(lengths.shape[0]), lengths)
    window = flat // seq_len
    first_window = numpy.full((lengths.shape[0],), numpy.iinfo("int64").max, dtype="int64")
    numpy.minimum.at(first_window, token, window)
    # Windows that hold the wordpieces of one token only (a token split over rows).
    pairs = numpy.unique(window * lengths.shape[0] + token)
    tokens_in_window = numpy.bincount(pairs // lengths.shape[0], minlength=int(window.max()) + 1)
    alone = tokens_in_window[window] == 1
    keep_window = (window == first_window[token]) | (alone & (tokens_in_window[first_window[token]] == 1))
    selected = flat[keep_window]
    position = selected % seq_len
    keep = position != 0
    mask = getattr(trf_data.wordpieces, "attention_mask", None)
    if mask is not None and _to_numpy(mask).size:
        keep &= _to_numpy(mask).reshape(-1)[selected] > 0
    return numpy.unique(selected[keep]).astype("i")


def _hidden(trf_data: TransformerData):
    """The (n_windows, seq_len, width) states, or None for a doc without output."""
    if not isinstance(trf_data, TransformerData):
        raise TypeError(
            f"cls_pool expects spacy_transformers TransformerData, got {type(trf_data).__name__}; "
            f"put a transformer component with a spacy-transformers model before this one."
        )
    if "last_hidden_state" not in trf_data.model_output:
        return None
    return trf_data.model_output["last_hidden_state"]


def _batch_width(trf_datas: InT) -> Optional[int]:
    for trf_data in trf_datas:
        hidden = _hidden(trf_data)
        if hidden is not None:
            return int(hidden.shape[-1])
    return None


def _to_numpy(array) -> numpy.ndarray:
    xp = get_array_module(array)
    return array.get() if xp is not numpy and hasattr(array, "get") else numpy.asarray(array)
