"""The ``mbert_qa`` component: extractive question answering, trainable with ``spacy train``.

Set ``doc._.question``, run the pipeline, read ``doc._.answers`` (best first,
``{"text", "start_char", "end_char", "score"}``, exact character offsets into
``doc.text``) and ``doc.spans["answers"]``. For many questions about one text,
``nlp.get_pipe("mbert_qa").answer(context, questions)`` skips building docs and
tokenizes the context once.

Training follows Hugging Face's ``run_qa.py``: each (question, context) pair is
split into overlapping windows, each window is trained to point its start and
end at the first gold answer, or at [CLS] when the answer is not inside it, and
the loss is the mean of the start and end cross-entropies over all windows.
"""

from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..batching import length_batches
from ..encoder.loading import DEFAULT_ENCODER
from ..encoder.owned import OwnedEncoderPipe, get_shim
from ..errors import UserError
from ..extensions import has_text, install_extensions
from .convert import ANSWER_LABEL, ANSWER_SPANS_KEY
from .decoding import Prediction, best_null_threshold, decode
from .features import Window, encode_pairs, pad_windows
from .scorer import f1, gold_texts, max_over_golds, score_qa

DEFAULT_CONFIG_STR = f"""
[mbert_qa]
max_answer_length = 30
n_best_size = 20
top_k = 1
allow_no_answer = false
null_threshold = 0.0
align_to_words = true
batch_size = 8
max_batch_windows = 32
sort_buffer = 256

[mbert_qa.model]
@architectures = "spacy-mbert.QuestionAnswering.v1"
name = "{DEFAULT_ENCODER}"
max_seq_length = 384
doc_stride = 128
mixed_precision = false
grad_scaler_config = {{}}
tokenizer_config = {{"use_fast": true}}
transformer_config = {{}}

[mbert_qa.scorer]
@scorers = "spacy-mbert.qa_scorer.v1"
"""

DEFAULT_CONFIG = Config().from_str(DEFAULT_CONFIG_STR)


@Language.factory(
    "mbert_qa",
    assigns=["doc._.answers", "doc.spans"],
    default_config=DEFAULT_CONFIG["mbert_qa"],
    default_score_weights={"qa_f1": 1.0, "qa_exact": 0.0, "qa_per_lang": None},
)
def make_qa(
    nlp: Language,
    name: str,
    model: Model,
    max_answer_length: int,
    n_best_size: int,
    top_k: int,
    allow_no_answer: bool,
    null_threshold: float,
    align_to_words: bool,
    batch_size: int,
    max_batch_windows: int,
    sort_buffer: int,
    scorer: Optional[Callable],
) -> "QuestionAnswerer":
    """Construct an extractive question answering component (it runs its encoder itself: own copy or shared base).

    model (Model): A ``spacy-mbert.QuestionAnswering.v1`` model (encoder, window size and stride).
    max_answer_length (int): Longest answer, in wordpieces.
    n_best_size (int): Start/end candidates per window, and size of the n-best list.
    top_k (int): Answers per question in ``doc._.answers`` (best first).
    allow_no_answer (bool): SQuAD 2.0 mode: answer only when the best span beats the
        "no answer" score; otherwise always give the best span.
    null_threshold (float): Added to the "no answer" score (higher: more "no answer");
        tune it on dev data with ``QuestionAnswerer.tune_null_threshold``.
    align_to_words (bool): Grow answers that cut a word ("scor" of "scoring") to the
        whole word, as the Hugging Face pipeline does; not in scripts written without
        spaces (Chinese, Japanese, Thai, ...). Offsets stay exact either way.
    batch_size (int): Windows per encoder forward pass when predicting; they are sorted
        by length and each batch is padded to its longest, so small batches pad least
        (8 is fastest on CPU; on a GPU larger batches, e.g. 64, use it better).
    max_batch_windows (int): Windows per encoder forward/backward pass when training
        (bounds memory; the gradient is still that of the whole batch).
    sort_buffer (int): In ``nlp.pipe``, docs read ahead (at least ``batch_size``) whose
        windows are batched by length together (less padding); docs still come out
        in input order. 0: ``nlp.pipe``'s batch_size.
    scorer (Optional[Callable]): Scoring method; SQuAD EM/F1 per language by default.
    """
    return QuestionAnswerer(
        nlp.vocab,
        model,
        name,
        max_answer_length=max_answer_length,
        n_best_size=n_best_size,
        top_k=top_k,
        allow_no_answer=allow_no_answer,
        null_threshold=null_threshold,
        align_to_words=align_to_words,
        batch_size=batch_size,
        max_batch_windows=max_batch_windows,
        sort_buffer=sort_buffer,
        scorer=scorer,
    )


class QuestionAnswerer(OwnedEncoderPipe):
    """Answer ``doc._.question`` with a span of ``doc.text``."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "mbert_qa",
        *,
        max_answer_length: int = 30,
        n_best_size: int = 20,
        top_k: int = 1,
        allow_no_answer: bool = False,
        null_threshold: float = 0.0,
        align_to_words: bool = True,
        batch_size: int = 8,
        max_batch_windows: int = 32,
        sort_buffer: int = 256,
        scorer: Optional[Callable] = score_qa,
    ):
        """See ``make_qa`` for the arguments."""
        install_extensions()
        for setting, value in (
            ("max_answer_length", max_answer_length),
            ("n_best_size", n_best_size),
            ("top_k", top_k),
            ("batch_size", batch_size),
            ("max_batch_windows", max_batch_windows),
        ):
            if value < 1:
                raise UserError(f"'{name}': {setting} must be at least 1, got {value}; fix the component's config")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg = {
            "max_answer_length": max_answer_length,
            "n_best_size": n_best_size,
            "top_k": top_k,
            "allow_no_answer": allow_no_answer,
            "null_threshold": float(null_threshold),
            "align_to_words": align_to_words,
            "batch_size": batch_size,
            "max_batch_windows": max_batch_windows,
        }
        # An attribute, not in cfg: a prediction setting that a loaded pipeline's config can change.
        self.sort_buffer = sort_buffer

    # ------------------------------------------------------------------ prediction

    @property
    def tokenizer(self):
        """The encoder's Hugging Face tokenizer."""
        return get_shim(self.model)._hfmodel.tokenizer

    def predict(self, docs: Iterable[Doc]) -> List[Prediction]:
        """Answer each doc's ``_.question``; docs without one (or with an empty text) are passed over.

        Silently: in a multitask pipeline most docs are not questions. Evaluation warns
        instead, where a missing question means lost data (``scorer.py``).
        """
        docs = list(docs)
        asked = [i for i, doc in enumerate(docs) if has_text(doc._.question) and doc.text.strip()]
        predictions = [Prediction() for _ in docs]
        found = self._predict_pairs([docs[i]._.question for i in asked], [docs[i].text for i in asked])
        for i, prediction in zip(asked, found):
            predictions[i] = prediction
        return predictions

    def set_annotations(self, docs: Iterable[Doc], predictions: Sequence[Prediction]) -> None:
        """Set ``doc._.answers`` and ``doc.spans["answers"]`` (the answers that align to tokens)."""
        for doc, prediction in zip(docs, predictions):
            answers = [dict(answer) for answer in prediction.answers]
            doc._.answers = answers
            spans, scores = [], []
            for answer in answers:
                # The offsets are the truth; a span is added only where tokens match them exactly.
                span = doc.char_span(
                    answer["start_char"], answer["end_char"], label=ANSWER_LABEL, alignment_mode="strict"
                )
                if span is not None:
                    spans.append(span)
                    scores.append(answer["score"])
            doc.spans[ANSWER_SPANS_KEY] = SpanGroup(doc, name=ANSWER_SPANS_KEY, spans=spans, attrs={"scores": scores})

    def answer(
        self, context: str, questions: Union[str, Sequence[str]], top_k: Optional[int] = None
    ) -> Union[List[Dict], List[List[Dict]]]:
        """Answer several questions about one text, in a batch (the text is tokenized once).

        context (str): The text to find the answers in.
        questions (Union[str, Sequence[str]]): One question, or a list of them.
        top_k (Optional[int]): Answers per question; the component's ``top_k`` by default.
        RETURNS: For a list of questions, one list of answers per question; for a single
            question, its list of answers. Answers are ``{"text", "start_char", "end_char",
            "score"}``, best first; [] for no answer.
        """
        single = isinstance(questions, str)
        questions = [questions] if single else list(questions)
        results: List[List[Dict]] = [[] for _ in questions]
        asked = [i for i, question in enumerate(questions) if has_text(question)] if context.strip() else []
        found = self._predict_pairs([questions[i] for i in asked], [context] * len(asked), top_k=top_k)
        for i, prediction in zip(asked, found):
            results[i] = prediction.answers
        return results[0] if single else results

    def _predict_pairs(
        self,
        questions: Sequence[str],
        contexts: Sequence[str],
        *,
        top_k: Optional[int] = None,
        allow_no_answer: Optional[bool] = None,
    ) -> List[Prediction]:
        if not questions:
            return []
        windows = self._encode(questions, contexts)
        starts, ends = self._logits(windows)
        by_example: List[List[int]] = [[] for _ in questions]
        for w, window in enumerate(windows):
            by_example[window.example].append(w)
        cfg = self.cfg
        return [
            decode(
                contexts[i],
                [starts[w] for w in ws],
                [ends[w] for w in ws],
                [windows[w].offsets for w in ws],
                n_best_size=cfg["n_best_size"],
                max_answer_length=cfg["max_answer_length"],
                top_k=cfg["top_k"] if top_k is None else top_k,
                allow_no_answer=cfg["allow_no_answer"] if allow_no_answer is None else allow_no_answer,
                null_threshold=cfg["null_threshold"],
                align_to_words=cfg.get("align_to_words", True),
            )
            for i, ws in enumerate(by_example)
        ]

    def _encode(self, questions, contexts, answers=None) -> List[Window]:
        attrs = self.model.attrs
        return encode_pairs(
            self.tokenizer,
            questions,
            contexts,
            answers=answers,
            max_seq_length=attrs["max_seq_length"],
            doc_stride=attrs["doc_stride"],
        )

    def _logits(self, windows: List[Window]) -> Tuple[List[numpy.ndarray], List[numpy.ndarray]]:
        """Start/end logits per window (trimmed to its length), in input order.

        Windows run longest first, in batches of similar length, so padding is minimal.
        """
        starts: List[numpy.ndarray] = [None] * len(windows)  # type: ignore[list-item]
        ends: List[numpy.ndarray] = [None] * len(windows)  # type: ignore[list-item]
        pad_id = self._pad_id()
        for chunk in length_batches([len(window) for window in windows], self.cfg["batch_size"]):
            batch = pad_windows([windows[w] for w in chunk], pad_id)
            start_logits, end_logits = self.model.predict(batch)
            start_logits = self.model.ops.to_numpy(start_logits)
            end_logits = self.model.ops.to_numpy(end_logits)
            for row, (w, length) in enumerate(zip(chunk, batch.lengths)):
                starts[w] = start_logits[row, :length]
                ends[w] = end_logits[row, :length]
        return starts, ends

    def _pad_id(self) -> int:
        pad_id = self.tokenizer.pad_token_id
        return 0 if pad_id is None else pad_id

    # ------------------------------------------------------------------ training

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Load the encoder (``model.name``) and check that the examples carry questions."""
        validate_get_examples(get_examples, "QuestionAnswerer.initialize")
        # nlp.initialize() without data passes placeholder examples: only check QA data.
        sample = [eg for _, eg in zip(range(50), get_examples()) if eg.reference._.answers is not None]
        if sample and not any(has_text(_question_of(eg)) for eg in sample):
            raise UserError(
                f"'{self.name}': the training examples have gold answers but no doc._.question; "
                f"create the data with `spacy-mbert convert qa` and read it with spacy-mbert.Corpus.v1."
            )
        self.model.initialize()

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples with ``reference._.question`` and ``reference._.answers``.

        The encoder's own dropout (``hidden_dropout_prob`` in its config) applies, as in
        Hugging Face; ``drop`` sets the rate of thinc dropout layers, of which there are none.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "QuestionAnswerer.update")
        windows = self.training_windows(examples)
        if not windows:
            return losses
        set_dropout_rate(self.model, drop)
        pad_id = self._pad_id()
        lengths = [len(window) for window in windows]
        for chunk in length_batches(lengths, self.cfg["max_batch_windows"], longest_first=False):
            chunk_windows = [windows[w] for w in chunk]
            batch = pad_windows(chunk_windows, pad_id)
            logits, backprop = self.model.begin_update(batch)
            loss, d_logits = self.get_loss(
                examples, (chunk_windows, batch.attention_mask, logits), n_windows=len(windows)
            )
            backprop(d_logits)
            losses[self.name] += loss
        if sgd is not None:
            self.finish_update(sgd)
        return losses

    def training_windows(self, examples: Sequence[Example]) -> List[Window]:
        """The windows of the examples' questions, with start/end targets from the first gold answer."""
        questions, contexts, answers = [], [], []
        for eg in examples:
            question = _question_of(eg)
            if not has_text(question) or not eg.reference.text.strip():
                continue
            gold = list(eg.reference._.answers or [])
            questions.append(question)
            contexts.append(eg.reference.text)
            answers.append((gold[0]["start_char"], gold[0]["end_char"]) if gold else None)
        if not questions:
            return []
        return self._encode(questions, contexts, answers)

    def get_loss(self, examples: Iterable[Example], scores, *, n_windows: Optional[int] = None):
        """Mean of the start and end cross-entropies over the windows, and its gradient.

        scores: ``(windows, attention_mask, (start_logits, end_logits))`` of one forward pass.
        n_windows (Optional[int]): Windows in the whole batch (the mean is over all of them
            when a batch is run in several passes); ``len(windows)`` by default.
        RETURNS (Tuple[float, Tuple[Floats2d, Floats2d]]): The loss and ``(d_start, d_end)``.
        """
        windows, attention_mask, (start_logits, end_logits) = scores
        ops = self.model.ops
        n_windows = n_windows or len(windows)
        mask = ops.asarray2f(attention_mask.astype("float32"))
        starts = ops.asarray1i([w.start_position for w in windows])
        ends = ops.asarray1i([w.end_position for w in windows])
        start_loss, d_start = _cross_entropy(ops, start_logits, mask, starts)
        end_loss, d_end = _cross_entropy(ops, end_logits, mask, ends)
        # HF: (CE_start + CE_end) / 2, each the mean over the windows.
        scale = 1.0 / (2 * n_windows)
        return float(start_loss + end_loss) * scale, (d_start * scale, d_end * scale)

    def tune_null_threshold(self, examples: Iterable[Example]) -> Dict[str, float]:
        """Set ``null_threshold`` to the value that maximizes F1 on ``examples`` (dev data).

        Switches ``allow_no_answer`` on, as the threshold only matters in SQuAD 2.0 mode.
        RETURNS (Dict[str, float]): ``{"null_threshold": ..., "qa_f1": ...}``, the F1 at that threshold.
        """
        pairs = [(eg, _question_of(eg)) for eg in examples]
        pairs = [(eg, q) for eg, q in pairs if has_text(q) and eg.reference.text.strip()]
        predictions = self._predict_pairs(
            [q for _, q in pairs], [eg.reference.text for eg, _ in pairs], top_k=1, allow_no_answer=False
        )
        margins, answer_f1, unanswerable = [], [], []
        for (eg, _), prediction in zip(pairs, predictions):
            golds = gold_texts(eg.reference._.answers)
            text = prediction.answers[0]["text"] if prediction.answers else ""
            margins.append(prediction.margin if prediction.answers else None)
            answer_f1.append(max_over_golds(f1, text, golds, eg.reference._.lang) if text else 0.0)
            unanswerable.append(not golds)
        threshold, best_f1 = best_null_threshold(margins, answer_f1, unanswerable)
        self.cfg["null_threshold"] = threshold
        self.cfg["allow_no_answer"] = True
        return {"null_threshold": threshold, "qa_f1": best_f1}


def _cross_entropy(ops, logits, mask, targets):
    """Cross-entropy (summed over windows) of softmax(logits) over the unpadded positions."""
    xp = ops.xp
    logits = logits + (mask - 1.0) * 1e4  # Padding gets no probability (dynamic padding = no padding).
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    rows = xp.arange(len(targets))
    loss = -log_probs[rows, targets].sum()
    d_logits = xp.exp(log_probs)
    d_logits[rows, targets] -= 1.0
    return loss, d_logits


def _question_of(eg: Example) -> Optional[str]:
    return eg.predicted._.question or eg.reference._.question
