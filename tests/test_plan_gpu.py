"""`taskspace plan` without a GPU: the datasheet estimate, the memory model's terms, and an offline hub."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskspace.lm import models
from taskspace.method.ftgd import FTGDConfig
from taskspace.method.probing import ProbeConfig
from taskspace.pipeline import footprint as F
from taskspace.pipeline import gpus, plan
from taskspace.pipeline.calibrate import HostCalibration

SHAPE = plan.Shape(n_params=1_000_000, n_embedding=200_000, hidden=64, layers=2, vocab=1000, source="test")


def test_gpu_estimate_by_hand():
    ftgd, probe = FTGDConfig(steps=4, batch_size=8), ProbeConfig(eval_batch_size=16)
    w = plan.workload(3, 10, 5, ftgd, probe, positions=7.0)
    f = plan.flops(w, SHAPE)
    # 2 FLOPs per body weight and head entry per position: forward (eval1, eval2, collapse) + 3× (differential, FTGD)
    per_pos = 2 * 800_000 + 2 * 64 * 1000
    assert f == per_pos * 7.0 * (30 + 90 + w.collapse_sentences + 3 * (60 + 3 * 4 * 16))
    host = HostCalibration("t", 7.0, s_host_sentence=1e-4, s_reduce=2.0)
    g = gpus.GPUS["h100"]
    e = gpus.estimate(w, SHAPE, f, host, g, dtype_bytes=2, grad_entries=1_000_000)
    assert e.compute == pytest.approx(f / (989e12 * 0.25))
    passes = w.forward_passes + 2 * w.backward_passes
    moved = passes * 2e6 + w.backward_passes * (2e6 + 12e6) + w.tunings * (12e6 + 100e6)
    assert e.memory == pytest.approx(moved / (3.35e12 * 0.6))
    assert e.launches == pytest.approx(passes * 2 * 20 * 8e-6)
    assert e.host == pytest.approx(w.host_sentences * 1e-4) and e.reduce == 2.0
    assert e.seconds == pytest.approx(e.compute + e.memory + e.launches + 3 * 2e6 / 1e9 + e.host + 2.0)
    assert "ESTIMATE" in gpus.describe(e) and "25%" in gpus.describe(e)
    assert gpus.estimate(w, SHAPE, f, host, gpus.GPUS["a100"]).compute > e.compute  # a slower part takes longer


def test_collapse_check_is_counted():
    w = plan.workload(3, 10, 5, FTGDConfig(steps=4, batch_size=8), ProbeConfig(eval_batch_size=16), 7.0)
    # others: min(64, 2 tasks × 10), before and after; own: min(64, 10) pairs, both sentences
    assert w.collapse_sentences == 3 * (2 * 20 + 2 * 10)


def test_memory_terms_by_hand():
    m = F.footprint(SHAPE, k=10_000, tasks=3, grad_entries=4096, positions=5.0, train_batch=8, eval_batch=16,
                    dtype_bytes=4, device="cpu", runtime=100)  # fmt: skip
    p = 1_000_000
    assert (m["weights"], m["grads"], m["accumulators"]) == (4 * p, 4 * p, 4 * p)
    assert m["adamw"] == 10_000 * (12 + 8 + 4)  # master, m, v (fp32), int64 index, base copy
    assert m["mask_selection"] == (1 << 21) * 24 + 16 * 10_000
    assert m["reduce"] == 3 * 10_000 * 4 + 3 * 4096 * 24
    assert m["score_activations"] == int(16 * 5 * 1000 * 8 + 16 * 5 * (17 * 64 + 2 * 128) * 4)
    diff = 3 * 4 * p + m["backward_scratch"] + m["train_activations"]
    assert m["phase_differential"] == diff
    assert m["host"] == 100 + max(v for k, v in m.items() if k.startswith("phase_")) and m["device"] == m["host"]
    cuda = F.footprint(SHAPE, 10_000, 3, 4096, 5.0, 8, 16, 2, "cuda", runtime=100)
    assert cuda["host"] == 100 + F.CUDA_HOST_BYTES + max(2 * p, cuda["reduce"])
    assert cuda["device"] == max(v for k, v in cuda.items() if k.startswith("phase_") and k != "phase_reduction")


def test_hub_check_honours_hf_endpoint(monkeypatch):
    seen = []

    class Session:
        def head(self, url, timeout):
            seen.append((url, timeout))

    monkeypatch.setattr("huggingface_hub.utils.get_session", lambda: Session())
    assert models.hub_reachable("https://mirror.example", timeout=0.5)
    assert seen == [("https://mirror.example/api/models?limit=1", 0.5)]

    class Down:
        def head(self, url, timeout):
            raise OSError("proxy refused")

    monkeypatch.setattr("huggingface_hub.utils.get_session", lambda: Down())
    assert not models.hub_reachable()


def test_offline_flag_skips_the_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: pytest.fail("no request when offline is set"))
    assert models.hub_offline()
    t0 = time.perf_counter()
    config, where = plan.model_config("EleutherAI/pythia-160m", "step1000", offline=True)
    assert time.perf_counter() - t0 < 10 and "published" in where and config.hidden_size == 768


@pytest.mark.slow
def test_plan_no_calibrate_offline_is_quick_and_uses_published_shapes(tmp_path):
    root = Path(__file__).resolve().parents[1]
    # the committed Pythia profile (the main job applies its own experiment to the workspace's params.yaml)
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=root, capture_output=True, text=True)
    params = tmp_path / "params.yaml"
    params.write_text(committed.stdout if committed.returncode == 0 else (root / "params.yaml").read_text())
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens: the hub is unreachable at once
    env.pop("HF_HUB_OFFLINE", None)
    cli = Path(sys.executable).parent / "taskspace"
    t0 = time.perf_counter()
    cmd = [str(cli), "plan", "--no-calibrate", "--params", str(params)]
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert time.perf_counter() - t0 < 60
    assert "Retrying" not in res.stderr
    for size in ("70m", "160m", "410m"):
        assert f"Pythia's published pythia-{size} dimensions" in res.stdout
