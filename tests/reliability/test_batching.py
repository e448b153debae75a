"""Batching and processes (issue #9, part 3): ``nlp.pipe`` returns every input, in order,
with the same output, for batch sizes 1..N, with ``n_process=2``, and for a mix of empty,
short and long docs.

``n_process=2`` is tested with the platform's default start method (fork on Linux) in this
process, and with "spawn" (the default on macOS and Windows) in a fresh interpreter (slow).
"""

import json
import os
import subprocess
import sys

import numpy
import pytest

from .conftest import QUESTION, qa_doc

LONG = " ".join(["The old man walked to the market with his friend, code Lima."] * 80)  # ~5,000 characters
TEXTS = [
    "Hablamos de sopa con mis amigos.",
    "",
    LONG,
    "   ",
    "code Paris.",
    "我今天有点儿累。 code 北京",
    "\u200b",
    "Wir sprechen heute über Regen. " * 20,
    "x",
]
N = len(TEXTS)


def _textcat_outputs(nlp, **pipe_kwargs):
    return [(doc.text, doc.cats) for doc in nlp.pipe(TEXTS, **pipe_kwargs)]


def _qa_outputs(nlp, **pipe_kwargs):
    docs = [qa_doc(nlp, text, QUESTION if i % 3 else "Was ist der Code?") for i, text in enumerate(TEXTS)]
    return [
        (doc.text, doc._.answers, [(span.start_char, span.end_char) for span in doc.spans["answers"]])
        for doc in nlp.pipe(docs, **pipe_kwargs)
    ]


def _translator_outputs(nlp, **pipe_kwargs):
    return [(doc.text, doc._.translation) for doc in nlp.pipe(TEXTS, **pipe_kwargs)]


def _assert_same_cats(got, want):
    assert [text for text, _ in got] == [text for text, _ in want] == TEXTS
    for (text, cats), (_, expected) in zip(got, want):
        assert list(cats) == list(expected)
        # "" included: all zeros alone in a batch and in a mixed one.
        numpy.testing.assert_allclose(list(cats.values()), list(expected.values()), atol=1e-5)


def _assert_same_answers(got, want):
    assert [text for text, *_ in got] == [text for text, *_ in want] == TEXTS
    for (_, answers, spans), (_, expected, expected_spans) in zip(got, want):
        assert [(a["text"], a["start_char"], a["end_char"]) for a in answers] == [
            (a["text"], a["start_char"], a["end_char"]) for a in expected
        ]
        assert [a["score"] for a in answers] == pytest.approx([a["score"] for a in expected], abs=1e-4)
        assert spans == expected_spans


@pytest.mark.parametrize("batch_size", range(1, N + 1))
def test_textcat_pipe_is_complete_ordered_and_batch_independent(textcat_nlp, batch_size):
    _assert_same_cats(_textcat_outputs(textcat_nlp, batch_size=batch_size), _textcat_outputs(textcat_nlp, batch_size=N))


@pytest.mark.parametrize("batch_size", range(1, N + 1))
def test_qa_pipe_is_complete_ordered_and_batch_independent(qa_nlp, batch_size):
    expected = _qa_outputs(qa_nlp, batch_size=N)
    assert any(answers for _, answers, _ in expected)  # there are answers to compare
    _assert_same_answers(_qa_outputs(qa_nlp, batch_size=batch_size), expected)


@pytest.mark.parametrize("batch_size", range(1, N + 1))
def test_translator_pipe_is_complete_ordered_and_batch_independent(translator_nlp, batch_size):
    got = _translator_outputs(translator_nlp, batch_size=batch_size)
    assert got == _translator_outputs(translator_nlp, batch_size=N)
    assert [text for text, _ in got] == TEXTS


def test_generators_and_long_streams_keep_order(textcat_nlp):
    """A stream longer than several batches, given as a generator, comes back whole and in order."""
    texts = [f"{i}: " + TEXTS[i % N] for i in range(50)]
    docs = list(textcat_nlp.pipe((text for text in texts), batch_size=7))
    assert [doc.text for doc in docs] == texts


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+: fork in a threaded process
def test_n_process_2_gives_the_same_outputs(textcat_nlp, qa_nlp, translator_nlp, monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    _assert_same_cats(
        _textcat_outputs(textcat_nlp, batch_size=2, n_process=2), _textcat_outputs(textcat_nlp, batch_size=2)
    )
    _assert_same_answers(_qa_outputs(qa_nlp, batch_size=2, n_process=2), _qa_outputs(qa_nlp, batch_size=2))
    assert _translator_outputs(translator_nlp, batch_size=2, n_process=2) == _translator_outputs(
        translator_nlp, batch_size=2
    )


SPAWN_SCRIPT = """
import json, multiprocessing, sys
import torch
torch.set_num_threads(1)
import spacy
import spacy_mbert.translation.component  # where installed entry points predate the translator


def main():
    multiprocessing.set_start_method("spawn")
    texts = json.loads(sys.argv[2])
    out = {}
    for name in ("textcat", "qa", "translator"):
        nlp = spacy.load(f"{sys.argv[1]}/{name}")
        docs = [nlp.make_doc(text) for text in texts]
        for doc in docs:
            doc._.question = "What is the code?"
        runs = []
        for n_process in (1, 2):
            runs.append([
                [doc.text, doc.cats, doc._.answers, doc._.translation]
                for doc in nlp.pipe([d.copy() for d in docs], batch_size=2, n_process=n_process)
            ])
        out[name] = runs
    print(json.dumps(out))


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_n_process_2_with_spawn(textcat_nlp, qa_nlp, translator_nlp, tmp_path):
    """Workers that start a fresh interpreter (spawn: macOS/Windows default, forkserver: Python 3.14's)."""
    for name, nlp in (("textcat", textcat_nlp), ("qa", qa_nlp), ("translator", translator_nlp)):
        nlp.to_disk(tmp_path / name)
    script = tmp_path / "spawn_pipe.py"
    script.write_text(SPAWN_SCRIPT, encoding="utf8")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (single, multi) in out.items():
        assert [row[0] for row in multi] == TEXTS, name
        for (_, cats, answers, translation), (_, cats2, answers2, translation2) in zip(single, multi):
            assert cats2 == pytest.approx(cats, abs=1e-5) and translation2 == translation, name
            assert [(a["start_char"], a["end_char"]) for a in answers2 or []] == [
                (a["start_char"], a["end_char"]) for a in answers or []
            ], name
