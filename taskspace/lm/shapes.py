"""Model shapes known without the hub: Pythia's sizes (for building stand-ins and for planning a run's cost).

No torch import at module level, so the CLI can offer the shapes as choices without loading torch.
"""

from __future__ import annotations

from taskspace.errors import ConfigError

# Pythia's published configs (EleutherAI/pythia-*, config.json): what differs between sizes.
PYTHIA_SHAPES: dict[str, dict[str, int]] = {
    "pythia-14m": {"hidden_size": 128, "num_hidden_layers": 6, "num_attention_heads": 4},
    "pythia-70m": {"hidden_size": 512, "num_hidden_layers": 6, "num_attention_heads": 8},
    "pythia-160m": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "pythia-410m": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
    "pythia-1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 8},
    "pythia-1.4b": {"hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16},
}
PYTHIA_VOCAB = 50304  # embedding rows (the tokenizer's 50,277 tokens padded to a multiple of 128)
SHAPES = ("tiny", *PYTHIA_SHAPES)


def pythia_config(shape: str):
    """A GPTNeoXConfig with a Pythia size's real dimensions (parallel residual, 25% rotary, untied heads)."""
    from transformers import GPTNeoXConfig

    if shape not in PYTHIA_SHAPES:
        raise ConfigError(f"unknown Pythia shape {shape!r}; known: {', '.join(PYTHIA_SHAPES)}")
    dims = PYTHIA_SHAPES[shape]
    return GPTNeoXConfig(
        vocab_size=PYTHIA_VOCAB,
        intermediate_size=4 * dims["hidden_size"],
        max_position_embeddings=2048,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
        **dims,
    )
