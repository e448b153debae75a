"""Building the BERT2BERT / BERTShare network from one BERT-family checkpoint.

Rothe, Narayan and Severyn (2020), "Leveraging Pre-trained Checkpoints for
Sequence Generation Tasks": the encoder is the checkpoint as it is
(``AutoModel``); the decoder is the same checkpoint loaded as a causal LM
(``is_decoder=True``) with ``add_cross_attention=True``, the cross-attention
layers being its only new weights. ``share_weights`` ties the decoder's weights
to the encoder's (:func:`share_encoder_weights`); ``targets`` restrict the
decoder's vocabulary (``vocabulary.py``).
"""

import copy
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from spacy_transformers.data_classes import HFObjects
from thinc.api import get_torch_default_device

from ..encoder.adapters import init_own_layers, share_base
from ..encoder.loading import load_pretrained, quiet_transformers
from ..errors import EncoderNotFoundError, UserError, first_line
from .vocabulary import VOCAB_MAP_KEY, build_vocab_map, restrict_decoder_vocab, set_decoder_special_ids, special_ids

# Key this package adds to the EncoderDecoderConfig (saved with the weights).
SHARE_KEY = "bert2bert_share_weights"


def build_bert2bert(
    name: str,
    *,
    tokenizer_config: Optional[Dict] = None,
    transformer_config: Optional[Dict] = None,
    share_weights: bool = False,
    targets: Optional[Sequence[str]] = None,
    init_from_pretrained: bool = True,
) -> HFObjects:
    """Build the ``EncoderDecoderModel`` and its tokenizer (see the module docstring).

    name (str): Hub name or local checkpoint directory.
    tokenizer_config, transformer_config (Optional[Dict]): As for ``load_pretrained``.
    share_weights (bool): BERTShare.
    targets (Optional[Sequence[str]]): Restrict the decoder vocabulary to the pieces
        of these texts plus the special tokens; None keeps the full vocabulary.
    init_from_pretrained (bool): False: same network, random weights.
    RETURNS (HFObjects): tokenizer, the EncoderDecoderModel, vocab file contents.
    """
    from transformers import AutoModel

    # Offline-first loading with one-line errors; gives tokenizer, config and encoder.
    loaded = load_pretrained(name, dict(tokenizer_config or {}), dict(transformer_config or {}))
    tokenizer, encoder = loaded.tokenizer, loaded.transformer
    full_config = copy.deepcopy(encoder.config)
    dec_config = copy.deepcopy(full_config)
    dec_config.is_decoder = True
    dec_config.add_cross_attention = True
    with quiet_transformers():
        if init_from_pretrained:
            decoder = _load_decoder(name, dec_config)
        else:
            # Rnd2Rnd: the same network from random weights (the seed is spaCy's).
            encoder = AutoModel.from_config(full_config)
            decoder = _causal_lm_from_config(name, dec_config)
    vocab_map = build_vocab_map(tokenizer, targets) if targets is not None else None
    if vocab_map is not None:
        decoder = restrict_decoder_vocab(decoder, vocab_map, special_ids(tokenizer, vocab_map))
    else:
        set_decoder_special_ids(decoder.config, special_ids(tokenizer, None))
    if share_weights:
        share_encoder_weights(encoder, decoder)
    seq2seq = join_encoder_decoder(encoder, decoder, tokenizer, vocab_map, share_weights=share_weights)
    seq2seq.to(get_torch_default_device())
    return HFObjects(tokenizer, seq2seq, loaded.vocab_file_contents, {}, {})


def join_encoder_decoder(encoder, decoder, tokenizer, vocab_map, *, share_weights: bool):
    """The ``EncoderDecoderModel`` of the two halves, with the special ids and this package's keys in its config."""
    from transformers import EncoderDecoderModel, GenerationConfig

    with quiet_transformers():
        seq2seq = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    specials = special_ids(tokenizer, vocab_map)
    seq2seq.config.decoder_start_token_id = specials["start"]
    seq2seq.config.bos_token_id = specials["start"]
    seq2seq.config.eos_token_id = specials["eos"]
    seq2seq.config.pad_token_id = specials["pad"]
    seq2seq.config.vocab_size = seq2seq.config.decoder.vocab_size
    setattr(seq2seq.config, VOCAB_MAP_KEY, vocab_map)
    setattr(seq2seq.config, SHARE_KEY, bool(share_weights))
    # So that a plain `seq2seq.generate(...)` (e.g. a benchmark baseline) knows the
    # special ids too; a model rebuilt by from_bytes gets them from its config.
    seq2seq.generation_config = GenerationConfig.from_model_config(seq2seq.config)
    return seq2seq


def build_bert2bert_on_base(base, *, transformer_config: Optional[Dict], targets: Sequence[str]):
    """A new BERTShare network on a shared base (``mbert_base``): for :meth:`OnBaseShim.new_network`.

    The encoder and the decoder's self-attention, feed-forward and position/type
    embeddings are the base's tensors (frozen); the cross-attention, the decoder's
    restricted word embeddings (rows of the base's) and its output layer are its own.
    """
    from transformers import AutoModel
    from transformers.modeling_utils import no_init_weights

    config = base.network_config(dict(transformer_config or {}))
    with no_init_weights():
        encoder = AutoModel.from_config(config)
    share_base(encoder, base.network)
    dec_config = copy.deepcopy(config)
    dec_config.is_decoder = True
    dec_config.add_cross_attention = True
    with no_init_weights(), quiet_transformers():
        decoder = _causal_lm_from_config(base.identity()["name"], dec_config)
    share_base(decoder.base_model, base.network)
    init_own_layers(decoder, base.network)
    vocab_map = build_vocab_map(base.tokenizer, targets)
    # A copy with the kept rows of the (base's) word embeddings; its body is made the
    # base's tensors again, so only the restricted embeddings and new layers are its own.
    decoder = restrict_decoder_vocab(decoder, vocab_map, special_ids(base.tokenizer, vocab_map))
    share_base(decoder.base_model, base.network)
    decoder.tie_weights()
    return join_encoder_decoder(encoder, decoder, base.tokenizer, vocab_map, share_weights=True)


def rebuild_bert2bert_on_base(config, base_network):
    """The saved network on the base (``rebuild`` of :class:`OnBaseShim`); own weights are loaded next."""
    from transformers import EncoderDecoderModel
    from transformers.modeling_utils import no_init_weights

    with no_init_weights(), quiet_transformers():
        seq2seq = EncoderDecoderModel(config=config)
    share_base(seq2seq.encoder, base_network)
    share_base(seq2seq.decoder.base_model, base_network)
    seq2seq.decoder.tie_weights()
    return seq2seq


def _load_decoder(name: str, dec_config):
    from transformers import AutoModelForCausalLM

    path = Path(name).expanduser()
    source = str(path) if path.is_dir() else name
    try:
        # load_pretrained has just found (or downloaded) these very files.
        return AutoModelForCausalLM.from_pretrained(source, config=dec_config, local_files_only=True)
    except ValueError as error:
        raise _not_a_decoder(name, dec_config, error) from None
    except OSError as error:
        raise EncoderNotFoundError(
            f"Could not load '{name}' as a decoder ({first_line(error, 160)}); "
            f"point `name` at a local checkpoint directory."
        ) from None


def _causal_lm_from_config(name: str, dec_config):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_config(dec_config)
    except ValueError as error:
        raise _not_a_decoder(name, dec_config, error) from None


def _not_a_decoder(name: str, config, error: Exception) -> UserError:
    return UserError(
        f"'{name}' ({getattr(config, 'model_type', '?')}) cannot be used as a decoder: transformers has no "
        f"causal-LM class with cross-attention for it ({first_line(error)}). Use a "
        f"BERT, RoBERTa or XLM-R checkpoint."
    )


def share_encoder_weights(encoder, decoder) -> List[str]:
    """BERTShare: make the decoder's weights the encoder's, where both have them with the same shape.

    Parameters are tied (the decoder module's attribute is set to the encoder's
    ``Parameter``), not modules, so the decoder keeps its own causal attention
    and key/value cache logic. Cross-attention has no encoder counterpart and
    stays the decoder's own; so do the word embeddings when the decoder's
    vocabulary is restricted (other shape).
    RETURNS (List[str]): The names (in the decoder's base model) of the shared weights.
    """
    base = decoder.base_model
    encoder_params = dict(encoder.named_parameters())
    shared = []
    for name, param in list(base.named_parameters()):
        source = encoder_params.get(name)
        if source is None or source.shape != param.shape or source is param:
            continue
        module_path, _, leaf = name.rpartition(".")
        setattr(base.get_submodule(module_path) if module_path else base, leaf, source)
        shared.append(name)
    # The output layer is tied to the decoder's word embeddings, which may now be the encoder's.
    decoder.tie_weights()
    return shared
