"""Load an installed pipeline package by name, offline, and run one example of each task.

    HF_HUB_OFFLINE=1 python scripts/smoke.py xx_mbert_multitask

Exits non-zero when a task gives no output.
"""

import json
import os
import sys

import spacy


def main(name: str) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "run with HF_HUB_OFFLINE=1: the package must not need the Hub"
    nlp = spacy.load(name)
    print(f"Loaded {name} from {nlp.path}: pipeline {nlp.pipe_names}")

    doc = nlp("Der Stürmer schoss in der letzten Minute das entscheidende Tor.")
    top = max(doc.cats, key=doc.cats.get)
    print(f"textcat  : {doc.text!r} -> {top} ({doc.cats[top]:.2f})")

    context = "Der Eiffelturm wurde 1889 in Paris eröffnet und ist 330 Meter hoch."
    answers = nlp.get_pipe("mbert_qa").answer(context, ["Wann wurde der Eiffelturm eröffnet?"])
    print(f"qa       : {json.dumps(answers, ensure_ascii=False)}")

    doc = nlp("Ich trinke jeden Morgen einen Kaffee.")
    print(f"translate: {doc.text!r} -> {doc._.translation!r}")

    if not doc.cats or doc._.translation is None or not answers:
        sys.exit("✘ a task produced no output")
    print("✔ all three tasks ran offline from the installed package")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "xx_mbert_multitask")
