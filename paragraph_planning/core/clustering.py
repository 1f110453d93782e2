"""Modularity analyses (paper 3): task neuron sets, their overlap, cross-evaluation search, MoEfication.

Equal-size clustering uses the maintained ``k-means-constrained`` package (``KMeansConstrained``
with ``size_min = size_max = d_mlp / n_clusters``: a min-cost-flow assignment step inside k-means).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import torch


def top_fraction(scores: Mapping[str, torch.Tensor], frac: float) -> torch.Tensor:
    """Boolean ``[N]`` over the concatenated neurons of ``scores`` (in key order): the global top ``frac``."""
    flat = torch.cat([s.flatten().double() for s in scores.values()])
    k = int(frac * flat.numel())
    if k < 1:
        raise ValueError(f"frac={frac} selects no neuron out of {flat.numel()}.")
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[flat.topk(k).indices] = True
    return chosen


def overlap_matrix(sets: Mapping[str, torch.Tensor]) -> pd.DataFrame:
    """``|A ∩ B| / |A|`` for every ordered pair of task sets (boolean ``[N]`` each, equal sizes → symmetric).

    With sets of equal size ``k`` drawn at random, the expected overlap is ``k / N`` (the fraction).
    """
    names = list(sets)
    m = torch.stack([sets[n].bool() for n in names]).double()  # [tasks, N]
    sizes = m.sum(1, keepdim=True)
    if (sizes == 0).any():
        raise ValueError("Every task set must contain at least one neuron.")
    inter = m @ m.T
    return pd.DataFrame((inter / sizes).numpy(), index=names, columns=names)


def similarity_order(matrix: pd.DataFrame) -> list[str]:
    """Task order that puts similar tasks together: average-linkage clustering on ``1 − overlap``."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if len(matrix) < 3:
        return list(matrix.index)
    sym = (matrix.values + matrix.values.T) / 2
    dist = np.clip(1 - sym, 0, None)
    np.fill_diagonal(dist, 0)
    return [matrix.index[i] for i in leaves_list(linkage(squareform(dist, checks=False), "average"))]


def off_diagonal(matrix: pd.DataFrame) -> np.ndarray:
    """The off-diagonal entries of a square matrix, flattened."""
    v = matrix.values
    return v[~np.eye(len(v), dtype=bool)]


def top_pairs(matrix: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The ``n`` unordered task pairs with the highest (symmetrised) overlap."""
    names = list(matrix.index)
    rows = [(names[i], names[j], (matrix.iat[i, j] + matrix.iat[j, i]) / 2)
            for i in range(len(names)) for j in range(i + 1, len(names))]
    return pd.DataFrame(rows, columns=["task_a", "task_b", "overlap"]).nlargest(n, "overlap").reset_index(drop=True)


def smallest_fraction(
    metric_at: Callable[[float], float], target: float, lo: float = 0.0, hi: float = 0.128, tol: float = 0.002
) -> float:
    """Binary search for the smallest fraction whose metric is ≤ ``target`` (metric falls with the fraction).

    Returns a fraction within ``tol`` above the true threshold; ``hi`` if even ``hi`` does not reach it.
    """
    if not lo < hi:
        raise ValueError(f"Need lo < hi, got {lo}, {hi}.")
    if metric_at(hi) > target:
        return hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if metric_at(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def moefy(w_in: torch.Tensor, n_clusters: int, seed: int = 0, max_iter: int = 50, n_init: int = 1) -> np.ndarray:
    """MoEfication of one layer: equal-size k-means of the L2-normalised rows of ``W_in`` ``[d_mlp, d_model]``.

    Returns cluster labels ``[d_mlp]`` (each cluster holds exactly ``d_mlp / n_clusters`` neurons).
    """
    from k_means_constrained import KMeansConstrained

    d_mlp = w_in.shape[0]
    if d_mlp % n_clusters:
        raise ValueError(f"d_mlp={d_mlp} is not divisible by n_clusters={n_clusters}.")
    x = torch.nn.functional.normalize(w_in.detach().double(), dim=1).cpu().numpy()
    size = d_mlp // n_clusters
    km = KMeansConstrained(n_clusters=n_clusters, size_min=size, size_max=size, random_state=seed,
                           max_iter=max_iter, n_init=n_init)
    return km.fit_predict(x).astype(np.int64)


def random_partition(d_mlp: int, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Baseline: a random equal-size partition of ``d_mlp`` neurons into ``n_clusters`` clusters."""
    if d_mlp % n_clusters:
        raise ValueError(f"d_mlp={d_mlp} is not divisible by n_clusters={n_clusters}.")
    labels = np.arange(d_mlp) % n_clusters
    return np.random.default_rng(seed).permutation(labels)


def concentration(selected: torch.Tensor | np.ndarray, labels: np.ndarray, n_clusters: int) -> float:
    """How concentrated selected neurons are in few clusters: ``1 − H(p) / log(n_clusters)``.

    ``p`` is the share of the selected neurons in each cluster: 0 when spread evenly over all
    clusters, 1 when all fall into one. NaN when nothing is selected.
    """
    sel = np.asarray(selected, dtype=bool)
    if sel.sum() == 0:
        return math.nan
    p = np.bincount(labels[sel], minlength=n_clusters) / sel.sum()
    p = p[p > 0]
    return float(1 + (p * np.log(p)).sum() / math.log(n_clusters))
