"""A fake CUDA device for machines without a GPU (used by test_fake_cuda.py): inside `fake_cuda()`, every tensor the
code puts on "cuda" is a real CPU tensor that says it is on cuda:0 and, like a CUDA kernel, refuses to meet a CPU
tensor (other than a 0-dim scalar). A CPU/CUDA mix then fails here and in CI, as it would at the first FTGD task of a
GPU job; values are the CPU's own, so results can be compared with a CPU run bit for bit.

Why not `FakeTensorMode` (on torch 2.13+cpu): autograd on a fake CUDA tensor aborts the process (a CPU-only build
registers no CUDA device guard; `_ensureCUDADeviceGuardSet` installs one only on CUDA builds), and even with one the
engine asks for the current accelerator stream and raises; fake tensors also have no values, so `.tolist()`,
`float(loss)`, `.numpy()` and slicing by a searchsorted result cannot run. The lie here is told at the Python API
(`__torch_function__`), so the C++ side, autograd included, only ever sees CPU tensors.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

CUDA = torch.device("cuda:0")


class DeviceMixError(Exception):
    """A CPU operand met a CUDA one. Not a RuntimeError (CUDA's own type), so `except RuntimeError` cannot hide it."""


class CudaLike(torch.Tensor):
    """CPU data that reports device cuda:0; ops on it give CudaLike results (see `_call`)."""

    device = property(lambda self: CUDA)
    is_cuda = property(lambda self: True)
    is_cpu = property(lambda self: False)

    def get_device(self) -> int:
        return 0

    def __repr__(self, **kwargs) -> str:
        with torch._C.DisableTorchFunctionSubclass():
            return f"CudaLike({torch.Tensor.__repr__(self)})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return _call(func, types, args, kwargs or {})


MIXED_OK = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.copy_, torch.Tensor.data.__set__,
            torch._has_compatible_shallow_copy_type}  # fmt: skip
TO_NUMPY = {torch.Tensor.numpy, torch.Tensor.__array__}


def _device(x) -> str | None:
    if isinstance(x, torch.Tensor):
        return "cuda" if isinstance(x, CudaLike) else x.device.type
    return torch.device(x).type if isinstance(x, str | torch.device) else None


def _check(func, args, kwargs) -> None:
    """CUDA's rule: all tensor operands on one device, except 0-dim CPU scalars, copies, and CPU index tensors."""
    if func in MIXED_OK:
        return
    operands = pytree.tree_leaves((args, kwargs))
    if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
        keys = args[1] if isinstance(args[1], tuple) else (args[1],)
        advanced = any(isinstance(k, torch.Tensor | list) for k in keys)  # else a setitem is a copy_
        operands = [args[0], *args[2:]] if func is torch.Tensor.__setitem__ and advanced else [args[0]]
    tensors = [t for t in operands if isinstance(t, torch.Tensor)]
    cpu = [t for t in tensors if _device(t) == "cpu" and t.dim() > 0]
    if cpu and any(isinstance(t, CudaLike) for t in tensors):
        name = getattr(func, "__name__", str(func))
        raise DeviceMixError(
            f"{name}: Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! "
            f"(a CPU operand of shape {tuple(cpu[0].shape)})"
        )


def _call(func, types, args, kwargs):
    """Run a torch call on CPU data: check devices, turn a move to cuda into a CudaLike copy, keep results CudaLike."""
    moves = (*args[1:], *kwargs.values()) if func is torch.Tensor.to else (kwargs.get("device"),)
    asked = [_device(a) for a in moves]
    to_cuda = func is torch.Tensor.cuda or "cuda" in asked
    to_cpu = func is torch.Tensor.cpu or "cpu" in asked
    if not to_cuda and CudaLike not in types:
        return func(*args, **kwargs)  # nothing on the fake device
    if func in TO_NUMPY:
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor first.")
    if func is torch.Tensor.tolist:
        return args[0].as_subclass(torch.Tensor).tolist()
    _check(func, args, kwargs)
    if func is torch.Tensor.cuda:
        func, args, kwargs = torch.Tensor.to, (args[0], "cpu"), {k: v for k, v in kwargs.items() if k != "device"}
    args = tuple("cpu" if _device(a) == "cuda" and not isinstance(a, torch.Tensor) else a for a in args)
    kwargs = {k: "cpu" if k == "device" and _device(v) == "cuda" else v for k, v in kwargs.items()}
    with torch._C.DisableTorchFunctionSubclass():
        out = func(*args, **kwargs)
    if to_cpu:
        return pytree.tree_map_only(CudaLike, lambda t: t.as_subclass(torch.Tensor), out)
    if to_cuda and args and out is args[0] and not isinstance(out, CudaLike):
        out = out.clone()  # a move is a copy, never an alias
    return pytree.tree_map_only(torch.Tensor, _lift, out)


def _lift(t: torch.Tensor) -> CudaLike:
    """The same data as CudaLike: an alias in the autograd graph, or a leaf where it was one (a factory's)."""
    if isinstance(t, CudaLike):
        return t
    if t.is_leaf and t.requires_grad:
        return t.detach().as_subclass(CudaLike).requires_grad_()
    return t.as_subclass(CudaLike)


class FakeCudaMode(TorchFunctionMode):
    """Sees calls with no CudaLike operand too: factories with device="cuda" and moves of CPU tensors."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return _call(func, types, args, kwargs or {})


@contextlib.contextmanager
def fake_cuda():
    """Inside: "cuda" tensors are CudaLike. Module.to replaces parameters (a CudaLike cannot be a CPU param's .data)."""
    before = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        with FakeCudaMode():
            yield
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(before)


def pretend_gpu_runtime(monkeypatch) -> None:
    """What pick_device and calibrate ask torch.cuda, answered as a one-GPU machine would."""

    def nothing(*args, **kwargs) -> None:
        return None

    answers = {"is_available": lambda: True, "device_count": lambda: 1, "synchronize": nothing}
    answers |= {"reset_peak_memory_stats": nothing, "max_memory_allocated": lambda *args, **kwargs: 4096}
    for name, value in answers.items():
        monkeypatch.setattr(torch.cuda, name, value)


def keep_tf32_flags(monkeypatch) -> None:
    """pick_dtype turns TF32 on for CUDA: put the process-wide flags back afterwards."""
    for flags in (torch.backends.cuda.matmul, torch.backends.cudnn):
        monkeypatch.setattr(flags, "allow_tf32", flags.allow_tf32)
