"""Modularity (paper 3): do tasks own their neurons? Overlap of task neuron sets, with a null and a ceiling.

For each *task* (one wiki topic, one BBC category, Python code, ...; or one Fashion-MNIST class
or group) every FF neuron (``mlp.pre_out``) gets the selective-pruning ``abs`` score
``mean|x|(task) / (mean|x|(retain) + eps)``, and the task's neuron set at fraction ``f`` is its
top ``f`` of neurons: **global** over all layers (the paper's selection) or **per layer** (the
top ``f`` of every layer, so no layer's scale dominates). Two sets of equal size ``k`` overlap
by ``|A ∩ B| / k``.

Random sets overlap by ``f``, but task sets are not random: every score is divided by the same
noisy retain estimate, and neurons with small retain activity have noisy ratios whatever the
task. So the overlap is read between two empirical references, built from the same
statistics (:mod:`.modularity_stats`):

* **null**: pseudo-tasks, groups of retain-pool documents scored against the rest of the retain
  pool exactly as real tasks are (for images: mixed-class images against all classes). They
  differ from general text only by sampling noise, so their overlap is what shared noise and
  scale give any two sets;
* **ceiling**: the same task scored on two halves of its own documents (the split-half
  overlap): what two samples of one task share.

Every set in a comparison is built from the same number of documents: a task's overlap with
another task is the mean over the four pairs of halves. Intervals come from a bootstrap over
documents (whole blocks of documents or images resampled within each source, the same draws for
a model and its random-init twin, so their comparison is paired).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..cache import cached
from ..core.inference import Finding, Interval, assess
from ..core.pruning import DEFAULT_EPS, SCORES
from ..data.tasks import Task, nested
from .modularity_stats import SITE, ModelRef, SampleConfig, image_class_stats, text_reference_stats, text_task_stats

Selection = Literal["global", "per-layer"]
SELECTIONS: tuple[str, ...] = ("global", "per-layer")
REFERENCE_WEIGHTS = "trained"
"""The weights label the other labels' pair patterns are compared with."""


@dataclass(frozen=True)
class OverlapConfig:
    """The overlap analysis: ``fracs`` (top fractions), ``ref_frac`` (the one the verdicts use),
    ``selections`` (``"global"`` and/or ``"per-layer"``), ``n_boot`` bootstrap draws at ``level``,
    and the statistics' :class:`SampleConfig`."""

    fracs: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1)
    ref_frac: float = 0.05
    selections: tuple[str, ...] = SELECTIONS
    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        fracs = tuple(float(f) for f in self.fracs)
        if not fracs or not all(0 < f < 1 for f in fracs):
            raise ValueError(f"fracs must be fractions in (0, 1), got {self.fracs!r}.")
        if not 0 < self.ref_frac < 1:
            raise ValueError(f"ref_frac must be in (0, 1), got {self.ref_frac!r}.")
        bad = [s for s in self.selections if s not in SELECTIONS]
        if bad or not self.selections:
            raise ValueError(f"Unknown selection {bad or self.selections!r}. Valid selections: {', '.join(SELECTIONS)}.")
        if not isinstance(self.n_boot, int) or self.n_boot < 100:
            raise ValueError(f"n_boot must be an integer >= 100, got {self.n_boot!r}.")
        if not 0.5 <= self.level < 1:
            raise ValueError(f"level must be in [0.5, 1), got {self.level!r}.")
        if not isinstance(self.sample, SampleConfig):
            raise ValueError(f"sample must be a SampleConfig, got {type(self.sample).__name__}.")
        object.__setattr__(self, "fracs", fracs)
        object.__setattr__(self, "selections", tuple(self.selections))


# ============================================================================ the design: atoms -> sources
@dataclass
class Design:
    """Block statistics of independent **atoms** (a task half, the retain reference, a pseudo-task,
    a class half) and, per **source** (a neuron set to build), which atoms make its forget and its
    retain side.

    ``sums`` ``[atoms, blocks, neurons]`` (float32 sums of ``|x|``), ``counts`` ``[atoms, blocks]``
    (tokens), ``docs`` ``[atoms, blocks]`` (documents or images), ``forget`` and ``retain``
    ``[sources, atoms]`` (0/1), ``sources``: ``(kind, name, half)`` with kind ``"half"`` (a task
    half), ``"null"`` (a pseudo-task) or ``"task"`` (a whole task, both halves); ``shape``:
    ``(n_layers, d_mlp)``; ``tasks``: the tasks in order.
    """

    sums: torch.Tensor
    counts: torch.Tensor
    docs: torch.Tensor
    forget: torch.Tensor
    retain: torch.Tensor
    sources: list[tuple[str, str, int]]
    shape: tuple[int, int]
    tasks: list[Task]

    def rows(self, kind: str) -> list[int]:
        return [i for i, s in enumerate(self.sources) if s[0] == kind]

    def index(self, kind: str, name: str, half: int) -> int:
        return self.sources.index((kind, name, half))

    @property
    def n_sets(self) -> int:
        """Sources that the overlaps compare (task halves, then pseudo-tasks): the first ``n_sets`` rows."""
        n = len(self.rows("half")) + len(self.rows("null"))
        if sorted(self.rows("half") + self.rows("null")) != list(range(n)):
            raise AssertionError("task halves and pseudo-tasks must be the first sources")
        return n

    @property
    def n_docs(self) -> int:
        """Documents (or images) in all atoms."""
        return int(self.docs.sum())

    def scores(self, weights: torch.Tensor | None = None, rows: Sequence[int] | None = None) -> torch.Tensor:
        """``abs`` scores ``[sources, neurons]`` (float64) with block ``weights`` ``[atoms, blocks]`` (None: all once)."""
        w = torch.ones_like(self.counts) if weights is None else weights.to(self.counts.dtype)
        totals = torch.einsum("ab,abn->an", w.float(), self.sums).double()  # [atoms, neurons]
        tokens = (w * self.counts).sum(1)  # [atoms]
        f, r = (self.forget, self.retain) if rows is None else (self.forget[list(rows)], self.retain[list(rows)])
        mean_f, mean_r = _combine(f, totals, tokens), _combine(r, totals, tokens)
        return SCORES["abs"](SimpleNamespace(mean_abs=mean_f), SimpleNamespace(mean_abs=mean_r), DEFAULT_EPS[SITE])


def _combine(m: torch.Tensor, totals: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Means ``[rows, neurons]`` over the atoms each 0/1 row of ``m`` ``[rows, atoms]`` picks (shared rows computed once)."""
    uniq, inv = torch.unique(m, dim=0, return_inverse=True)
    if bool((uniq.sum(1) == 1).all()):  # one atom per row (text): a gather
        atom = uniq.argmax(1)
        return (totals[atom] / tokens[atom][:, None])[inv]
    return ((uniq @ totals) / (uniq @ tokens)[:, None])[inv]


def _stack(parts: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Atoms from block statistics ``[halves, blocks, L, d]`` of several sources, halves as separate atoms."""
    sums = torch.cat([p["sums"].flatten(0, 0) for p in parts])  # [atoms, blocks, L, d]
    shape = tuple(sums.shape[-2:])
    return (sums.flatten(2), torch.cat([p["counts"] for p in parts]), torch.cat([p["docs"] for p in parts]),
            shape)  # type: ignore[return-value]


def _design(atoms: list[str], parts: list[dict[str, torch.Tensor]], sources: list[tuple[str, str, int]],
            forget: list[list[str]], retain: list[list[str]], tasks: list[Task]) -> Design:
    sums, counts, docs, shape = _stack(parts)
    if sums.shape[0] != len(atoms):
        raise AssertionError("atoms and statistics disagree")
    pos = {a: i for i, a in enumerate(atoms)}

    def matrix(groups: list[list[str]]) -> torch.Tensor:
        m = torch.zeros(len(groups), len(atoms), dtype=torch.float64)
        for i, g in enumerate(groups):
            m[i, [pos[a] for a in g]] = 1.0
        return m

    return Design(sums, counts, docs, matrix(forget), matrix(retain), sources, shape, tasks)


def design_for(ref: ModelRef, tasks: Sequence[Task], cfg: SampleConfig) -> Design:
    """The :class:`Design` of text or image ``tasks`` on one model (statistics cached per source)."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("Need at least one task.")
    kinds = {t.kind for t in tasks}
    if len(kinds) != 1:
        raise ValueError("Tasks must be all text or all image tasks.")
    if len({t.name for t in tasks}) != len(tasks):
        raise ValueError("Task names must be unique.")
    sources = ([("half", t.name, h) for t in tasks for h in (0, 1)]
               + [("null", f"null {j}", 0) for j in range(cfg.null_tasks)] + [("task", t.name, -1) for t in tasks])
    nulls = [f"null {j}" for j in range(cfg.null_tasks)]
    if kinds == {"text"}:
        atoms = [f"{t.name}|{h}" for t in tasks for h in (0, 1)] + ["reference"] + nulls
        per_task = [text_task_stats(ref, t, cfg) for t in tasks]
        common = text_reference_stats(ref, cfg)
        parts = [*per_task, common["reference"], common["null"]]
        forget = ([[f"{t.name}|{h}"] for t in tasks for h in (0, 1)] + [[n] for n in nulls]
                  + [[f"{t.name}|0", f"{t.name}|1"] for t in tasks])
        retain = [["reference"]] * len(forget)
    else:
        stats = image_class_stats(ref, cfg)
        classes = list(stats["classes"])
        atoms = [f"{c}|{h}" for c in classes for h in (0, 1)] + nulls
        parts = [*stats["classes"].values(), stats["null"]]
        everything = [f"{c}|{h}" for c in classes for h in (0, 1)]

        def others(t: Task) -> list[str]:
            return [f"{c}|{h}" for c in classes if c not in t.classes for h in (0, 1)]

        forget = ([[f"{c}|{h}" for c in t.classes] for t in tasks for h in (0, 1)] + [[n] for n in nulls]
                  + [[f"{c}|{h}" for c in t.classes for h in (0, 1)] for t in tasks])
        retain = [others(t) for t in tasks for _ in (0, 1)] + [everything] * len(nulls) + [others(t) for t in tasks]
    return _design(atoms, parts, sources, forget, retain, tasks)


def task_scores(design: Design) -> dict[str, torch.Tensor]:
    """Whole-task scores ``{task: [n_layers, d_mlp]}`` (both halves), for pruning and clustering."""
    rows = design.rows("task")
    s = design.scores(rows=rows)
    return {design.sources[i][1]: s[j].view(design.shape) for j, i in enumerate(rows)}


def scores_for(ref: ModelRef, tasks: Sequence[Task], cfg: SampleConfig) -> dict[str, torch.Tensor]:
    """Whole-task ``abs`` scores ``{task: [n_layers, d_mlp]}`` of one model (statistics cached per source)."""
    return task_scores(design_for(ref, tasks, cfg))


# ============================================================================ sets and overlaps
def top_sets(scores: torch.Tensor, frac: float, selection: str, shape: tuple[int, int]) -> torch.Tensor:
    """Boolean ``[sources, neurons]``: each row's top ``frac``, global or per layer (``shape`` = ``(layers, d)``)."""
    n_src, n = scores.shape
    if selection == "global":
        k, groups = int(frac * n), scores.numpy()[:, None, :]
    elif selection == "per-layer":
        k, groups = int(frac * shape[1]), scores.numpy().reshape(n_src, *shape)
    else:
        raise ValueError(f"Unknown selection {selection!r}. Valid selections: {', '.join(SELECTIONS)}.")
    if k < 1:
        raise ValueError(f"frac={frac} selects no neuron out of the {groups.shape[-1]} it chooses from.")
    top = np.argpartition(-groups, k - 1, axis=-1)[..., :k]  # the k largest of each group, unordered
    out = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(out, top, True, axis=-1)
    return torch.from_numpy(out.reshape(n_src, n))


def overlaps(sets: torch.Tensor) -> torch.Tensor:
    """``|A ∩ B| / k`` ``[sources, sources]`` for sets of equal size ``k`` (boolean ``[sources, neurons]``)."""
    m = sets.float()
    k = m.sum(1)
    if not torch.all(k == k[0]) or k[0] == 0:
        raise ValueError("Every set must hold the same, positive number of neurons.")
    return (m @ m.T).double() / float(k[0])


def _pair_masks(tasks: Sequence[Task]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean ``[T, T]``: all different non-nested pairs, same family, different family."""
    ok = np.array([[a.name != b.name and not nested(a, b) for b in tasks] for a in tasks])
    same = np.array([[a.family == b.family for b in tasks] for a in tasks])
    return ok, ok & same, ok & ~same


class _Reader:
    """Reads the task × task cross, ceiling and null overlaps out of a sources × sources matrix."""

    def __init__(self, design: Design):
        names = [t.name for t in design.tasks]
        self.h = np.array([[design.index("half", n, h) for h in (0, 1)] for n in names])  # [T, 2]
        self.null = design.rows("null")
        self.ok, self.within, self.between = _pair_masks(design.tasks)
        self.iu = np.triu_indices(len(names), 1)

    def cross(self, o: torch.Tensor) -> np.ndarray:
        """``[T, T]``: mean overlap over the four pairs of halves of two tasks (diagonal: the ceiling)."""
        o = o.numpy()
        c = sum(o[np.ix_(self.h[:, i], self.h[:, j])] for i in (0, 1) for j in (0, 1)) / 4
        c[np.diag_indices_from(c)] = o[self.h[:, 0], self.h[:, 1]]
        return c

    def null_pairs(self, o: torch.Tensor) -> np.ndarray:
        i, j = np.triu_indices(len(self.null), 1)
        return o.numpy()[np.array(self.null)[i], np.array(self.null)[j]]

    def summary(self, o: torch.Tensor) -> dict[str, float]:
        c = self.cross(o)
        return {"null": float(self.null_pairs(o).mean()), "cross": float(c[self.ok].mean()),
                "ceiling": float(np.diag(c).mean()),
                "within": float(c[self.within].mean()) if self.within.any() else math.nan,
                "between": float(c[self.between].mean()) if self.between.any() else math.nan}

    def pattern(self, o: torch.Tensor) -> np.ndarray:
        """The cross overlaps of the different non-nested pairs, upper triangle, in a fixed order."""
        c = self.cross(o)
        keep = self.ok[self.iu]
        return c[self.iu][keep]


# ============================================================================ run: point estimates
def _designs(models: Mapping[str, ModelRef], tasks: Sequence[Task], cfg: OverlapConfig) -> dict[str, Design]:
    return {w: design_for(ref, tasks, cfg.sample) for w, ref in models.items()}


def run_overlap(models: Mapping[str, ModelRef], tasks: Sequence[Task], cfg: OverlapConfig) -> pd.DataFrame:
    """Task × task overlaps for each weights label (e.g. trained, random init), selection and fraction.

    One row per (``weights``, ``selection``, ``frac``, ``task_a``, ``task_b``): ``overlap`` (mean
    over the four pairs of halves; on the diagonal, the split-half **ceiling**), ``null`` (the
    mean overlap of the pseudo-tasks at that fraction), ``chance`` (``k / N``), ``relation``
    (``"same task"``, ``"same family"``, ``"other family"`` or ``"nested"``).
    """
    designs = _designs(models, tasks, cfg)
    rows = []
    for weights, d in designs.items():
        reader = _Reader(d)
        scores = d.scores(rows=range(len(d.sources)))
        for selection in cfg.selections:
            for frac in cfg.fracs:
                o = overlaps(top_sets(scores, frac, selection, d.shape))
                c, null = reader.cross(o), float(reader.null_pairs(o).mean())
                k = int(frac * scores.shape[1]) if selection == "global" else d.shape[0] * int(frac * d.shape[1])
                for i, a in enumerate(d.tasks):
                    for j, b in enumerate(d.tasks):
                        rel = ("same task" if i == j else "nested" if nested(a, b)
                               else "same family" if a.family == b.family else "other family")
                        rows.append({"weights": weights, "selection": selection, "frac": frac, "task_a": a.name,
                                     "task_b": b.name, "overlap": float(c[i, j]), "null": null,
                                     "chance": k / scores.shape[1], "relation": rel})
    return pd.DataFrame(rows)


def overlap_matrix_of(table: pd.DataFrame, weights: str, frac: float, selection: str = "global") -> pd.DataFrame:
    """The task × task matrix of one weights label, selection and fraction from :func:`run_overlap`."""
    part = table[(table.weights == weights) & (table.selection == selection) & np.isclose(table.frac, frac)]
    if part.empty:
        raise ValueError(f"No overlaps for weights={weights!r}, selection={selection!r}, frac={frac}.")
    order = list(dict.fromkeys(part.task_a))
    return part.pivot(index="task_a", columns="task_b", values="overlap").loc[order, order]


def task_order(table: pd.DataFrame, frac: float, weights: str = REFERENCE_WEIGHTS, selection: str = "global") -> list[str]:
    """Tasks ordered so that tasks with overlapping neuron sets sit together (average linkage at ``frac``)."""
    from ..core.clustering import similarity_order

    return similarity_order(overlap_matrix_of(table, weights, frac, selection))


# ============================================================================ run: bootstrap over documents
STATISTICS: tuple[str, ...] = ("null", "cross", "ceiling", "within", "between", "rho")


def _boot_weights(design: Design, rng: np.random.Generator) -> torch.Tensor:
    """Block weights ``[atoms, blocks]``: how often each block is drawn when resampling blocks within each atom."""
    a, b = design.counts.shape
    draws = rng.integers(0, b, size=(a, b))
    return torch.from_numpy(np.stack([np.bincount(r, minlength=b) for r in draws])).double()


def _replicate(designs: Mapping[str, Design], readers: Mapping[str, _Reader], weights: torch.Tensor | None,
               cfg: OverlapConfig) -> list[dict[str, Any]]:
    import warnings

    from scipy.stats import spearmanr

    rows, patterns = [], {}
    for w, d in designs.items():
        n_sets = d.n_sets
        scores = d.scores(weights, range(n_sets))  # the halves and the pseudo-tasks come first
        for selection in cfg.selections:
            o = overlaps(top_sets(scores, cfg.ref_frac, selection, d.shape))
            row = {"weights": w, "selection": selection, **readers[w].summary(o), "rho": math.nan}
            patterns[w, selection] = readers[w].pattern(o)
            rows.append(row)
    for row in rows:
        ref = patterns.get((REFERENCE_WEIGHTS, row["selection"]))
        mine = patterns[row["weights"], row["selection"]]
        if row["weights"] != REFERENCE_WEIGHTS and ref is not None and len(mine) > 2:
            with warnings.catch_warnings():  # a constant pattern has no correlation: NaN
                warnings.simplefilter("ignore")
                row["rho"] = float(spearmanr(ref, mine).statistic)
    return rows


def run_overlap_bootstrap(models: Mapping[str, ModelRef], tasks: Sequence[Task], cfg: OverlapConfig) -> pd.DataFrame:
    """Overlap statistics at ``cfg.ref_frac`` on the sample (``replicate`` −1) and on ``cfg.n_boot`` resamples.

    Columns: ``replicate``, ``weights``, ``selection``, ``null`` (mean pseudo-task overlap),
    ``cross`` (mean overlap of different, non-nested tasks), ``ceiling`` (mean split-half overlap),
    ``within`` / ``between`` (cross overlaps of tasks of the same / another family), ``rho``
    (Spearman correlation of the pair overlaps with the trained model's, paired per draw), plus
    ``n_docs`` and ``n_blocks``. Each draw resamples the blocks of every atom with replacement,
    the same draw for every weights label (the same documents). Cached.
    """
    tasks = list(tasks)

    def compute() -> pd.DataFrame:
        designs = _designs(models, tasks, cfg)
        first = next(iter(designs.values()))
        if any(d.counts.shape != first.counts.shape for d in designs.values()):
            raise ValueError("The weights labels were sampled differently; they cannot be paired.")
        readers = {w: _Reader(d) for w, d in designs.items()}
        rng = np.random.default_rng(cfg.seed)
        out = [dict(r, replicate=-1) for r in _replicate(designs, readers, None, cfg)]
        for i in range(cfg.n_boot):
            out += [dict(r, replicate=i) for r in _replicate(designs, readers, _boot_weights(first, rng), cfg)]
        return pd.DataFrame(out).assign(n_docs=first.n_docs, n_blocks=int(first.counts.numel()))

    params = {"tasks": [asdict(t) for t in tasks], "cfg": asdict(cfg), "weights": list(models)}
    return cached("modularity-overlap-bootstrap", params, compute, model=list(models.values()))


def interval_of(boot: pd.DataFrame, expr: Any, level: float = 0.95, bounds: tuple[float, float] | None = None,
                **where: Any) -> Interval:
    """Interval of a statistic from the bootstrap draws of :func:`run_overlap_bootstrap`: estimate ± z · s.e.

    The interval is centred on the estimate, with the standard deviation of the draws as the
    standard error. Percentile intervals would be off-centre here: a resampled top-k set carries
    the resampling noise on top of the sample's, so every overlap is lower in the draws than in the
    sample (by about the same amount for the statistics compared, which are built from equally
    many documents).


    ``expr``: a column name or ``fn(frame) -> Series`` (e.g. ``lambda d: d.cross - d.null``),
    evaluated on the rows matching ``where`` (e.g. ``weights="trained", selection="global"``);
    the estimate is its value on the sample itself (replicate −1). ``bounds``: the statistic's
    range (e.g. ``(-1, 1)`` for a correlation), to which the interval is clipped.
    """
    part = boot
    for k, v in where.items():
        part = part[part[k] == v]
    if part.empty:
        raise ValueError(f"No bootstrap rows for {where}.")
    values = (part[expr] if isinstance(expr, str) else expr(part)).to_numpy(dtype=float)
    rep = part.replicate.to_numpy()
    est, draws = float(values[rep == -1][0]), values[rep >= 0]
    draws = draws[np.isfinite(draws)]
    n, blocks = int(part.n_docs.iloc[0]), int(part.n_blocks.iloc[0])
    if len(draws) < 2 or not math.isfinite(est):
        return Interval(est, math.nan, math.nan, level, n, math.nan, blocks, "document bootstrap (no interval)")
    se = float(draws.std(ddof=1))
    from scipy.stats import norm

    half = float(norm.ppf(0.5 + level / 2)) * se
    lo, hi = est - half, est + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Interval(est, lo, hi, level, n, se, blocks, "document bootstrap (normal, s.e. of the draws)")


# ============================================================================ the paper's claims, tested
def overlap_findings(boot: pd.DataFrame, level: float = 0.95) -> list[tuple[str, str, Finding]]:
    """The overlap claims as ``(weights, selection, Finding)``, each from a document-bootstrap interval.

    For each selection: different tasks overlap more than pseudo-tasks (cross − null > 0); a task's
    two halves overlap more than two tasks (ceiling − cross > 0: tasks have neurons of their own);
    tasks of one family overlap more than tasks of different families (within − between > 0);
    and for every other weights label (the random-init twin): its tasks overlap more than its own
    pseudo-tasks, and its pair pattern follows the trained model's (Spearman ρ > 0).
    """
    out = []
    weights = list(dict.fromkeys(boot.weights))
    for selection in dict.fromkeys(boot.selection):
        for w in weights:
            def get(expr: Any) -> Interval:
                bounds = (-1.0, 1.0) if expr == "rho" else None
                return interval_of(boot, expr, level, bounds, weights=w, selection=selection)

            tests = [("task neuron sets overlap more than pseudo-tasks' (the null)", lambda d: d.cross - d.null,
                      "cross − null"),
                     ("a task's two halves overlap more than two tasks (neurons of its own)", lambda d: d.ceiling - d.cross,
                      "ceiling − cross")]
            if w == REFERENCE_WEIGHTS:
                tests.append(("related tasks (same family) share more neurons", lambda d: d.within - d.between,
                              "within − between"))
            else:
                tests.append((f"{w}: the trained model's pair pattern persists", "rho", "Spearman ρ"))
            for claim, expr, unit in tests:
                iv = get(expr)
                if not math.isfinite(iv.estimate):
                    continue
                out.append((w, selection, assess(claim, iv, unit=unit)))
    return out
