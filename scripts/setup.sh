#!/usr/bin/env bash
# Create .venv and install spacy-mbert with its test and evaluation extras.
# torch goes first, pinned, so that pip does not pull a multi-GB CUDA build as a
# dependency of spacy-transformers. Override with TORCH_SPEC="torch==X.Y.Z".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -e ".[test]"
# An assignment, so that set -e stops here when an install is broken (echo "$(...)" would not).
versions="$(.venv/bin/python -c 'import spacy_mbert; from importlib.metadata import version; print(", ".join(f"{name} {version(name)}" for name in ("spacy", "spacy-transformers", "torch", "transformers")))')"
echo "✔ Environment ready: $versions"
