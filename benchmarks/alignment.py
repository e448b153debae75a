"""How often does a wordpiece fall inside exactly one spaCy token?

Compares spacy-mbert's two tokenizers - MultilingualTokenizer (BERT-style, the
default) and PieceAlignedTokenizer (BERT-style boundaries the encoder's pieces
do not cross) - with spaCy's default ``xx`` tokenizer, for each encoder's
tokenizer, over text in many scripts: the
project's own sample (benchmarks/data/scripts.jsonl, 20 scripts) and, when
present, the SIB-200 and XQuAD text in the shared data folder.

    python benchmarks/alignment.py --encoder encoders/e5-small --encoder encoders/tiny \
        --shared-data ../shared/data --output benchmarks/results/alignment.md
"""

import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import spacy
import typer
from transformers import AutoTokenizer

from spacy_mbert.convert import make_nlp
from spacy_mbert.piece_tokenizer import PieceAlignedTokenizer
from spacy_mbert.tokenizer import pieces_crossing_tokens

HERE = Path(__file__).resolve().parent


def sample_texts(shared_data: Optional[Path], per_language: int) -> Iterator[Tuple[str, str]]:
    """Yield (group, text): the project's script sample, then shared-data text if present."""
    for line in (HERE / "data" / "scripts.jsonl").read_text(encoding="utf8").splitlines():
        record = json.loads(line)
        yield f"{record['script']}", record["text"]
    if shared_data is None:
        return
    for lang_dir in sorted((shared_data / "sib200").glob("*_*")):
        split = lang_dir / "test.jsonl"
        if split.exists():
            lines = split.read_text(encoding="utf8").splitlines()[:per_language]
            for line in lines:
                yield f"sib200:{lang_dir.name}", json.loads(line)["text"]
    for path in sorted((shared_data / "xquad").glob("xquad.*.json")):
        lang = path.name.split(".")[1]
        paragraphs = [
            p["context"] for a in json.loads(path.read_text(encoding="utf8"))["data"] for p in a["paragraphs"]
        ]
        for context in paragraphs[: max(1, per_language // 10)]:
            yield f"xquad:{lang}", context


def measure(encoder: Path, texts: List[Tuple[str, str]]) -> Dict[str, Dict[str, Tuple[int, int, int]]]:
    """Per splitter and text group: (pieces inside one token, pieces, spaCy tokens)."""
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    piece_aligned = make_nlp()
    piece_aligned.tokenizer = PieceAlignedTokenizer(piece_aligned.vocab, str(encoder))
    splitters = {
        "spacy-mbert": make_nlp(),
        "spacy-mbert piece-aligned": piece_aligned,
        "spaCy xx default": spacy.blank("xx"),
    }
    counts: Dict[str, Dict[str, List[int]]] = {name: defaultdict(lambda: [0, 0, 0]) for name in splitters}
    for group, text in texts:
        # No truncation: every piece of a long paragraph counts (verbose=False: no length warning).
        offsets = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False, verbose=False)[
            "offset_mapping"
        ]
        total = sum(1 for start, end in offsets if start < end)
        for name, nlp in splitters.items():
            doc = nlp(text)
            crossing = len(pieces_crossing_tokens(doc, offsets))
            counts[name][group][0] += total - crossing
            counts[name][group][1] += total
            counts[name][group][2] += sum(1 for token in doc if not token.is_space)
    return {name: {g: tuple(v) for g, v in groups.items()} for name, groups in counts.items()}


def main(
    encoder: List[Path] = typer.Option(..., help="Checkpoint directories whose tokenizers to measure (repeatable)."),
    shared_data: Optional[Path] = typer.Option(
        None, help="Shared evaluation data folder (sib200/, xquad/) to add more text."
    ),
    per_language: int = typer.Option(204, help="Sentences per SIB-200 language."),
    output: Optional[Path] = typer.Option(None, help="Write the markdown table here."),
):
    texts = list(sample_texts(shared_data, per_language))
    groups = sorted({group for group, _ in texts}, key=lambda g: (":" in g, g))
    lines = [
        "# Wordpieces that fall inside exactly one spaCy token",
        "",
        "A piece crossing a token boundary cannot be mapped to one token. Fewer, coarser",
        "tokens make this trivially easier (spaCy's default `xx` tokenizer leaves a Chinese",
        "sentence as one token), so the token counts are shown beside each share.",
        "",
        "- spacy-mbert: `spacy-mbert.MultilingualTokenizer.v1` (the default), splits where BERT's",
        "  basic tokenizer does;",
        "- piece-aligned: `spacy-mbert.PieceAlignedTokenizer.v1` with `encoder` set to the encoder",
        "  measured, keeps only the BERT boundaries that no piece of that encoder crosses;",
        '- spaCy xx default: `spacy.blank("xx")`.',
        "",
        "A piece counts as inside one token when its non-whitespace characters are in one token",
        "(SentencePiece's `▁` stands for the space before a word, which is no token's text).",
        "",
        f"Command: `python benchmarks/alignment.py {' '.join('--encoder ' + str(p) for p in encoder)}"
        + (f" --shared-data {shared_data}" if shared_data else "")
        + "`",
        "",
    ]
    for path in encoder:
        results = measure(path, texts)
        names = ("spacy-mbert", "spacy-mbert piece-aligned", "spaCy xx default")
        header = "".join(f" {name.replace('spacy-mbert ', '')}: inside one token | tokens |" for name in names)
        lines += [
            f"## Tokenizer of `{path.name}`",
            "",
            "| text | pieces |" + header,
            "|---|---:|" + "---:|---:|" * len(names),
        ]
        for group in groups + ["all"]:
            cells = []
            for name in names:
                inside, total, tokens = _sum(results[name], group)
                cells += [f"{100 * inside / max(total, 1):.2f}%", str(tokens)]
            lines.append(f"| {group} | {_sum(results['spacy-mbert'], group)[1]} | " + " | ".join(cells) + " |")
        lines.append("")
    report = "\n".join(lines)
    print(report)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report + "\n", encoding="utf8")


def _sum(groups: Dict[str, Tuple[int, int, int]], group: str) -> Tuple[int, int, int]:
    if group != "all":
        return groups.get(group, (0, 0, 0))
    return tuple(sum(values[i] for values in groups.values()) for i in range(3))


if __name__ == "__main__":
    typer.run(main)
