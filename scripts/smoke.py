"""Load an installed pipeline package by name, offline, and run one example of each task.

    HF_HUB_OFFLINE=1 python scripts/smoke.py xx_mbert_multitask

Exits non-zero, with one line naming the failed checks, unless: the German football sentence
is classified ``sports`` (corpus/textcat/labels.json), the QA question gets a non-empty answer
taken from its context, and the translation is a non-empty string.

    HF_HUB_OFFLINE=1 python scripts/smoke.py xx_mbert_multitask outputs

checks only that every task ran and returned outputs of the right form (a category score per
label, answers that are spans of the context, a translation string), not what they say: for
runs of the workflow on an untrained tiny encoder, which tests the plumbing, not a model.
"""

import json
import os
import sys
from pathlib import Path

import spacy

TEXTCAT_TEXT = "Der Stürmer schoss in der letzten Minute das entscheidende Tor."
TEXTCAT_LABEL = "sports"
QA_CONTEXT = "Der Eiffelturm wurde 1889 in Paris eröffnet und ist 330 Meter hoch."
QA_QUESTION = "Wann wurde der Eiffelturm eröffnet?"
TRANSLATE_TEXT = "Ich trinke jeden Morgen einen Kaffee."


def main(name: str, outputs_only: bool = False) -> list[str]:
    """Run the checks; return the failed ones (empty when all pass)."""
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        sys.exit("✘ run with HF_HUB_OFFLINE=1: the package must not need the Hub")
    nlp = spacy.load(name)
    print(f"Loaded {name} from {nlp.path}: pipeline {nlp.pipe_names}")
    root = Path(nlp.path) if nlp.path else None
    weights = sorted(root.rglob("*.weights*.pt")) if root is not None and root.is_dir() else []
    listed = ", ".join(f"{p.relative_to(root)} ({p.stat().st_size / 1e6:.0f} MB)" for p in weights)
    print(f"Encoder weights files: {listed or 'none'}")
    failed = []

    cats = nlp(TEXTCAT_TEXT).cats
    top = max(cats, key=cats.get) if cats else None
    print(
        f"textcat  : {TEXTCAT_TEXT!r} -> {top} ({cats[top]:.2f})" if cats else f"textcat  : {TEXTCAT_TEXT!r} -> no cats"
    )
    if top is None or (top != TEXTCAT_LABEL and not outputs_only):
        failed.append(f"textcat gave {top!r}, expected {TEXTCAT_LABEL!r}")

    answers = nlp.get_pipe("mbert_qa").answer(QA_CONTEXT, QA_QUESTION)
    print(f"qa       : {QA_QUESTION!r} -> {json.dumps(answers, ensure_ascii=False)}")
    if not isinstance(answers, list):
        failed.append(f"qa gave {answers!r}, not a list of answers")
    elif answers or not outputs_only:  # outputs only: no answer is a valid output, a bad span is not
        best = answers[0] if answers else {}
        text = (best.get("text") or "").strip()
        if not text or QA_CONTEXT[best.get("start_char", 0) : best.get("end_char", 0)].strip() != text:
            failed.append(f"qa gave no answer span from the context ({best!r})")

    translation = nlp(TRANSLATE_TEXT)._.translation
    print(f"translate: {TRANSLATE_TEXT!r} -> {translation!r}")
    if not isinstance(translation, str) or (not translation.strip() and not outputs_only):
        failed.append(f"translation is empty ({translation!r})")
    return failed


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "xx_mbert_multitask"
    checks = sys.argv[2] if len(sys.argv) > 2 else "expected"
    if checks not in ("expected", "outputs"):
        sys.exit(f"✘ checks must be 'expected' or 'outputs', not {checks!r}")
    outputs_only = checks == "outputs"
    failures = main(name, outputs_only=outputs_only)
    if failures:
        sys.exit("✘ smoke check failed: " + "; ".join(failures))
    checked = "outputs of the right form (checks: outputs)" if outputs_only else "the expected outputs"
    print(f"✔ all three tasks ran offline from the installed package and gave {checked}")
