"""dvc.yaml and the resume stamps, from one declaration of what each stage depends on (`STAGES`).

dvc.yaml's `params:` and `deps:` lists are generated from STAGES (`taskspace stage dvc-yaml`; a test keeps the
committed file in step), and the stamps that let a killed stage skip finished tasks hash exactly the same keys,
so DVC and the stamps agree on what is stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import yaml

from taskspace.runs import ANALYSIS_FILE, INDEX_DB, METRICS_FILE, MODEL_CODE


@dataclass(frozen=True)
class StageSpec:
    """What a stage's results depend on: params.yaml keys (`runs.${key}`: the run's own entry) and code."""

    params: tuple[str, ...]
    code: tuple[str, ...]


SCORING = ("taskspace/lm/scoring.py", "taskspace/lm/packing.py", MODEL_CODE)
TUNING = ("taskspace/method/ftgd.py", "taskspace/method/similarity.py", "taskspace/method/impact.py",
          "taskspace/method/probing.py", *SCORING)  # fmt: skip
GRADIENT_KEYS = ("probing.grad_params", "probing.grad_projection", "probing.projection_seed")
REPLICATE_KEYS = ("probing.ftgd_seeds", "probing.split_seeds")
RUN_LOADS = ("spec", "revision", "weights", "prefix")  # what a run's model is loaded from (runs.expand_runs)
STAGES: dict[str, StageSpec] = {
    # first, on any params change: a bad setting stops `dvc repro` before any stage deletes its outputs
    "check": StageSpec(
        ("data", "data_files", "tiny_models", "models", "runs", "compute", "ftgd", "probing", "analysis"),
        ("taskspace/config.py", "taskspace/pipeline/settings.py"),
    ),
    "prepare": StageSpec(("data", "probing.split_seeds"), ("taskspace/blimp/data.py",)),
    "tiny": StageSpec(("tiny_models.${key}",), ("taskspace/lm/tiny.py",)),
    # eval1 depends on the weights and the prefix only: a model's FTGD overrides or its scale label rerun no eval
    "eval": StageSpec(("data", *(f"runs.${{key}}.{k}" for k in RUN_LOADS), "compute", *REPLICATE_KEYS), SCORING),
    "ftgd": StageSpec(
        ("data", "runs.${key}", "compute", "ftgd", *GRADIENT_KEYS, *REPLICATE_KEYS, "probing.control"), TUNING
    ),
    "probe": StageSpec(
        ("data", "runs.${key}", "compute", "ftgd", *GRADIENT_KEYS, *REPLICATE_KEYS, "probing.control",
         "probing.metric", "probing.transfer", "probing.cell_permutations"),  # fmt: skip
        (*TUNING, "taskspace/stats/reliability.py"),
    ),
    "analyze": StageSpec(
        ("runs", "ftgd.sparsity", "analysis"),
        ("taskspace/stats/analysis.py", "taskspace/stats/grouping.py", "taskspace/stats/spaces.py",
         "taskspace/blimp/words.py", "taskspace/report/export.py", "taskspace/report/labels.py"),  # fmt: skip
    ),
    "index": StageSpec((), ("taskspace/index",)),
}


def _value(raw: dict, key: str, stage_key: str | None):
    node = raw
    for part in key.replace("${key}", str(stage_key)).split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if key == "runs.${key}" and isinstance(node, dict) and node.get("prefix", "") is None:
        node = {k: v for k, v in node.items() if k != "prefix"}  # written out for eval's params: stamps as before
    return node


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# eval2's scores do not depend on how the spaces are made from them: a run switched to `probing.transfer: both`
# keeps every finished eval2 pass (its stamp hashes the probe stage's keys but those)
SPACES_ONLY = ("probing.transfer", "probing.cell_permutations")
STAMPED = {**{name: spec.params for name, spec in STAGES.items()},
           "eval2": tuple(k for k in STAGES["probe"].params if k not in SPACES_ONLY)}  # fmt: skip


def stamp(stage: str, raw: dict, stage_key: str | None = None) -> str:
    """Hash of the params a stage's work depends on (STAGES; `eval2`: the probe's passes), for one run: finished
    work carrying it is not redone."""
    return _digest({k: _value(raw, k, stage_key) for k in STAMPED[stage]})


def settings_hash(raw: dict, stage_key: str) -> str:
    """What determines a run's results besides its revision: the index keeps variants apart by it, and a
    model's checkpoints under the same settings share it (adding a checkpoint changes no other run's)."""
    keyed = {k: _value(raw, k, stage_key) for k in STAGES["probe"].params}
    keyed["runs.${key}"] = {k: v for k, v in (keyed["runs.${key}"] or {}).items() if k not in ("revision", "weights")}
    return _digest(keyed)


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
        [str(ANALYSIS_FILE), "data/analyze/plots"],
        metrics=[str(METRICS_FILE)],
    )
    stages["index"] = _stage(
        f"./scripts/ts index --db {INDEX_DB}",
        STAGES["index"],
        ["data/prepare", "data/eval", "data/probe", str(ANALYSIS_FILE)],
        # cached, so a `dvc pull` elsewhere brings the index too; persist: it is updated in place, new runs only
        [{str(INDEX_DB): {"persist": True}}],
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
# Generated from taskspace/pipeline/dvcfile.py (STAGES) by `taskspace stage dvc-yaml`; edit there, not here.
# check → prepare → tiny@<model> → eval@<run> → ftgd@<run> → probe@<run> → analyze → index. A run is a model × revision
# (`runs`, derived from `models` at every `dvc exp run`): DVC caches and skips each on its own. Each stage depends
# on exactly the params its results depend on (the resume stamps hash the same keys) and on its code.
"""


def dvc_yaml_text() -> str:
    return DVC_HEADER + yaml.safe_dump(dvc_yaml(), sort_keys=False, width=120)
