"""MoEfication (paper 3): do equal-size clusters of FF neurons line up with tasks?

Per layer, the L2-normalised rows of ``W_in`` are split into equal-size clusters with k-means
(:func:`~.clustering.moefy`) and, as a baseline, into random equal-size partitions. For each task's
top-scoring neurons (the selective-pruning scores of :mod:`.modularity`) we ask how concentrated
they are in a few clusters (:func:`~.clustering.concentration`), per layer, vs the baseline; and
whether the excess is larger in early and late layers than in the middle ones, as the paper says.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..cache import cached
from ..core.clustering import concentration, moefy, random_partition
from .modularity import ModelRef, Scores


def moe_labels(ref: ModelRef, layers: Sequence[int], n_clusters: int, seed: int = 0) -> dict[int, np.ndarray]:
    """Per layer, equal-size k-means labels ``[d_mlp]`` of the L2-normalised rows of ``W_in`` (cached per layer)."""
    out = {}
    for layer in layers:
        out[layer] = cached("moefication", {"layer": int(layer), "n_clusters": n_clusters, "seed": seed},
                            lambda layer=layer: moefy(ref.get().weights(layer)["W_in"], n_clusters, seed=seed),
                            model=ref)
    return out


def moe_concentration(scores: Scores, labels: Mapping[int, np.ndarray], n_clusters: int, *, frac: float = 0.1,
                      n_random: int = 20, seed: int = 0) -> pd.DataFrame:
    """How concentrated each task's top neurons are in k-means clusters vs random equal-size partitions.

    Per task and layer, the top ``frac`` of the layer's neurons by score (a per-layer selection,
    so every layer holds the same number) → :func:`~.clustering.concentration` with the k-means
    labels, and with ``n_random`` random partitions. Columns: ``task``, ``layer``, ``kmeans``,
    ``random`` (mean), ``random_p95``, ``excess`` (kmeans − random), ``above_p95``.
    """
    rows = []
    for layer, lab in labels.items():
        d_mlp = len(lab)
        k = max(1, int(frac * d_mlp))
        rand = [random_partition(d_mlp, n_clusters, seed=seed + 1000 * layer + r) for r in range(n_random)]
        for task, s in scores.items():
            sel = np.zeros(d_mlp, dtype=bool)
            sel[s[layer].topk(k).indices.numpy()] = True
            km = concentration(sel, lab, n_clusters)
            rc = np.array([concentration(sel, r, n_clusters) for r in rand])
            rows.append({"task": task, "layer": int(layer), "kmeans": km, "random": rc.mean(),
                         "random_p95": np.quantile(rc, 0.95), "excess": km - rc.mean(),
                         "above_p95": bool(km > np.quantile(rc, 0.95))})
    return pd.DataFrame(rows)


def moe_layer_summary(conc: pd.DataFrame) -> pd.DataFrame:
    """Per layer: mean concentration with k-means and random clusters, excess, share of tasks above p95."""
    g = conc.groupby("layer")
    return pd.DataFrame({"kmeans": g.kmeans.mean(), "random": g.random.mean(), "excess": g.excess.mean(),
                         "share_above_p95": g.above_p95.mean()}).reset_index()


def depth_profile(conc: pd.DataFrame, n_layers: int, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean excess concentration in the first, middle and last third of the layers, and the contrasts
    early − middle and late − middle, each with a 95 % bootstrap interval over tasks (``lo``, ``hi``)."""
    per = conc.assign(third=conc.layer * 3 // n_layers).groupby(["task", "third"]).excess.mean().unstack()
    per = per.reindex(columns=[0, 1, 2])  # [task, third]; NaN where a third has no layer
    values = {"early": per[0], "middle": per[1], "late": per[2],
              "early − middle": per[0] - per[1], "late − middle": per[2] - per[1]}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per), size=(n_boot, len(per)))
    rows = {}
    for name, v in values.items():
        x = v.to_numpy(dtype=float)
        boot = x[idx].mean(1)
        rows[name] = {"excess": x.mean(), "lo": np.quantile(boot, 0.025), "hi": np.quantile(boot, 0.975)}
    return pd.DataFrame.from_dict(rows, orient="index")


def moe_claims(conc: pd.DataFrame, n_layers: int, model: str) -> list[dict[str, str]]:
    """Verdicts on the MoEfication claims (from :func:`moe_concentration`'s table): clusters hold task
    neurons; more so in early and late layers (bootstrap intervals over tasks, :func:`depth_profile`)."""
    ex, share = conc.excess.mean(), conc.above_p95.mean()
    rows = [{"model": model, "claim": "k-means clusters hold a task's neurons more than random clusters",
             "measured": f"mean excess concentration {ex:+.4f} (k-means {conc.kmeans.mean():.4f} vs random "
                         f"{conc.random.mean():.4f}); {share:.0%} of (task, layer) above the random 95th percentile",
             "verdict": "yes" if ex > 0 and share >= 0.25 else "weakly" if ex > 0 and share > 0.05 else "no"}]
    p = depth_profile(conc, n_layers)
    em, lm = p.loc["early − middle"], p.loc["late − middle"]
    if p.excess.isna().any():
        verdict = "n/a (need layers in every third)"
    elif em.lo > 0 and lm.lo > 0:
        verdict = "yes"
    elif em.lo > 0 or lm.lo > 0:
        verdict = f"only in {'early' if em.lo > 0 else 'late'} layers"
    elif em.hi < 0 and lm.hi < 0:
        verdict = "no: the middle layers are stronger"
    else:
        verdict = "not clearly: the differences are within the noise"
    rows.append({"model": model, "claim": "the correspondence is stronger in early and late layers",
                 "measured": f"excess early {p.excess.early:+.4f}, middle {p.excess.middle:+.4f}, late {p.excess.late:+.4f}; "
                             f"early − middle {em.excess:+.4f} [{em.lo:+.4f}, {em.hi:+.4f}], late − middle "
                             f"{lm.excess:+.4f} [{lm.lo:+.4f}, {lm.hi:+.4f}]",
                 "verdict": verdict})
    return rows


def moe_chart(conc: pd.DataFrame, title: str = "") -> Any:
    """Per layer, mean concentration of task neurons in k-means vs random clusters (band: 95 % CI over tasks)."""
    from ..charts import line_with_band
    from ..core.inference import group_summary

    long = pd.concat([conc.assign(clusters="k-means (MoEfication)", concentration=conc.kmeans),
                      conc.assign(clusters="random equal-size", concentration=conc.random)])
    df = group_summary(long, ["layer", "clusters"], "concentration").rename(columns={"mean": "concentration"})
    return line_with_band(df, "layer", "concentration", "clusters", "lo", "hi", title=title, tooltip=["n"])
