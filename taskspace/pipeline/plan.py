"""What a params.yaml will cost before it runs: passes, FLOPs, disk, peak memory and time, per run and in total.

Counts come from the settings and the data (tokens per sentence, prefix-tree packing); the model's shape from its
config (a local folder, the hub cache, or Pythia's published dimensions offline), so nothing is downloaded.
Time and the activation memory come from a short calibration on the current device with a model of the same
shape and random weights: a few scoring batches, a gradient differential, mask selection, a sketch and FTGD
steps, timed exactly as the stages run them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from taskspace.config import FTGDConfig, ProbeConfig, TinyConfig
from taskspace.lm.shapes import PYTHIA_SHAPES
from taskspace.method.ftgd import PARAM_GROUPS
from taskspace.method.similarity import EXACT_GRADIENT_MAX, exact_gradient_refusal
from taskspace.pipeline.calibrate import Calibration, calibrate, packed_positions, tokenizer_for
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


def model_config(spec: str, revision: str | None = None, tiny: TinyConfig | None = None):
    """(transformers config, where it came from) for a model spec, without downloading weights.

    `tiny` is the spec's `tiny_models` entry when its tiny stage builds it (its folder may not exist yet)."""
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
        return AutoConfig.from_pretrained(target, revision=hub_rev), target if local else f"{spec} (hub config)"
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
    eval2_sentences: int  # one eval1-sized pass per tuning
    grad_sentences: int  # gradient differentials (forward + backward), every tuning
    ftgd_sentences: int  # FTGD steps (forward + backward), every tuning
    forward_passes: int
    backward_passes: int
    positions_per_sentence: float  # computed positions after prefix-tree packing


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
    eval_batches = math.ceil(eval_s / probe.eval_batch_size)
    grad_batches = math.ceil(n_train / ftgd.batch_size)
    return Workload(
        tasks=n_tasks,
        tunings=tunings,
        eval_sentences=replicates * eval_s,
        eval2_sentences=tunings * eval_s,
        grad_sentences=tunings * 2 * n_train,
        ftgd_sentences=tunings * ftgd.steps * 2 * batch,
        forward_passes=(replicates + tunings) * eval_batches + tunings * (grad_batches + ftgd.steps),
        backward_passes=tunings * (grad_batches + ftgd.steps),
        positions_per_sentence=positions,
    )


def flops(w: Workload, s: Shape) -> float:
    """≈ 2 FLOPs per weight per computed position forward (body, and the head where logits are kept), 3× with
    the backward pass; attention over these short contexts is a few percent and left out."""
    per_position = 2 * (s.n_params - s.n_embedding) + 2 * s.hidden * s.vocab
    forward = w.eval_sentences + w.eval2_sentences
    train = w.grad_sentences + w.ftgd_sentences
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


def memory(w: Workload, s: Shape, ftgd: FTGDConfig, probe: ProbeConfig, dtype_bytes: int) -> dict:
    """Peak bytes a run holds besides activations (which calibration measures): while tuning, on the model's
    device; while eval2 is reduced to the spaces, on the host."""
    p, k = s.n_params, selected(ftgd, s)
    tuning = (
        2 * p * dtype_bytes  # weights, and the .grad of every tensor in the group
        + 4 * p  # fp32 gradient-differential accumulators
        + 4 * p  # |gradient| concatenated for the top-k selection
        + 24 * k  # top-k values and indices; fp32 masters and AdamW moments
    )
    # every footprint (int32), one membership vector (bool) and every gradient vector (float64)
    reduce = p * dtype_bytes + w.tasks * k * 4 + p + w.tasks * gradient_entries(probe, s) * 8
    return {"tuning": tuning, "reduce": reduce}


def run_seconds(w: Workload, c: Calibration, n_train: int, ftgd: FTGDConfig) -> float:
    """eval, ftgd and probe each load the model; then scoring, and per tuning (task × replicate, and its control)
    a differential, a mask, a gradient vector and the FTGD steps."""
    per_tuning = n_train * c.s_grad_pair + c.s_mask + c.s_sketch + ftgd.steps * c.s_step
    return 3 * c.s_load + (w.eval_sentences + w.eval2_sentences) * c.s_sentence + w.tunings * per_tuning


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


def plan(s: Settings, calibrate_on: bool = True, device: str | None = None, dtype: str | None = None, say=print):
    """Per run (model × revision) of the settings: its RunPlan; and the warnings of what will not fit."""
    import shutil

    import torch

    from taskspace.blimp import data
    from taskspace.lm.models import pick_device, pick_dtype
    d, src = s.data, s.source
    names = data.select_tasks(src, d.tasks, d.phenomena, d.fields)
    try:
        pairs = data.load_blimp(src, names)
    except data.DataError:  # e.g. the hub offline: the same sentences from the local copy
        pairs = data.load_blimp(data.default_source(), names)
    n_train, n_eval = d.n_train, d.n_eval
    train, ev = data.split_pairs(pairs, n_train, n_eval, d.seed)
    sentences = ev.column("good").to_pylist() + ev.column("bad").to_pylist()
    probe = s.probe
    dev = pick_device(device)
    dt_bytes = torch.empty(0, dtype=pick_dtype(dev, dtype)).element_size()
    plans, cache = [], {}
    built = {str(tiny_dir(name)): cfg for name, cfg in s.tiny_models.items()}
    for run in s.runs:
        model, rev = run.model, run.revision
        spec = s.model(model).spec
        tiny = built.get(spec)  # a model the tiny stage will build
        ftgd = s.ftgd(model)
        if model not in cache:  # one shape, tokenizer and calibration per model, whatever its revision
            config, where = model_config(spec, None if rev == "main" else rev, tiny)
            tok, kind = tokenizer_for(spec, None if rev == "main" else rev, sentences, tiny)
            cal = None
            if calibrate_on:
                say(f"calibrating {model} ({where}) on {dev}…")
                cal = calibrate(config, tok, kind, train, ev, ftgd, probe, device, dtype)
            cache[model] = (shape_of_config(config, where), cal, packed_positions(tok, sentences))
        shape, cal, positions = cache[model]
        reps = len(probe.replicates(ftgd.seed, d.seed))
        w = workload(len(names), n_train, n_eval, ftgd, probe, positions, reps, probe.control)
        plans.append(
            RunPlan(
                run=run.stage_key,
                model=model,
                shape=shape,
                workload=w,
                flops=flops(w, shape),
                disk=disk(w, shape, ftgd, probe, n_eval, dt_bytes),
                memory=memory(w, shape, ftgd, probe, dt_bytes),
                seconds=run_seconds(w, cal, n_train, ftgd) if cal else None,
                calibration=cal,
            )
        )
    free = shutil.disk_usage(Path("data") if Path("data").exists() else Path(".")).free
    return plans, warnings(plans, probe, dev, free)


def device_peak(r: RunPlan) -> int:
    """Measured on CUDA; else the counted buffers (activations of a short-sentence batch are small beside them)."""
    c = r.calibration
    return c.peak_device if c and c.peak_device else r.memory["tuning"]


def warnings(plans: list[RunPlan], probe: ProbeConfig, dev, free_disk: int) -> list[str]:
    """What will not fit (device or host memory, disk) or will be refused, in plain words."""
    import os

    import torch

    out = []
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if dev.type == "cuda":  # planning for a GPU box from a machine without one: its size is unknown here
        cap = torch.cuda.get_device_properties(dev).total_memory if torch.cuda.is_available() else float("inf")
    else:
        cap = host
    for r in plans:
        if not probe.grad_projection and r.shape.n_params > EXACT_GRADIENT_MAX:
            out.append(f"{r.run}: will stop — {exact_gradient_refusal(r.shape.n_params)}")
        if device_peak(r) > 0.9 * cap:
            out.append(f"{r.run}: needs ~{device_peak(r) / GiB:.1f} GiB on {dev}, which has {cap / GiB:.1f} GiB")
        if r.memory["reduce"] > 0.9 * host:
            out.append(f"{r.run}: eval2's reduction needs ~{r.memory['reduce'] / GiB:.1f} GiB of host memory")
    need = 2 * sum(sum(r.disk.values()) for r in plans)  # outputs and their DVC cache copies
    if need > free_disk:
        out.append(f"outputs and DVC cache need ~{need / GiB:.1f} GiB; {free_disk / GiB:.1f} GiB free")
    return out
