"""Modularity analyses (paper 3): task ordering, the cross-evaluation search, MoEfication clusters.

Equal-size clustering uses the maintained ``k-means-constrained`` package (``KMeansConstrained``
with ``size_min = size_max = d_mlp / n_clusters``: a min-cost-flow assignment step inside k-means).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd
import torch


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


def moefy(w_in: torch.Tensor, n_clusters: int, seed: int = 0, max_iter: int = 300, n_init: int = 10) -> np.ndarray:
    """MoEfication of one layer: equal-size k-means of the L2-normalised rows of ``W_in`` ``[d_mlp, d_model]``.

    Returns cluster labels ``[d_mlp]`` (each cluster holds exactly ``d_mlp / n_clusters`` neurons).
    ``n_init`` and ``max_iter`` default to the library's own defaults (what the paper ran).
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


def permuted_labels(labels: np.ndarray, n_perm: int, seed: int = 0) -> np.ndarray:
    """``[n_perm, d]`` random permutations of cluster ``labels``: random partitions with the same cluster sizes."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    return labels[np.argsort(rng.random((n_perm, len(labels))), axis=1)]


def concentration(selected: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """How concentrated selected neurons are in few clusters: ``1 − H(p) / log(n_clusters)``.

    ``selected``: neuron indices ``[sets, k]`` (or a boolean mask ``[d]`` of one set); ``labels``:
    cluster labels ``[d]`` or several labellings ``[P, d]``. ``p`` is the share of a set's neurons
    in each cluster: 0 when spread evenly over all clusters, 1 when all fall into one. Returns
    ``[P, sets]`` (``[sets]`` for one labelling, a float for one boolean mask); NaN for an empty set.
    """
    sel = np.asarray(selected)
    one_mask = sel.dtype == bool
    if one_mask:
        sel = np.flatnonzero(sel)[None]
    lab = np.asarray(labels)
    many = lab.ndim == 2
    lab = lab if many else lab[None]
    p_n, (s_n, k) = lab.shape[0], sel.shape
    if k == 0:
        out = np.full((p_n, s_n), np.nan)
    else:
        code = (np.arange(p_n)[:, None, None] * s_n + np.arange(s_n)[None, :, None]) * n_clusters + lab[:, sel]
        p = np.bincount(code.ravel(), minlength=p_n * s_n * n_clusters).reshape(p_n, s_n, n_clusters) / k
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log(p), 0.0).sum(-1)
        out = 1 - h / math.log(n_clusters)
    if one_mask:
        return float(out[0, 0])
    return out if many else out[0]
