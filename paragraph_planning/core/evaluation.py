"""Next-token evaluation of a causal LM on token batches, in bounded memory.

Logits are reduced micro-batch by micro-batch to float64 sums (loss, correct counts), so even a
262k-token vocabulary (Gemma) needs only a few times ``max_logit_bytes`` at once. Every forward pass
goes through ``model(...)``, so hooks and masks active around the call apply.

Example::

    batches = token_batches("wiki-en", model.tokenizer, n_tokens=65_536, split="test")
    evaluate_lm(model, batches)  # {"loss": 2.9, "perplexity": 18.1, "top1": 0.43, ...}
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from .hooks import HookedModel

MAX_LOGIT_BYTES = 256 * 2**20
"""Default budget for one micro-batch's float32 logits (rows * seq_len * vocab * 4 bytes)."""


def _rows(batches: torch.Tensor) -> torch.Tensor:
    """Validate token ids ``[n_batches, batch, seq]`` or ``[rows, seq]``; return ``[rows, seq]``."""
    if not isinstance(batches, torch.Tensor):
        raise TypeError(f"batches must be a tensor of token ids, got {type(batches).__name__}.")
    if batches.dtype.is_floating_point or batches.dtype.is_complex or batches.dtype == torch.bool:
        raise TypeError(f"batches must hold integer token ids, got dtype {batches.dtype}.")
    if batches.ndim not in (2, 3):
        raise ValueError(f"batches must be [n_batches, batch, seq] or [rows, seq], got shape {tuple(batches.shape)}.")
    rows = batches.reshape(-1, batches.shape[-1]).long()
    if rows.shape[0] == 0 or rows.shape[1] < 2:
        raise ValueError(f"batches of shape {tuple(batches.shape)} have no targets: need >= 1 row and seq >= 2.")
    return rows


def most_common_tokens(batches: torch.Tensor, k: int = 50) -> torch.Tensor:
    """Ids ``[k]`` of the ``k`` most frequent target tokens (every position but the first), most frequent first.

    Ties go to the smaller id; fewer than ``k`` ids come back when fewer distinct tokens occur.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}.")
    targets = _rows(batches)[:, 1:].reshape(-1)
    if targets.min() < 0:
        raise ValueError("batches hold negative token ids.")
    counts = torch.bincount(targets.cpu())
    order = torch.sort(counts, descending=True, stable=True).indices[:k]
    return order[counts[order] > 0]


def _vocab_size(model: HookedModel) -> int:
    return int(model.hf.get_output_embeddings().weight.shape[0])


@torch.no_grad()
def evaluate_lm(
    model: HookedModel,
    batches: torch.Tensor,
    skip_ids: torch.Tensor | None = None,
    n_tokens: int | None = None,
    max_logit_bytes: int = MAX_LOGIT_BYTES,
    progress: bool = False,
) -> dict[str, Any]:
    """Next-token loss and accuracy of ``model`` on token ids ``[n_batches, batch, seq]`` or ``[rows, seq]``.

    Returns one tidy row: ``loss`` (mean cross-entropy, nats/token), ``perplexity`` (``exp(loss)``),
    ``top1``/``top10`` (share of targets whose logit is beaten by fewer than 1/10 others, so ties
    count as hits), ``skip50_top1``/``skip50_top10`` (the same over targets not in ``skip_ids`` ``[k]``;
    default: the 50 most common targets of ``batches``) and ``n_tokens`` (targets evaluated).
    The skip metrics are NaN when every target is skipped (a sample too small for 50 common tokens).
    ``n_tokens`` limits the evaluation to the first rows covering that many targets.
    Micro-batches hold at most ``max_logit_bytes`` of float32 logits (at least one row).

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> batches = pp.token_batches("wiki-en", model.tokenizer, n_tokens=512, seq_len=64, split="test")
        >>> row = pp.evaluate_lm(model, batches)
        >>> sorted(row)
        ['loss', 'n_tokens', 'perplexity', 'skip50_top1', 'skip50_top10', 'top1', 'top10']
        >>> row["n_tokens"], bool(np.isclose(row["perplexity"], np.exp(row["loss"])))
        (504, True)
    """
    rows = evaluate_lm_rows(model, batches, skip_ids, n_tokens, max_logit_bytes, progress)
    n, n_kept = float(rows.tokens.sum()), float(rows.kept.sum())
    loss_sum, top1, top10, kept_top1, kept_top10 = (float(rows[c].sum()) for c in
                                                     ("loss", "top1", "top10", "skip50_top1", "skip50_top10"))
    return {
        "loss": loss_sum / n,
        "perplexity": math.exp(loss_sum / n),
        "top1": top1 / n,
        "top10": top10 / n,
        "skip50_top1": kept_top1 / n_kept if n_kept else math.nan,
        "skip50_top10": kept_top10 / n_kept if n_kept else math.nan,
        "n_tokens": int(n),
    }


ROW_COLUMNS: tuple[str, ...] = ("row", "tokens", "loss", "top1", "top10", "kept", "skip50_top1", "skip50_top10")
"""Columns of :func:`evaluate_lm_rows`."""


@torch.no_grad()
def evaluate_lm_rows(
    model: HookedModel,
    batches: torch.Tensor,
    skip_ids: torch.Tensor | None = None,
    n_tokens: int | None = None,
    max_logit_bytes: int = MAX_LOGIT_BYTES,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-row sums behind :func:`evaluate_lm` (same arguments), for intervals over evaluation rows.

    One row per token row: ``row`` (its index), ``tokens`` (targets), ``loss`` (summed cross-entropy),
    ``top1``/``top10`` (hits), ``kept`` (targets not in ``skip_ids``) and ``skip50_top1``/``skip50_top10``
    (hits among those). Column sums divided by ``tokens`` (or ``kept``) give :func:`evaluate_lm`'s means.
    """
    if getattr(model.cfg, "kind", None) != "causal-lm":
        raise TypeError(f"evaluate_lm needs a causal language model, got {getattr(model, 'name', model)!r}.")
    rows = _rows(batches)
    seq = rows.shape[1]
    if n_tokens is not None:
        if n_tokens < 1:
            raise ValueError(f"n_tokens must be >= 1, got {n_tokens}.")
        needed = math.ceil(n_tokens / (seq - 1))
        if needed > rows.shape[0]:
            warnings.warn(f"batches hold only {rows.numel() - rows.shape[0]} targets, fewer than the "
                          f"{n_tokens} requested: evaluating all of them.", stacklevel=3)
        rows = rows[:needed]
    vocab = _vocab_size(model)
    if rows.min() < 0 or rows.max() >= vocab:
        raise ValueError(f"Token ids must lie in [0, {vocab}) for this model; "
                         f"got {int(rows.min())}..{int(rows.max())}.")
    skip = most_common_tokens(rows) if skip_ids is None else torch.as_tensor(skip_ids, dtype=torch.long).flatten()
    step = max(1, max_logit_bytes // (seq * vocab * 4))

    # per row, float64 sums: loss, top1, top10, and the same two plus a count over targets not in skip_ids
    sums = []
    for start in tqdm(range(0, rows.shape[0], step), disable=not progress, desc="evaluate_lm", unit="step"):
        x = rows[start:start + step]
        logits = model(x)
        if logits.shape[:2] != x.shape or logits.shape[-1] != vocab:
            raise ValueError(f"model returned logits of shape {tuple(logits.shape)} for input {tuple(x.shape)}.")
        logits = logits[:, :-1].float()  # [r, seq-1, vocab]
        target = x[:, 1:].to(logits.device)  # [r, seq-1]
        target_logit = logits.gather(-1, target[..., None])  # [r, seq-1, 1]
        loss = torch.logsumexp(logits, -1) - target_logit[..., 0]
        rank = (logits > target_logit).sum(-1)  # how many tokens beat the target
        del logits
        kept = ~torch.isin(target, skip.to(target.device))
        top1, top10 = rank < 1, rank < 10
        sums.append(torch.stack([loss.double().sum(-1), top1.sum(-1), top10.sum(-1), kept.sum(-1),
                                 (top1 & kept).sum(-1), (top10 & kept).sum(-1)], -1).double().cpu())
    s = torch.cat(sums).numpy()
    out = pd.DataFrame({"row": range(rows.shape[0]), "tokens": seq - 1})
    for i, c in enumerate(ROW_COLUMNS[2:]):
        out[c] = s[:, i] if c == "loss" else s[:, i].round().astype("int64")
    return out


def evaluate_many(model: HookedModel, corpora: Mapping[str, torch.Tensor], **kwargs: Any) -> pd.DataFrame:
    """:func:`evaluate_lm` on each ``{name: batches}``; one row per corpus (index ``corpus``).

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> test = {c: pp.token_batches(c, model.tokenizer, n_tokens=256, seq_len=64, split="test")
        ...         for c in ("wiki-en", "python-code")}
        >>> table = pp.evaluate_many(model, test)
        >>> table.index.tolist(), table.columns[:4].tolist()
        (['wiki-en', 'python-code'], ['loss', 'perplexity', 'top1', 'top10'])
    """
    if not corpora:
        raise ValueError("corpora is empty: pass {name: batches}.")
    rows = {name: evaluate_lm(model, batches, **kwargs) for name, batches in corpora.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("corpus")


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, k: int = 5) -> dict[str, torch.Tensor]:
    """Per-example metrics of a classifier: ``top1`` and ``top{k}`` (bool) and ``loss`` (cross-entropy), each ``[n]``.

    ``k`` is capped at the number of classes; a label outside the model's classes counts as wrong,
    with a NaN loss. The one place image accuracy is computed; sums and means (and bootstrap
    intervals over examples) are taken from these.

    Example:
        >>> logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
        >>> m = pp.classification_metrics(logits, torch.tensor([0, 1]), k=2)
        >>> m["top1"].tolist(), m["top2"].tolist(), [round(x, 3) for x in m["loss"].tolist()]
        ([True, False], [True, True], [0.408, 1.408])
    """
    logits = logits.float().cpu()
    labels = torch.as_tensor(labels).long().cpu()
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be [n, classes] with one label each, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}.")
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    valid = (labels >= 0) & (labels < logits.shape[-1])  # a label the model cannot predict: wrong, loss NaN
    loss = torch.full(labels.shape, float("nan"))
    loss[valid] = torch.nn.functional.cross_entropy(logits[valid], labels[valid], reduction="none")
    return {"top1": top[:, 0] == labels, f"top{k}": (top == labels[:, None]).any(-1), "loss": loss}

