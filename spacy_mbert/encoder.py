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
  needs neither network nor cache, and a corrupted file gives a clear error.
"""

import os
from io import BytesIO
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import srsly
import torch
from spacy.tokens import Doc
from spacy.util import SimpleFrozenDict, registry
from spacy_transformers.data_classes import FullTransformerBatch, HFObjects
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.layers.transformer_model import TransformerModel
from spacy_transformers.util import make_tempdir
from thinc.api import ArgsKwargs, Model, get_torch_default_device

from .errors import EncoderNotFoundError, UserError

DEFAULT_ENCODER = "bert-base-multilingual-cased"


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
        to strided windows of 128 tokens with a stride of 96.
    tokenizer_config (dict): Keyword arguments for ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): Keyword arguments for ``AutoConfig.from_pretrained``.
    mixed_precision (bool): Run the forward pass in mixed precision (GPU).
    grad_scaler_config (dict): Settings for the gradient scaler used with mixed precision.
    """
    if get_spans is None:
        get_spans = registry.span_getters.get("spacy-transformers.strided_spans.v1")(window=128, stride=96)
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
        self.layers[0].shims[0] = MBertShim(
            self.layers[0].shims[0]._hfmodel,
            mixed_precision=mixed_precision,
            grad_scaler_config=dict(grad_scaler_config),
        )

    def from_bytes(self, bytes_data: bytes) -> "MBertTransformerModel":
        try:
            return super().from_bytes(bytes_data)
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
        return copied


def _first_line(error: Exception, limit: int = 120) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else ""


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
    """Fail early when the tokenizer can produce ids the embedding matrix does not have."""
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise UserError(
            f"Encoder '{name}': its tokenizer has {len(tokenizer)} pieces but the model's embeddings "
            f"only {vocab_size}; the tokenizer files belong to another model. Use the tokenizer "
            f"saved with these weights."
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

    def predict(self, inputs: ArgsKwargs):
        n_rows = _batch_rows(inputs)
        step = self.max_windows_per_pass
        if n_rows <= step:
            return super().predict(inputs)
        outputs = []
        for start in range(0, n_rows, step):
            outputs.append(super().predict(_slice_rows(inputs, start, start + step, n_rows)))
        return _concat_rows(outputs)

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
        weights = BytesIO()
        torch.save(self._model.state_dict(), weights)
        msg = {
            "config": hf_model.transformer.config.to_dict(),
            "state": weights.getvalue(),
            "tokenizer": tok_dict,
            "_init_tokenizer_config": {},
            "_init_transformer_config": {},
        }
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
        with make_tempdir() as temp_dir:
            config_file = temp_dir / "config.json"
            srsly.write_json(config_file, config_dict)
            config = self.config_cls.from_pretrained(str(config_file))
            tok_kwargs = tok_dict.pop("kwargs", {})
            for file_name, data in tok_dict.items():
                (temp_dir / file_name).write_bytes(data)
            tokenizer = self.tokenizer_cls.from_pretrained(str(temp_dir), **tok_kwargs)
            vocab_file_contents = _vocab_file_contents(tokenizer)
        transformer = self.model_cls.from_config(config)
        device = get_torch_default_device()
        try:
            state = torch.load(BytesIO(msg["state"]), map_location=device, weights_only=True)
            transformer.load_state_dict(state)
        except Exception as error:
            raise UserError(
                f"The transformer weights in this pipeline could not be read ({type(error).__name__}: "
                f"{_first_line(error)}); the file is corrupted, truncated or from an incompatible "
                f"model. Re-save or re-download the pipeline."
            ) from None
        transformer.to(device)
        self._model = transformer
        self._hfmodel = HFObjects(tokenizer, transformer, vocab_file_contents, SimpleFrozenDict(), SimpleFrozenDict())
        return self


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
