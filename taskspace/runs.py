"""Runs: one model at one revision — their names, their order, and where their files are.

A run has one identity with four spellings, all made here:
- `label` (`tiny@step300`): what people read; the `run` field of run.json and metrics.json's keys;
- `stage_key` (`tiny-step300`): its entries in params.yaml's `runs` and dvc.yaml's stages (`eval@tiny-step300`);
- `index_key` (`tiny@step300#<settings hash>`): unique in the index, so `dvc exp` variants of a run coexist;
- the index's integer `run_id`, assigned when it is indexed.

Checkpoints are ordered by training step everywhere (`step1000` before `step16000`, which text order gets wrong);
revisions that are not steps keep their listed order, after them. This module is the only one that knows the
output layout, `data/<stage>/<model>/<revision>/` and the files inside it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DATA = Path("data")
MODEL_CODE = "taskspace/lm/models.py"  # what a hub or bundled model's runs depend on in dvc.yaml (see `weights`)
# A model entry's keys that do not change any one run's results: adding seed variants to a model (or naming its
# family) recomputes nothing of the runs it already has.
NOT_RESULTS = ("revisions", "compile", "seeds", "seed", "family")

STEP = re.compile(r"^step(\d+)$")
# The same rule in SQL, for index queries: the step number, NULL for other names (sorted last).
STEP_SQL = "TRY_CAST(regexp_extract({col}, '^step([0-9]+)$', 1) AS BIGINT)"


# ---- order ----------------------------------------------------------------------------------------------


def revision_step(revision: str) -> int | None:
    """The training step of a Pythia-style revision name (`step16000` → 16000), else None."""
    m = STEP.match(str(revision))
    return int(m.group(1)) if m else None


def revision_key(revision: str, listed: int = 0) -> tuple[int, int]:
    """Sort key: steps by number first, then other names by their listed position."""
    step = revision_step(revision)
    return (0, step) if step is not None else (1, listed)


def order_revisions(revisions: Sequence[str]) -> list[str]:
    """Revisions in training order (see module doc)."""
    return [r for _, r in sorted((revision_key(r, i), r) for i, r in enumerate(revisions))]


# ---- identity -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where one run's files are: eval1 (eval), deltas and gradients (ftgd), eval2 and the spaces (probe).
    The pipeline keeps them in one folder per stage; `taskspace probe --out DIR` keeps them all in DIR."""

    eval: Path
    ftgd: Path
    probe: Path

    @classmethod
    def single(cls, out: str | Path) -> Layout:
        out = Path(out)
        return cls(out, out, out)

    @property
    def eval1(self) -> Path:
        return self.eval / "eval1.parquet"

    def delta(self, task: str) -> Path:
        return self.ftgd / "tasks" / task / "delta.safetensors"

    def gradient(self, task: str) -> Path:
        return self.ftgd / "tasks" / task / "grad.npy"

    def ftgd_info(self, task: str) -> Path:
        """Written last for a task: its presence marks the task tuned."""
        return self.ftgd / "tasks" / task / "ftgd.json"

    def eval2(self, task: str) -> Path:
        return self.probe / "tasks" / task / "eval2.parquet"

    @property
    def matrices(self) -> Path:
        return self.probe / "matrices.npz"

    @property
    def summary(self) -> Path:
        return self.probe / "probe.json"

    @property
    def info(self) -> Path:
        """run.json: the run's identity and provenance, written when its spaces are."""
        return self.probe / "run.json"

    @property
    def replicates_file(self) -> Path:
        """Every replicate's spaces side by side (R, T, T per kind), when a run has several."""
        return self.probe / "replicates.npz"

    def replicate(self, r: int, of: int) -> Layout:
        """Replicate r of `of`: a run with one replicate keeps its files in place, several get a folder each."""
        if of == 1:
            return self
        return Layout(*(d / "replicates" / f"r{r}" for d in (self.eval, self.ftgd, self.probe)))

    @property
    def control(self) -> Layout:
        """The label-swapped control tuning of this (replicate's) run: its own deltas and eval2, the same eval1."""
        return Layout(self.eval, self.ftgd / "control", self.probe / "control")


@dataclass(frozen=True)
class Run:
    """One model at one revision (`main`: the default weights), under a data folder."""

    model: str
    revision: str = "main"
    data: Path = DATA

    @property
    def label(self) -> str:
        return f"{self.model}@{self.revision}"

    @property
    def stage_key(self) -> str:
        """DVC splits stage names at the last '@' and parameter paths at dots, so neither may appear."""
        return f"{self.model}-{self.revision}".replace("@", "_").replace(".", "_")

    def index_key(self, settings_hash: str) -> str:
        return f"{self.label}#{settings_hash}"

    @property
    def hub_revision(self) -> str | None:
        return None if self.revision == "main" else self.revision

    def dir(self, stage: str) -> Path:
        return self.data / stage / self.model / self.revision

    @property
    def layout(self) -> Layout:
        return Layout(self.dir("eval"), self.dir("ftgd"), self.dir("probe"))

    @classmethod
    def of_dir(cls, folder: Path) -> Run:
        """The run whose stage folder this is (data/<stage>/<model>/<revision>)."""
        return cls(folder.parent.name, folder.name, folder.parents[2])


# ---- the project's other outputs ------------------------------------------------------------------------


def splits_root(data: Path = DATA) -> Path:
    """The prepare stage's folder: the primary split's train.parquet and eval.parquet, and tasks.parquet."""
    return data / "prepare" / "splits"


def splits_dir(data: Path, seed: int, primary: int) -> Path:
    """Where the prepare stage writes the train/eval split made with `seed` (the primary one at the top)."""
    root = splits_root(data)
    return root if seed == primary else root / f"seed{seed}"


def split_files(root: Path) -> tuple[Path, Path]:
    """(train, eval) Parquet files of one split folder."""
    return root / "train.parquet", root / "eval.parquet"


def tasks_file(data: Path = DATA) -> Path:
    """The selected tasks with their phenomenon, paper phenomenon and field."""
    return splits_root(data) / "tasks.parquet"


def tiny_dir(name: str, data: Path = DATA) -> Path:
    """Where the tiny stage builds `tiny_models.<name>` (its revisions are sub-folders stepN)."""
    return data / "tiny" / name


ANALYZE = DATA / "analyze"  # analysis.json, metrics.json (the DVC metric) and plots/
ANALYSIS_FILE = ANALYZE / "analysis.json"
METRICS_FILE = ANALYZE / "metrics.json"
INDEX_DB = DATA / "index" / "taskspace.duckdb"


def finished_runs(data: Path = DATA) -> list[Run]:
    """Runs whose spaces are written (run.json and matrices.npz), each model's in training order."""
    found = [Run.of_dir(f.parent) for f in (data / "probe").glob("*/*/run.json")]
    done = [r for r in found if r.layout.matrices.exists()]
    return sorted(done, key=lambda r: (r.model, revision_key(r.revision), r.revision))


# ---- params.yaml's `runs` -------------------------------------------------------------------------------


def model_revisions(entry: dict) -> list[str]:
    """A model entry's revisions in training order; `main` (or none listed) means the default weights."""
    return order_revisions([str(r) for r in entry.get("revisions") or ["main"]])


def weights(spec: str, revision: str) -> str:
    """What a run's model is read from on disk, for dvc.yaml's deps: a local folder (its revision
    sub-folder) or file; for hub and bundled models, the loading code."""
    local = spec.startswith(("data/", "models/", ".", "/", "~")) or spec.endswith(".gguf") or Path(spec).exists()
    if not local:
        return MODEL_CODE
    return spec if spec.endswith(".gguf") or revision == "main" else f"{spec}/{revision}"


def seed_model(model: str, seed: int) -> str:
    """The model name of a seed variant listed under `models.<model>.seeds`."""
    return f"{model}-seed{seed}"


def expand_seeds(models: dict) -> dict[str, dict]:
    """`models` with each entry's `seeds` ({seed: spec}, e.g. PolyPythia's `EleutherAI/pythia-160m-seed1`) made
    model entries of their own (`<model>-seed<k>`: the entry's other settings, that spec), all of the family
    `<model>`; the listing entry keeps its own spec as `seed` (default 0). Entries without seeds are unchanged."""
    out = {}
    for model, entry in models.items():
        seeds = entry.get("seeds") if isinstance(entry, dict) else None
        if not seeds:
            out[model] = entry
            continue
        base = {k: v for k, v in entry.items() if k != "seeds"}
        out[model] = {**entry, "family": model, "seed": entry.get("seed", 0)}  # its `seeds` checked with it
        for seed, spec in (seeds.items() if isinstance(seeds, dict) else ()):
            out[seed_model(model, seed)] = {**base, "spec": spec, "family": model, "seed": seed}
    return out


def expand_runs(models: dict) -> dict[str, dict]:
    """One entry per model × revision with everything that run's results depend on: what dvc.yaml's eval, ftgd
    and probe stages iterate over, so each run is a stage entry DVC caches and skips on its own. Hydra derives
    params.yaml's `runs` from `models` with this (conf/hydra_plugins) at every `dvc exp run`."""
    out = {}
    for model, entry in expand_seeds(models).items():
        for rev in model_revisions(entry):
            run = Run(model, rev)
            kept = {"prefix": None} | {k: v for k, v in entry.items() if k not in NOT_RESULTS}  # prefix: eval's param
            out[run.stage_key] = {**kept, "model": model, "revision": rev, "weights": weights(str(entry["spec"]), rev)}
    return out
