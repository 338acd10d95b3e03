"""GPT-NeoX models (Pythia's architecture) with their own pre-training checkpoint series, built offline.

The offline stand-in for Pythia: a word-level tokenizer trained on BLiMP's sentences (like Pythia's, it adds
no BOS and has `<|endoftext|>`), and a model trained on grammatical *train* sentences, saved as `OUT/step0`,
`OUT/step100`, … so `load_model(OUT, revision="step100")` works like a Pythia revision.
- shape `tiny` (~0.4M parameters) learns BLiMP's templates: a fixture for tests and demos, not a result;
- shapes `pythia-70m` … `pythia-1.4b` have the real models' dimensions and vocabulary size (50,304 rows), so
  memory, disk and speed at real scale can be measured without the hub (random or briefly trained weights).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from taskspace.errors import ConfigError
from taskspace.lm.scoring import collate, encode
from taskspace.lm.shapes import pythia_config

SPECIALS = ["<|endoftext|>", "<|padding|>", "<|unk|>"]


def train_tokenizer(sentences: Sequence[str]):
    """Word-level tokenizer over the given sentences (no unknowns on them), Pythia's special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(sentences, trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|unk|>",
        pad_token="<|padding|>",
    )


def tiny_config(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )


def _save(model, tok, out: Path, meta: dict) -> None:
    """Write a checkpoint folder atomically (temp folder, then rename)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "taskspace_tiny.json").write_text(json.dumps(meta, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def build_tiny(
    out: Path,
    vocab_sentences: Sequence[str],
    train_sentences: Sequence[str],
    steps: int = 300,
    save_every: int = 100,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    shape: str = "tiny",
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Train the LM and save revisions `step0`, `step{save_every}`, …, `step{steps}`; returns their names.

    `shape` is `tiny` (sized by hidden/layers) or a Pythia size (`pythia-70m`, …) with its real dimensions."""
    from transformers import GPTNeoXForCausalLM

    from taskspace.lm.models import quiet_transformers

    quiet_transformers()
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(vocab_sentences)
    config = tiny_config(len(tok), hidden, layers) if shape == "tiny" else pythia_config(shape)
    model = GPTNeoXForCausalLM(config)
    limit = config.max_position_embeddings - 1
    seqs = [s for s in encode(tok, train_sentences) if 0 < len(s) < limit] if train_sentences else []
    if steps and not seqs:
        raise ConfigError("no training sentences for the tiny model (steps > 0 needs some)")
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    saved = []
    meta = {
        "shape": shape,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "n_train_sentences": len(seqs),
    }
    for step in range(steps + 1):
        if step % save_every == 0 or step == steps:
            model.eval()
            _save(model, tok, out / f"step{step}", {**meta, "step": step})
            saved.append(f"step{step}")
            model.train()
        if step == steps:
            break
        ids, mask = collate([seqs[i] for i in rng.integers(0, len(seqs), batch_size)], 0, 1, "cpu")
        # Pretraining predicts every token after <|endoftext|>; padding is excluded from the loss.
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress:
            progress(1)
    return saved


def sentences_for_tiny(all_pairs: pa.Table, train_pairs: pa.Table) -> tuple[list[str], list[str]]:
    """Vocabulary from every sentence given; LM training only on grammatical train sentences."""
    vocab = all_pairs.column("good").to_pylist() + all_pairs.column("bad").to_pylist()
    return vocab, train_pairs.column("good").to_pylist()
