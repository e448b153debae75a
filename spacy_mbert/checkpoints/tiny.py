"""``init-encoder tiny``: a small random BERT with a WordPiece vocabulary trained on your text.

It has M-BERT's architecture and tokenizer type (cased WordPiece, BERT's basic
splitting), at a size that builds in seconds. Tests and smoke runs use it, and
``spacy-mbert pretrain`` can train it from scratch.
"""

import json
from pathlib import Path
from typing import Iterable, Iterator, List, Sequence

from .. import errors

WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
UNIGRAM_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TOKENIZER_TYPES = ("wordpiece", "unigram")


def iter_text(path: Path) -> Iterator[str]:
    """Yield the text in a .txt/.tsv (lines, cells) or .json/.jsonl (every string value) file."""
    if not path.exists():
        raise errors.UserError(f"Text file not found: {path}. Pass existing files with --text.")
    suffix = path.suffix.lower()
    with path.open(encoding="utf8") as file:
        if suffix in (".json", ".jsonl"):
            documents = [json.load(file)] if suffix == ".json" else (json.loads(line) for line in file if line.strip())
            for document in documents:
                yield from _strings(document)
        else:
            for line in file:
                yield from (cell for cell in line.rstrip("\n").split("\t") if cell.strip())


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def build_tiny(
    out_dir: Path,
    *,
    texts: Sequence[Path],
    tokenizer_type: str = "wordpiece",
    vocab_size: int = 4000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Write a random-initialised BERT checkpoint with a WordPiece vocab trained on ``texts``.

    out_dir (Path): Directory to write (config.json, model.safetensors, tokenizer files).
    texts (Sequence[Path]): Text files to train the vocabulary on (.txt, .tsv, .json, .jsonl).
    tokenizer_type (str): "wordpiece" (M-BERT style, with vocab.txt) or "unigram" (XLM-R
        style SentencePiece Unigram saved only as tokenizer.json, like multilingual-e5).
    vocab_size (int): Upper bound on the WordPiece vocabulary size.
    hidden_size, num_layers, num_heads, intermediate_size (int): Transformer shape.
    max_position_embeddings (int): Longest input in wordpieces, including [CLS]/[SEP].
    seed (int): Seed for the random weights, so builds are reproducible.
    """
    import torch
    from transformers import BertConfig, BertModel

    if not texts:
        raise errors.UserError("init-encoder tiny needs at least one --text file to train its vocabulary on.")
    if tokenizer_type not in TOKENIZER_TYPES:
        raise errors.UserError(f"Unknown tokenizer type '{tokenizer_type}'; use one of: {', '.join(TOKENIZER_TYPES)}.")
    lines: List[str] = [line for path in texts for line in iter_text(Path(path))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = _train_wordpiece if tokenizer_type == "wordpiece" else _train_unigram
    tokenizer = train(lines, out_dir, vocab_size=vocab_size, max_length=max_position_embeddings)
    tokenizer.save_pretrained(str(out_dir))

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def _train_wordpiece(lines: List[str], out_dir: Path, *, vocab_size: int, max_length: int):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    # Cased, accents kept, CJK split: the same normalization as M-BERT (cased).
    wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False, handle_chinese_chars=True)
    wordpiece.train_from_iterator(
        _batched(lines),
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=WORDPIECE_SPECIALS,
        limit_alphabet=4000,
        show_progress=False,
    )
    vocab_path = out_dir / "vocab.txt"
    vocab_path.write_text("\n".join(_ordered_vocab(wordpiece.get_vocab())) + "\n", encoding="utf8")
    return BertTokenizerFast(
        vocab_file=str(vocab_path),
        do_lower_case=False,
        strip_accents=False,
        tokenize_chinese_chars=True,
        model_max_length=max_length,
    )


def _train_unigram(lines: List[str], out_dir: Path, *, vocab_size: int, max_length: int):
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import XLMRobertaTokenizerFast

    unigram = SentencePieceUnigramTokenizer(replacement="▁", add_prefix_space=True)
    unigram.train_from_iterator(
        _batched(lines),
        vocab_size=vocab_size,
        special_tokens=UNIGRAM_SPECIALS,
        unk_token="<unk>",
        show_progress=False,
    )
    ids = {token: unigram.token_to_id(token) for token in UNIGRAM_SPECIALS}
    unigram.post_processor = TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
    )
    # No sentencepiece model file: only tokenizer.json, as in multilingual-e5.
    return XLMRobertaTokenizerFast(
        tokenizer_object=unigram._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_length,
    )


def _ordered_vocab(vocab: dict) -> List[str]:
    return [piece for piece, _ in sorted(vocab.items(), key=lambda item: item[1])]


def _batched(lines: List[str], size: int = 1000) -> Iterable[List[str]]:
    for start in range(0, len(lines), size):
        yield lines[start : start + size]
