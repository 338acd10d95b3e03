"""`models.<name>.compile: true`: one compiled forward serves every task (FTGD must not recompile it per task)."""

import torch
import torch._dynamo

from taskspace.config import FTGDConfig
from taskspace.method.ftgd import EncodedPairs, finetune

GOOD = "the cat sleeps .|the cats sleep .|a dog barks loud .|dogs bark .|she saw herself .|he saw himself .".split("|")
BAD = "the cat sleep .|the cats sleeps .|a dog bark loud .|dogs barks .|she saw himself .|he saw herself .".split("|")


def _lm(tok):
    from transformers import GPTNeoXForCausalLM

    from taskspace.lm.models import LM
    from taskspace.lm.tiny import tiny_config

    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(tiny_config(len(tok), hidden=16, layers=1, heads=2)).eval()
    prefix = "<|endoftext|>"
    return LM(model, tok, "tiny", None, prefix, tok.convert_tokens_to_ids(prefix), torch.device("cpu"), torch.float32)


def test_ftgd_tasks_with_different_footprints_reuse_the_compiled_forward():
    """Freezing the tensors without selected entries (a different set per task) changes the parameters'
    requires_grad, which a compiled forward guards on: it used to recompile for every task."""
    from taskspace.lm.tiny import train_tokenizer

    tok = train_tokenizer(GOOD + BAD)
    cfg = FTGDConfig(steps=2, sparsity=0.05, batch_size=2)
    tasks = [(GOOD[:4], BAD[:4]), (GOOD[4:], BAD[4:])]
    plain = _lm(tok)
    want = [finetune(plain, EncodedPairs.of(plain, g, b), cfg).delta for g, b in tasks]
    assert set(want[0].idx) != set(want[1].idx)  # the two tasks select entries in different tensors
    lm = _lm(tok)
    lm.model.compile(backend="eager", dynamic=True)  # the graph capture that `compile: true` uses, without codegen
    try:
        first = finetune(lm, EncodedPairs.of(lm, *tasks[0]), cfg).delta
        with torch._dynamo.config.patch(error_on_recompile=True):  # a recompile now raises
            second = finetune(lm, EncodedPairs.of(lm, *tasks[1]), cfg).delta
    finally:
        torch._dynamo.reset()
    for got, exp in zip((first, second), want):  # the same tuning as uncompiled, bit for bit
        assert set(got.idx) == set(exp.idx)
        assert all(torch.equal(got.idx[n], exp.idx[n]) and torch.equal(got.value[n], exp.value[n]) for n in exp.idx)
