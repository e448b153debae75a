#!/usr/bin/env bash
# Install a packaged pipeline wheel into a fresh virtual environment, then load it
# by package name with HF_HUB_OFFLINE=1 and run each task (scripts/smoke.py).
#   bash scripts/smoke.sh WHEEL PACKAGE_NAME [expected|outputs]   (what scripts/smoke.py checks)
set -euo pipefail
cd "$(dirname "$0")/.."
wheel="$1"
name="$2"
shift 2
venv="packages/smoke-venv"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "$TORCH_SPEC"
# spacy-mbert is the package's declared requirement; it comes from this checkout.
"$venv/bin/python" -m pip install --quiet . "$wheel"
cd "$venv"  # away from the checkout, so nothing is imported from it
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME="$PWD/empty-hf-home" ./bin/python ../../scripts/smoke.py "$name" "${1:-expected}"
