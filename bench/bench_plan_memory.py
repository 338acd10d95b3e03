"""`taskspace plan`'s host memory against the measured peak resident memory of real probes, on this CPU.

Builds Pythia-shaped models offline (real dimensions, random weights), runs each stage of a run (eval, ftgd,
probe) in its own process as the pipeline does, and takes the largest peak RSS (VmHWM); the plan for the same
settings (`taskspace plan --device cpu --no-calibrate --json`, also in its own process) gives the host peak it
counts. Prints measured, planned and their ratio.

    .venv/bin/python bench/bench_plan_memory.py [--shapes pythia-70m,pythia-160m] [--tasks 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

GiB = 2**30


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def stage(name: str, params: Path, out: Path) -> None:
    """One stage of the run in this process, then its peak RSS on stdout."""
    from taskspace.blimp import data
    from taskspace.lm.models import load_model
    from taskspace.method.probing import run_eval1, run_eval2, run_ftgd
    from taskspace.pipeline.settings import Settings
    from taskspace.runs import Layout

    s = Settings.load(params)
    d, spec = s.data, s.model("m").spec
    train, ev = data.split_pairs(data.load_blimp(s.source, list(d.tasks)), d.n_train, d.n_eval, d.seed)
    layout = Layout(out / "eval", out / "ftgd", out / "probe")
    lm = load_model(spec, "step0", device="cpu")
    if name == "eval":
        run_eval1(lm, ev, layout, s.probe)
    elif name == "ftgd":
        run_ftgd(lm, train, layout, s.ftgd("m"), s.probe)
    else:
        import pyarrow.parquet as pq

        run_eval2(lm, ev, pq.read_table(layout.eval1), layout, s.ftgd("m"), s.probe)
    print(peak_rss())


def write_params(path: Path, spec: Path, tasks: list[str], n_train: int, n_eval: int, steps: int) -> None:
    from taskspace.blimp import data
    from taskspace.runs import expand_runs

    models = {"m": {"spec": str(spec), "revisions": ["step0"]}}
    path.write_text(yaml.safe_dump({
        "data": {"source": "auto", "tasks": tasks, "n_train": n_train, "n_eval": n_eval, "seed": 0},
        "models": models,
        "runs": expand_runs(models),
        "data_files": data.source_files("auto", path.parent),
        "ftgd": {"steps": steps, "batch_size": 8},
        "probing": {},
        "analysis": {},
    }))  # fmt: skip


def measure(shape: str, work: Path, tasks: list[str], args) -> tuple[int, dict]:
    """(measured peak RSS over the three stages, the plan's memory terms) for one shape."""
    from taskspace.blimp import data
    from taskspace.lm import tiny

    spec = work / shape
    pairs = data.load_blimp(data.default_source(), tasks)
    tiny.build_tiny(spec, pairs["good"].to_pylist() + pairs["bad"].to_pylist(), [], steps=0, shape=shape)
    params = work / f"{shape}.yaml"
    write_params(params, spec, tasks, args.n_train, args.n_eval, args.steps)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    peaks = []
    for name in ("eval", "ftgd", "probe"):
        cmd = [sys.executable, __file__, "--stage", name, "--params", str(params), "--out", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(f"stage {name} failed:\n{res.stderr[-3000:]}")
        peaks.append(int(res.stdout.split()[-1]))
    cli = Path(sys.executable).parent / "taskspace"
    res = subprocess.run(
        [str(cli), "plan", "--params", str(params), "--device", "cpu", "--no-calibrate", "--json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    memory = json.loads(res.stdout)["runs"][0]["memory"]
    shutil.rmtree(spec)
    return max(peaks), memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="pythia-70m,pythia-160m")
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=16)
    ap.add_argument("--n-eval", type=int, default=20)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--params", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        return stage(args.stage, args.params, args.out)
    from taskspace.blimp import data

    tasks = data.select_tasks(data.default_source())[: args.tasks]
    work = Path(tempfile.mkdtemp(prefix="bench-plan-memory-"))
    print(f"{'shape':<13}{'measured':>10}{'planned':>10}{'ratio':>8}  (peak RSS in GiB; planned: plan's host peak)")
    try:
        for shape in args.shapes.split(","):
            measured, memory = measure(shape, work, tasks, args)
            print(f"{shape:<13}{measured / GiB:>10.2f}{memory['host'] / GiB:>10.2f}{measured / memory['host']:>8.2f}")
            phases = {k.removeprefix("phase_"): round(v / GiB, 2) for k, v in memory.items() if k.startswith("phase_")}
            print(f"{'':<13}runtime {memory['runtime'] / GiB:.2f} GiB; phases above it (GiB): {phases}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
