"""The ``mbert_translator`` component: translate ``doc.text`` into ``doc._.translation``.

One trained component translates from any source language its encoder knows
into one target language (``target_lang``). Training data are docs whose text
is the source and whose ``doc._.translation`` is the reference, as written by
``spacy-mbert convert translation``; train with ``spacy train
configs/translation.cfg``.

The component runs its encoder itself (it does not listen to a ``transformer``
component): generation needs the encoder-decoder as one network. The encoder is its
own copy, or the pipeline's shared ``mbert_base`` (the model's ``base``).
"""

from typing import Callable, Dict, Iterable, List, Optional

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer

from ..encoder.loading import DEFAULT_ENCODER
from ..encoder.owned import OwnedEncoderPipe
from ..errors import UserError
from ..extensions import has_text, install_extensions
from . import scorer as _scorer  # noqa: F401  (registers the default scorer with the factory)
from .batch import Seq2SeqBatch, make_batch
from .generate import translate

DEFAULT_CONFIG_STR = f"""
[mbert_translator]
target_lang = "en"
num_beams = 4
max_length = 64
length_penalty = 1.0
no_repeat_ngram_size = 0
max_source_length = 128
max_target_length = 64
label_smoothing = 0.1
batch_size = 16
sort_buffer = 256

[mbert_translator.model]
@architectures = "spacy-mbert.Bert2Bert.v1"
name = "{DEFAULT_ENCODER}"
share_weights = false
restrict_vocab = true
init_from_pretrained = true
tokenizer_config = {{"use_fast": true}}
transformer_config = {{}}
mixed_precision = false
grad_scaler_config = {{}}

[mbert_translator.scorer]
@scorers = "spacy-mbert.translation_scorer.v1"
bleu_tokenize = null
"""

DEFAULT_CONFIG = Config().from_str(DEFAULT_CONFIG_STR)


@Language.factory(
    "mbert_translator",
    assigns=["doc._.translation"],
    default_config=DEFAULT_CONFIG["mbert_translator"],
    default_score_weights={"translation_bleu": 0.5, "translation_chrf": 0.5, "translation_per_lang": None},
)
def make_translator(
    nlp: Language,
    name: str,
    model: Model[Seq2SeqBatch, float],
    target_lang: str,
    num_beams: int,
    max_length: int,
    length_penalty: float,
    no_repeat_ngram_size: int,
    max_source_length: int,
    max_target_length: int,
    label_smoothing: float,
    batch_size: int,
    sort_buffer: int,
    scorer: Optional[Callable],
) -> "Translator":
    """Construct a translator: a warm-started BERT2BERT encoder-decoder writing ``doc._.translation``.

    model (Model[Seq2SeqBatch, float]): The encoder-decoder, usually
        ``spacy-mbert.Bert2Bert.v1``.
    target_lang (str): Language code of the translations (e.g. "en"); selects the
        detokenization rules and the BLEU tokenizer ("zh" for Chinese, characters
        for Japanese/Thai). Saved with the model.
    num_beams (int): Beam size for generation; 1 is greedy decoding.
    max_length (int): Longest translation in wordpieces, counting the decoder start
        token (Hugging Face's ``max_length``).
    length_penalty (float): Beam scores are divided by length ** length_penalty;
        > 0 favours longer translations.
    no_repeat_ngram_size (int): Never repeat an n-gram of this size; 0 = off.
    max_source_length (int): Most source wordpieces translated in one piece: a longer
        text is translated in chunks of whole sentences, joined (a single longer
        sentence is cut between words, with a warning). Training sources are
        truncated to it.
    max_target_length (int): Reference translations are truncated to this many
        wordpieces in training (start and end token included).
    label_smoothing (float): Label smoothing of the training cross-entropy.
    batch_size (int): Docs per ``generate`` call (docs are sorted by length first).
    sort_buffer (int): In ``nlp.pipe``, docs read ahead (at least ``batch_size``) and
        sorted by length together, so each ``generate`` call gets sources of similar
        length; docs still come out in input order. 0: ``nlp.pipe``'s batch_size.
    scorer (Optional[Callable]): Scores ``doc._.translation`` against the reference
        (BLEU and chrF per source language); ``spacy-mbert.translation_scorer.v1``.
    """
    return Translator(
        nlp.vocab,
        model,
        name=name,
        target_lang=target_lang,
        num_beams=num_beams,
        max_length=max_length,
        length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        max_source_length=max_source_length,
        max_target_length=max_target_length,
        label_smoothing=label_smoothing,
        batch_size=batch_size,
        sort_buffer=sort_buffer,
        scorer=scorer,
    )


class Translator(OwnedEncoderPipe):
    """Translates each doc's text into ``doc._.translation`` (see :func:`make_translator`).

    Only ``target_lang`` is part of ``cfg`` (saved with the pipeline, passed to the
    scorer). The generation and training settings are attributes, so they can
    be changed when loading a trained pipeline, e.g.
    ``spacy.load(path, config={"components": {"mbert_translator": {"num_beams": 1}}})``.

    Training ignores spaCy's ``[training] dropout``: the encoder-decoder uses the
    dropout of its Hugging Face config (``hidden_dropout_prob`` etc., settable via
    ``transformer_config``), as the ``transformer`` component does.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model[Seq2SeqBatch, float],
        name: str = "mbert_translator",
        *,
        target_lang: str = "en",
        num_beams: int = 4,
        max_length: int = 64,
        length_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
        max_source_length: int = 128,
        max_target_length: int = 64,
        label_smoothing: float = 0.1,
        batch_size: int = 16,
        sort_buffer: int = 256,
        scorer: Optional[Callable] = None,
    ):
        install_extensions()
        _check_settings(
            target_lang=target_lang,
            num_beams=num_beams,
            max_length=max_length,
            no_repeat_ngram_size=no_repeat_ngram_size,
            max_source_length=max_source_length,
            max_target_length=max_target_length,
            label_smoothing=label_smoothing,
            batch_size=batch_size,
        )
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, object] = {"target_lang": target_lang}
        self.num_beams = num_beams
        self.max_length = max_length
        self.length_penalty = length_penalty
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        self.label_smoothing = label_smoothing
        self.batch_size = batch_size
        self.sort_buffer = sort_buffer

    @property
    def target_lang(self) -> str:
        return str(self.cfg["target_lang"])

    def predict(self, docs: Iterable[Doc]) -> List[str]:
        """Translate the docs' texts (beam search); empty docs get ``""``.

        RETURNS (List[str]): One translation per doc.
        """
        docs = list(docs)
        return translate(
            self.model,
            [doc.text for doc in docs],
            target_lang=self.target_lang,
            num_beams=self.num_beams,
            max_length=self.max_length,
            length_penalty=self.length_penalty,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
            max_source_length=self.max_source_length,
            batch_size=self.batch_size,
        )

    def set_annotations(self, docs: Iterable[Doc], translations: List[str]) -> None:
        """Write ``doc._.translation``."""
        for doc, translation in zip(docs, translations):
            doc._.translation = translation

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One teacher-forcing step: mean label-smoothed cross-entropy over the target pieces.

        Sources are the predicted docs' texts, targets the reference docs'
        ``doc._.translation``; examples without either are skipped. With
        ``sgd=None`` (spaCy's training loop) the gradients accumulate until
        ``finish_update``.
        RETURNS (Dict[str, float]): ``losses``, with this component's loss added.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "Translator.update")
        pairs = [
            (eg.predicted.text, eg.reference._.translation)
            for eg in examples
            if eg.predicted.text.strip() and has_text(eg.reference._.translation)
        ]
        if not pairs:
            return losses
        batch = make_batch(
            self.model,
            [source for source, _ in pairs],
            [target for _, target in pairs],
            max_source_length=self.max_source_length,
            max_target_length=self.max_target_length,
            label_smoothing=self.label_smoothing,
        )
        loss, backprop = self.model.begin_update(batch)
        backprop(1.0)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores) -> None:
        raise NotImplementedError(
            "mbert_translator computes its loss inside the model (label-smoothed cross-entropy in update)."
        )

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Load the encoder-decoder and, with ``restrict_vocab``, compute the decoder vocabulary.

        get_examples (Callable[[], Iterable[Example]]): The training examples; the
            reference docs' ``doc._.translation`` make the restricted vocabulary.
        nlp (Optional[Language]): The pipeline (unused).
        """
        validate_get_examples(get_examples, "Translator.initialize")
        targets = [eg.reference._.translation for eg in get_examples() if has_text(eg.reference._.translation)]
        self.model.initialize(Y=targets)

    def add_label(self, label: str) -> int:
        raise NotImplementedError("mbert_translator has no labels.")


def _check_settings(
    *,
    target_lang: str,
    num_beams: int,
    max_length: int,
    no_repeat_ngram_size: int,
    max_source_length: int,
    max_target_length: int,
    label_smoothing: float,
    batch_size: int,
) -> None:
    problems = []
    if not isinstance(target_lang, str) or not target_lang.strip():
        problems.append(f'target_lang must be a language code like "en" (got {target_lang!r})')
    if num_beams < 1:
        problems.append(f"num_beams must be >= 1 (got {num_beams})")
    if max_length < 2:
        problems.append(f"max_length must be >= 2 (got {max_length})")
    if no_repeat_ngram_size < 0:
        problems.append(f"no_repeat_ngram_size must be >= 0 (got {no_repeat_ngram_size})")
    if max_source_length < 2:
        problems.append(f"max_source_length must be >= 2 (got {max_source_length})")
    if max_target_length < 3:
        problems.append(f"max_target_length must be >= 3 (got {max_target_length})")
    if not 0.0 <= label_smoothing < 1.0:
        problems.append(f"label_smoothing must be in [0, 1) (got {label_smoothing})")
    if batch_size < 1:
        problems.append(f"batch_size must be >= 1 (got {batch_size})")
    if problems:
        raise UserError("mbert_translator: " + "; ".join(problems) + "; fix the component settings.")
