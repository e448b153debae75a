"""Loading an encoder: a local directory, the Hugging Face cache, then the Hub, with one-line errors.

``load_pretrained`` is what every head calls at initialization (``MBertTransformer``,
``mbert_qa``, ``mbert_translator``, ``spacy-mbert pretrain``): it tries the local
files first, downloads only when they are missing and the Hub is not switched
off (``HF_HUB_OFFLINE``), and turns huggingface_hub's pages of traceback into a
line that names the model and the fix. It also refuses tokenizer files that
belong to another model (ids that would silently mean other pieces).
"""

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

from spacy_transformers.data_classes import HFObjects
from thinc.api import get_torch_default_device

from ..errors import EncoderNotFoundError, UserError, first_line

DEFAULT_ENCODER = "bert-base-multilingual-cased"


def load_pretrained(
    name: Union[str, Path],
    tokenizer_config: Dict,
    transformer_config: Dict,
    *,
    model_cls=None,
    model_kwargs: Optional[Dict] = None,
) -> HFObjects:
    """Load tokenizer and weights from a local directory, the local cache, or the Hub.

    name (Union[str, Path]): Hub name or local checkpoint directory.
    tokenizer_config (Dict): Keyword arguments for ``AutoTokenizer.from_pretrained``.
    transformer_config (Dict): Keyword arguments for ``AutoConfig.from_pretrained``.
    model_cls: The ``transformers`` auto class to build (``AutoModel`` by default;
        e.g. ``AutoModelForQuestionAnswering`` adds a freshly initialised head).
    model_kwargs (Optional[Dict]): Keyword arguments for the model class's ``__init__``
        (e.g. ``{"add_pooling_layer": False}``); dropped for classes that do not take them.

    Raises EncoderNotFoundError (one line, with the fix) when the weights cannot be had.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    model_cls = model_cls or AutoModel
    source = _resolve_source(str(name))
    local_only = Path(source).is_dir() or hub_offline()
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
        try:
            transformer = model_cls.from_pretrained(source, config=config, **kwargs, **(model_kwargs or {}))
        except TypeError:
            if not model_kwargs:
                raise
            transformer = model_cls.from_pretrained(source, config=config, **kwargs)
    except (OSError, ValueError) as error:
        raise EncoderNotFoundError(_not_found_message(str(name), error)) from None
    transformer.to(get_torch_default_device())
    check_vocabularies_match(str(name), tokenizer, transformer.config)
    return HFObjects(tokenizer, transformer, vocab_file_contents(tokenizer))


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


def hub_offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _not_found_message(name: str, error: Exception) -> str:
    reason = first_line(error, 160) or type(error).__name__
    return (
        f"Could not load the encoder '{name}': it is not a local checkpoint directory, not in the "
        f"Hugging Face cache, and could not be downloaded ({reason}). Set the model's `name` to "
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


def vocab_file_contents(tokenizer) -> Optional[bytes]:
    # XLM-R-style fast tokenizers loaded from tokenizer.json alone have
    # `vocab_file = None`; spacy-transformers would open(None) here.
    vocab_file = getattr(tokenizer, "vocab_file", None)
    if vocab_file and Path(vocab_file).is_file():
        return Path(vocab_file).read_bytes()
    return None


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence expected load messages of transformers (e.g. "cross-attention weights newly initialized")."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
