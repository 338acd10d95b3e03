"""The plan's timing: seconds per unit of work on this device, measured with a random-weight model of the run's
shape and its settings (a few scoring batches, a gradient differential, mask selection, a sketch and FTGD steps,
timed exactly as the stages run them)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskspace.config import FTGDConfig, ProbeConfig, TinyConfig


@dataclass
class Calibration:
    """Seconds per unit of work on this device, measured with the run's settings and a same-shape model."""

    device: str
    dtype: str
    tokenizer: str  # the model's own, or a word-level stand-in trained on the sentences
    positions: float  # computed positions per sentence after packing
    s_load: float  # building the model (stands for each stage's load)
    s_sentence: float  # scoring, per sentence
    s_grad_pair: float  # gradient differential, per pair
    s_mask: float  # top-k footprint selection
    s_sketch: float  # gradient vector (sketch or exact copy)
    s_step: float  # one FTGD step
    peak_device: int | None  # measured peak bytes while tuning (CUDA only)


def tokenizer_for(
    spec: str, revision: str | None, sentences: list[str], tiny: TinyConfig | None, offline: bool = False
):
    """The model's own tokenizer when it can be had (`offline`: from a local folder or the hub cache only, no
    request), else a word-level stand-in (token counts of a BPE tokenizer on BLiMP's short, common words are
    close to word counts)."""
    from transformers import AutoTokenizer

    from taskspace.lm.models import ModelError, resolve

    if tiny is None or Path(spec).exists():
        try:
            target, hub_rev, local = resolve(spec, revision)
            if target.endswith(".gguf"):
                return AutoTokenizer.from_pretrained(Path(target).parent, gguf_file=Path(target).name), "own"
            cached_only = offline and not local
            return AutoTokenizer.from_pretrained(target, revision=hub_rev, local_files_only=cached_only), "own"
        except (OSError, ValueError, ModelError):
            pass
    from taskspace.lm.tiny import train_tokenizer

    return train_tokenizer(sentences), "word-level stand-in"


def packed_positions(tokenizer, sentences: list[str]) -> float:
    """Positions per sentence that prefix-tree packing computes for these sentences."""
    from taskspace.lm.packing import ROW_TOKENS, pack_rows
    from taskspace.lm.scoring import encode

    rows = pack_rows(encode(tokenizer, sentences), 0, ROW_TOKENS)
    return sum(len(r) for r in rows) / max(len(sentences), 1)


def calibrate(
    config,
    tok,
    tok_kind: str,
    train: pa.Table,
    ev: pa.Table,
    ftgd: FTGDConfig,
    probe: ProbeConfig,
    device: str | None = None,
    dtype: str | None = None,
    say=lambda _m: None,
) -> Calibration:
    """Time each kind of work once (after a warm-up) with a random-weight model of this config; `say` hears
    each step as it starts."""
    import torch
    from transformers import AutoModelForCausalLM

    from taskspace.lm.models import LM, default_prefix, pick_device, pick_dtype, quiet_transformers
    from taskspace.lm.scoring import sentence_logprobs
    from taskspace.method.ftgd import EncodedPairs, finetune, gradient_differential, param_group, topk_mask
    from taskspace.method.similarity import gradient_vector

    quiet_transformers()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    say("  building a random-weight model…")
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_config(config, dtype=dt).to(dev).eval()
    s_load = time.perf_counter() - t0
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or default_prefix(tok)
    prefix = default_prefix(tok)
    lm = LM(model, tok, "calibration", None, prefix, int(tok.convert_tokens_to_ids(prefix)), dev, dt)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed(fn):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        return out, time.perf_counter() - t

    sentences = (ev.column("good").to_pylist() + ev.column("bad").to_pylist())[: probe.eval_batch_size * 2]
    say(f"  scoring {len(sentences)} sentences…")
    # The fastest of two timings each: on a shared machine the least disturbed one is the machine's speed.
    sentence_logprobs(lm, sentences[:8], probe.eval_batch_size)  # warm-up (and the packing check)
    s_score = min(timed(lambda: sentence_logprobs(lm, sentences, probe.eval_batch_size))[1] for _ in range(2))
    first = train.column("task")[0].as_py()
    rows = train.filter(pa.array(np.asarray(train.column("task").to_pylist()) == first))
    n = min(ftgd.batch_size, rows.num_rows)
    pairs = EncodedPairs.of(lm, rows.column("good").to_pylist()[:n], rows.column("bad").to_pylist()[:n])
    params = param_group(lm.model, ftgd.params)
    say(f"  gradient differential over {n} pairs…")
    gradient_differential(lm, pairs, params, ftgd.batch_size)  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    runs = [timed(lambda: gradient_differential(lm, pairs, params, ftgd.batch_size)) for _ in range(2)]
    grads, s_grad = runs[-1][0], min(t for _, t in runs)
    say("  mask selection and gradient sketch…")
    _, s_mask = timed(lambda: topk_mask(grads, ftgd.sparsity))
    _, s_sketch = timed(lambda: gradient_vector(grads, probe.grad_projection, probe.projection_seed))
    steps = 4
    say(f"  {steps} FTGD steps…")
    res = finetune(lm, pairs, FTGDConfig(**{**asdict(ftgd), "steps": steps, "early_stop": False}), grads=grads)
    peak = int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else None
    return Calibration(
        device=str(dev),
        dtype=str(dt).removeprefix("torch."),
        tokenizer=tok_kind,
        positions=packed_positions(tok, sentences),
        s_load=s_load,
        s_sentence=s_score / len(sentences),
        s_grad_pair=s_grad / n,
        s_mask=s_mask,
        s_sketch=s_sketch,
        s_step=float(np.median([h["seconds"] for h in res.history[1:]])),  # the first step warms up
        peak_device=peak,
    )


@dataclass
class HostCalibration:
    """The host-side work of a run, timed on this machine: what a GPU cannot speed up."""

    tokenizer: str
    positions: float
    s_host_sentence: float  # tokenise, pack and collate one sentence (every scored or trained sentence)
    s_reduce: float  # eval2's reduction: parameter sharing of every footprint and the gradient cosines


REDUCE_SAMPLE = 1 << 22  # parameters of the synthetic reduction timed here; the time scales linearly in P


def calibrate_host(
    tok, tok_kind: str, sentences: list[str], n_params: int, tasks: int, sparsity: float, grad_entries: int,
    batch_size: int = 128, say=lambda _m: None,
) -> HostCalibration:  # fmt: skip
    """Time the host terms of a GPU run here: the eval sentences tokenised, packed and collated as a pass builds
    its batches, and the sharing/gradient reduction on T random footprints of a smaller model, scaled to P."""
    import math

    import torch

    from taskspace.lm.models import default_prefix
    from taskspace.lm.packing import batch_rows, collate_rows, pack_rows
    from taskspace.lm.scoring import encode
    from taskspace.method.similarity import cosine_matrix, jaccard_matrix

    say(f"  timing the host work: {len(sentences)} sentences tokenised, packed and collated…")
    prefix_id = int(tok.convert_tokens_to_ids(default_prefix(tok)))
    pad = tok.pad_token_id if tok.pad_token_id is not None else prefix_id

    def prepare():
        for rows in batch_rows(pack_rows(encode(tok, sentences), prefix_id), batch_size):
            collate_rows(rows, pad, torch.device("cpu"), torch.bfloat16)

    prepare()  # warm-up (first-call imports and allocations)
    t0 = time.perf_counter()
    prepare()
    s_sentence = (time.perf_counter() - t0) / max(len(sentences), 1)
    say(f"  timing the reduction of {tasks} footprints…")
    p = min(n_params, REDUCE_SAMPLE)
    g = min(grad_entries, REDUCE_SAMPLE)
    k = max(math.ceil(sparsity * p), 1)
    rng = np.random.default_rng(0)
    masks = [np.sort(rng.choice(p, k, replace=False)).astype(np.int32) for _ in range(tasks)]
    vecs = [rng.standard_normal(g).astype(np.float32) for _ in range(tasks)]
    jaccard_matrix(masks[:2], p)  # warm-up
    t0 = time.perf_counter()
    jaccard_matrix(masks, p)
    t_share = time.perf_counter() - t0
    t0 = time.perf_counter()
    cosine_matrix(np.stack(vecs))
    t_cos = time.perf_counter() - t0
    return HostCalibration(
        tokenizer=tok_kind,
        positions=packed_positions(tok, sentences),
        s_host_sentence=s_sentence,
        s_reduce=t_share * n_params / p + t_cos * grad_entries / g,
    )
