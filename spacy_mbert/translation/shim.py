"""``Bert2BertShim``: the MBertShim of the encoder-decoder, with the decoder's id spaces.

Saved and loaded as every MBertShim is (config + checksummed weights + tokenizer);
the encoder-decoder is rebuilt from its saved config by :class:`_Bert2BertBuilder`,
which restores the weight sharing of BERTShare. The shim also maps between the
full vocabulary (the encoder's, the tokenizer's) and the decoder's restricted one.
"""

from typing import Dict, List, Optional

import torch
from spacy_transformers.data_classes import HFObjects

from ..encoder.loading import quiet_transformers
from ..encoder.on_base import OnBaseShim
from ..encoder.shim import MBertShim
from .build import SHARE_KEY, share_encoder_weights
from .vocabulary import VOCAB_MAP_KEY, restricted_unk, special_ids


class _Bert2BertBuilder:
    """``model_cls`` for :class:`MBertShim`: rebuilds the network from its saved config."""

    @staticmethod
    def from_config(config) -> "EncoderDecoderModel":  # noqa: F821
        from transformers import EncoderDecoderModel

        with quiet_transformers():
            seq2seq = EncoderDecoderModel(config=config)
        if getattr(config, SHARE_KEY, False):
            # Tie before load_state_dict: both names of a shared weight then load
            # into the one tensor.
            share_encoder_weights(seq2seq.encoder, seq2seq.decoder)
        return seq2seq

    @staticmethod
    def after_load(seq2seq) -> None:
        """Tie the shared weights again once loaded weights were assigned (MBertShim.from_bytes)."""
        if getattr(seq2seq.config, SHARE_KEY, False):
            share_encoder_weights(seq2seq.encoder, seq2seq.decoder)


class DecoderIds:
    """The decoder's id spaces, for a shim over a ``transformers.EncoderDecoderModel`` (``_model``)."""

    # Derived from the vocabulary map; rebuilt when the wrapped model changes.
    _cache_key: Optional[object] = None
    _cache: Dict[str, object] = {}

    @property
    def seq2seq(self):
        """The ``transformers.EncoderDecoderModel``."""
        return self._model

    @property
    def tokenizer(self):
        return self._hfmodel.tokenizer

    @property
    def vocab_map(self) -> Optional[List[int]]:
        """``vocab_map[restricted id] = full id``, or None when the decoder has the full vocabulary."""
        return getattr(self._model.config, VOCAB_MAP_KEY, None)

    def _derived(self) -> Dict[str, object]:
        if self._cache_key is not self._model:
            vocab_map = self.vocab_map
            cache: Dict[str, object] = {"specials": special_ids(self.tokenizer, vocab_map)}
            if vocab_map is not None:
                full_size = max(self._model.config.encoder.vocab_size, len(self.tokenizer), max(vocab_map) + 1)
                lookup = torch.full((full_size,), restricted_unk(self.tokenizer, vocab_map), dtype=torch.long)
                map_tensor = torch.tensor(vocab_map, dtype=torch.long)
                lookup[map_tensor] = torch.arange(len(vocab_map))
                cache.update(lookup=lookup, map=map_tensor)
            self._cache, self._cache_key = cache, self._model
        return self._cache

    def special_ids(self) -> Dict[str, int]:
        """Decoder ``start``, ``eos`` and ``pad`` ids in the decoder's (restricted) id space."""
        return dict(self._derived()["specials"])

    def full_to_restricted(self, ids: torch.Tensor) -> torch.Tensor:
        """Map full-vocabulary ids to decoder ids (pieces outside the map -> restricted [UNK])."""
        lookup = self._derived().get("lookup")
        return ids if lookup is None else lookup.to(ids.device)[ids]

    def restricted_to_full(self, ids: torch.Tensor) -> torch.Tensor:
        """Map decoder ids back to full-vocabulary ids."""
        map_tensor = self._derived().get("map")
        return ids if map_tensor is None else map_tensor.to(ids.device)[ids]


class Bert2BertShim(DecoderIds, MBertShim):
    """:class:`MBertShim` over a ``transformers.EncoderDecoderModel`` (its own encoder copy).

    The saved format is MBertShim's (config + weights + tokenizer files); the
    vocabulary map and the sharing flag are part of the saved config
    (:data:`VOCAB_MAP_KEY`, :data:`SHARE_KEY`), so ``from_bytes`` restores the
    restricted decoder vocabulary and the weight sharing exactly.
    """

    def __init__(self, hf_objects: HFObjects, *, mixed_precision: bool = False, grad_scaler_config: dict = {}):
        from transformers import AutoTokenizer, EncoderDecoderConfig

        super().__init__(
            hf_objects,
            mixed_precision=mixed_precision,
            grad_scaler_config=dict(grad_scaler_config),
            config_cls=EncoderDecoderConfig,
            model_cls=_Bert2BertBuilder,
            tokenizer_cls=AutoTokenizer,
        )


class Bert2BertOnBaseShim(DecoderIds, OnBaseShim):
    """The encoder-decoder on a shared base (``on_base.py``): only its adapter and own layers are saved."""
