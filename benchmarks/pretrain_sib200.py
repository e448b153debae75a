"""Domain-adaptive MLM pretraining on SIB-200 text, then the SIB-200 zero-shot fine-tune.

1. Continue masked-LM pretraining of the encoder on the unlabelled train+dev text of
   all 12 SIB-200 languages (labels unused) for a fixed budget, interrupted halfway
   (``stop_at_step``) and resumed, to show the loss curve continues.
2. Held-out MLM loss / perplexity per language, before and after.
3. The SIB-200 English-only fine-tune + 12-language evaluation (system (a) of
   sib200_textcat.py) on the adapted encoder, beside the un-adapted run.

    python benchmarks/pretrain_sib200.py --encoder encoders/e5-small --data ../shared/data/sib200 \
        --baseline benchmarks/results/sib200_textcat_a.json
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer
from common import (
    DEFAULT_SHARED_DATA,
    RESULTS,
    ROOT,
    machine_info,
    markdown_table,
    minutes,
    pin_threads,
    read_jsonl,
    require_dir,
    stopwatch,
)
from sib200_textcat import LANGS


def write_text(data: Path, out: Path) -> int:
    """Train+dev text of every language as JSONL {"text", "lang"} (no labels)."""
    records = [
        {"text": record["text"], "lang": lang}
        for lang in LANGS
        for split in ("train", "dev")
        for record in read_jsonl(data / lang / f"{split}.jsonl")
    ]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf8")
    return len(records)


def main(
    encoder: Path = typer.Option(ROOT / "encoders" / "e5-small", help="Encoder checkpoint to adapt."),
    data: Path = typer.Option(DEFAULT_SHARED_DATA / "sib200", help="SIB-200 folder."),
    work: Path = typer.Option(
        ROOT / "benchmarks" / "runs" / "pretrain_sib200", help="Where the adapted encoder and logs go (not committed)."
    ),
    max_steps: int = typer.Option(120, help="Pretraining steps (the fixed budget)."),
    batch_size: int = typer.Option(8, help="Sequences per step."),
    max_length: int = typer.Option(128, help="Packed sequence length."),
    lr: float = typer.Option(5e-5, help="Peak learning rate."),
    threads: int = typer.Option(2, help="Torch threads."),
    baseline: Optional[Path] = typer.Option(
        None, help="sib200_textcat JSON with the un-adapted (a) run, to put beside the adapted one."
    ),
):
    require_dir(data, "SIB-200")
    pin_threads(threads)
    from spacy_mbert.pretrain import evaluate_perplexity, pretrain

    work.mkdir(parents=True, exist_ok=True)
    text_file = work / "sib200_text.jsonl"
    n_docs = write_text(data, text_file)
    out = work / "adapted"
    settings = dict(
        max_steps=max_steps,
        batch_size=batch_size,
        max_length=max_length,
        lr=lr,
        checkpoint_every=max(1, max_steps // 4),
        seed=0,
    )
    with stopwatch() as clock:
        # Interrupted halfway, then resumed: the log must continue where it stopped.
        pretrain(encoder, out, texts=[text_file], stop_at_step=max_steps // 2, progress=False, **settings)
        pretrain(encoder, out, texts=[text_file], resume=True, progress=False, **settings)
    heldout = out / "heldout.jsonl"
    before = evaluate_perplexity(encoder, heldout, max_length=max_length)
    after = evaluate_perplexity(out, heldout, max_length=max_length)
    losses = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    print(json.dumps({"before": before["all"], "after": after["all"]}, indent=1), flush=True)

    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "sib200_textcat.py"),
            "--encoder",
            str(out),
            "--data",
            str(data),
            "--systems",
            "a",
            "--threads",
            str(threads),
            "--name",
            "sib200_textcat_adapted",
        ],
        check=True,
    )
    adapted = system_a_result(RESULTS / "sib200_textcat_adapted.json")
    unadapted = system_a_result(baseline) if baseline else None
    write_report(
        before,
        after,
        losses,
        adapted,
        unadapted,
        n_docs=n_docs,
        seconds=clock["seconds"],
        settings=settings,
        threads=threads,
        encoder=encoder,
        data=data,
    )


def write_report(
    before, after, losses, adapted, unadapted, *, n_docs, seconds, settings, threads, encoder, data
) -> None:
    langs = sorted(after["per_lang"])
    ppl_rows = [
        [lang, f"{before['per_lang'][lang]['perplexity']:.1f}", f"{after['per_lang'][lang]['perplexity']:.1f}"]
        for lang in langs
    ]
    ppl_rows.append(["**all**", f"{before['all']['perplexity']:.1f}", f"{after['all']['perplexity']:.1f}"])
    acc_header = ["encoder"] + [lang.split("_")[0] for lang in LANGS] + ["avg"]
    acc_rows = []
    for name, result in (("un-adapted", unadapted), ("adapted", adapted)):
        if result:
            acc_rows.append(
                [name]
                + [f"{100 * result['accuracy'][lang]:.1f}" for lang in LANGS]
                + [f"**{100 * result['average']:.1f}**"]
            )
    resumed = [entry for entry in losses if "resumed_from" in entry]
    curve = ", ".join(
        f"{e['step']}: {e['loss']:.2f}"
        for e in losses
        if e["step"] % max(1, settings["max_steps"] // 12) == 0 or "resumed_from" in e
    )
    report = "\n".join(
        [
            "# Domain-adaptive MLM pretraining on SIB-200 text",
            "",
            f"Command: `python benchmarks/pretrain_sib200.py --encoder {encoder} --data {data} --max-steps {settings['max_steps']} "
            f"--batch-size {settings['batch_size']} --threads {threads} --baseline benchmarks/results/sib200_textcat_a.json`",
            "",
            f"Pretraining: {n_docs} unlabelled train+dev sentences of 12 languages, {settings['max_steps']} steps of "
            f"{settings['batch_size']} × {settings['max_length']} pieces, lr {settings['lr']}, {minutes(seconds)} wall "
            f"(interrupted at step {settings['max_steps'] // 2} and resumed{' from step ' + str(resumed[0]['resumed_from']) if resumed else ''}).",
            "",
            "## Held-out masked-LM perplexity (same texts and masks before and after)",
            "",
            markdown_table(["language", "before", "after"], ppl_rows),
            "",
            "e5-small ships without its masked-LM head (it is an embedding model); the head's transform layer",
            "starts random, so 'before' is high and much of the early gain is the head being learned.",
            "",
            f"Loss curve (step: loss): {curve}",
            "",
            "## SIB-200 zero-shot accuracy (train on English, test on 12 languages)",
            "",
            markdown_table(acc_header, acc_rows),
            "",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in machine_info(threads).items()),
            "",
        ]
    )
    (RESULTS / "pretrain_sib200.md").write_text(report, encoding="utf8")
    print(report)


def system_a_result(path: Path) -> dict:
    """System (a)'s scores from a sib200_textcat.py results file, seed 0 (files older than --seeds hold one run)."""
    result = json.loads(path.read_text(encoding="utf8"))["results"]["a"]
    return result if "average" in result else result[min(result, key=int)]


if __name__ == "__main__":
    typer.run(main)
