"""Load an installed pipeline package by name, offline, and run one example of each task.

    HF_HUB_OFFLINE=1 python scripts/smoke.py xx_mbert_multitask

Exits non-zero, with one line naming the failed checks, unless: the German football sentence
is classified ``sports`` (corpus/textcat/labels.json), the QA question gets a non-empty answer
taken from its context, and the translation is a non-empty string.
"""

import json
import os
import sys

import spacy

TEXTCAT_TEXT = "Der Stürmer schoss in der letzten Minute das entscheidende Tor."
TEXTCAT_LABEL = "sports"
QA_CONTEXT = "Der Eiffelturm wurde 1889 in Paris eröffnet und ist 330 Meter hoch."
QA_QUESTION = "Wann wurde der Eiffelturm eröffnet?"
TRANSLATE_TEXT = "Ich trinke jeden Morgen einen Kaffee."


def main(name: str) -> list[str]:
    """Run the checks; return the failed ones (empty when all pass)."""
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        sys.exit("✘ run with HF_HUB_OFFLINE=1: the package must not need the Hub")
    nlp = spacy.load(name)
    print(f"Loaded {name} from {nlp.path}: pipeline {nlp.pipe_names}")
    failed = []

    cats = nlp(TEXTCAT_TEXT).cats
    top = max(cats, key=cats.get) if cats else None
    print(f"textcat  : {TEXTCAT_TEXT!r} -> {top} ({cats[top]:.2f})" if cats else f"textcat  : {TEXTCAT_TEXT!r} -> no cats")
    if top != TEXTCAT_LABEL:
        failed.append(f"textcat gave {top!r}, expected {TEXTCAT_LABEL!r}")

    answers = nlp.get_pipe("mbert_qa").answer(QA_CONTEXT, QA_QUESTION)
    print(f"qa       : {QA_QUESTION!r} -> {json.dumps(answers, ensure_ascii=False)}")
    best = answers[0] if answers else {}
    text = (best.get("text") or "").strip()
    if not text or QA_CONTEXT[best.get("start_char", 0):best.get("end_char", 0)].strip() != text:
        failed.append(f"qa gave no answer span from the context ({best!r})")

    translation = nlp(TRANSLATE_TEXT)._.translation
    print(f"translate: {TRANSLATE_TEXT!r} -> {translation!r}")
    if not isinstance(translation, str) or not translation.strip():
        failed.append(f"translation is empty ({translation!r})")
    return failed


if __name__ == "__main__":
    failures = main(sys.argv[1] if len(sys.argv) > 1 else "xx_mbert_multitask")
    if failures:
        sys.exit("✘ smoke check failed: " + "; ".join(failures))
    print("✔ all three tasks ran offline from the installed package and gave the expected outputs")
