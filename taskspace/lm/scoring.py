"""Exact minimal-pair scoring: summed log-prob per sentence, pair margins, task accuracies.

A sentence is scored as `prefix + tokens`: the prefix token (the model's pre-training separator) is context
only, every sentence token is scored. The fast path packs sentences as prefix trees (`taskspace.lm.packing`), so a
pair's common beginning is computed once; the plain path (right-padded rows of similar length, where causal
attention never looks at the padding) is the reference and the fallback for a model that cannot take a custom
attention mask. Either way a sentence's score does not depend on its batch.

A pass over the same sentences again (eval1, then every task's eval2) takes them prepared (`PreparedEval`): encoded,
packed and collated once, kept on the model's device, so each pass is the model's work only, on the very batches a
fresh pass would build.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from taskspace.lm.models import LM, ModelError
from taskspace.lm.packing import ROW_TOKENS, PackedBatch, batch_rows, collate_rows, pack_rows, packed_logprobs

Progress = Callable[[int], None]


def encode(tokenizer, sentences: Sequence[str]) -> list[list[int]]:
    """Token ids without special tokens (the prefix is added explicitly, the same way for every model)."""
    return tokenizer(list(sentences), add_special_tokens=False)["input_ids"]


def length_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of similar length (sorted, stable), so padding is nearly zero."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(seqs: Sequence[Sequence[int]], prefix_id: int, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded `prefix + seq` ids and their attention mask."""
    width = 1 + max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, 0] = prefix_id
        ids[r, 1 : 1 + len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[r, : 1 + len(s)] = 1
    return ids.to(device), mask.to(device)


def sequence_logprobs(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed log P(token | preceding) over every non-pad token after the prefix; differentiable."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, L-1, V): predicts ids[:, 1:]
    targets = ids[:, 1:]  # (B, L-1)
    # log_softmax via logsumexp keeps one (B, L-1) tensor instead of a second (B, L-1, V) one.
    tok_lp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # (B, L-1)
    return (tok_lp * mask[:, 1:]).sum(-1)  # (B,): padding contributes nothing


def _packing_matches(lm: LM) -> bool:
    """Packed and plain scores agree on a probe pair sharing a prefix (a model whose attention ignores a custom
    4-D mask, e.g. flash-attention, would let one branch see the other and fail this)."""
    if "logits_to_keep" not in inspect.signature(lm.model.forward).parameters:
        return False
    base = min(len(lm.tokenizer) // 2, 1000)
    seqs = [[base, base + 1, base + 2, base + 3, base + 4], [base, base + 1, base + 5, base + 6]]
    with torch.inference_mode():
        ids, mask = collate(seqs, lm.prefix_id, lm.tokenizer.pad_token_id, lm.device)
        plain = sequence_logprobs(lm.model, ids, mask).double().cpu()
        batch = collate_rows(pack_rows(seqs, lm.prefix_id), lm.tokenizer.pad_token_id, lm.device, lm.dtype)
        packed = torch.empty(2, dtype=torch.float64)
        try:
            packed[batch.sentences] = packed_logprobs(lm.model, batch).double().cpu()
        except (TypeError, ValueError, RuntimeError, IndexError):  # e.g. no 2-D logits_to_keep or 4-D mask
            return False
    tol = 1e-3 if lm.dtype == torch.float32 else 0.1
    return bool(torch.allclose(packed, plain, atol=tol, rtol=tol))


def uses_packing(lm: LM) -> bool:
    """Whether this model scores through prefix-tree packing (checked once per loaded model)."""
    if lm.packing is None:
        lm.packing = _packing_matches(lm)
        if not lm.packing:
            logging.getLogger(__name__).warning("%s: prefix-tree packing unsupported; scoring unpacked", lm.name)
    return lm.packing


def logprobs_tensor(lm: LM, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Differentiable summed log-probs of token sequences in one forward pass (input order), packed when the
    model allows: what FTGD trains through."""
    if uses_packing(lm):
        batch = collate_rows(pack_rows(seqs, lm.prefix_id), lm.tokenizer.pad_token_id, lm.device, lm.dtype)
        lp = packed_logprobs(lm.model, batch)
        return lp[torch.as_tensor(np.argsort(batch.sentences), device=lp.device)]
    ids, mask = collate(seqs, lm.prefix_id, lm.tokenizer.pad_token_id, lm.device)
    return sequence_logprobs(lm.model, ids, mask)


@dataclass(frozen=True, eq=False)
class PlainBatch:
    """One forward pass of the unpacked path: right-padded `prefix + sentence` rows and their input indices."""

    ids: torch.Tensor
    mask: torch.Tensor
    sentences: np.ndarray


def _encode_checked(lm: LM, sentences: Sequence[str]) -> list[list[int]]:
    seqs = encode(lm.tokenizer, sentences)
    empty = [i for i, s in enumerate(seqs) if not s]
    if empty:
        raise ModelError(f"sentence {empty[0]} tokenises to nothing: {sentences[empty[0]]!r}")
    return seqs


def _batches(
    lm: LM, seqs: Sequence[Sequence[int]], batch_size: int, row_tokens: int
) -> Iterator[PackedBatch | PlainBatch]:
    """The forward passes over encoded sentences, each collated on the model's device when asked for: a one-off
    pass streams them, a prepared set keeps them; either way the same batches in the same order."""
    pad = lm.tokenizer.pad_token_id
    if uses_packing(lm):
        for rows in batch_rows(pack_rows(seqs, lm.prefix_id, row_tokens), batch_size):
            yield collate_rows(rows, pad, lm.device, lm.dtype)
        return
    for idx in length_batches([len(s) for s in seqs], batch_size):
        yield PlainBatch(*collate([seqs[i] for i in idx], lm.prefix_id, pad, lm.device), idx)


def _model_key(lm: LM) -> tuple:
    """What collated batches depend on besides the sentences (not the weights: a delta may come and go)."""
    return lm.tokenizer, lm.prefix_id, lm.tokenizer.pad_token_id, str(lm.device), lm.dtype, uses_packing(lm)


@dataclass(frozen=True, eq=False)
class PreparedSentences:
    """Sentences encoded, packed (or length-batched) and collated once for one model and batch size, on its device."""

    key: tuple  # _model_key of the model they were prepared for
    batch_size: int
    row_tokens: int
    lengths: np.ndarray  # tokens per sentence, input order
    batches: tuple[PackedBatch | PlainBatch, ...]

    def __len__(self) -> int:
        return len(self.lengths)


def prepare_sentences(
    lm: LM, sentences: Sequence[str], batch_size: int = 128, row_tokens: int = ROW_TOKENS
) -> PreparedSentences:
    """Every batch of a pass over these sentences, built now and kept (see `PreparedEval`)."""
    seqs = _encode_checked(lm, sentences)
    batches = tuple(_batches(lm, seqs, batch_size, row_tokens))
    return PreparedSentences(_model_key(lm), batch_size, row_tokens, np.array([len(s) for s in seqs]), batches)


def _logprobs(lm: LM, batches: Iterable[PackedBatch | PlainBatch], n: int, progress: Progress | None) -> np.ndarray:
    """log p of each of n sentences (float64, input order): the scores stay on the device until one copy at the
    end, so a GPU's queue never waits on the host between batches."""
    out = np.empty(n, dtype=np.float64)
    parts, where = [], []
    with torch.inference_mode():
        for batch in batches:
            if isinstance(batch, PackedBatch):
                parts.append(packed_logprobs(lm.model, batch).double())
            else:
                parts.append(sequence_logprobs(lm.model, batch.ids, batch.mask).double())
            where.append(batch.sentences)
            if progress:
                progress(len(batch.sentences))
        if parts:
            out[np.concatenate(where)] = torch.cat(parts).cpu().numpy()
    return out


def sentence_logprobs(
    lm: LM,
    sentences: Sequence[str] | PreparedSentences,
    batch_size: int | None = None,
    progress: Progress | None = None,
    row_tokens: int = ROW_TOKENS,
) -> np.ndarray:
    """log p(s) for each sentence (float64, input order); `batch_size` (default 128) sentences per forward pass.
    Prepared sentences are scored on their own batches (a different batch size or model is refused)."""
    if isinstance(sentences, PreparedSentences):
        if batch_size not in (None, sentences.batch_size) or row_tokens != sentences.row_tokens:
            raise ValueError(
                f"sentences prepared for batch size {sentences.batch_size} and rows of {sentences.row_tokens}, "
                f"asked for {batch_size} and {row_tokens}"
            )
        if sentences.key != _model_key(lm):
            raise ValueError(f"sentences prepared for another model, device, dtype or packing than {lm.name}'s")
        return _logprobs(lm, sentences.batches, len(sentences), progress)
    seqs = _encode_checked(lm, sentences)
    return _logprobs(lm, _batches(lm, seqs, batch_size or 128, row_tokens), len(seqs), progress)


class PreparedEval:
    """An eval table whose sentences (good, then bad) are prepared on first use and then kept: `score_pairs` takes
    it in place of the table, so eval1 and every task's eval2 score the very batches one fresh pass would build (the
    same scores, bit for bit) without redoing the host work a GPU cannot speed up (13–16 s a pass at the Pythia
    profile, 68 passes a run). Nothing is prepared for a run whose passes are all on disk already."""

    def __init__(self, lm: LM, pairs: pa.Table, batch_size: int = 128, row_tokens: int = ROW_TOKENS) -> None:
        self.lm, self.pairs, self.batch_size, self.row_tokens = lm, pairs, batch_size, row_tokens

    @functools.cached_property
    def sentences(self) -> PreparedSentences:
        text = self.pairs.column("good").to_pylist() + self.pairs.column("bad").to_pylist()
        return prepare_sentences(self.lm, text, self.batch_size, self.row_tokens)

    @functools.cached_property
    def good_tokens(self) -> np.ndarray:
        """Tokens per grammatical sentence: from the preparation when made, else by encoding only those."""
        if "sentences" in self.__dict__:
            return self.sentences.lengths[: self.pairs.num_rows]
        return np.array([len(s) for s in encode(self.lm.tokenizer, self.pairs.column("good").to_pylist())])


SCORE_SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("pair_id", pa.int32()),
        ("logp_good", pa.float64()),
        ("logp_bad", pa.float64()),
        ("margin", pa.float64()),
        ("correct", pa.bool_()),
    ]
)


def score_pairs(
    lm: LM, pairs: pa.Table | PreparedEval, batch_size: int | None = None, progress: Progress | None = None
) -> pa.Table:
    """Per-pair margins d = logp(good) − logp(bad); correct iff d > 0 (identical pairs count as wrong). A
    `PreparedEval` is scored on its kept batches (its batch size; None or the same one may be asked for)."""
    if isinstance(pairs, PreparedEval):
        if batch_size not in (None, pairs.batch_size):
            raise ValueError(f"pairs prepared for batch size {pairs.batch_size}, asked for {batch_size}")
        pairs, sentences = pairs.pairs, pairs.sentences
    else:
        sentences = pairs.column("good").to_pylist() + pairs.column("bad").to_pylist()
    n = pairs.num_rows
    lp = sentence_logprobs(lm, sentences, batch_size, progress)
    good, bad = lp[:n], lp[n:]
    margin = good - bad
    return pa.table(
        {
            "task": pairs.column("task"),
            "pair_id": pairs.column("pair_id"),
            "logp_good": good,
            "logp_bad": bad,
            "margin": margin,
            "correct": margin > 0,
        },
        schema=SCORE_SCHEMA,
    )


def task_accuracy(scores: pa.Table) -> list[dict]:
    """Per task: pairs, accuracy, mean margin and the number of exact ties (d == 0)."""
    tasks = np.asarray(scores.column("task").to_pylist())
    margin = scores.column("margin").to_numpy()
    out = []
    for t in dict.fromkeys(tasks.tolist()):
        m = margin[tasks == t]
        out.append(
            {
                "task": t,
                "n": int(m.size),
                "accuracy": float((m > 0).mean()),
                "mean_margin": float(m.mean()),
                "ties": int((m == 0).sum()),
            }
        )
    return out
