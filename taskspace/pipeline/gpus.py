"""A GPU run's time estimated without the GPU: FLOPs over peak bf16 throughput, bytes over memory bandwidth and
kernel launches, each at an assumed utilisation written beside it, plus the host-side work (tokenising, packing
and collating, the parameter-sharing reduction) calibrated on this machine.

An estimate, not a measurement: `taskspace plan` on the GPU itself calibrates the real thing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    """Datasheet figures (dense, no sparsity) of one accelerator."""

    name: str
    bf16_flops: float  # peak dense bf16 tensor-core FLOP/s
    bandwidth: float  # peak memory bandwidth, bytes/s
    memory: int  # bytes


# NVIDIA datasheets (SXM parts where there are two; dense figures, i.e. half the "with sparsity" ones).
GPUS: dict[str, GPU] = {
    "h200": GPU("H200 SXM 141GB", 989e12, 4.8e12, 141 * 10**9),
    "h100": GPU("H100 SXM 80GB", 989e12, 3.35e12, 80 * 10**9),
    "a100": GPU("A100 SXM 80GB", 312e12, 2.039e12, 80 * 10**9),
    "l40s": GPU("L40S 48GB", 362e12, 0.864e12, 48 * 10**9),
    "a10": GPU("A10 24GB", 125e12, 0.6e12, 24 * 10**9),
    "l4": GPU("L4 24GB", 121e12, 0.3e12, 24 * 10**9),
}
DEFAULT_GPU = "h100"

# Assumed, not measured: short sentences in small batches keep tensor cores far from peak.
FLOP_UTILISATION = 0.25  # of peak bf16 FLOP/s
BANDWIDTH_UTILISATION = 0.6  # of peak memory bandwidth
LAUNCH_S = 8e-6  # seconds per kernel launch (eager PyTorch, CUDA)
KERNELS_PER_LAYER = 20  # forward kernels per transformer layer; a backward launches about twice as many
LOAD_BYTES_PER_S = 1e9  # a checkpoint read from local disk and copied to the device (each stage loads once)
# Bytes moved per entry of a full-model pass outside forward/backward (today's code, see ftgd and similarity):
MASK_BYTES_PER_ENTRY = 12  # bounded selection: a few passes reading |g| (4 B) per entry
SKETCH_BYTES_PER_ENTRY = 100  # count sketch: int64 index, two hashes, sign, fp64 product, index_add
ACCUMULATE_BYTES_PER_ENTRY = 12  # per differential batch: read .grad (bf16), read and write the fp32 accumulator


def gpu(name: str) -> GPU:
    from taskspace.errors import ConfigError

    if name not in GPUS:
        raise ConfigError(f"--gpu {name!r}: use one of {', '.join(GPUS)}")
    return GPUS[name]


@dataclass
class GPUEstimate:
    """Seconds of one run on a GPU it was not measured on, by term (every term adds: no overlap assumed)."""

    gpu: str
    flop_utilisation: float
    bandwidth_utilisation: float
    compute: float  # FLOPs / (peak × utilisation)
    memory: float  # weights read per pass, gradients, accumulators, mask selection, sketch
    launches: float  # kernel launches of every forward and backward pass
    load: float  # three stages each load the checkpoint
    host: float  # tokenising, packing and collating every batch, calibrated on this machine
    reduce: float  # the parameter-sharing and gradient reduction after eval2, calibrated on this machine
    host_calibrated: bool = True  # False with --no-calibrate: host and reduce are left out (0)

    @property
    def seconds(self) -> float:
        return self.compute + self.memory + self.launches + self.load + self.host + self.reduce


def estimate(w, s, flops: float, host, g: GPU, dtype_bytes: int = 2, grad_entries: int | None = None) -> GPUEstimate:
    """The run's time on GPU `g`: `w` a plan.Workload, `s` a plan.Shape, `host` a calibrate.HostCalibration (None:
    the host terms are left out)."""
    p = s.n_params
    bw = g.bandwidth * BANDWIDTH_UTILISATION
    weights = p * dtype_bytes
    passes = w.forward_passes + 2 * w.backward_passes  # a backward reads the weights about twice
    per_tuning = MASK_BYTES_PER_ENTRY * p + SKETCH_BYTES_PER_ENTRY * (grad_entries or p)
    moved = (
        passes * weights
        + w.backward_passes * (weights + ACCUMULATE_BYTES_PER_ENTRY * p)  # .grad written, then accumulated
        + w.tunings * per_tuning
    )
    kernels = (w.forward_passes + 2 * w.backward_passes) * s.layers * KERNELS_PER_LAYER
    sentences = w.host_sentences
    return GPUEstimate(
        gpu=g.name,
        flop_utilisation=FLOP_UTILISATION,
        bandwidth_utilisation=BANDWIDTH_UTILISATION,
        compute=flops / (g.bf16_flops * FLOP_UTILISATION),
        memory=moved / bw,
        launches=kernels * LAUNCH_S,
        load=3 * weights / LOAD_BYTES_PER_S,
        host=sentences * host.s_host_sentence if host else 0.0,
        reduce=host.s_reduce if host else 0.0,
        host_calibrated=host is not None,
    )


def describe(e: GPUEstimate) -> str:
    """One line: the estimate's basis and its terms."""
    parts = ", ".join(
        f"{k} {v / 60:.1f} min" if v >= 60 else f"{k} {v:.1f} s"
        for k, v in (("compute", e.compute), ("memory", e.memory), ("launches", e.launches), ("load", e.load),
                     ("host", e.host), ("reduce", e.reduce))
    )  # fmt: skip
    host = "host terms calibrated on this machine" if e.host_calibrated else "host terms left out (--no-calibrate)"
    return (
        f"ESTIMATE for {e.gpu} (no GPU here): peak bf16 FLOP/s at {e.flop_utilisation:.0%} utilisation, memory "
        f"bandwidth at {e.bandwidth_utilisation:.0%}; {host} — {parts}"
    )

