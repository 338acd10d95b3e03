"""What a params.yaml will cost before it runs: passes, FLOPs, disk, peak memory and time, per run and in total.

Counts come from the settings and the data (tokens per sentence, prefix-tree packing); the model's shape from its
config (a local folder, the hub cache, or Pythia's published dimensions offline), so nothing is downloaded.
Time comes from a short calibration on the current device with a model of the same shape and random weights: a
few scoring batches, a gradient differential, mask selection, a sketch and FTGD steps, timed exactly as the stages
run them. Planning for a GPU from a machine without one (`--device cuda --gpu h100`) gives an estimate instead
(taskspace.pipeline.gpus). Memory is counted from what the code allocates (taskspace.pipeline.footprint).
An unreachable hub (or HF_HUB_OFFLINE) is detected once, and every lookup then reads local copies only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from taskspace.config import TRANSFER_MODES, FTGDConfig, ProbeConfig, TinyConfig
from taskspace.lm.shapes import PYTHIA_SHAPES
from taskspace.method.ftgd import PARAM_GROUPS
from taskspace.method.similarity import EXACT_GRADIENT_MAX, exact_gradient_refusal
from taskspace.pipeline.calibrate import (
    Calibration,
    HostCalibration,
    calibrate,
    calibrate_host,
    packed_positions,
    tokenizer_for,
)
from taskspace.pipeline.footprint import COLLAPSE_SENTENCES, footprint, rss
from taskspace.pipeline.gpus import DEFAULT_GPU, GPUEstimate, estimate, gpu
from taskspace.pipeline.settings import Settings
from taskspace.runs import tiny_dir

ROW_BYTES = 26  # a score row in Parquet (task dictionary, pair id, three float64, bool), measured
GiB = 2**30


@dataclass(frozen=True)
class Shape:
    """What a model's cost depends on."""

    n_params: int
    n_embedding: int  # input embedding and output head: looked up or used only where logits are kept
    hidden: int
    layers: int
    vocab: int
    source: str  # where the shape came from


def shape_of_config(config, source: str) -> Shape:
    """Parameter counts from a transformers config, by instantiating the model on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    named = list(model.named_parameters())
    emb = sum(p.numel() for n, p in named if re.search(PARAM_GROUPS["embeddings"], n))
    return Shape(
        n_params=sum(p.numel() for _, p in named),
        n_embedding=emb,
        hidden=int(config.hidden_size),
        layers=int(config.num_hidden_layers),
        vocab=int(config.vocab_size),
        source=source,
    )


def model_config(spec: str, revision: str | None = None, tiny: TinyConfig | None = None, offline: bool = False):
    """(transformers config, where it came from) for a model spec, without downloading weights.

    `tiny` is the spec's `tiny_models` entry when its tiny stage builds it (its folder may not exist yet);
    `offline`: the hub cache only, no request (an unreachable hub would retry for minutes)."""
    from transformers import AutoConfig

    from taskspace.lm.models import ModelError, resolve
    from taskspace.lm.shapes import pythia_config

    if tiny is not None and not Path(spec).exists():
        from taskspace.lm.tiny import tiny_config

        shape = tiny.shape
        if shape == "tiny":
            return tiny_config(2500, tiny.hidden, tiny.layers), "tiny_models (to be built)"
        return pythia_config(shape), f"{shape} dimensions (to be built)"
    try:
        target, hub_rev, local = resolve(spec, revision)
        if target.endswith(".gguf"):
            return AutoConfig.from_pretrained(Path(target).parent, gguf_file=Path(target).name), target
        config = AutoConfig.from_pretrained(target, revision=hub_rev, local_files_only=offline and not local)
        return config, target if local else f"{spec} (hub config{', cached' if offline else ''})"
    except (OSError, ValueError, ModelError) as e:
        name = spec.rsplit("/", 1)[-1].removesuffix("-deduped")
        if name in PYTHIA_SHAPES:
            return pythia_config(name), f"Pythia's published {name} dimensions"
        raise ModelError(
            f"cannot tell the size of model {spec!r} ({str(e).splitlines()[0]}); pass a local folder"
        ) from None


@dataclass
class Workload:
    """One run's work in sentences (each a forward pass through the model over its packed positions), over all
    its replicates and their controls."""

    tasks: int
    tunings: int  # tasks × replicates × (1 + control): each one FTGD run and one eval2 pass
    eval_sentences: int  # eval1: every task's eval pairs, both sentences, once per replicate (its own split)
    eval2_sentences: int  # one eval1-sized pass per tuning (exact transfer)
    linear_pairs: int  # first-order transfer: every task's eval pairs through a gradient, once per replicate/control
    grad_sentences: int  # gradient differentials (forward + backward), every tuning
    ftgd_sentences: int  # FTGD steps (forward + backward), every tuning
    collapse_sentences: int  # the collapse check after every tuning: others' sentences before and after, own pairs
    forward_passes: int
    backward_passes: int
    positions_per_sentence: float  # computed positions after prefix-tree packing

    @property
    def host_sentences(self) -> int:
        """Sentences the host tokenises, packs and collates: the eval set once per stage that scores it (eval,
        probe), every training batch and the collapse check as they run."""
        return (2 * self.eval_sentences + self.grad_sentences + self.ftgd_sentences + self.collapse_sentences
                + 2 * self.linear_pairs)  # fmt: skip


def workload(
    n_tasks: int,
    n_train: int,
    n_eval: int,
    ftgd: FTGDConfig,
    probe: ProbeConfig,
    positions: float,
    replicates: int = 1,
    control: bool = False,
) -> Workload:
    batch = min(ftgd.batch_size, n_train)
    tunings = n_tasks * replicates * (1 + control)
    eval_s = 2 * n_tasks * n_eval
    exact, linear = probe.transfer in ("exact", "both"), probe.transfer in ("linear", "both")
    linear_batches = replicates * (1 + control) * n_tasks * math.ceil(n_eval / ftgd.batch_size) if linear else 0
    eval_batches = math.ceil(eval_s / probe.eval_batch_size)
    grad_batches = math.ceil(n_train / ftgd.batch_size)
    others = min(COLLAPSE_SENTENCES, (n_tasks - 1) * n_train or n_train)
    own = min(COLLAPSE_SENTENCES, n_train)
    collapse_passes = 2 * math.ceil(others / 32) + 1  # lm_loss (batches of 32) before and after, own pairs once
    return Workload(
        tasks=n_tasks,
        tunings=tunings,
        eval_sentences=replicates * eval_s,
        eval2_sentences=tunings * eval_s if exact else 0,
        linear_pairs=replicates * (1 + control) * n_tasks * n_eval if linear else 0,
        grad_sentences=tunings * 2 * n_train,
        ftgd_sentences=tunings * ftgd.steps * 2 * batch,
        collapse_sentences=tunings * (2 * others + 2 * own),
        forward_passes=(replicates + tunings * exact) * eval_batches + linear_batches
        + tunings * (grad_batches + ftgd.steps + collapse_passes),
        backward_passes=tunings * (grad_batches + ftgd.steps) + linear_batches,
        positions_per_sentence=positions,
    )


def flops(w: Workload, s: Shape) -> float:
    """≈ 2 FLOPs per weight per computed position forward (body, and the head where logits are kept), 3× with
    the backward pass; attention over these short contexts is a few percent and left out."""
    per_position = 2 * (s.n_params - s.n_embedding) + 2 * s.hidden * s.vocab
    forward = w.eval_sentences + w.eval2_sentences + w.collapse_sentences
    train = w.grad_sentences + w.ftgd_sentences + 2 * w.linear_pairs
    return per_position * w.positions_per_sentence * (forward + 3 * train)


def selected(ftgd: FTGDConfig, s: Shape) -> int:
    return math.ceil(ftgd.sparsity * s.n_params)  # the `all` group; a smaller group selects fewer


def gradient_entries(probe: ProbeConfig, s: Shape) -> int:
    """What is stored per task for gradient similarity (see similarity.gradient_vector)."""
    if probe.grad_projection and s.n_params > probe.grad_projection:
        return probe.grad_projection
    return s.n_params


def disk(w: Workload, s: Shape, ftgd: FTGDConfig, probe: ProbeConfig, n_eval: int, dtype_bytes: int) -> dict:
    """Bytes of each stage's outputs for one run (the DVC cache holds a second copy unless it links)."""
    t, units = w.tasks, w.tunings // max(w.tasks, 1)  # units: replicates × (1 + control)
    delta = selected(ftgd, s) * (4 + 2 * dtype_bytes) + 40_000  # int32 index, base and tuned values; header
    grad = gradient_entries(probe, s) * 4 + 128
    return {
        "eval": w.eval_sentences // 2 * ROW_BYTES + 2_500,
        "ftgd": w.tunings * (delta + grad + 110 * ftgd.steps + 1_000),
        "probe": w.tunings * (t * n_eval * ROW_BYTES + 2_500) + units * (5 * t * t * 8 + t * 1_000),
    }


def memory(
    w: Workload, s: Shape, ftgd: FTGDConfig, probe: ProbeConfig, dtype_bytes: int, device: str = "cpu",
    runtime: int = 0, n_train: int | None = None,
) -> dict:  # fmt: skip
    """Peak bytes by term and phase (taskspace.pipeline.footprint): `device` while tuning on the model's device,
    `host` the process's resident peak (`runtime`: what the interpreter and libraries hold before any model)."""
    batch = min(ftgd.batch_size, n_train) if n_train else ftgd.batch_size
    return footprint(
        s, selected(ftgd, s), w.tasks, gradient_entries(probe, s), w.positions_per_sentence, batch,
        probe.eval_batch_size, dtype_bytes, device, runtime, probe.transfer != "exact",
    )  # fmt: skip


def run_seconds(w: Workload, c: Calibration, n_train: int, ftgd: FTGDConfig) -> float:
    """eval, ftgd and probe each load the model; then scoring, and per tuning (task × replicate, and its control)
    a differential, a mask, a gradient vector and the FTGD steps."""
    per_tuning = n_train * c.s_grad_pair + c.s_mask + c.s_sketch + ftgd.steps * c.s_step
    scored = w.eval_sentences + w.eval2_sentences + w.collapse_sentences
    return 3 * c.s_load + scored * c.s_sentence + w.tunings * per_tuning + w.linear_pairs * c.s_grad_pair


@dataclass
class RunPlan:
    run: str
    model: str
    shape: Shape
    workload: Workload
    flops: float
    disk: dict[str, int]
    memory: dict[str, int]
    seconds: float | None
    calibration: Calibration | None
    estimate: GPUEstimate | None = None  # planned for a GPU that is not here: datasheet figures, not a measurement
    host_calibration: HostCalibration | None = None
    transfer_seconds: dict[str, float] | None = None  # the whole run's time with each probing.transfer choice


def _offline(specs: list[str], say) -> bool:
    """Decided once per plan: whether hub lookups are skipped (HF_HUB_OFFLINE, or the hub does not answer)."""
    from taskspace.lm.models import hub_offline

    if all(Path(spec).exists() or spec.endswith(".gguf") for spec in specs):
        return False  # nothing to look up
    offline = hub_offline()
    if offline:
        say("hub unreachable (or HF_HUB_OFFLINE): local copies only, no hub requests")
    return offline


def _eval_data(s: Settings, offline: bool):
    from taskspace.blimp import data

    d, src = s.data, s.source
    if offline and str(src) == data.HUB and data.default_source() != data.HUB:
        src = data.default_source()  # the same sentences from the local copy, without minutes of retries
    names = data.select_tasks(src, d.tasks, d.phenomena, d.fields)
    try:
        pairs = data.load_blimp(src, names)
    except data.DataError:  # e.g. the hub down after all: the same sentences from the local copy
        pairs = data.load_blimp(data.default_source(), names)
    return names, *data.split_pairs(pairs, d.n_train, d.n_eval, d.seed)


def plan(
    s: Settings,
    calibrate_on: bool = True,
    device: str | None = None,
    dtype: str | None = None,
    say=print,
    gpu_name: str | None = None,
):
    """Per run (model × revision) of the settings: its RunPlan; and the warnings of what will not fit.

    `device` cuda without a GPU here plans for `gpu_name` (default h100) from datasheet figures: an estimate."""
    import shutil

    import torch
    import transformers  # noqa: F401 - counted in the runtime's resident memory, as in every stage

    from taskspace.lm.models import pick_device, pick_dtype

    runtime = rss()
    offline = _offline([s.model(r.model).spec for r in s.runs], say)
    names, train, ev = _eval_data(s, offline)
    d = s.data
    n_train, n_eval = d.n_train, d.n_eval
    sentences = ev.column("good").to_pylist() + ev.column("bad").to_pylist()
    probe = s.probe
    estimating = bool(device) and torch.device(device).type == "cuda" and not torch.cuda.is_available()
    if gpu_name and not estimating:
        why = "a GPU is here: it is calibrated instead" if torch.cuda.is_available() else "use it with --device cuda"
        say(f"--gpu {gpu_name} ignored: {why}")
    target = gpu(gpu_name or DEFAULT_GPU) if estimating else None
    dev = torch.device("cuda") if estimating else pick_device(device)
    dt_bytes = torch.empty(0, dtype=getattr(torch, dtype) if dtype else torch.bfloat16).element_size() if estimating \
        else torch.empty(0, dtype=pick_dtype(dev, dtype)).element_size()  # fmt: skip
    plans, cache = [], {}
    built = {str(tiny_dir(name)): cfg for name, cfg in s.tiny_models.items()}
    for run in s.runs:
        model, rev = run.model, run.revision
        spec = s.model(model).spec
        tiny = built.get(spec)  # a model the tiny stage will build
        ftgd = s.ftgd(model)
        if model not in cache:  # one shape, tokenizer and calibration per model, whatever its revision
            hub_rev = None if rev == "main" else rev
            config, where = model_config(spec, hub_rev, tiny, offline)
            tok, kind = tokenizer_for(spec, hub_rev, sentences, tiny, offline)
            shape = shape_of_config(config, where)
            cal = host = None
            if calibrate_on and estimating:
                say(f"calibrating {model}'s host work on this machine (the GPU time is estimated)…")
                host = calibrate_host(tok, kind, sentences, shape.n_params, len(names), ftgd.sparsity,
                                      gradient_entries(probe, shape), probe.eval_batch_size, say)  # fmt: skip
            elif calibrate_on:
                say(f"calibrating {model} ({where}) on {dev}…")
                cal = calibrate(config, tok, kind, train, ev, ftgd, probe, device, dtype, say)
            cache[model] = (shape, cal, host, packed_positions(tok, sentences))
        shape, cal, host, positions = cache[model]
        reps = len(probe.replicates(ftgd.seed, d.seed))
        w = workload(len(names), n_train, n_eval, ftgd, probe, positions, reps, probe.control)
        f = flops(w, shape)
        est = estimate(w, shape, f, host, target, dt_bytes, gradient_entries(probe, shape)) if target else None
        per_mode = None  # the run's time with each probing.transfer choice
        if cal or target:
            per_mode = {}
            for mode in TRANSFER_MODES:
                wm = workload(len(names), n_train, n_eval, ftgd, replace(probe, transfer=mode), positions, reps,
                              probe.control)  # fmt: skip
                g = gradient_entries(probe, shape)
                per_mode[mode] = (estimate(wm, shape, flops(wm, shape), host, target, dt_bytes, g).seconds if target
                                  else run_seconds(wm, cal, n_train, ftgd))  # fmt: skip
        plans.append(
            RunPlan(
                run=run.stage_key,
                model=model,
                shape=shape,
                workload=w,
                flops=f,
                disk=disk(w, shape, ftgd, probe, n_eval, dt_bytes),
                memory=memory(w, shape, ftgd, probe, dt_bytes, dev.type, runtime, n_train),
                seconds=est.seconds if est else run_seconds(w, cal, n_train, ftgd) if cal else None,
                calibration=cal,
                estimate=est,
                host_calibration=host,
                transfer_seconds=per_mode,
            )
        )
    free = shutil.disk_usage(Path("data") if Path("data").exists() else Path(".")).free
    cap = target.memory if target else None
    return plans, warnings(plans, probe, dev, free, cap)


def device_peak(r: RunPlan) -> int:
    """Measured on CUDA; else the counted bytes (taskspace.pipeline.footprint)."""
    c = r.calibration
    return c.peak_device if c and c.peak_device else r.memory["device"]


def warnings(
    plans: list[RunPlan], probe: ProbeConfig, dev, free_disk: int, device_memory: int | None = None
) -> list[str]:
    """What will not fit (device or host memory, disk) or will be refused, in plain words."""
    import os

    import torch

    out = []
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if device_memory:
        cap = device_memory  # the GPU planned for, from its datasheet
    elif dev.type == "cuda":
        cap = torch.cuda.get_device_properties(dev).total_memory if torch.cuda.is_available() else float("inf")
    else:
        cap = host
    for r in plans:
        if not probe.grad_projection and r.shape.n_params > EXACT_GRADIENT_MAX:
            out.append(f"{r.run}: will stop — {exact_gradient_refusal(r.shape.n_params)}")
        if device_peak(r) > 0.9 * cap:
            out.append(f"{r.run}: needs ~{device_peak(r) / GiB:.1f} GiB on {dev}, which has {cap / GiB:.1f} GiB")
        if dev.type == "cuda" and r.memory["host"] > 0.9 * host:
            out.append(f"{r.run}: needs ~{r.memory['host'] / GiB:.1f} GiB of host memory; here {host / GiB:.1f} GiB")
    need = 2 * sum(sum(r.disk.values()) for r in plans)  # outputs and their DVC cache copies
    if need > free_disk:
        out.append(f"outputs and DVC cache need ~{need / GiB:.1f} GiB; {free_disk / GiB:.1f} GiB free")
    return out
