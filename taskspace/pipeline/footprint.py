"""Peak memory of a run, counted from what the code allocates: weights, .grad, fp32 gradient accumulators, the
|gradient| work of mask selection, AdamW state of the selected entries, the activations of a batch, and the
arrays of eval2's reduction. Each phase of a tuning holds a different set; the peak is the largest phase.

Checked against the measured peak RSS of real probes in bench/bench_plan_memory.py.
"""

from __future__ import annotations

import math

from taskspace.lm.packing import ROW_TOKENS

# Mask selection (ftgd.topk_mask) is now bounded: passes over slices of 2^21 entries (a float key, a bool and
# int64 indices each) and the O(k) int64 output. A global torch.topk held 20 B/entry on the CPU (8 on CUDA) more;
# should the selection change again, adjust these two.
MASK_SELECTION_WORK_BYTES = (1 << 21) * 24
MASK_SELECTION_BYTES_PER_SELECTED = 16  # int64 indices, kept parts and their concatenation
# A further P-sized fp32 buffer seen in measured peaks while gradients exist (the dense embedding backward's
# scratch on the CPU, and freed .grad memory the allocator keeps): bench/bench_plan_memory.py.
BACKWARD_SCRATCH_BYTES_PER_ENTRY = 4
SKETCH_WORK_BYTES = (1 << 22) * 48  # count sketch: SKETCH_CHUNK entries of int64 index, hashes, sign, fp64 product
ADAMW_BYTES_PER_SELECTED = 4 * 3 + 8  # fp32 master, m and v, and the int64 index (plus the base copy, model dtype)
LAYER_VALUES_PER_POSITION = 17  # saved per layer per position for the backward, in units of hidden (× dtype)
CUDA_HOST_BYTES = 2**30  # host memory of the CUDA context and its libraries (assumed)
COLLAPSE_SENTENCES = 64  # the collapse check's sentences (probing._sample_others, impact.collapse)


def activations(sentences: int, positions: float, s, dtype_bytes: int, backward: bool) -> int:
    """A batch of packed sentences: kept logits in the model's dtype and in fp32 (their gradient too when
    training), the layers' saved values and the attention scores of rows of ROW_TOKENS."""
    tokens = sentences * positions
    heads = max(s.hidden // 64, 1)
    logits = tokens * s.vocab * (dtype_bytes + 4) * (2 if backward else 1)
    layers = tokens * (LAYER_VALUES_PER_POSITION * s.hidden + 2 * heads * ROW_TOKENS) * dtype_bytes
    return math.ceil(logits + (layers * s.layers if backward else layers))


def footprint(
    s, k: int, tasks: int, grad_entries: int, positions: float, train_batch: int, eval_batch: int,
    dtype_bytes: int, device: str, runtime: int, linear: bool = False,
) -> dict[str, int]:  # fmt: skip
    """Bytes per term, per tuning phase, and the peaks: `device` while tuning (on the model's device) and `host`
    (the process's resident memory: `runtime` — the interpreter, torch and transformers — plus what is there)."""
    p = s.n_params
    t = {
        "weights": p * dtype_bytes,
        "grads": p * dtype_bytes,  # .grad of every tensor at the end of a backward
        "accumulators": 4 * p,  # fp32 gradient differential, kept through tuning and the sketch
        "mask_selection": MASK_SELECTION_WORK_BYTES + MASK_SELECTION_BYTES_PER_SELECTED * k,
        "backward_scratch": BACKWARD_SCRATCH_BYTES_PER_ENTRY * p,
        "adamw": k * (ADAMW_BYTES_PER_SELECTED + dtype_bytes),
        "sketch": min(SKETCH_WORK_BYTES, grad_entries * 48),
        "train_activations": activations(2 * train_batch, positions, s, dtype_bytes, backward=True),
        "score_activations": activations(eval_batch, positions, s, dtype_bytes, backward=False),
        # every footprint (int32), every gradient vector (float32 read, stacked, float64 twice in the cosine)
        "reduce": tasks * k * 4 + tasks * grad_entries * (4 + 4 + 8 + 8),
        # first-order transfer: every delta's moves (int64 index, fp32 step) held against one margin gradient
        "linear_deltas": tasks * k * 12 if linear else 0,
    }
    phases = {
        "score": t["weights"] + t["score_activations"],
        "differential": t["weights"] + t["accumulators"] + t["grads"] + t["backward_scratch"] + t["train_activations"],
        "mask": t["weights"] + t["accumulators"] + t["mask_selection"],
        "steps": t["weights"] + t["accumulators"] + t["grads"] + t["backward_scratch"] + t["adamw"]
        + t["train_activations"],
        "sketch": t["weights"] + t["accumulators"] + t["sketch"],
        "reduction": t["weights"] + t["reduce"],
        "linear": t["weights"] + t["accumulators"] + t["grads"] + t["backward_scratch"] + t["train_activations"]
        + t["linear_deltas"] if linear else 0,
    }
    tuning = max(v for k_, v in phases.items() if k_ != "reduction")
    if device == "cuda":
        host = runtime + CUDA_HOST_BYTES + max(t["weights"], t["reduce"])  # a checkpoint passes through the host
        dev = tuning
    else:
        host = runtime + max(phases.values())
        dev = host
    return {**t, **{f"phase_{k_}": v for k_, v in phases.items()}, "runtime": runtime, "device": dev, "host": host}


def rss() -> int:
    """This process's resident memory now (bytes; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
