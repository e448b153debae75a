#!/usr/bin/env bash
# Set up (if needed) and run the offline demo workflow: `spacy project run all`.
# Extra arguments go to `spacy project run`, e.g. `bash scripts/demo.sh --vars.gpu_id 0`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec .venv/bin/python -m spacy project run all . "$@"
