"""The demo workflow (project.yml): structure checks, and an end-to-end run on a tiny encoder (slow)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import srsly

from .conftest import ROOT

PROJECT = srsly.read_yaml(ROOT / "project.yml")
COMMANDS = {command["name"]: command for command in PROJECT["commands"]}


def test_workflows_name_existing_commands():
    for workflow, steps in PROJECT["workflows"].items():
        missing = [step for step in steps if step not in COMMANDS]
        assert not missing, f"workflow {workflow} names unknown commands {missing}"
    assert PROJECT["workflows"]["all"][-1] == "smoke"


def test_committed_deps_exist():
    generated = ("corpus_spacy/", "training/", "encoders/", "packages/", "metrics/")
    for command in PROJECT["commands"]:
        for dep in command.get("deps", []):
            if not dep.startswith(generated):
                assert (ROOT / dep).exists(), f"{command['name']}: dependency {dep} is not in the repository"


@pytest.mark.slow
def test_all_workflow_end_to_end_on_tiny_encoder(tmp_path, tiny_wordpiece_dir):
    """`spacy project run all` with the tiny encoder: trains, evaluates, packages, installs, loads offline."""
    project = tmp_path / "project"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "project",
            "run",
            "all",
            str(project),
            "--vars.base_model",
            str(tiny_wordpiece_dir),
            "--vars.textcat_steps",
            "6",
            "--vars.qa_epochs",
            "1",
            "--vars.translation_steps",
            "6",
            # An untrained tiny encoder cannot give the expected label: check the outputs' form.
            "--vars.smoke_checks",
            "outputs",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for task in ("textcat", "qa", "translation"):
        assert srsly.read_json(project / "metrics" / f"{task}.json")["all"]["n"] > 0
        assert (project / "metrics" / f"{task}.png").read_bytes().startswith(b"\x89PNG")
    assert "all three tasks ran offline from the installed package and gave outputs of the right form" in result.stdout
