"""Cross-evaluation (paper 3): prune one task's neurons until it loses a set share of its accuracy, measure all.

Per task ``t`` (the *target*), a binary search on the **tuning** rows (training documents, or
training images) finds the smallest fraction of ``t``'s top-scoring FF neurons (global top
fraction, zero-ablated) that brings ``t``'s own top-1 to at most ``target`` × unpruned. At that
fraction every task is then measured on its **evaluation** rows (test documents or test images,
never used for the search or for the scores): the ratio pruned / unpruned top-1, per task.

Separate rows matter: a fraction tuned to reach 80 % on some rows reaches about 80 % on those
rows by construction; only fresh rows say what it does. Intervals come from a cluster bootstrap
over evaluation documents (images), the same draws for every pruning of a task's rows, so a
target's own loss and its effect on the others are compared on equal terms.

Top-1 per token is evaluate_lm's top-1 (the target's logit is beaten by no other token, ties
count as hits), kept per row so that rows can be resampled.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..cache import cached
from ..core.architectures import hook_name
from ..core.clustering import smallest_fraction
from ..core.evaluation import MAX_LOGIT_BYTES, classification_metrics
from ..core.inference import Finding, Interval, assess
from ..data.tasks import Task
from .modularity_stats import SITE, ModelRef, _documents, class_images


@dataclass(frozen=True)
class CrossConfig:
    """Cross-evaluation settings; validated on creation.

    ``target``: prune until own top-1 ≤ target × unpruned; ``lo``/``hi``: the search range of the
    pruned fraction; ``tol``: its resolution, a ratio (the search stops when the bracket's ends are
    within this factor); ``tune_size`` / ``eval_size``: tokens per text task (images per class) for
    the search and for the evaluation; ``seq_len``: tokens per row; ``n_boot``, ``level``: the
    bootstrap over evaluation documents.
    """

    target: float = 0.8
    lo: float = 0.001
    hi: float = 0.128
    tol: float = 1.25
    tune_size: int = 512
    eval_size: int = 2048
    seq_len: int = 64
    n_boot: int = 2000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"target must be in (0, 1), got {self.target!r}.")
        if not (0 < self.lo < self.hi <= 1 and self.tol > 1):
            raise ValueError(f"Need 0 < lo < hi <= 1 and a relative tolerance tol > 1; got lo={self.lo}, hi={self.hi}, "
                             f"tol={self.tol}.")
        for name, low in (("tune_size", 1), ("eval_size", 1), ("seq_len", 2), ("n_boot", 100), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}.")
        if not 0.5 <= self.level < 1:
            raise ValueError(f"level must be in [0.5, 1), got {self.level!r}.")


# ============================================================================ rows
def spread_rows(pieces: Any, tokenizer: Any, n_tokens: int, seq_len: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Rows ``[n, seq_len]`` covering ``n_tokens`` targets, spread over documents, and each row's document ``[n]``.

    Documents come in a seeded order; round ``r`` takes the ``r``-th row of every document long
    enough, so rows come from as many documents as possible (one each while there are enough).
    Each row starts with the tokenizer's bos when it adds one itself (Gemma).
    """
    docs = _documents(pieces)
    ids = sorted(docs)
    random.Random(seed).shuffle(ids)
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
    body = seq_len - int(adds_bos)
    need = math.ceil(n_tokens / (seq_len - 1))
    cut: dict[int, list[list[int]]] = {}
    rows: list[list[int]] = []
    owner: list[int] = []
    for r in range(10_000):
        progressed = False
        for d, doc in enumerate(ids):
            if d not in cut:
                if len(rows) >= need:
                    break
                toks = tokenizer("".join(docs[doc]), add_special_tokens=False, verbose=False)["input_ids"]
                cut[d] = [toks[i:i + body] for i in range(0, len(toks) - body + 1, body)]
            if r < len(cut[d]) and len(rows) < need:
                rows.append(([bos] if adds_bos else []) + cut[d][r])
                owner.append(d)
                progressed = True
        if len(rows) >= need or not progressed:
            break
    if len(rows) < need:
        raise ValueError(f"Only {len(rows) * (seq_len - 1)} tokens in rows of {seq_len}: fewer than the {n_tokens} asked.")
    return torch.tensor(rows, dtype=torch.long), np.array(owner)


@torch.no_grad()
def token_hits(model: Any, rows: torch.Tensor, max_logit_bytes: int = MAX_LOGIT_BYTES) -> torch.Tensor:
    """Top-1 hits per row ``[rows]`` (int): next-token targets whose logit no other token beats.

    The per-row form of :func:`~paragraph_planning.core.evaluation.evaluate_lm`'s ``top1`` (ties
    count as hits), so that evaluation rows can be resampled; hooks and masks around the call apply.
    """
    vocab = int(model.hf.get_output_embeddings().weight.shape[0])
    step = max(1, max_logit_bytes // (rows.shape[1] * vocab * 4))
    out = []
    for i in range(0, len(rows), step):
        x = rows[i:i + step]
        logits = model(x)[:, :-1].float()
        target = logits.gather(-1, x[:, 1:].to(logits.device)[..., None])
        out.append(((logits > target).sum(-1) < 1).sum(-1).cpu())
    return torch.cat(out)


# ============================================================================ evaluation sets
@dataclass
class EvalSet:
    """One task's rows for one use: ``inputs`` (token rows or pixel batches), ``labels`` (images),
    ``unit`` ``[n]`` (document or image of each row), ``tokens`` ``[n]`` (targets per row)."""

    inputs: torch.Tensor
    unit: np.ndarray
    tokens: np.ndarray
    labels: torch.Tensor | None = None


def text_sets(model: Any, task: Task, cfg: CrossConfig) -> dict[str, EvalSet]:
    """Tuning rows (forget-pool training documents) and evaluation rows (test documents) of a text task."""
    out = {}
    for use, (split, pool, n) in {"tune": ("train", "forget", cfg.tune_size), "eval": ("test", None, cfg.eval_size)}.items():
        try:
            rows, unit = spread_rows(task.pieces(split, pool), model.tokenizer, n, cfg.seq_len, seed=cfg.seed)
        except ValueError as err:
            size = "tune_size" if use == "tune" else "eval_size"
            raise ValueError(f"Task {task.name!r}, {split} documents: {err} Lower {size} (the chapter's "
                             f"{'tune_tokens' if use == 'tune' else 'eval_tokens'}) or leave this task out of the "
                             f"cross-evaluation.") from None
        out[use] = EvalSet(rows, unit, np.full(len(rows), cfg.seq_len - 1))
    return out


def class_sets(model: Any, cls: str, cfg: CrossConfig) -> dict[str, EvalSet]:
    """Tuning images (training) and evaluation images (test) of one Fashion-MNIST class, ``*_size`` each."""
    from ..data.images import FASHION_CLASSES, pixel_processor

    proc = pixel_processor(model)
    out = {}
    for use, (split, n) in {"tune": ("train", cfg.tune_size), "eval": ("test", cfg.eval_size)}.items():
        imgs = class_images(split, n, cfg.seed)[cls]
        out[use] = EvalSet(proc(imgs), np.arange(len(imgs)), np.ones(len(imgs), dtype=np.int64),
                           torch.full((len(imgs),), FASHION_CLASSES.index(cls)))
    return out


def _hits(model: Any, s: EvalSet) -> np.ndarray:
    if s.labels is None:
        return token_hits(model, s.inputs).numpy()
    logits = torch.cat([model(s.inputs[i:i + 500]) for i in range(0, len(s.inputs), 500)])
    return classification_metrics(logits, s.labels)["top1"].numpy().astype(np.int64)


def _masks(model: Any, scores: torch.Tensor, frac: float) -> Any:
    from ..core.interventions import NeuronMasks
    from ..core.pruning import select_top

    sel = select_top({hook_name(i, SITE): scores[i] for i in range(scores.shape[0])}, frac)
    return NeuronMasks(model).update({n: ~m for n, m in sel.items()})


# ============================================================================ the search and the measurement
def cross_evaluation(tasks: Sequence[str], hits: Callable[[str | None, float, str, str], np.ndarray],
                     cfg: CrossConfig) -> pd.DataFrame:
    """Search each target's fraction on tuning rows, then measure every task's evaluation rows there.

    ``hits(prune_for, frac, task, use)`` returns top-1 hits per row of ``task``'s ``use``
    (``"tune"``/``"eval"``) rows with the top ``frac`` of ``prune_for``'s neurons pruned
    (``None``: unpruned). Returns one row per (``pruned_for``, ``evaluated_on``, evaluation row):
    ``frac``, ``reached`` (the tuning rows reached the target within ``hi``), ``tune_ratio`` (own
    ratio on the tuning rows), ``row``, ``hits``; unpruned rows have ``pruned_for`` ``""``. A target
    with no top-1 hit on its tuning rows unpruned has nothing to lose and gets no rows.
    """
    tasks = list(tasks)
    base_tune = {t: float(hits(None, 0.0, t, "tune").sum()) for t in tasks}
    frames = []
    for t in tasks:
        frames.append(pd.DataFrame({"pruned_for": "", "evaluated_on": t, "frac": 0.0, "reached": True,
                                    "tune_ratio": 1.0, "hits": hits(None, 0.0, t, "eval")}).rename_axis("row")
                      .reset_index())
    for t in tasks:
        memo: dict[float, float] = {}

        def own(frac: float, t: str = t) -> float:
            if frac not in memo:
                memo[frac] = float(hits(t, frac, t, "tune").sum()) / base_tune[t]
            return memo[frac]

        if not base_tune[t] > 0:  # no top-1 to lose on the tuning rows: no search, no row
            continue
        u = smallest_fraction(lambda u: own(math.exp(u)), cfg.target, math.log(cfg.lo), math.log(cfg.hi),
                              math.log(cfg.tol))
        frac = math.exp(u)
        reached = own(frac) <= cfg.target
        for u in tasks:
            frames.append(pd.DataFrame({"pruned_for": t, "evaluated_on": u, "frac": frac, "reached": reached,
                                        "tune_ratio": memo[frac], "hits": hits(t, frac, u, "eval")}).rename_axis("row")
                          .reset_index())
    return pd.concat(frames, ignore_index=True)


def run_cross_evaluation(ref: ModelRef, tasks: Sequence[Task], scores: Mapping[str, torch.Tensor],
                         cfg: CrossConfig) -> pd.DataFrame:
    """Cross-evaluation of a language model or an image classifier (cached): :func:`cross_evaluation`'s
    rows plus ``unit`` (the row's document or image) and ``tokens`` (targets in the row)."""
    tasks = list(tasks)
    kind = tasks[0].kind

    def compute() -> pd.DataFrame:
        model = ref.get()
        if kind == "text":  # a task's rows are its own
            parts = {t.name: [t.name] for t in tasks}
            sets = {t.name: text_sets(model, t, cfg) for t in tasks}
        else:  # a task's images are its classes' images: each class is run once per pruning
            parts = {t.name: list(t.classes) for t in tasks}
            sets = {c: class_sets(model, c, cfg) for c in dict.fromkeys(c for t in tasks for c in t.classes)}
        memo: dict[tuple[Any, ...], np.ndarray] = {}

        def part_hits(prune_for: str | None, frac: float, part: str, use: str) -> np.ndarray:
            key = (prune_for if frac > 0 else None, frac if prune_for else 0.0, part, use)
            if key not in memo:
                if key[0] is None:
                    memo[key] = _hits(model, sets[part][use])
                else:
                    with _masks(model, scores[prune_for], frac):
                        memo[key] = _hits(model, sets[part][use])
            return memo[key]

        def hits(prune_for: str | None, frac: float, task: str, use: str) -> np.ndarray:
            return np.concatenate([part_hits(prune_for, frac, p, use) for p in parts[task]])

        df = cross_evaluation([t.name for t in tasks], hits, cfg)
        unit = {t: np.concatenate([sets[p]["eval"].unit + 100_000 * i for i, p in enumerate(parts[t])]) for t in parts}
        tokens = {t: np.concatenate([sets[p]["eval"].tokens for p in parts[t]]) for t in parts}
        df["unit"] = [unit[u][r] for u, r in zip(df.evaluated_on, df.row)]
        df["tokens"] = [tokens[u][r] for u, r in zip(df.evaluated_on, df.row)]
        return df

    params = {"tasks": [asdict(t) for t in tasks], "cfg": asdict(cfg),
              "scores": torch.stack([scores[t.name] for t in tasks])}
    return cached("modularity-cross-eval", params, compute, model=ref)


# ============================================================================ ratios with intervals
def _unit_sums(df: pd.DataFrame) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per evaluated task: hits per (condition, unit) ``[conditions, units]`` and units; conditions = ``[""] + targets``."""
    conds = [""] + [t for t in dict.fromkeys(df.pruned_for) if t]
    sums, units = {}, {}
    for u, part in df.groupby("evaluated_on", sort=False):
        table = part.pivot_table(index="pruned_for", columns="unit", values="hits", aggfunc="sum").reindex(conds)
        sums[u], units[u] = table.to_numpy(dtype=float), table.columns.to_numpy()
    return conds, sums, units


def cross_bootstrap(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str],
                                                                                   list[str]]:
    """Ratios pruned / unpruned ``[targets, tasks]`` on the sample and ``[n_boot, targets, tasks]`` on draws.

    Each draw resamples every evaluated task's units (documents or images) with replacement, the
    same draw for all of that task's conditions (paired).
    """
    conds, sums, _ = _unit_sums(df)
    tasks, targets = list(sums), conds[1:]
    rng = np.random.default_rng(seed)
    est = np.full((len(targets), len(tasks)), np.nan)
    boot = np.full((n_boot, len(targets), len(tasks)), np.nan)
    for j, u in enumerate(tasks):
        s = sums[u]  # [conditions, units]
        w = np.stack([np.bincount(rng.integers(0, s.shape[1], s.shape[1]), minlength=s.shape[1])
                      for _ in range(n_boot)])  # [n_boot, units]
        tot = w @ s.T  # [n_boot, conditions]
        base = s[0].sum()
        if base > 0:  # no unpruned hit: no ratio (NaN)
            est[:, j] = s[1:].sum(1) / base
            with np.errstate(invalid="ignore", divide="ignore"):
                boot[:, :, j] = np.where(tot[:, :1] > 0, tot[:, 1:] / tot[:, :1], np.nan)
    return est, boot, targets, tasks


def interval(est: float, draws: np.ndarray, n: int, level: float = 0.95) -> Interval:
    """Percentile interval of bootstrap ``draws`` around ``est`` (``n`` units)."""
    d = draws[np.isfinite(draws)]
    if len(d) < 2 or not math.isfinite(est):
        return Interval(est, math.nan, math.nan, level, n, math.nan, None, "cluster bootstrap (no interval)")
    lo, hi = np.quantile(d, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(float(est), float(lo), float(hi), level, n, float(d.std(ddof=1)), None, "cluster bootstrap")


def cross_table(df: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per (``pruned_for``, ``evaluated_on``): ``frac``, ``reached``, ``tune_ratio``, ``base``,
    ``pruned`` (top-1 on the evaluation rows), ``ratio`` with ``lo``/``hi`` (bootstrap over units), ``n`` (units)."""
    est, boot, targets, tasks = cross_bootstrap(df, n_boot, seed)
    columns = ["pruned_for", "evaluated_on", "frac", "reached", "tune_ratio", "base", "pruned", "ratio", "lo", "hi", "n",
               "tokens"]
    if not targets:
        return pd.DataFrame(columns=columns)
    meta = df[df.pruned_for != ""].groupby(["pruned_for", "evaluated_on"], sort=False).agg(
        frac=("frac", "first"), reached=("reached", "first"), tune_ratio=("tune_ratio", "first"),
        hits=("hits", "sum"), tokens=("tokens", "sum"), n=("unit", "nunique"))
    base = df[df.pruned_for == ""].groupby("evaluated_on").agg(bh=("hits", "sum"), bt=("tokens", "sum"))
    rows = []
    for i, t in enumerate(targets):
        for j, u in enumerate(tasks):
            m = meta.loc[(t, u)]
            iv = interval(est[i, j], boot[:, i, j], int(m.n), level)
            rows.append({"pruned_for": t, "evaluated_on": u, "frac": m.frac, "reached": bool(m.reached),
                         "tune_ratio": m.tune_ratio, "base": base.bh[u] / base.bt[u], "pruned": m.hits / m.tokens,
                         "ratio": iv.estimate, "lo": iv.lo, "hi": iv.hi, "n": iv.n, "tokens": int(m.tokens)})
    return pd.DataFrame(rows)


# ============================================================================ the paper's claims, tested
def _pairs(tasks: Sequence[Task], targets: Sequence[str], evaluated: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``[targets, tasks]``: other non-nested tasks of the same family, of another family."""
    from ..data.tasks import nested

    by = {t.name: t for t in tasks}
    other = np.array([[t != u and not nested(by[t], by[u]) for u in evaluated] for t in targets], dtype=bool)
    same = np.array([[by[t].family == by[u].family for u in evaluated] for t in targets], dtype=bool)
    return other & same, other & ~same


def cross_findings(df: pd.DataFrame, tasks: Sequence[Task], cfg: CrossConfig) -> list[Finding]:
    """The cross-evaluation claims, from the cluster bootstrap over evaluation units (paired per task).

    * pruning a task's neurons costs the task more than the others: the mean over targets of
      (the other tasks' mean ratio − the own ratio) > 0;
    * related tasks are hit harder: mean ratio of other-family pairs − same-family pairs > 0
      (only where both kinds of pairs exist).
    """
    est, boot, targets, evaluated = cross_bootstrap(df, cfg.n_boot, cfg.seed)
    if not targets:
        return []
    own = np.array([[t == u for u in evaluated] for t in targets], dtype=bool)
    within, between = _pairs(tasks, targets, evaluated)
    others = within | between
    n = int(df[df.pruned_for == ""].groupby("evaluated_on").unit.nunique().sum())

    def contrast(a: np.ndarray, b: np.ndarray, per_target: bool) -> Interval:
        def stat(r: np.ndarray) -> np.ndarray:  # r: [..., targets, tasks]
            if per_target:
                return _nanmean(_nanmean(np.where(a, r, np.nan), -1) - _nanmean(np.where(b, r, np.nan), -1), -1)
            return _nanmean(np.where(a, r, np.nan), (-2, -1)) - _nanmean(np.where(b, r, np.nan), (-2, -1))

        return interval(float(stat(est)), stat(boot), n, cfg.level)

    out = [assess("pruning a task's neurons costs the task more than the other tasks", contrast(others, own, True),
                  unit="ratio points", note="mean over targets of (others' mean ratio − own ratio), evaluation rows")]
    if within.any() and between.any():
        out.append(assess("related tasks (same family) lose more than unrelated ones", contrast(between, within, False),
                          unit="ratio points", note="mean ratio, other-family pairs − same-family pairs"))
    return out


def own_ratio(df: pd.DataFrame, cfg: CrossConfig) -> Interval:
    """The targets' mean own ratio on the evaluation rows (the search reached ``target`` on the tuning rows)."""
    est, boot, targets, evaluated = cross_bootstrap(df, cfg.n_boot, cfg.seed)
    n = int(df[df.pruned_for == ""].groupby("evaluated_on").unit.nunique().sum())
    if not targets:
        return Interval(math.nan, math.nan, math.nan, cfg.level, n, method="no target")
    own = np.array([[t == u for u in evaluated] for t in targets], dtype=bool)
    return interval(float(_nanmean(est[own], 0)), _nanmean(np.where(own, boot, np.nan), (-2, -1)), n, cfg.level)


def _nanmean(x: np.ndarray, axis: Any) -> np.ndarray:
    """``np.nanmean`` that returns NaN for an all-NaN slice without a warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis)
