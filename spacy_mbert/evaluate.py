"""Score a trained pipeline per language (``doc._.lang``) and overall.

``evaluate(model, data)`` runs the pipeline over gold data (a ``.spacy`` DocBin
written by ``spacy-mbert convert``, or task data such as textcat JSONL),
groups the examples by ``doc._.lang`` (docs without one, or with the ISO 639
code ``"und"``, go to ``"unknown"``: counted, never dropped)
and scores every group plus ``"all"`` with spaCy's own scorers, so the ``all``
numbers match ``spacy evaluate`` / ``spacy train``. It prints a table and can
write the metrics as JSON and a per-language bar chart as PNG.

What is scored depends on the pipeline component: :data:`TASK_SCORERS` maps a
pipe factory name to a :class:`TaskScorer`, which each task package registers
(``textcat/scorer.py``, ``qa/scorer.py``, ``translation/scorer.py``; see
``task_registry.py``). This module only reads, predicts, groups and reports.

Metrics are fractions (0-1) in the returned dict and the JSON file; the console
table and the chart show percentages.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from wasabi import msg, table

from .corpus import INPUT_EXTENSIONS
from .errors import DataFormatError, UserError, first_line
from .extensions import install_extensions
from .qa import scorer as _qa_scorer  # noqa: F401  (registers the task)
from .task_registry import TASK_SCORERS, UNDETERMINED, Metric, TaskScorer, task_scorer
from .textcat import scorer as _textcat_scorer  # noqa: F401  (registers the tasks)
from .textcat.scorer import read_textcat_minimal
from .translation import scorer as _translation_scorer  # noqa: F401  (registers the task)

__all__ = [
    "TASK_SCORERS",
    "Metric",
    "TaskScorer",
    "evaluate",
    "find_task",
    "format_table",
    "load_pipeline",
    "plot_chart",
    "predict",
    "read_references",
    "read_textcat_minimal",
    "task_scorer",
]

PathLike = Union[str, Path]
LabelsArg = Optional[Union[PathLike, Sequence[str]]]

ALL = "all"
UNKNOWN = "unknown"
# Show a progress bar from this many docs on.
PROGRESS_MIN_DOCS = 1000


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
        raise UserError(
            f"cannot load pipeline '{model}' ({first_line(err, 200) or type(err).__name__}); pass a directory written by `spacy train` "
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
    data_path: Path,
    *,
    nlp: Language,
    pipe: Any,
    spec: TaskScorer,
    lang: Optional[str] = None,
    labels: Optional[Sequence[str]] = None,
) -> List[Doc]:
    """Gold docs from a ``.spacy`` file/directory or a task-specific file; ``lang`` fills missing codes."""
    if data_path.is_dir() or data_path.suffix == ".spacy":
        docs = _read_docbins(data_path, nlp)
    elif spec.read is not None and data_path.suffix in spec.suffixes:
        docs = spec.read(data_path, nlp=nlp, pipe=pipe, lang=lang, labels=labels)
    else:
        accepted = " or ".join((".spacy",) + spec.suffixes)
        raise UserError(
            f"{data_path}: cannot read {data_path.suffix or 'this'} files for {spec.task}; pass a {accepted} file"
        )
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
