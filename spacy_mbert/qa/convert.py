"""SQuAD v1.1 / v2.0 JSON -> one doc per question (``spacy-mbert convert qa``).

``data[].paragraphs[].qas[]``; optional ``"lang"`` on each article or at the top
level. ``doc.text`` is the context, ``doc._.question`` the question,
``doc._.answers`` the gold answers (``[]`` when ``is_impossible``),
``doc.user_data["qa_id"]`` the question id, and ``doc.spans["answers"]`` the
answers that align to token boundaries.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from spacy.language import Language
from spacy.tokens import Doc
from tqdm import tqdm

from ..data_files import PathLike, check_lang, check_option_lang, get_text, input_file, json_type, load_json, make_doc
from ..errors import DataFormatError

# Where the gold (converted) and predicted (component) answers are kept as spans.
ANSWER_SPANS_KEY = "answers"
ANSWER_LABEL = "ANSWER"


def read_squad(path: PathLike, *, nlp: Language, lang: Optional[str] = None) -> List[Doc]:
    """Read a SQuAD v1.1 / v2.0 JSON file into one doc per question.

    path (PathLike): SQuAD JSON file (``data[].paragraphs[].qas[]``).
    nlp (Language): Pipeline whose ``make_doc`` tokenizes the contexts.
    lang (Optional[str]): Language code for articles without a ``"lang"`` (article or top level).
    RETURNS (List[Doc]): Docs with ``_.question``, ``_.answers``, ``_.lang``, ``user_data["qa_id"]``
        and ``spans["answers"]``.
    """
    path = input_file(path)
    check_option_lang(lang)
    root = load_json(path)
    data = _squad_data(root, path)
    top_lang = _optional_lang(root, f"{path}: lang")
    seen_ids: Dict[str, str] = {}
    docs: List[Doc] = []
    for i, article in enumerate(tqdm(data, desc=path.name, unit=" articles", disable=None, leave=False)):
        docs.extend(_squad_article(article, i, path=path, nlp=nlp, lang=top_lang or lang, seen_ids=seen_ids))
    if not docs:
        raise DataFormatError(f"{path}: no questions; add qas to data[].paragraphs[]")
    return docs


def _squad_data(root: Any, path: Path) -> List[Any]:
    if not isinstance(root, dict):
        raise DataFormatError(f'{path}: expected a SQuAD JSON object {{"data": [...]}}, got {json_type(root)}')
    if "data" not in root:
        raise DataFormatError(
            f'{path}: "data" is missing; a SQuAD file looks like {{"version": "v2.0", "data": [...]}}'
        )
    if not isinstance(root["data"], list):
        raise DataFormatError(f'{path}: "data" must be a list of articles, got {json_type(root["data"])}')
    return root["data"]


def _expect_object(value: Any, where: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {json_type(value)}")
    return value


def _expect_list(obj: Dict[str, Any], field: str, where: str) -> List[Any]:
    if field not in obj:
        raise DataFormatError(f'{where}: "{field}" is missing; add it (a list)')
    if not isinstance(obj[field], list):
        raise DataFormatError(f'{where}: "{field}" must be a list, got {json_type(obj[field])}')
    return obj[field]


def _optional_lang(obj: Dict[str, Any], where: str) -> Optional[str]:
    value = obj.get("lang")
    return None if value is None else check_lang(value, where)


def _squad_article(
    article: Any, i: int, *, path: Path, nlp: Language, lang: Optional[str], seen_ids: Dict[str, str]
) -> List[Doc]:
    where = f"{path}: data[{i}]"
    article = _expect_object(article, where)
    article_lang = _optional_lang(article, f"{where}.lang") or lang
    if article_lang is None:
        raise DataFormatError(f'{where}: no language code: add a "lang" field or pass --lang XX')
    docs = []
    for j, paragraph in enumerate(_expect_list(article, "paragraphs", where)):
        pwhere = f"{where}.paragraphs[{j}]"
        paragraph = _expect_object(paragraph, pwhere)
        context = get_text(paragraph, "context", where=pwhere, what="context passage")
        qas = _expect_list(paragraph, "qas", pwhere)
        # Tokenize each context once; Doc.copy() is ~100x cheaper than make_doc.
        base = make_doc(nlp, context, pwhere) if qas else None
        for k, qa in enumerate(qas):
            loc = f"data[{i}].paragraphs[{j}].qas[{k}]"
            docs.append(_squad_doc(base, qa, path=path, loc=loc, lang=article_lang, seen_ids=seen_ids))
    return docs


def _squad_id(qa: Dict[str, Any], *, path: Path, loc: str, seen_ids: Dict[str, str]) -> str:
    where = f"{path}: {loc}"
    value = qa.get("id")
    if value is None:
        raise DataFormatError(f'{where}: "id" is missing; give every question a unique "id"')
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise DataFormatError(f'{where}: "id" must be a non-empty string, got {value!r}')
    qid = str(value)
    if qid in seen_ids:
        raise DataFormatError(
            f'{where}: duplicate question id "{qid}" (first used at {seen_ids[qid]}); give every question a unique "id"'
        )
    seen_ids[qid] = loc
    return qid


def _squad_answers(qa: Dict[str, Any], context: str, where: str) -> List[Dict[str, Any]]:
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise DataFormatError(f'{where}: "is_impossible" must be true or false, got {impossible!r}')
    answers = qa.get("answers")
    if impossible:
        if answers:
            raise DataFormatError(
                f'{where}: "is_impossible" is true but "answers" has {len(answers)} entries; empty "answers" '
                f'(SQuAD v2.0 keeps them as "plausible_answers") or set "is_impossible": false'
            )
        return []
    fix = 'add the gold answers or set "is_impossible": true'
    if answers is None:
        raise DataFormatError(f'{where}: "answers" is missing; {fix}')
    if not isinstance(answers, list):
        raise DataFormatError(f'{where}: "answers" must be a list, got {json_type(answers)}')
    if not answers:
        raise DataFormatError(f'{where}: "answers" is empty; {fix}')
    result: List[Dict[str, Any]] = []
    for a, answer in enumerate(answers):
        item = _squad_answer(answer, context, f"{where}: answers[{a}]")
        if all((item["start_char"], item["end_char"]) != (r["start_char"], r["end_char"]) for r in result):
            result.append(item)
    return result


def _squad_answer(answer: Any, context: str, where: str) -> Dict[str, Any]:
    """Validate one SQuAD answer; ``where`` is ``"<file>: <question>: answers[i]"``."""
    answer = _expect_object(answer, where)
    text = get_text(answer, "text", where=where, what="answer text")
    start = answer.get("answer_start")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise DataFormatError(
            f"{where}.answer_start must be a character offset (an integer >= 0), got {start!r}; fix it"
        )
    quoted = json.dumps(text, ensure_ascii=False)
    if start + len(text) > len(context):
        raise DataFormatError(
            f"{where}.answer_start={start} + the {len(text)} characters of {quoted} run past the end of the "
            f"context ({len(context)} characters); {_start_fix(context, text)}"
        )
    found = context[start : start + len(text)]
    if found != text:
        raise DataFormatError(
            f"{where}.answer_start={start} does not point at the answer text {quoted} "
            f"(context has {json.dumps(found, ensure_ascii=False)} there); {_start_fix(context, text)}"
        )
    return {"text": text, "start_char": start, "end_char": start + len(text)}


def _start_fix(context: str, text: str) -> str:
    position = context.find(text)
    if position < 0:
        return "fix answer_start or the answer text (it does not occur in the context)"
    return f"fix answer_start (the text first occurs at {position})"


def _squad_doc(base: Doc, qa: Any, *, path: Path, loc: str, lang: str, seen_ids: Dict[str, str]) -> Doc:
    """One doc per question: a copy of the tokenized context ``base`` with the question and answers."""
    qa = _expect_object(qa, f"{path}: {loc}")
    qid = _squad_id(qa, path=path, loc=loc, seen_ids=seen_ids)
    where = f'{path}: {loc} (id "{qid}")'
    question = get_text(qa, "question", where=where, what="question")
    answers = _squad_answers(qa, base.text, where)
    doc = base.copy()
    doc._.lang = lang
    doc._.question = question
    doc._.answers = answers
    doc.user_data["qa_id"] = qid
    spans = [
        doc.char_span(a["start_char"], a["end_char"], label=ANSWER_LABEL, alignment_mode="strict") for a in answers
    ]
    doc.spans[ANSWER_SPANS_KEY] = [span for span in spans if span is not None]
    return doc


def squad_docs(paths: Sequence[Path], *, nlp: Language, lang: Optional[str]) -> List[Doc]:
    """Docs of several SQuAD files; question ids must be unique across all of them."""
    docs: List[Doc] = []
    id_files: Dict[str, Path] = {}
    for path in paths:
        file_docs = read_squad(path, nlp=nlp, lang=lang)
        for doc in file_docs:
            qid = doc.user_data["qa_id"]
            if qid in id_files:
                raise DataFormatError(
                    f'{path}: question id "{qid}" is also used in {id_files[qid]}; give every question a unique "id"'
                )
            id_files[qid] = path
        docs.extend(file_docs)
    return docs


def qa_stats(docs: Sequence[Doc]) -> Dict[str, int]:
    """Unanswerable questions, and gold answers kept only as char offsets (no token-aligned span)."""
    unaligned = sum(len(doc._.answers) - len(doc.spans[ANSWER_SPANS_KEY]) for doc in docs)
    return {"unanswerable": sum(1 for doc in docs if not doc._.answers), "unaligned_answers": unaligned}
