"""The decoder's restricted output vocabulary, and the special ids in either id space.

With M-BERT's 119k pieces (XLM-R's 250k) the decoder's output layer and softmax
dominate the cost of every decoding step on a CPU, yet a model that translates
into one target language only ever needs that language's pieces. At
``initialize`` the model keeps the pieces that occur on the target side of the
training data plus the tokenizer's special tokens (:func:`build_vocab_map`), and
gives the decoder its *own* smaller vocabulary (:func:`restrict_decoder_vocab`):
the rows of the pretrained word embeddings (and of the output bias) for the kept
piece ids are gathered into new matrices, so the decoder works entirely in
"restricted id" space (``generate`` runs natively over k ids). The map
``vocab_map[restricted id] = full id`` is stored in the model's config
(:data:`VOCAB_MAP_KEY`), so it travels with the pipeline, and turns outputs back
into pieces for detokenization. Target pieces that are not in the map (in data
seen after ``initialize``) are trained as the restricted ``[UNK]``. The encoder
always keeps the full vocabulary: any source language it knows works.
"""

import copy
from typing import Dict, List, Optional, Sequence

import torch

from ..encoder.loading import quiet_transformers
from ..errors import UserError

# Key this package adds to the EncoderDecoderConfig (saved with the weights).
VOCAB_MAP_KEY = "bert2bert_vocab_map"


def build_vocab_map(tokenizer, texts: Sequence[str]) -> List[int]:
    """The decoder's vocabulary: full ids of the pieces in ``texts`` plus all special tokens, sorted.

    Sorted order keeps the low ids of special tokens (e.g. BERT's [PAD] = 0) unchanged.
    """
    ids = set(int(i) for i in tokenizer.all_special_ids)
    texts = list(texts)
    for start in range(0, len(texts), 10000):  # bounded memory for large corpora
        for sequence in tokenizer(texts[start : start + 10000], add_special_tokens=True, truncation=False)["input_ids"]:
            ids.update(sequence)
    return sorted(int(i) for i in ids)


def restrict_decoder_vocab(decoder, vocab_map: Sequence[int], specials: Dict[str, int]):
    """A copy of ``decoder`` whose vocabulary is ``vocab_map`` (rows of the embeddings/output bias gathered).

    The decoder is rebuilt from its config with ``vocab_size = len(vocab_map)``
    (the same code path ``from_bytes`` takes, so the saved weights always fit),
    then every weight is copied; a weight with one row per full-vocabulary piece
    gets the rows of the kept pieces.
    """
    from transformers import AutoModelForCausalLM

    full_size = decoder.config.vocab_size
    config = copy.deepcopy(decoder.config)
    config.vocab_size = len(vocab_map)
    set_decoder_special_ids(config, specials)
    with quiet_transformers():
        restricted = AutoModelForCausalLM.from_config(config)
    index = torch.tensor(list(vocab_map), dtype=torch.long)
    source = decoder.state_dict()
    state = {}
    for key, target in restricted.state_dict().items():
        value = source[key]
        if value.shape != target.shape and value.shape[0] == full_size and target.shape[0] == len(vocab_map):
            value = value.index_select(0, index.to(value.device))
        state[key] = value
    restricted.load_state_dict(state)
    restricted.tie_weights()
    return restricted


def special_ids(tokenizer, vocab_map: Optional[Sequence[int]]) -> Dict[str, int]:
    """Decoder start ([CLS] / <s>), end ([SEP] / </s>) and padding ids, in the decoder's id space."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if start is None or eos is None or pad is None:
        raise UserError(
            "The tokenizer needs a start ([CLS] or <s>), an end ([SEP] or </s>) and a padding token "
            "to be used for generation."
        )
    ids = {"start": start, "eos": eos, "pad": pad}
    if vocab_map is not None:
        position = {full: restricted for restricted, full in enumerate(vocab_map)}
        ids = {key: position[value] for key, value in ids.items()}
    return ids


def restricted_unk(tokenizer, vocab_map: Sequence[int]) -> int:
    position = {full: restricted for restricted, full in enumerate(vocab_map)}
    unk = tokenizer.unk_token_id
    return position.get(unk, position[tokenizer.pad_token_id])


def set_decoder_special_ids(config, specials: Dict[str, int]) -> None:
    config.pad_token_id = specials["pad"]
    config.bos_token_id = specials["start"]
    config.eos_token_id = specials["eos"]
