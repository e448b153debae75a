"""Session fixtures for the reliability tests (issue #9): small trained pipelines, built once.

- ``textcat_nlp``: ``transformer`` + exclusive ``textcat`` (``spacy-mbert.ClsPoolTextCat.v1``,
  the shipped ``configs/textcat.cfg``) trained on a toy task where one keyword decides the class,
  so its predictions depend on the text;
- ``qa_nlp``: ``mbert_qa`` trained on "the answer is the word after *code*", with small windows
  (``max_seq_length`` 64, ``doc_stride`` 16) so that long contexts have many windows;
- ``translator_nlp``: ``mbert_translator`` trained briefly on a copy task (greedy, short outputs).

All use the tiny offline encoders of ``tests/conftest.py`` and train in a few seconds each.
The fixtures return the pipelines themselves: tests must not change their settings without
restoring them.
"""

import random
from typing import Dict, List

import pytest
from spacy.training import Example
from spacy.util import fix_random_seed, load_config, load_model_from_config, minibatch

# Register the translation factory even where installed entry points predate it (no-op otherwise).
import spacy_mbert.translation.architecture  # noqa: F401
import spacy_mbert.translation.component  # noqa: F401

from ..conftest import ROOT, blank_xx

CONFIGS = ROOT / "configs"


# ------------------------------------------------------------------ textcat: one keyword decides

KEYWORDS: Dict[str, List[str]] = {
    "sports": ["football", "Fußball", "fútbol"],
    "food": ["soup", "Suppe", "sopa"],
    "weather": ["rain", "Regen", "lluvia"],
}
FRAMES = [
    "I talked about {} yesterday.",
    "Wir sprechen heute über {}.",
    "Hablamos de {} con mis amigos.",
    "{} again, said the old man.",
]
LABELS = sorted(KEYWORDS)
# 100, not 60: under spacy-mbert.AdamW.v1 (global-norm clipping) 60 steps left the keyword
# sentence at the end of a 100k-character doc moving "food" the wrong way in one full-suite run.
TEXTCAT_STEPS = 100


def textcat_examples(nlp) -> List[Example]:
    examples = []
    for label, words in KEYWORDS.items():
        for word in words:
            for frame in FRAMES:
                cats = {other: float(other == label) for other in LABELS}
                examples.append(Example.from_dict(nlp.make_doc(frame.format(word)), {"cats": cats}))
    return examples


def train_textcat(encoder_dir, steps=TEXTCAT_STEPS):
    fix_random_seed(0)
    config = load_config(
        CONFIGS / "textcat.cfg",
        overrides={
            "paths.encoder": str(encoder_dir),
            "training.max_steps": steps,
            "training.optimizer.learn_rate.warmup_steps": 2,
            "training.optimizer.learn_rate.initial_rate": 2e-3,
        },
        interpolate=True,
    )
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = textcat_examples(nlp)
    random.Random(0).shuffle(examples)
    optimizer = nlp.initialize(lambda: examples)
    for step in range(steps):
        start = (step * 12) % len(examples)
        nlp.update((examples + examples)[start : start + 12], sgd=optimizer, drop=0.1)
        optimizer.step_schedules()
    return nlp


@pytest.fixture(scope="session")
def textcat_nlp(tiny_wordpiece_dir):
    """The shipped textcat config on the tiny encoder, trained until the keyword decides."""
    return train_textcat(tiny_wordpiece_dir)


# ------------------------------------------------------------------ QA: the word after "code"

QUESTION = "What is the code?"
QA_FILLER = "the old man walked to market and bought bread with his friend near river".split()
QA_ANSWERS = "Paris Berlin Madrid London Tokyo Moscow Cairo Lima Rome Oslo".split()
QA_WINDOW = {"max_seq_length": 64, "doc_stride": 16}
# Measured: with these settings the city after "code" at the end of 15k-90k-character
# contexts is found 38-40 times out of 40 (3 training seeds).
QA_EPOCHS = 20


def qa_examples(nlp, n_answerable=30, n_unanswerable=10, seed=0, max_words=120) -> List[Example]:
    """Contexts of 5 to ``max_words`` filler words (up to ~6 windows of 64 wordpieces): the model
    learns that windows without "code" point at [CLS], so long contexts do not get stray answers."""
    rng = random.Random(seed)
    examples = []
    for i in range(n_answerable + n_unanswerable):
        words = [rng.choice(QA_FILLER) for _ in range(rng.randint(5, max_words))]
        answers = []
        if i < n_answerable:
            answer = rng.choice(QA_ANSWERS)
            position = rng.randint(0, len(words))
            words[position:position] = ["code", answer]
            start = len(" ".join(words[: position + 1])) + 1
            answers = [{"text": answer, "start_char": start, "end_char": start + len(answer)}]
        text = " ".join(words) + "."
        reference = nlp.make_doc(text)
        reference._.question, reference._.answers, reference._.lang = QUESTION, tuple(answers), "en"
        predicted = nlp.make_doc(text)
        predicted._.question = QUESTION
        examples.append(Example(predicted, reference))
    return examples


def make_qa_pipeline(encoder_dir):
    nlp = blank_xx()
    model = {"name": str(encoder_dir), **QA_WINDOW}
    nlp.add_pipe("mbert_qa", config={"allow_no_answer": True, "model": model})
    return nlp


def train_qa(encoder_dir, seed=0):
    fix_random_seed(seed)
    nlp = make_qa_pipeline(encoder_dir)
    examples = qa_examples(nlp, seed=seed)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 4e-3
    rng = random.Random(seed)
    for _ in range(QA_EPOCHS):
        rng.shuffle(examples)
        for batch in minibatch(examples, 10):
            nlp.update(batch, sgd=optimizer)
    return nlp


@pytest.fixture(scope="session")
def qa_nlp(tiny_wordpiece_dir):
    return train_qa(tiny_wordpiece_dir)


def qa_doc(nlp, context: str, question: str = QUESTION):
    doc = nlp.make_doc(context)
    doc._.question = question
    return doc


# ------------------------------------------------------------------ translation: copy task

COPY_TEXTS = [
    "Where is the nearest train station?",
    "我今天有点儿累。",
    "Das Wetter ist heute sehr schön.",
    "¿Dónde está el museo?",
]
TRANSLATOR_SETTINGS = {"num_beams": 1, "max_length": 12, "target_lang": "en"}


def make_translator_pipeline(encoder_dir):
    nlp = blank_xx()
    nlp.add_pipe("mbert_translator", config={"model": {"name": str(encoder_dir)}, **TRANSLATOR_SETTINGS})
    return nlp


def train_translator(encoder_dir, steps=30):
    fix_random_seed(0)
    nlp = make_translator_pipeline(encoder_dir)
    examples = []
    for text in COPY_TEXTS:
        gold = nlp.make_doc(text)
        gold._.translation = text
        examples.append(Example(nlp.make_doc(text), gold))
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 2e-3
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp


@pytest.fixture(scope="session")
def translator_nlp(tiny_wordpiece_dir):
    return train_translator(tiny_wordpiece_dir)
