"""``spacy-mbert.Corpus.v1``: spaCy's DocBin reader that also carries task inputs.

spaCy's ``Corpus`` builds each example's predicted doc with ``nlp.make_doc``,
which drops ``doc.user_data``. The QA component needs ``doc._.question`` on the
doc it predicts on, and per-language evaluation needs ``doc._.lang``; this
reader copies those *inputs* (never gold answers or reference translations).
"""

from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from spacy.language import Language
from spacy.training import Corpus, Example
from spacy.util import registry

from .errors import UserError
from .extensions import install_extensions

INPUT_EXTENSIONS = ("lang", "question")


class InputCarryingCorpus(Corpus):
    """A ``Corpus`` whose predicted docs keep ``doc._.lang`` and ``doc._.question``."""

    def __call__(self, nlp: Language) -> Iterator[Example]:
        for example in super().__call__(nlp):
            for name in INPUT_EXTENSIONS:
                value = example.reference._.get(name)
                if value is not None:
                    example.predicted._.set(name, value)
            yield example


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
        path, gold_preproc=gold_preproc, max_length=max_length, limit=limit,
        augmenter=augmenter, shuffle=shuffle,
    )
