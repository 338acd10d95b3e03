#!/usr/bin/env bash
# The README's main job on the embedded offline default: set up, then score SmolLM2-135M (bundled) on BLiMP.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/taskspace score --model smollm2 \
  --tasks regular_plural_subject_verb_agreement_1,anaphor_gender_agreement,determiner_noun_agreement_1,adjunct_island \
  --n 100 --out data/score/smollm2.parquet
