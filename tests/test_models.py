from dataclasses import replace

import pytest
import torch

from taskspace.blimp import data
from taskspace.lm.models import ModelError, load_model
from taskspace.lm.scoring import score_pairs, task_accuracy, uses_packing


def test_local_revisions_load_and_differ(tiny_dir):
    a = load_model(str(tiny_dir), revision="step0")
    b = load_model(str(tiny_dir), revision="step300")
    assert a.prefix == "<|endoftext|>" and a.prefix_id == 0
    assert a.device.type == "cpu" and a.dtype == torch.float32
    assert a.meta()["revision"] == "step0" and a.n_params == b.n_params > 100_000
    wa = next(a.model.parameters())
    wb = next(b.model.parameters())
    assert not torch.equal(wa, wb)


def test_model_errors_are_one_clear_line(tiny_dir, tmp_path):
    with pytest.raises(ModelError, match="has no revision 'step999' \\(sub-folders: step0, step100"):
        load_model(str(tiny_dir), revision="step999")
    with pytest.raises(ModelError, match="is not a transformers model folder"):
        load_model(str(tmp_path))
    with pytest.raises(ModelError, match="GGUF file .* does not exist"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="prefix token '<bos>' is not in the vocabulary"):
        load_model(str(tiny_dir), revision="step0", prefix="<bos>")


def test_hub_model_offline_says_how_to_use_a_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as e:
        load_model("EleutherAI/pythia-70m", revision="step1000")
    msg = str(e.value)
    assert "from the hub" in msg and "--revision step1000" in msg and "--model DIR" in msg and "\n" not in msg


@pytest.mark.smollm2
def test_smollm2_gguf_scores_agreement_above_chance(blimp):
    lm = load_model("smollm2")
    assert type(lm.model).__name__ == "LlamaForCausalLM" and 130e6 < lm.n_params < 140e6
    assert lm.prefix == "<|endoftext|>"
    pairs = data.load_blimp(blimp, ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement"])
    _, ev = data.split_pairs(pairs, 0, 20, seed=0)
    scores = score_pairs(lm, ev, batch_size=20)
    for row in task_accuracy(scores):
        assert row["accuracy"] >= 0.7, row
    # Llama with grouped-query attention takes the packed path, and it matches one padded row per sentence
    assert uses_packing(lm)
    plain = score_pairs(replace(lm, packing=False), ev, batch_size=20)
    for col in ("logp_good", "logp_bad"):
        assert abs(scores[col].to_numpy() - plain[col].to_numpy()).max() < 1e-4
