"""``annotate``: a spaCy pipeline over many files on Ray Data, every valid row written exactly once.

The job is Ray Data's own pattern for a model: read → ``map_batches`` with a callable
class → consume. Ray runs the pieces; nothing here schedules work.

- read: ``read_binary_files`` (one task per input file; any node that can see the
  path), then ``flat_map`` parses a file into rows (``inputs.py``), bad rows kept as
  rows with an ``error``;
- annotate: :class:`Annotator`, an actor per worker that loads the pipeline once and
  runs ``nlp.pipe`` over each batch. Ray restarts an actor whose process dies and
  retries its batch (Ray Data's defaults for actor pools), so a killed worker costs
  time, not rows;
- consume: the driver iterates the batches in input order (``preserve_order``) and
  writes them (``outputs.py``), checking that positions only go up: a row that came
  twice or out of order would stop the job rather than reach the output.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from ..errors import UserError, first_line
from .inputs import input_files, parse_file
from .outputs import JsonlWriter, ParquetWriter, Progress, doc_fields, fields_of

BLOCK_BYTES = 16 * 1024
RAY_INSTALL = 'Ray is not installed; install it with: pip install "spacy-mbert[ray]"'


@dataclass
class Summary:
    docs: int = 0
    errors: int = 0
    seconds: float = 0.0
    skipped: int = 0  # rows already written by an earlier run (--resume)
    output: str = ""
    errors_path: str = ""
    # Until the first batch is back: the actors start and load the pipeline (once per job,
    # however long the corpus), so the rate after it is what a long job runs at.
    startup_seconds: float = 0.0
    startup_rows: int = 0

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.seconds if self.seconds else 0.0

    @property
    def docs_per_second_after_startup(self) -> float:
        seconds = self.seconds - self.startup_seconds
        return (self.docs + self.errors - self.startup_rows) / seconds if seconds > 0 else 0.0

    def line(self) -> str:
        resumed = f" ({self.skipped} done before, resumed)" if self.skipped else ""
        return (
            f"{self.docs} docs annotated, {self.errors} errors{resumed}, {self.docs_per_second:.1f} docs/s "
            f"({self.seconds:.1f} s; after {self.startup_seconds:.1f} s of start-up, "
            f"{self.docs_per_second_after_startup:.1f} docs/s) → {self.output}"
            + (f"; errors in {self.errors_path}" if self.errors else "")
        )


class Annotator:
    """Ray Data's callable class: one per worker, the pipeline loaded once in ``__init__``."""

    def __init__(self, pipeline: str, disable: List[str], fields: List[str], threads: int, use_gpu: bool):
        import spacy
        import torch

        import spacy_mbert  # noqa: F401  (the Doc extensions)

        torch.set_num_threads(max(1, threads))
        if use_gpu:
            spacy.require_gpu()
        self.nlp = spacy.load(pipeline, disable=disable)
        self.fields = fields

    def __call__(self, batch):
        import pyarrow as pa

        rows = batch.to_pylist()
        valid = [row for row in rows if row["error"] is None]
        for row, result in zip(valid, self._annotate(valid)):
            if isinstance(result, str):
                row["error"] = result
            else:
                row["result"] = json.dumps(result, ensure_ascii=False)
        for row in rows:
            row.setdefault("result", None)
            del row["text"], row["question"]  # not sent back: the driver needs positions, ids and results
        return pa.Table.from_pylist(rows)

    def _annotate(self, rows: List[dict]) -> List[object]:
        """Fields per row, or a one-line reason where the pipeline failed on that row only."""
        try:
            return [doc_fields(doc, self.fields) for doc in self.nlp.pipe(self._docs(rows))]
        except Exception:
            results = []  # find the row(s) at fault, annotate the rest
            for row in rows:
                try:
                    results.append(doc_fields(next(iter(self.nlp.pipe(self._docs([row])))), self.fields))
                except Exception as error:
                    results.append(f"the pipeline failed on this row ({type(error).__name__}: {first_line(error)})")
            return results

    def _docs(self, rows: List[dict]):
        for row in rows:
            doc = self.nlp.make_doc(row["text"])
            doc._.question = row["question"]
            doc._.lang = row["lang"]
            yield doc


def pipeline_factories(pipeline: str, disable: List[str]) -> List[str]:
    """The factories of the pipeline's enabled components, from its config (the weights are not loaded)."""
    from spacy.util import get_package_path, is_package, load_config

    path = Path(pipeline)
    if not path.exists() and is_package(pipeline):
        configs = sorted(get_package_path(pipeline).glob("*/config.cfg"))
        path = configs[0].parent if configs else path
    if not (path / "config.cfg").is_file():
        raise UserError(
            f"Pipeline '{pipeline}' not found: give an installed package name or a directory with config.cfg."
        )
    config = load_config(path / "config.cfg", interpolate=False)
    names = list(config["nlp"]["pipeline"])
    unknown = [name for name in disable if name not in names]
    if unknown:
        raise UserError(f"--disable: no component '{unknown[0]}' in the pipeline; it has {', '.join(names)}.")
    return [config["components"][name].get("factory", "") for name in names if name not in disable]


def annotate(
    pipeline: str,
    input: str,
    output: Path,
    *,
    format: Optional[str] = None,
    fields: Optional[List[str]] = None,
    errors: Optional[Path] = None,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    batch_size: int = 64,
    disable: List[str] = (),
    address: Optional[str] = None,
    resume: bool = False,
) -> Summary:
    """Annotate every row of ``input`` with ``pipeline`` on Ray; write ``output`` and the errors file.

    pipeline (str): An installed pipeline package, or a pipeline directory (on every node).
    input (str): A .jsonl, .parquet or .txt file, a directory or a glob (readable on every node).
    output (Path): The output: a .jsonl file, or a .parquet directory of part files.
    format (Optional[str]): "jsonl" or "parquet"; None: from ``output``'s extension.
    fields (Optional[List[str]]): Fields to write (cats, answers, translation); None: all
        that the enabled components produce.
    errors (Optional[Path]): Where bad rows go (file, line, id, reason); default ``<output>.errors.jsonl``.
    workers (int): Ray actors, each with its own copy of the pipeline.
    cpus_per_worker (float): CPUs reserved per actor; its torch threads too. One thread per worker
        gives the most docs per core (a thread descheduled stalls only its own worker).
    gpus_per_worker (float): GPUs per actor; > 0 runs the pipeline on the GPU.
    batch_size (int): Rows per batch sent to an actor.
    disable (List[str]): Components not to load or run.
    address (Optional[str]): A Ray cluster to join ("auto", "host:port"); None starts a local Ray
        inside this process for the job, bound to 127.0.0.1.
    resume (bool): Finish an interrupted job into the same output (rows written are kept, not redone).
    RETURNS (Summary): Docs, errors, docs/s.
    """
    fmt = _output_format(output, format)
    disable = list(disable)
    fields = fields_of(pipeline_factories(pipeline, disable), fields)
    files = input_files(input)
    errors = Path(errors) if errors is not None else Path(str(output) + ".errors.jsonl")
    progress = Progress(output)
    state = _start_state(progress, output, files, fields, fmt, resume)
    summary = Summary(output=str(output), errors_path=str(errors))
    summary.skipped = state["docs"] + state["errors"]
    if state.get("done"):
        summary.docs, summary.errors = state["docs"], state["errors"]
        return summary
    ray = _ray(address)
    started_here = not ray.is_initialized()
    if started_here:
        # "local": a new Ray for this job, never one found through RAY_ADDRESS or /tmp/ray.
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", configure_logging=False)
    try:
        _check_resources(ray, workers, cpus_per_worker, gpus_per_worker, address)
        dataset = _dataset(
            ray, files, state, pipeline, disable, fields, workers, cpus_per_worker, gpus_per_worker, batch_size
        )
        start = time.perf_counter()
        _consume(dataset, files, state, progress, output, errors, fmt, fields, summary, start)
        summary.seconds = time.perf_counter() - start
    finally:
        if started_here:
            ray.shutdown()
    return summary


def _output_format(output: Path, format: Optional[str]) -> str:
    fmt = format or {".jsonl": "jsonl", ".parquet": "parquet"}.get(Path(output).suffix)
    if fmt not in ("jsonl", "parquet"):
        raise UserError(f"{output}: unknown output format; name it .jsonl or .parquet, or pass --format jsonl|parquet.")
    return fmt


def _start_state(progress: Progress, output: Path, files, fields, fmt, resume: bool) -> dict:
    """A new job's state, or the interrupted one's (``resume``); refuses to write over an output."""
    inputs = [str(p) for p in files]
    saved = progress.read()
    exists = Path(output).exists() or saved is not None
    if not resume:
        if exists:
            raise UserError(f"{output} exists; pass --resume to finish that job, or choose another output.")
        return {"inputs": inputs, "fields": fields, "format": fmt, "position": None, "docs": 0, "errors": 0,
                "output_size": 0, "errors_size": 0, "done": False}  # fmt: skip
    if saved is None:
        if Path(output).exists():
            raise UserError(
                f"{output} has no progress file ({progress.path}), so it cannot be resumed; choose another output."
            )
        return _start_state(progress, output, files, fields, fmt, resume=False)
    for key, now in (("inputs", inputs), ("fields", fields), ("format", fmt)):
        if saved[key] != now:
            raise UserError(
                f"--resume: the {key} differ from the interrupted job's ({progress.path}); run it with the same ones."
            )
    return saved


def _ray(address: Optional[str]):
    if address is None:
        # A local Ray for this job only: every node address is 127.0.0.1 and its servers listen
        # on loopback only (Ray otherwise binds to the machine's routable address). Read by Ray
        # at import, so set before it.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise UserError(RAY_INSTALL) from None
    if address is not None and not ray.is_initialized():
        try:
            ray.init(address=address, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise UserError(f"Could not join the Ray cluster at --address {address} ({first_line(error)}); "
                            "start it with `ray start --head`, or leave --address out to run locally.") from None  # fmt: skip
    return ray


def _check_resources(ray, workers: int, cpus: float, gpus: float, address) -> None:
    """Refuse a job the cluster can never schedule (Ray would wait for the resources forever)."""
    total = ray.cluster_resources()
    for name, each in (("CPU", cpus), ("GPU", gpus)):
        if each and workers * each > total.get(name, 0):
            where = f"the cluster at {address}" if address else "this machine"
            raise UserError(
                f"{workers} workers × {each:g} {name}s need {workers * each:g} {name}s; {where} has "
                f"{total.get(name, 0):g}. Use fewer --workers or less --{name.lower()}s-per-worker."
            )


def _dataset(ray, files, state, pipeline, disable, fields, workers, cpus, gpus, batch_size):
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the output in input order
    # Ray Data merges a task's output into blocks of up to 128 MiB, and a block is the unit
    # of work: a whole input file would be one task for one worker, redone whole when its
    # worker dies, and written only at the end. Blocks of 16 KiB (~100 short docs, or one
    # long one; the actor pool bundles them up to batch_size rows per call) spread the
    # batches over the workers, make a retry cheap and let progress be recorded as it goes.
    context.target_max_block_size = BLOCK_BYTES
    index = {os.path.normpath(str(p)): i for i, p in enumerate(files)}
    position = tuple(state["position"]) if state["position"] else None
    todo = [str(p) for i, p in enumerate(files) if position is None or i >= position[0]]

    import pyarrow as pa  # with Ray Data

    # The rows between parsing and the workers (see inputs.py).
    schema = pa.schema(
        [("file", pa.int64()), ("line", pa.int64())]
        + [(k, pa.string()) for k in ("id", "text", "question", "lang", "error")]
    )

    def parse(files: Dict) -> Iterator:
        """Rows of a file, yielded a batch at a time (streamed out as blocks of BLOCK_BYTES)."""
        for data, path in zip(files["bytes"], files["path"]):
            rows = parse_file(data, path, index[os.path.normpath("/" + str(path).lstrip("/"))], position)
            for start in range(0, len(rows), batch_size):
                yield pa.Table.from_pylist(rows[start : start + batch_size], schema=schema)

    # Reading and parsing reserve no CPU, so they run beside actors holding every CPU.
    dataset = ray.data.read_binary_files(todo, include_paths=True, num_cpus=0, override_num_blocks=len(todo))
    rows = dataset.map_batches(parse, batch_size=1, batch_format="numpy", num_cpus=0)
    return rows.map_batches(
        Annotator,
        fn_constructor_kwargs={
            "pipeline": str(pipeline),
            "disable": disable,
            "fields": fields,
            "threads": int(cpus) or 1,
            "use_gpu": gpus > 0,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=gpus or None,
    )


def _consume(dataset, files, state, progress, output, errors_path, fmt, fields, summary, start) -> None:
    if fmt == "jsonl":
        writer = JsonlWriter(output, state["output_size"])
    else:
        writer = ParquetWriter(output, fields, state["output_size"])
    errors = JsonlWriter(errors_path, state["errors_size"])
    done_before = (state["docs"], state["errors"])
    last = tuple(state["position"]) if state["position"] else (-1, -1)

    def checkpoint(final: bool) -> None:
        """Record what is written for good: after every batch (JSONL), or each part file (Parquet)."""
        if isinstance(writer, ParquetWriter):
            size = writer.checkpoint(final=final)
            if size == state["output_size"] and not final:
                return  # rows still gathering for the next part: nothing new is durable
        else:
            size = writer.checkpoint()
        state.update(
            position=list(last) if last[0] >= 0 else None,
            docs=done_before[0] + summary.docs,
            errors=done_before[1] + summary.errors,
            output_size=size,
            errors_size=errors.checkpoint(),
            done=final,
        )
        progress.write(state)

    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                here = (row["file"], row["line"])
                if here <= last:
                    raise RuntimeError(f"row {here} came back twice or out of order after {last}; output stopped")
                last = here
                record_id = json.loads(row["id"]) if row["id"] is not None else None
                if row["error"] is not None:
                    reason = row["error"]
                    errors.write(
                        {"file": str(files[row["file"]]), "line": row["line"], "id": record_id, "reason": reason}
                    )
                    summary.errors += 1
                else:
                    writer.write({"id": record_id, **json.loads(row["result"])})
                    summary.docs += 1
            if not summary.startup_seconds:
                summary.startup_seconds = time.perf_counter() - start
                summary.startup_rows = summary.docs + summary.errors
            checkpoint(final=False)
        checkpoint(final=True)
    finally:
        writer.close()
        errors.close()
