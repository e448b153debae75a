"""Score a trained pipeline per language (``doc._.lang``) and overall.

``evaluate(model, data)`` runs the pipeline over gold data (a ``.spacy`` DocBin
written by ``spacy-mbert convert``, or task data such as textcat JSONL),
groups the examples by ``doc._.lang`` (docs without one, or with the ISO 639
code ``"und"``, go to ``"unknown"``: counted, never dropped)
and scores every group plus ``"all"`` with spaCy's own scorers, so the ``all``
numbers match ``spacy evaluate`` / ``spacy train``. It prints a table and can
write the metrics as JSON and a per-language bar chart as PNG.

What is scored depends on the pipeline component: :data:`TASK_SCORERS` maps a
pipe factory name to a :class:`TaskScorer`. Supporting a new task is one
decorated function::

    @task_scorer("mbert_qa", metrics=(Metric("exact", "exact"), Metric("f1", "F1")), main="f1")
    def score_qa(examples, pipe):
        return {"exact": ..., "f1": ...}

Metrics are fractions (0-1) in the returned dict and the JSON file; the console
table and the chart show percentages.
"""

import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from wasabi import msg, table

from .corpus import INPUT_EXTENSIONS
from .errors import DataFormatError, UserError
from .extensions import install_extensions
from .translation.scorer import check_references as check_translation_references
from .translation.scorer import read_references as read_translation_references
from .translation.scorer import score_for_evaluate as score_translation_for_evaluate

PathLike = Union[str, Path]
LabelsArg = Optional[Union[PathLike, Sequence[str]]]

ALL = "all"
UNKNOWN = "unknown"
# ISO 639 "undetermined": grouped with docs that have no language code.
UNDETERMINED = "und"
# Show a progress bar from this many docs on.
PROGRESS_MIN_DOCS = 1000


# --------------------------------------------------------------------------- task registry


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


# --------------------------------------------------------------------------- textcat


def _positive_gold_labels(docs: Iterable[Doc]) -> set:
    return {label for doc in docs for label, value in doc.cats.items() if value and value > 0}


def check_textcat_labels(refs: Sequence[Doc], pipe: Any, data_path: Path) -> None:
    """Reject gold labels the component does not have (labels that are 0.0 everywhere don't count)."""
    model_labels = list(pipe.labels)
    unknown = sorted(_positive_gold_labels(refs) - set(model_labels))
    if unknown:
        raise UserError(
            f"{data_path}: gold label(s) {', '.join(map(repr, unknown))} are not labels of the model's "
            f"'{pipe.name}' component (it has: {', '.join(model_labels) or 'no labels'}); "
            f"evaluate with data for this model or retrain it with these labels"
        )
    if not _positive_gold_labels(refs):
        raise UserError(f"{data_path}: no doc has a gold label in doc.cats; convert the data with `spacy-mbert convert textcat`")


def read_textcat_for_eval(
    path: Path, *, nlp: Language, pipe: Any, lang: Optional[str], labels: Optional[Sequence[str]]
) -> List[Doc]:
    """Read textcat JSONL (``{"text", "label"|"labels", "lang"?}``) into reference docs.

    Lines without a language code (and no ``lang``) get ``doc._.lang = None``. A JSONL line lists
    all its gold labels, so the component's labels it doesn't mention are set to 0.0 (not missing).
    """
    read = _textcat_reader()
    docs, _ = read(path, nlp=nlp, lang=lang or UNDETERMINED, labels=labels)
    for doc in docs:
        if doc._.lang == UNDETERMINED:
            doc._.lang = None
        for label in pipe.labels:
            doc.cats.setdefault(label, 0.0)
    return docs


def _textcat_reader() -> Callable[..., Tuple[List[Doc], List[str]]]:
    try:
        from .convert import read_textcat
    except ImportError:
        return read_textcat_minimal
    return read_textcat


def read_textcat_minimal(
    path: PathLike, *, nlp: Language, lang: Optional[str] = None, labels: Optional[Sequence[str]] = None
) -> Tuple[List[Doc], List[str]]:
    """Fallback JSONL reader (when ``spacy_mbert.convert`` is unavailable); same contract as ``convert.read_textcat``."""
    path = Path(path)
    records = []
    with path.open(encoding="utf8") as file:
        for lineno, line in enumerate(file, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{where}: invalid JSON: {err.msg}; fix the syntax there") from None
            if not isinstance(obj, dict):
                raise DataFormatError(f'{where}: expected a JSON object like {{"text": "...", "label": "..."}}')
            text = obj.get("text")
            if not isinstance(text, str) or not text.strip():
                raise DataFormatError(f'{where}: "text" must be a non-empty string; add the text to classify')
            if "label" in obj:
                gold = [obj["label"]]
            elif "labels" in obj and isinstance(obj["labels"], list):
                gold = obj["labels"]
            else:
                raise DataFormatError(f'{where}: no label field; add "label": "..." or "labels": [...]')
            if not gold or not all(isinstance(label, str) and label.strip() for label in gold):
                raise DataFormatError(f"{where}: labels must be non-empty strings, got {gold!r}; fix the label")
            record_lang = obj.get("lang") or lang
            if record_lang is None:
                raise DataFormatError(f'{where}: no language code: add a "lang" field or pass --lang XX')
            records.append((where, text, gold, record_lang))
    if not records:
        raise DataFormatError(f'{path}: no examples; add one JSON object per line, like {{"text": "...", "label": "..."}}')
    label_set = list(labels) if labels is not None else sorted({label for _, _, gold, _ in records for label in gold})
    docs = []
    for where, text, gold, record_lang in records:
        extra = sorted(set(gold) - set(label_set))
        if extra:
            raise DataFormatError(f"{where}: label {extra[0]!r} is not in the label set ({', '.join(label_set)}); fix it")
        doc = nlp.make_doc(text)
        doc._.lang = record_lang
        doc.cats = {label: 1.0 if label in gold else 0.0 for label in label_set}
        docs.append(doc)
    return docs, label_set


def _cats_scores(examples: Sequence[Example], pipe: Any, *, multi_label: bool) -> Dict[str, Any]:
    """``Scorer.score_cats`` with the component's labels and cfg, as ``pipe.score`` calls it."""
    cfg = getattr(pipe, "cfg", {}) or {}
    return Scorer.score_cats(
        examples,
        "cats",
        labels=list(pipe.labels),
        multi_label=multi_label,
        positive_label=cfg.get("positive_label"),
        threshold=cfg.get("threshold"),
    )


def _per_label(scores: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
    return {label: dict(prf) for label, prf in scores["cats_f_per_type"].items()}


def exclusive_accuracy(examples: Sequence[Example], labels: Sequence[str]) -> float:
    """Share of examples whose highest-scoring predicted label is the gold label.

    Only ``labels`` are considered; a doc without a positive gold label counts as wrong.
    """
    if not examples:
        return 0.0
    labels = set(labels)
    correct = 0
    for eg in examples:
        gold = {k: v for k, v in eg.reference.cats.items() if k in labels}
        pred = {k: v for k, v in eg.predicted.cats.items() if k in labels}
        if not gold or not pred:
            continue
        gold_label, gold_score = max(gold.items(), key=lambda item: item[1])
        pred_label = max(pred.items(), key=lambda item: item[1])[0]
        correct += bool(gold_score and gold_score > 0 and pred_label == gold_label)
    return correct / len(examples)


@task_scorer(
    "textcat",
    metrics=(Metric("accuracy", "accuracy"), Metric("macro_f", "macro-F1")),
    main="accuracy",
    check=check_textcat_labels,
    read=read_textcat_for_eval,
    suffixes=(".jsonl",),
)
def score_textcat(examples: Sequence[Example], pipe: Any) -> Dict[str, Any]:
    """Exclusive classes: accuracy and macro-F (``cats_macro_f``), plus per-label P/R/F."""
    scores = _cats_scores(examples, pipe, multi_label=False)
    return {
        "accuracy": exclusive_accuracy(examples, pipe.labels),
        "macro_f": scores["cats_macro_f"],
        "per_label": _per_label(scores),
    }


@task_scorer(
    "textcat_multilabel",
    metrics=(Metric("micro_f", "micro-F1"), Metric("macro_f", "macro-F1"), Metric("macro_auc", "macro-AUC")),
    main="macro_f",
    check=check_textcat_labels,
    read=read_textcat_for_eval,
    suffixes=(".jsonl",),
)
def score_textcat_multilabel(examples: Sequence[Example], pipe: Any) -> Dict[str, Any]:
    """Multilabel: micro/macro-F at the component's threshold and macro ROC AUC, plus per-label P/R/F."""
    scores = _cats_scores(examples, pipe, multi_label=True)
    return {
        "micro_f": scores["cats_micro_f"],
        "macro_f": scores["cats_macro_f"],
        "macro_auc": scores["cats_macro_auc"],
        "per_label": _per_label(scores),
    }


@task_scorer(
    "mbert_translator",
    metrics=(Metric("translation_bleu", "BLEU"), Metric("translation_chrf", "chrF")),
    main="translation_bleu",
    check=check_translation_references,
    read=read_translation_references,
    suffixes=(".jsonl", ".tsv"),
)
def score_translation(examples: Sequence[Example], pipe: Any) -> Dict[str, Any]:
    """sacreBLEU BLEU and chrF (fractions 0-1) with the component's target language and BLEU tokenizer."""
    return score_translation_for_evaluate(examples, pipe)


def read_squad_for_eval(
    path: Path, *, nlp: Language, pipe: Any, lang: Optional[str], labels: Optional[Sequence[str]]
) -> List[Doc]:
    """Read SQuAD JSON (``data[].paragraphs[].qas[]``) into reference docs.

    Articles without a language code (and no ``lang``) get ``doc._.lang = None``.
    """
    from .convert import read_squad

    docs = read_squad(path, nlp=nlp, lang=lang or UNDETERMINED)
    for doc in docs:
        if doc._.lang == UNDETERMINED:
            doc._.lang = None
    return docs


@task_scorer(
    "mbert_qa",
    metrics=(Metric("qa_exact", "exact"), Metric("qa_f1", "F1")),
    main="qa_f1",
    read=read_squad_for_eval,
    suffixes=(".json",),
)
def score_qa(examples: Sequence[Example], pipe: Any) -> Dict[str, Any]:
    """SQuAD exact match and F1: max over the gold answers, MLQA normalization per language."""
    from .qa.scorer import score_qa as squad_scores

    scores = squad_scores(examples)
    return {"qa_exact": scores["qa_exact"], "qa_f1": scores["qa_f1"]}


# --------------------------------------------------------------------------- evaluate


def evaluate(
    model: Union[str, Path, Language],
    data_path: PathLike,
    *,
    output_json: Optional[PathLike] = None,
    output_png: Optional[PathLike] = None,
    batch_size: int = 64,
    lang: Optional[str] = None,
    labels: LabelsArg = None,
    component: Optional[str] = None,
    gpu_id: int = -1,
    silent: bool = False,
) -> Dict[str, Any]:
    """Score ``model`` on ``data_path`` per language and overall.

    model: A pipeline directory, an installed pipeline package name, or a loaded ``Language``.
    data_path: A ``.spacy`` file (or a directory of them) with ``doc._.lang`` on the docs, or task data
        the task reads itself (textcat: JSONL ``{"text", "label"|"labels", "lang"?}``).
    output_json: Write the result dict here as JSON.
    output_png: Write a bar chart of the main metric per language here (needs matplotlib).
    batch_size: Batch size for ``nlp.pipe``.
    lang: Language code for docs / JSONL lines that have none (otherwise they are grouped as "unknown").
    labels: textcat JSONL only: the closed label set (a list, or a JSON file like ``convert --labels``).
    component: Name of the component to score; needed only when several components can be scored.
    gpu_id: GPU to run on; -1 for CPU.
    silent: Don't print the table.
    RETURNS (Dict[str, Any]): ``{"model", "data", "task", "component", "labels", "metrics",
        "languages": {lang: {"n", <metrics>...}}, "all": {"n", <metrics>...}}``, metrics as fractions.
    """
    data_path = Path(data_path)
    output_json = Path(output_json) if output_json is not None else None
    output_png = Path(output_png) if output_png is not None else None
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if not data_path.exists():
        raise UserError(f"{data_path}: no such file or directory; check the data path")
    if output_png is not None:
        if output_png.suffix.lower() != ".png":
            raise UserError(f"{output_png}: the chart is a PNG image; give a file name ending in .png")
        _import_matplotlib()  # fail before the (slow) predictions
    install_extensions()
    if gpu_id >= 0:
        _use_gpu(gpu_id)
    nlp = load_pipeline(model)
    name, pipe, spec = find_task(nlp, component)
    label_set = _resolve_label_arg(labels)
    refs = read_references(data_path, nlp=nlp, pipe=pipe, spec=spec, lang=lang, labels=label_set)
    if spec.check is not None:
        spec.check(refs, pipe, data_path)
    examples = predict(nlp, refs, batch_size=batch_size, silent=silent)
    groups: Dict[str, List[Example]] = defaultdict(list)
    for eg in examples:
        groups[_group_of(eg.reference)].append(eg)
    result: Dict[str, Any] = {
        "model": _model_id(model, nlp),
        "data": str(data_path),
        "task": spec.task,
        "component": name,
        "labels": list(getattr(pipe, "labels", ())),
        "metrics": [metric.key for metric in spec.metrics],
        "main_metric": spec.main,
        "languages": {code: _score_group(spec, groups[code], pipe) for code in sorted(groups, key=_lang_sort_key)},
        "all": _score_group(spec, examples, pipe),
    }
    if not silent:
        msg.divider(f"{result['task']} · {result['model']} · {result['data']}")
        print(format_table(result, spec))
        print()
    if output_json is not None:
        output_json.parent.mkdir(parents=True, exist_ok=True)
        output_json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
        if not silent:
            msg.good(f"Wrote metrics to {output_json}")
    if output_png is not None:
        plot_chart(result, output_png, spec=spec)
        if not silent:
            msg.good(f"Wrote chart to {output_png}")
    return result


def load_pipeline(model: Union[str, Path, Language]) -> Language:
    """The pipeline itself, or ``spacy.load(model)`` with a one-line error when that fails."""
    if isinstance(model, Language):
        return model
    try:
        return spacy.load(model)
    except OSError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot load pipeline '{model}' ({first_line}); pass a directory written by `spacy train` "
            f"(e.g. training/model-best) or an installed pipeline package"
        ) from None


def find_task(nlp: Language, component: Optional[str] = None) -> Tuple[str, Any, TaskScorer]:
    """The component to score, and its task scorer."""
    factories = {name: nlp.get_pipe_meta(name).factory for name in nlp.pipe_names}
    if component is not None:
        if component not in factories:
            raise UserError(
                f"the pipeline has no component '{component}' (it has: {', '.join(nlp.pipe_names) or 'none'}); "
                f"fix --component"
            )
        if factories[component] not in TASK_SCORERS:
            raise UserError(
                f"component '{component}' ({factories[component]}) cannot be evaluated yet; "
                f"supported: {', '.join(TASK_SCORERS)}"
            )
        candidates = [component]
    else:
        candidates = [name for name, factory in factories.items() if factory in TASK_SCORERS]
    if not candidates:
        components = ", ".join(f"{name} ({factory})" for name, factory in factories.items()) or "none"
        raise UserError(
            f"the pipeline has no component this command can evaluate (it has: {components}); "
            f"supported: {', '.join(TASK_SCORERS)}"
        )
    if len(candidates) > 1:
        raise UserError(
            f"the pipeline has several components to evaluate ({', '.join(candidates)}); choose one with --component"
        )
    name = candidates[0]
    return name, nlp.get_pipe(name), TASK_SCORERS[factories[name]]


def read_references(
    data_path: Path, *, nlp: Language, pipe: Any, spec: TaskScorer, lang: Optional[str] = None,
    labels: Optional[Sequence[str]] = None,
) -> List[Doc]:
    """Gold docs from a ``.spacy`` file/directory or a task-specific file; ``lang`` fills missing codes."""
    if data_path.is_dir() or data_path.suffix == ".spacy":
        docs = _read_docbins(data_path, nlp)
    elif spec.read is not None and data_path.suffix in spec.suffixes:
        docs = spec.read(data_path, nlp=nlp, pipe=pipe, lang=lang, labels=labels)
    else:
        accepted = " or ".join((".spacy",) + spec.suffixes)
        raise UserError(f"{data_path}: cannot read {data_path.suffix or 'this'} files for {spec.task}; pass a {accepted} file")
    if not docs:
        raise UserError(f"{data_path}: no docs to evaluate; check the data file")
    if lang is not None:
        for doc in docs:
            if not doc._.lang:
                doc._.lang = lang
    return docs


def predict(nlp: Language, refs: Sequence[Doc], *, batch_size: int = 64, silent: bool = False) -> List[Example]:
    """Run ``nlp.pipe`` over fresh docs made from the reference texts (carrying the input extensions)."""
    inputs = []
    for ref in refs:
        doc = nlp.make_doc(ref.text)
        for name in INPUT_EXTENSIONS:
            value = ref._.get(name)
            if value is not None:
                doc._.set(name, value)
        inputs.append(doc)
    predicted: Iterable[Doc] = nlp.pipe(inputs, batch_size=batch_size)
    if not silent and len(inputs) >= PROGRESS_MIN_DOCS:
        from tqdm import tqdm

        predicted = tqdm(predicted, total=len(inputs), desc="Predicting", unit="doc", leave=False, file=sys.stderr)
    return [Example(doc, ref) for doc, ref in zip(predicted, refs)]


def format_table(result: Dict[str, Any], spec: Optional[TaskScorer] = None) -> str:
    """One row per language plus "all": n and the task's metrics (fractions shown as percentages)."""
    spec = spec or TASK_SCORERS[_task_factory(result)]
    header = ["lang", "n"] + [metric.header for metric in spec.metrics]
    rows = [
        [code, str(scores["n"])] + [_format_value(scores.get(metric.key), metric) for metric in spec.metrics]
        for code, scores in list(result["languages"].items()) + [(ALL, result["all"])]
    ]
    return table(rows, header=header, divider=True, aligns=["l"] + ["r"] * (len(header) - 1))


def plot_chart(result: Dict[str, Any], path: PathLike, *, spec: Optional[TaskScorer] = None) -> Path:
    """Bar chart of the main metric per language, with a dashed line at the overall value."""
    spec = spec or TASK_SCORERS[_task_factory(result)]
    metric = spec.main_metric
    Figure, FigureCanvasAgg = _import_matplotlib()
    scale = 100.0 if metric.percent else 1.0
    codes = list(result["languages"])
    values = [(result["languages"][code].get(metric.key) or 0.0) * scale for code in codes]
    overall = (result["all"].get(metric.key) or 0.0) * scale
    fig = Figure(figsize=(max(4.0, 0.8 * len(codes) + 2.0), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bars = ax.bar(codes, values, color="#4c72b0")
    fmt = "{:.1f}" if metric.percent else "{:.3g}"
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2, fontsize=8)
    ax.axhline(overall, color="#c44e52", linestyle="--", linewidth=1.2, label=f"all: {fmt.format(overall)}")
    ax.set_ylabel(f"{metric.header} (%)" if metric.percent else metric.header)
    ax.set_xlabel("language")
    top = 100.0 if metric.percent else max(values + [overall, 1e-9])
    ax.set_ylim(0, top * 1.12)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{_short_model_name(result['model'])} · {result['task']}: {metric.header} per language", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# --------------------------------------------------------------------------- helpers


def _score_group(spec: TaskScorer, examples: Sequence[Example], pipe: Any) -> Dict[str, Any]:
    return {"n": len(examples), **spec.score(examples, pipe)}


def _group_of(doc: Doc) -> str:
    code = doc._.lang
    return code if code and code != UNDETERMINED else UNKNOWN


def _lang_sort_key(code: str) -> Tuple[bool, str]:
    return (code == UNKNOWN, code)


def _read_docbins(path: Path, nlp: Language) -> List[Doc]:
    files = sorted(path.rglob("*.spacy")) if path.is_dir() else [path]
    if not files:
        raise UserError(f"{path}: no .spacy files in this directory; create them with `spacy-mbert convert`")
    docs: List[Doc] = []
    for file in files:
        try:
            docbin = DocBin(store_user_data=True).from_disk(file)
        except Exception as err:  # msgpack/zlib/KeyError: the file is not a DocBin
            raise DataFormatError(
                f"{file}: not a readable .spacy DocBin ({type(err).__name__}); recreate it with `spacy-mbert convert`"
            ) from None
        docs.extend(docbin.get_docs(nlp.vocab))
    return docs


def _resolve_label_arg(labels: LabelsArg) -> Optional[List[str]]:
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        try:
            from .convert import read_labels
        except ImportError:
            path = Path(labels)
            if not path.is_file():
                raise UserError(f"{path}: no such labels file; check the path") from None
            try:
                data = json.loads(path.read_text(encoding="utf8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DataFormatError(f"{path}: not a JSON list of labels ({err}); fix the file") from None
            if not isinstance(data, list) or not all(isinstance(x, str) and x for x in data):
                raise DataFormatError(f'{path}: expected a JSON list of labels like ["negative", "positive"]')
            return data
        return read_labels(labels)
    return list(labels)


def _import_matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("matplotlib is needed for the chart; run `pip install spacy-mbert[eval]`") from None
    return Figure, FigureCanvasAgg


def _use_gpu(gpu_id: int) -> None:
    from thinc.api import require_gpu

    try:
        require_gpu(gpu_id)
    except (ValueError, ImportError) as err:
        raise UserError(f"cannot use GPU {gpu_id} ({err}); drop --gpu-id to run on the CPU") from None


def _model_id(model: Union[str, Path, Language], nlp: Language) -> str:
    if isinstance(model, Language):
        return f"{nlp.meta.get('lang', nlp.lang)}_{nlp.meta.get('name', 'pipeline')}"
    return str(model)


def _short_model_name(model: str) -> str:
    path = Path(model)
    if path.name in ("model-best", "model-last") and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name or model


def _task_factory(result: Dict[str, Any]) -> str:
    task = result.get("task")
    if task not in TASK_SCORERS:
        raise UserError(f"no scorer for task {task!r}; supported: {', '.join(TASK_SCORERS)}")
    return task


def _format_value(value: Any, metric: Metric) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.2f}" if metric.percent else f"{value:.3f}"
