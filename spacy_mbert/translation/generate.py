"""Generation: batched beam search over length-sorted sources, long sources in sentence chunks."""

import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from thinc.api import Model

from ..batching import length_batches
from ..encoder.owned import get_shim, inference, position_limit
from ..errors import preview
from .batch import encode_sources, source_limit
from .chunks import source_chunks
from .detokenize import decode, join_words


def generation_config(
    model: Model,
    *,
    num_beams: int = 4,
    max_length: int = 64,
    length_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    **kwargs,
):
    """The ``transformers.GenerationConfig`` that :func:`translate` uses (deterministic beam search).

    max_length (int): As in Hugging Face: the longest output in decoder tokens,
        counting the decoder start token.
    kwargs: More ``GenerationConfig`` settings (e.g. ``num_return_sequences``).
    """
    from transformers import GenerationConfig

    specials = get_shim(model).special_ids()
    settings = dict(
        num_beams=num_beams,
        max_length=max_length,
        length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        do_sample=False,
        decoder_start_token_id=specials["start"],
        bos_token_id=specials["start"],
        eos_token_id=specials["eos"],
        pad_token_id=specials["pad"],
        use_cache=True,
    )
    if num_beams > 1:
        # Stop a beam search when num_beams hypotheses are finished (they cannot be beaten).
        settings["early_stopping"] = True
    settings.update(kwargs)
    return GenerationConfig(**settings)


def translate(
    model: Model,
    texts: Sequence[str],
    *,
    target_lang: Optional[str] = None,
    num_beams: int = 4,
    max_length: int = 64,
    length_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    max_source_length: int = 128,
    batch_size: int = 16,
) -> List[str]:
    """Translate ``texts`` with beam search; returns one string per text, in input order.

    Texts are sorted by length and generated ``batch_size`` at a time (little
    padding), in ``torch.inference_mode``; empty or whitespace-only texts give
    ``""`` without running the model. A text longer than ``max_source_length``
    wordpieces is translated in chunks of whole sentences (``chunks.py``), whose
    translations are joined; a sentence longer than that alone is cut between
    words, with a warning.

    target_lang (Optional[str]): Target language code, for detokenization.
    num_beams (int): Beam size; 1 is greedy decoding.
    max_length (int): Longest output in decoder tokens (start token included), per chunk.
    length_penalty (float): Exponent of the length normalization of beam scores
        (> 0 favours longer outputs).
    no_repeat_ngram_size (int): Forbid repeating n-grams of this size; 0 = off.
    max_source_length (int): Most source wordpieces translated in one piece.
    batch_size (int): Texts (chunks) per ``generate`` call.
    """
    results = [""] * len(texts)
    todo = [i for i, text in enumerate(texts) if text and text.strip()]
    if not todo:
        return results
    shim = get_shim(model)
    tokenizer = shim.tokenizer
    max_source = source_limit(shim, max_source_length)
    # (text index, source) per piece to translate: the text itself or its chunks.
    sources: List[Tuple[int, str]] = []
    lengths = _n_wordpieces(tokenizer, [texts[i] for i in todo])
    for i, n_pieces in zip(todo, lengths):
        if n_pieces <= max_source:
            sources.append((i, texts[i]))
            continue
        chunks, longest_cut = source_chunks(tokenizer, texts[i], max_source)
        if longest_cut:
            warnings.warn(
                f"mbert_translator: text {i} of the batch ({preview(texts[i])}, {len(texts[i]):,} characters) has a "
                f"sentence of {longest_cut} wordpieces, more than max_source_length ({max_source}): it is translated "
                f"in parts cut between words. Raise max_source_length (at most "
                f"{position_limit(shim.seq2seq.config.encoder)} for this encoder) to translate it whole."
            )
        sources.extend((i, chunk) for chunk in chunks)
    lengths = _n_wordpieces(tokenizer, [source for _, source in sources])
    too_long = [n for n in lengths if n > max_source]
    if too_long:  # Only where a long sentence could not be cut (a tokenizer without offsets).
        warnings.warn(
            f"mbert_translator: {len(too_long)} source(s) of up to {max(too_long)} wordpieces are cut to "
            f"max_source_length ({max_source}); the rest of them is not translated. Raise max_source_length, "
            f'or use a fast tokenizer (tokenizer_config = {{"use_fast": true}}) so long sentences are split.'
        )
    config = generation_config(
        model,
        num_beams=num_beams,
        max_length=max_length,
        length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
    )
    translations: List[str] = [""] * len(sources)
    for batch in length_batches(lengths, batch_size):
        sequences = generate_ids(model, [sources[k][1] for k in batch], config, max_source_length=max_source)
        for k, ids in zip(batch, sequences):
            translations[k] = decode(tokenizer, ids, target_lang)
    parts: Dict[int, List[str]] = {}
    for (i, _), translation in zip(sources, translations):
        parts.setdefault(i, []).append(translation)
    for i, translated in parts.items():
        results[i] = (
            translated[0] if len(translated) == 1 else join_words(translated, target_lang, only_no_space_rule=True)
        )
    return results


def _n_wordpieces(tokenizer, texts: Sequence[str]) -> List[int]:
    """Wordpieces of each text, special tokens included, without truncation."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), verbose=False)["input_ids"]]


def generate_ids(model: Model, texts: Sequence[str], config, *, max_source_length: int = 128) -> List[List[int]]:
    """Run ``generate`` on one batch; returns full-vocabulary ids per text (specials included)."""
    shim = get_shim(model)
    inputs = encode_sources(model, texts, max_source_length=max_source_length)
    with inference(model) as network:
        output = network.generate(**inputs, generation_config=config)
    sequences = output if isinstance(output, torch.Tensor) else output.sequences
    return shim.restricted_to_full(sequences).tolist()
