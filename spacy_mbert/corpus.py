"""``spacy-mbert.Corpus.v1``: spaCy's DocBin reader that also carries task inputs.

spaCy's ``Corpus`` builds each example's predicted doc with ``nlp.make_doc``,
which drops ``doc.user_data``. The QA component needs ``doc._.question`` on the
doc it predicts on, and per-language evaluation needs ``doc._.lang``; this
reader copies those *inputs* (never gold answers or reference translations).

It also refuses text-classification data with labels that the pipeline's
*trained* text classifiers do not have (e.g. a sourced, already trained
``textcat`` resumed on data whose label set changed, or dev data with a label
the training data never had): spaCy would silently ignore those labels.
"""

from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple

from spacy.language import Language
from spacy.training import Corpus, Example
from spacy.util import registry

from .errors import DataFormatError, UserError
from .extensions import install_extensions

INPUT_EXTENSIONS = ("lang", "question")


class InputCarryingCorpus(Corpus):
    """A ``Corpus`` whose predicted docs keep ``doc._.lang`` and ``doc._.question``.

    Once the pipeline's text classifiers are trained, a doc with a positive gold
    label that none of them has raises a :class:`DataFormatError` (see the module
    docstring).
    """

    def __call__(self, nlp: Language) -> Iterator[Example]:
        known_labels = trained_textcat_labels(nlp)
        for example in super().__call__(nlp):
            for name in INPUT_EXTENSIONS:
                value = example.reference._.get(name)
                if value is not None:
                    example.predicted._.set(name, value)
            if known_labels:
                check_gold_labels(example, known_labels, self.path)
            yield example


def trained_textcat_labels(nlp: Language) -> Optional[Dict[str, Tuple[str, ...]]]:
    """The labels of the pipeline's text classifiers, if all of them are trained (else None).

    A classifier that is being initialized collects its labels from the data, so
    nothing is checked until every one has its weights.
    """
    from spacy.pipeline import TextCategorizer  # textcat and textcat_multilabel

    pipes = {name: pipe for name, pipe in nlp.pipeline if isinstance(pipe, TextCategorizer)}
    if not pipes or not all(pipe.labels and _has_weights(pipe.model) for pipe in pipes.values()):
        return None
    return {name: tuple(pipe.labels) for name, pipe in pipes.items()}


def _has_weights(model) -> bool:
    return any(node.has_param(name) for node in model.walk() for name in node.param_names)


def check_gold_labels(example: Example, known_labels: Dict[str, Tuple[str, ...]], path) -> None:
    """Raise a one-line DataFormatError when a positive gold label is no trained classifier's label."""
    known = {label for labels in known_labels.values() for label in labels}
    cats = example.reference.cats
    unknown = sorted(label for label, value in cats.items() if value and value > 0 and label not in known)
    if unknown:
        text = example.reference.text
        excerpt = text[:40].replace("\n", " ") + ("..." if len(text) > 40 else "")
        components = "; ".join(f"'{name}' has {', '.join(labels)}" for name, labels in known_labels.items())
        raise DataFormatError(
            f'{path}: the doc "{excerpt}" has gold label(s) {", ".join(map(repr, unknown))}, which the trained '
            f"text classifier does not know ({components}) and would silently ignore: the label set changed since "
            f"it was trained. Train it from scratch with the new labels instead of sourcing it, or relabel the data."
        )


@registry.readers("spacy-mbert.Corpus.v1")
def create_corpus_reader(
    path: Optional[Path],
    gold_preproc: bool = False,
    max_length: int = 0,
    limit: int = 0,
    augmenter: Optional[Callable] = None,
    shuffle: bool = False,
) -> Callable[[Language], Iterable[Example]]:
    """Read ``.spacy`` files written by ``spacy-mbert convert``.

    path (Path): A .spacy file or a directory of them.
    gold_preproc (bool): Use the reference tokenization (see spacy.Corpus.v1).
    max_length (int): Skip (training) docs longer than this many tokens; 0 for no limit.
    limit (int): Read at most this many examples; 0 for no limit.
    augmenter (Optional[Callable]): Data augmentation, as in spacy.Corpus.v1.
    shuffle (bool): Shuffle the examples on every epoch.
    """
    install_extensions()
    if path is None or not Path(path).exists():
        raise UserError(
            f"Corpus path '{path}' does not exist. Create it with `spacy-mbert convert` and set "
            f"--paths.train / --paths.dev to the .spacy files."
        )
    return InputCarryingCorpus(
        path,
        gold_preproc=gold_preproc,
        max_length=max_length,
        limit=limit,
        augmenter=augmenter,
        shuffle=shuffle,
    )
