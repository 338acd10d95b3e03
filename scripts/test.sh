#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then lint and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check taskspace taskspace_tui tests bench docs
exec .venv/bin/python -m pytest -q "$@"
