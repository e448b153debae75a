"""Convert raw task data into ``.spacy`` files (``DocBin`` with user data).

Every converted doc carries ``doc._.lang`` so that evaluation can be broken
down per language. Each task package reads its own format
(``textcat/convert.py``, ``qa/convert.py``, ``translation/convert.py``); this
module picks the reader and writes the DocBin. Input formats:

- ``textcat``: JSON Lines, one object per line, either all exclusive
  ``{"text": "...", "label": "pos"}`` or all multilabel
  ``{"text": "...", "labels": ["a", "b"]}``; optional ``"lang"``. ``doc.cats``
  covers the whole label set (1.0 for gold labels, 0.0 for the rest).
- ``qa``: SQuAD v1.1 / v2.0 JSON (``data[].paragraphs[].qas[]``); optional
  ``"lang"`` on each article or at the top level. One doc per question:
  ``doc.text`` is the context, ``doc._.question`` the question,
  ``doc._.answers`` the gold answers (``[]`` when ``is_impossible``),
  ``doc.user_data["qa_id"]`` the question id, and ``doc.spans["answers"]`` the
  answers that align to token boundaries.
- ``translation``: ``.tsv`` with ``source<TAB>target`` per line (no header), or
  ``.jsonl`` with ``{"source": "...", "target": "..."}`` and optional
  ``"lang"``. ``doc.text`` is the source, ``doc._.translation`` the target.
  A ``.tsv`` file has no per-line language: pass ``lang`` or name the file
  ``<src>-<tgt>.tsv`` (``deu-eng.tsv``, ``de-en.tsv``); the part before the
  ``-`` is taken as the source language.

A language code on a record wins over the ``lang`` option. Blank lines are
skipped; anything else that cannot be converted raises :class:`DataFormatError`
naming the file, the line (or JSON location) and the field. Unknown JSONL
fields are ignored with one warning per file.
"""

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from .data_files import PathLike, check_option_lang
from .errors import UserError
from .extensions import install_extensions
from .qa.convert import qa_stats, read_squad, squad_docs
from .textcat.convert import read_labels, read_textcat, textcat_docs
from .translation.convert import lang_from_filename, read_pairs

__all__ = [
    "TASKS",
    "TASK_SUFFIXES",
    "convert",
    "lang_from_filename",
    "make_nlp",
    "per_lang_counts",
    "read_labels",
    "read_pairs",
    "read_squad",
    "read_textcat",
    "write_docbin",
]

TASKS = ("textcat", "qa", "translation")
# Files picked up when ``convert`` is given a directory.
TASK_SUFFIXES = {"textcat": (".jsonl",), "qa": (".json",), "translation": (".tsv", ".jsonl")}


def make_nlp() -> Language:
    """A blank ``xx`` pipeline with the BERT-aligned ``MultilingualTokenizer``."""
    install_extensions()
    return spacy.blank("xx", config={"nlp": {"tokenizer": {"@tokenizers": "spacy-mbert.MultilingualTokenizer.v1"}}})


def write_docbin(docs: Sequence[Doc], path: PathLike) -> Path:
    """Save docs, with their user data (``doc._`` values), as a ``.spacy`` file.

    docs (Sequence[Doc]): The docs to save.
    path (PathLike): Output file; parent directories are created.
    RETURNS (Path): The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return path


def convert(
    task: str,
    input_path: PathLike,
    output_path: PathLike,
    *,
    lang: Optional[str] = None,
    labels_path: Optional[PathLike] = None,
    nlp: Optional[Language] = None,
) -> Dict[str, Any]:
    """Convert a task's raw data into one ``.spacy`` file and summarize it.

    task (str): "textcat" (exclusive or multilabel, decided by the file), "qa" or "translation".
    input_path (PathLike): A data file, or a directory whose matching files (``TASK_SUFFIXES``,
        not recursive) are converted in sorted order into one output.
    output_path (PathLike): The ``.spacy`` file to write, or an existing directory
        (then ``<input stem>.spacy`` inside it).
    lang (Optional[str]): Language code for records that carry none.
    labels_path (Optional[PathLike]): textcat only: JSON list of the allowed labels.
    nlp (Optional[Language]): Pipeline for tokenization; default: ``make_nlp()``.
    RETURNS (Dict[str, Any]): {"task", "inputs", "docs", "per_lang", "output"}, plus
        "labels" and "multilabel" (textcat) or "unanswerable" and "unaligned_answers" (qa).
    """
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
    check_option_lang(lang)
    if labels_path is not None and task != "textcat":
        raise UserError(f"--labels only applies to the textcat task, not {task!r}; remove it")
    input_path = Path(input_path)
    inputs = _input_files(task, input_path)
    output = _output_file(output_path, input_path)
    nlp = nlp if nlp is not None else make_nlp()
    summary: Dict[str, Any] = {"task": task, "inputs": [str(p) for p in inputs]}
    if task == "textcat":
        labels = read_labels(labels_path) if labels_path is not None else None
        docs, label_set, multilabel = textcat_docs(inputs, nlp=nlp, lang=lang, labels=labels)
        summary.update(labels=label_set, multilabel=multilabel)
    elif task == "qa":
        docs = squad_docs(inputs, nlp=nlp, lang=lang)
        summary.update(qa_stats(docs))
    else:
        docs = [doc for path in inputs for doc in read_pairs(path, nlp=nlp, lang=lang)]
    write_docbin(docs, output)
    summary.update(docs=len(docs), per_lang=per_lang_counts(docs), output=str(output))
    return summary


def per_lang_counts(docs: Sequence[Doc]) -> Dict[str, int]:
    """Number of docs per ``doc._.lang``, sorted by language code.

    docs (Sequence[Doc]): The docs to count.
    RETURNS (Dict[str, int]): {lang: count}.
    """
    return dict(sorted(Counter(doc._.lang for doc in docs).items()))


def _input_files(task: str, path: Path) -> List[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: no such file or directory; check the input path")
    suffixes = TASK_SUFFIXES[task]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise UserError(f"{path}: no {' or '.join(suffixes)} files to convert for {task}; check the input path")
    return files


def _output_file(output_path: PathLike, input_path: Path) -> Path:
    output = Path(output_path)
    if output.is_dir():
        output = output / f"{input_path.stem}.spacy"
    if output.suffix != ".spacy":
        raise UserError(f"{output}: the output file must end in .spacy (the corpus reader only loads .spacy files)")
    return output
