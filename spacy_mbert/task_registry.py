"""The tasks ``spacy-mbert evaluate`` can score, keyed by the factory name of their component.

Each task package registers its own (``textcat/scorer.py``, ``qa/scorer.py``,
``translation/scorer.py``); ``evaluate.py`` imports them and dispatches. Supporting
a new task is one decorated function::

    @task_scorer("my_factory", metrics=(Metric("exact", "exact"), Metric("f1", "F1")), main="f1")
    def score_my_task(examples, pipe):
        return {"exact": ..., "f1": ...}
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from spacy.tokens import Doc
from spacy.training import Example

# ISO 639 "undetermined": a placeholder while reading data without a language code;
# ``evaluate`` groups such docs with the ones that have none.
UNDETERMINED = "und"


@dataclass(frozen=True)
class Metric:
    """One number a task reports: its JSON key, console/chart header, and whether it is a fraction."""

    key: str
    header: str
    percent: bool = True


# score(examples, pipe) -> {metric key: value, ...}; extra keys (e.g. "per_label") go to the JSON only.
ScoreFunc = Callable[[Sequence[Example], Any], Dict[str, Any]]
# check(reference docs, pipe, data path): raise UserError when the data does not fit the model.
CheckFunc = Callable[[Sequence[Doc], Any, Path], None]
# read(path, *, nlp, pipe, lang, labels) -> reference docs, for data files that are not .spacy.
ReadFunc = Callable[..., List[Doc]]


@dataclass(frozen=True)
class TaskScorer:
    """How to evaluate one kind of pipeline component (keyed by its factory name)."""

    task: str
    score: ScoreFunc
    metrics: Tuple[Metric, ...]
    main: str
    check: Optional[CheckFunc] = None
    read: Optional[ReadFunc] = None
    suffixes: Tuple[str, ...] = ()

    @property
    def main_metric(self) -> Metric:
        return next(metric for metric in self.metrics if metric.key == self.main)


TASK_SCORERS: Dict[str, TaskScorer] = {}


def task_scorer(
    factory: str,
    *,
    metrics: Sequence[Metric],
    main: str,
    check: Optional[CheckFunc] = None,
    read: Optional[ReadFunc] = None,
    suffixes: Sequence[str] = (),
) -> Callable[[ScoreFunc], ScoreFunc]:
    """Register ``score(examples, pipe) -> metrics`` for components made by ``factory``.

    metrics: The columns to report, in order; ``main`` (one of their keys) is charted.
    check: Validates the reference docs against the pipe before predicting.
    read / suffixes: Reader for data files with these suffixes (``.spacy`` is always read as a DocBin).
    """
    if main not in {metric.key for metric in metrics}:
        raise ValueError(f"main metric {main!r} is not one of the metrics of {factory!r}")

    def register(score: ScoreFunc) -> ScoreFunc:
        TASK_SCORERS[factory] = TaskScorer(
            factory, score, tuple(metrics), main, check=check, read=read, suffixes=tuple(suffixes)
        )
        return score

    return register


def clear_placeholder_langs(docs: List[Doc]) -> List[Doc]:
    """Set ``doc._.lang = None`` on docs read with the :data:`UNDETERMINED` placeholder.

    The task readers require a language code on every record; ``evaluate`` reads
    data without one by passing the placeholder, then groups those docs as "unknown".
    """
    for doc in docs:
        if doc._.lang == UNDETERMINED:
            doc._.lang = None
    return docs
