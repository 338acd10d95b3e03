"""The similarity maths of the task spaces (method.md, "Similarity probing"): transfer from eval1/eval2,
cosine similarity of gradient differentials (stored exactly or as a count sketch), and Jaccard overlap of FTGD
footprints. Arrays in, arrays out: taskspace.method.probing runs the loop and stores the results."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from scipy.linalg.blas import ssyrk

from taskspace.errors import ConfigError


def transfer_matrix(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """transfer[i, j] = after[i, j] − before[j]: row i is the model tuned on task i, column j the task evaluated."""
    return np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)[None, :]


def normalise_transfer(transfer: np.ndarray) -> np.ndarray:
    """Row-normalise by the diagonal (transfer[i, j] / transfer[i, i]); NaN rows where the diagonal is 0."""
    diag = np.diag(transfer).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(diag[:, None] != 0, transfer / diag[:, None], np.nan)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """cos(v_i, v_j) for the rows of a (T, D) array (a zero vector gets similarity 0)."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1)
    unit = v / np.where(norms == 0, 1.0, norms)[:, None]
    return unit @ unit.T


SHARING_BLOCK = 1 << 18  # parameter indices per block of intersection_counts: the block's tables stay in cache,
# and a block's float32 co-membership sums (at most its width) stay exact integers (below 2²⁴)


def intersection_counts(masks: Sequence[np.ndarray], block: int = SHARING_BLOCK) -> np.ndarray:
    """|A_i ∩ A_j| for footprints given as unique global parameter indices (int64, T × T; the diagonal is |A_i|).

    Block by block of the index range, only indices in two or more footprints can meet: those become the columns
    of a 0/1 task × index matrix M, and M Mᵀ (one BLAS syrk, exact: integer sums below 2²⁴) adds their
    co-memberships. O(T·|mask| + P) work in cache plus T²·|shared| multiply-adds, where one membership lookup per
    pair was O(T²·|mask|) gathers across a P-sized table (0.47 s a pair at 410M in the GPU review).
    """
    t = len(masks)
    masks = [np.asarray(m) if _ascending(m) else np.sort(m) for m in masks]
    out = np.zeros((t, t), dtype=np.int64)
    top = max((int(m[-1]) + 1 for m in masks if m.size), default=0)
    edges = np.arange(0, top + block, block)
    bounds = np.array([np.searchsorted(m, edges) for m in masks]).reshape(t, edges.size)
    flat_type = np.int32 if t * block < 2**31 else np.int64  # flat positions in M
    column = np.empty(block, dtype=flat_type)  # block index → column of M (valid at shared indices only)
    rows = np.arange(t, dtype=flat_type)
    for b, lo in enumerate(edges[:-1]):
        counts = bounds[:, b + 1] - bounds[:, b]
        if np.count_nonzero(counts) < 2:
            continue  # no two footprints reach into this block
        local = np.concatenate([m[s:e] for m, s, e in zip(masks, bounds[:, b], bounds[:, b + 1])])
        local -= local.dtype.type(lo)
        degree = np.bincount(local, minlength=block)
        shared = np.flatnonzero(degree >= 2)
        n = shared.size
        if not n:
            continue
        column[shared] = np.arange(n, dtype=flat_type)
        keep = np.flatnonzero(degree[local] >= 2)
        flat = np.repeat(rows * flat_type(n), counts)[keep]  # row of M (the task) …
        flat += column[local[keep]]  # … plus column (the shared index)
        member = np.zeros((t, n), dtype=np.float32)  # task-major: Mᵀ is Fortran-ordered, syrk's fast layout
        member.reshape(-1)[flat] = 1
        out += np.triu(ssyrk(1.0, member.T, trans=1), 1).astype(np.int64)  # upper triangle of M Mᵀ, off the diagonal
    out += out.T
    out[np.diag_indices(t)] = [m.size for m in masks]
    return out


def _ascending(m: np.ndarray) -> bool:
    return bool(m.size < 2 or (m[1:] > m[:-1]).all())


def jaccard_matrix(masks: Sequence[np.ndarray], size: int | None = None) -> np.ndarray:
    """|A ∩ B| / |A ∪ B| for footprints given as unique global parameter indices (< size, when given); 1 on the
    diagonal, 0 for two empty footprints. Exact integer counts (`intersection_counts`), one float division."""
    if size is not None and any(m.size and int(m.max()) >= size for m in masks):
        raise IndexError(f"a footprint index is out of range for {size:,} parameters")
    inter = intersection_counts(masks)
    sizes = np.diag(inter)
    union = sizes[:, None] + sizes[None, :] - inter
    out = np.zeros(inter.shape)
    np.divide(inter, union, out=out, where=union > 0)
    np.fill_diagonal(out, 1.0)
    return out


def flatten(grads: dict[str, torch.Tensor]) -> np.ndarray:
    return torch.cat([g.reshape(-1).float().cpu() for g in grads.values()]).numpy()


MERSENNE = 2**31 - 1  # prime modulus of the sketch's 2-universal hashes
SKETCH_CHUNK = 1 << 22  # entries hashed at a time: bounds the sketch's working memory to ~100 MB


def _hash_coefficients(name: str, seed: int) -> tuple[int, int, int, int]:
    """(a, b) of a bucket hash and of a sign hash for one tensor, from its name and the projection seed."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    a1, b1, a2, b2 = (int.from_bytes(digest[i : i + 4], "little") % MERSENNE for i in (0, 4, 8, 12))
    return max(a1, 1), b1, max(a2, 1), b2


def count_sketch(grads: dict[str, torch.Tensor], k: int, seed: int = 0) -> np.ndarray:
    """Project a gradient to k dims: entry x of tensor n goes to bucket h₁(x) mod k with sign ±1 from h₂(x).

    h(x) = (a·x + b) mod (2³¹ − 1), seeded per tensor name, is computed on the gradient's own device in
    chunks: inner products are preserved in expectation (error ~ 1/√k), in O(k) memory, the same buckets on
    every device, and no P-sized random tensor is ever drawn.
    """
    device = next(iter(grads.values())).device
    out = torch.zeros(k, dtype=torch.float64, device=device)
    for name, g in grads.items():
        flat = g.reshape(-1)
        if flat.numel() >= MERSENNE:
            raise ConfigError(f"tensor {name} has {flat.numel():,} entries, too many for the sketch's hash")
        a1, b1, a2, b2 = _hash_coefficients(name, seed)
        for lo in range(0, flat.numel(), SKETCH_CHUNK):
            x = torch.arange(lo, min(lo + SKETCH_CHUNK, flat.numel()), device=device, dtype=torch.int64)
            bucket = (a1 * x + b1) % MERSENNE % k  # a·x < 2⁶², no int64 overflow
            sign = 1 - 2 * ((a2 * x + b2) % MERSENNE % 2)
            out.index_add_(0, bucket, flat[lo : lo + x.numel()].double() * sign)
    return out.cpu().numpy()


EXACT_GRADIENT_MAX = 1 << 22  # entries: above this, storing one full gradient per task is refused


def gradient_vector(grads: dict[str, torch.Tensor], k: int, seed: int = 0) -> np.ndarray:
    """What is stored per task for gradient similarity: the exact gradient when it has no more than k entries
    (a sketch larger than the vector gains nothing) or when k = 0 on a small model, else its count sketch."""
    size = sum(g.numel() for g in grads.values())
    if k and size > k:
        return count_sketch(grads, k, seed)
    if not k and size > EXACT_GRADIENT_MAX:
        raise ConfigError(exact_gradient_refusal(size))
    return flatten(grads)


def exact_gradient_refusal(size: int) -> str:
    return (
        f"probing.grad_projection: 0 (exact) would store a full {size:,}-entry gradient per task "
        f"({size * 4 / 2**20:,.0f} MiB each); set probing.grad_projection to a sketch size such as {2**18}"
    )


def global_indices(model: torch.nn.Module, idx: dict[str, torch.Tensor]) -> np.ndarray:
    """Per-tensor flat indices → sorted indices into the model's concatenated parameter vector (int32 where
    the model has fewer than 2³¹ entries: a 410M model's 1% footprints are 67 × 16 MB, not 67 × 33 MB).
    Indices may be on any device (a fresh `topk_mask` on the GPU, or a delta read from disk)."""
    offsets, off = {}, 0
    for n, p in model.named_parameters():
        offsets[n] = off
        off += p.numel()
    dtype = np.int32 if off < 2**31 else np.int64
    if not idx:
        return np.zeros(0, dtype=dtype)
    parts = [(i.cpu().numpy().astype(np.int64) + offsets[n]).astype(dtype) for n, i in idx.items()]
    return np.sort(np.concatenate(parts))
