"""Chapter 03 (paper 3, modularity): prose, tables and charts from the results of the computation modules.

Every sentence with a number is a :class:`~paragraph_planning.prose.Prose` built here from the
run's results, and wording that depends on the outcome (above the null or not, ...) is chosen from
the verdicts; the notebook only calls these functions.
"""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.inference import ABSENT, HOLDS, Finding, Interval
from ..data.tasks import Task, doc_ids, retain_texts
from ..prose import Prose, fmt_interval, join, listing
from .modularity import interval_of

VERDICT_WORDS = {HOLDS: "holds", ABSENT: "does not hold"}


def _ci(iv: Interval, spec: str = ".3f") -> str:
    return fmt_interval(iv, spec)


def _word(f: Finding, holds: str, absent: str, undetermined: str) -> str:
    return holds if f.verdict == HOLDS else absent if f.verdict == ABSENT else undetermined


# ============================================================================ tasks and samples
def task_table(tasks: Sequence[Task], retain: Sequence[str]) -> pd.DataFrame:
    """Per text task: family and documents in its forget pool and test split; checks that forget,
    retain and test documents are disjoint (raises otherwise)."""
    retain_ids = doc_ids(retain_texts(retain))
    rows = []
    for t in tasks:
        forget, test = doc_ids(t.pieces("train", "forget")), doc_ids(t.pieces("test"))
        if forget & retain_ids or test & retain_ids or forget & test:
            raise AssertionError(f"{t.name}: forget, retain and test documents overlap.")
        rows.append({"task": t.name, "family": t.family, "forget documents": len(forget), "test documents": len(test)})
    return pd.DataFrame(rows).set_index("task")


def sample_prose(boot: pd.DataFrame, tasks: Sequence[Task], sample: Any, unit: str) -> Prose:
    """How many documents (images) the overlap statistics rest on."""
    n_docs, n_blocks = int(boot.n_docs.iloc[0]), int(boot.n_blocks.iloc[0])
    n_boot = int(boot.replicate.max()) + 1
    sources = ("the classes in two halves" if tasks and tasks[0].kind == "image"
               else f"{len(tasks)} tasks in two halves and the retain reference")
    return Prose("The overlap statistics rest on {n_docs:,} {unit} in {n_blocks} blocks ({sources}, and {n_null} "
                 "pseudo-tasks); intervals come from {n_boot:,} bootstrap draws of the blocks.", n_docs=n_docs, unit=unit,
                 n_blocks=n_blocks, sources=sources, n_null=sample.null_tasks, n_boot=n_boot)


# ============================================================================ overlap
def overlap_summary(boot: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per weights and selection: null, cross, ceiling, within- and between-family overlap (and ρ), each
    ``estimate [lo, hi]`` from the document bootstrap."""
    rows = []
    for (w, sel), _ in boot.groupby(["weights", "selection"], sort=False):
        row: dict[str, Any] = {"weights": w, "selection": sel}
        for stat in ("null", "cross", "ceiling", "within", "between", "rho"):
            iv = interval_of(boot, stat, level, (-1.0, 1.0) if stat == "rho" else None, weights=w, selection=sel)
            if math.isfinite(iv.estimate):
                row[stat] = iv.fmt(".3f")
        rows.append(row)
    return pd.DataFrame(rows).set_index(["weights", "selection"]).fillna("")


def ladder_frame(boot: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Long table for :func:`ladder_chart`: null, cross and ceiling with intervals per weights and selection."""
    rows = []
    names = {"null": "pseudo-tasks (null)", "cross": "two different tasks", "ceiling": "two halves of one task"}
    for (w, sel), _ in boot.groupby(["weights", "selection"], sort=False):
        for stat, label in names.items():
            iv = interval_of(boot, stat, level, weights=w, selection=sel)
            rows.append({"weights": w, "selection": sel, "pair": label, "overlap": iv.estimate, "lo": iv.lo, "hi": iv.hi})
    return pd.DataFrame(rows)


def ladder_chart(boot: pd.DataFrame, level: float = 0.95, title: str = "") -> Any:
    """Bars with intervals: the null, different tasks and the ceiling, per weights, one panel per selection."""
    import altair as alt

    df = ladder_frame(boot, level)
    base = alt.Chart(df).encode(x=alt.X("pair:N", sort=None, title=None, axis=alt.Axis(labelAngle=-20)),
                                xOffset=alt.XOffset("weights:N"))
    bars = base.mark_bar().encode(
        y=alt.Y("overlap:Q", title="|A∩B| / k"), color=alt.Color("weights:N", title=None),
        tooltip=["weights:N", "selection:N", "pair:N", alt.Tooltip("overlap:Q", format=".3f"),
                 alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f")])
    rules = base.mark_rule(color="#333").encode(y="lo:Q", y2="hi:Q")
    return alt.layer(bars, rules, data=df).properties(width=220, height=220).facet(
        column=alt.Column("selection:N", title=None, sort=list(dict.fromkeys(df.selection))), title=title)


def overlap_chart(table: pd.DataFrame, order: Sequence[str], title: str = "", size: int = 300) -> Any:
    """Task × task overlap heatmaps per weights label, with menus for the fraction and the selection.

    The diagonal is the split-half ceiling (a task's two halves); hover a cell for the pair, its
    overlap, the pseudo-task null and chance at that fraction.
    """
    import altair as alt

    df = table[["task_a", "task_b", "relation", "overlap", "null", "chance", "frac", "selection", "weights"]]
    fracs = sorted(float(f) for f in df.frac.unique())
    pick = alt.param(name="frac_shown", value=fracs[len(fracs) // 2],
                     bind=alt.binding_select(options=fracs, labels=[f"{f:.0%}" for f in fracs],
                                             name="top fraction of neurons per task: "))
    sels = list(dict.fromkeys(df.selection))
    pick_sel = alt.param(name="selection_shown", value=sels[0], bind=alt.binding_select(options=sels, name="selection: "))
    # Inline values: every fraction, selection and weights label travels with the page for the menus
    # (20 tasks: 6,400 cells), past altair's 5,000-row guard for data frames.
    chart = alt.Chart(alt.Data(values=json.loads(df.to_json(orient="records")))).mark_rect().encode(
        x=alt.X("task_b:N", sort=list(order), title=None),
        y=alt.Y("task_a:N", sort=list(order), title=None),
        color=alt.Color("overlap:Q", title="|A∩B| / k", scale=alt.Scale(scheme="viridis")),
        tooltip=[alt.Tooltip("task_a:N", title="task A"), alt.Tooltip("task_b:N", title="task B"),
                 alt.Tooltip("relation:N"), alt.Tooltip("overlap:Q", format=".3f"),
                 alt.Tooltip("null:Q", title="pseudo-task null", format=".3f"), alt.Tooltip("chance:Q", format=".3f")],
    ).add_params(pick, pick_sel).transform_filter(alt.datum.frac == pick).transform_filter(
        alt.datum.selection == pick_sel).properties(width=size, height=size)
    weights = list(dict.fromkeys(df.weights))
    return chart.facet(column=alt.Column("weights:N", sort=weights, title=None), title=title)


def overlap_prose(boot: pd.DataFrame, findings: Sequence[tuple[str, str, Finding]], model: str, frac: float,
                  level: float = 0.95, pool: str = "general text") -> Prose:
    """What the overlaps say for one model: each weights label and selection against its null and ceiling.

    ``pool``: what the pseudo-tasks are drawn from, as the sentence names it (e.g. "images of every class")."""
    parts = []
    by = {(w, s, f.unit): f for w, s, f in findings}
    for (w, sel), _ in boot.groupby(["weights", "selection"], sort=False):
        iv = {s: interval_of(boot, s, level, weights=w, selection=sel) for s in ("null", "cross", "ceiling")}
        above, below = by.get((w, sel, "cross − null")), by.get((w, sel, "ceiling − cross"))
        if above is None or below is None:
            continue
        rel_null = _word(above, "more than", "less than", "not distinguishably more than")
        rel_ceiling = _word(below, "well below", "not below", "not distinguishably below")
        p = Prose("**{model}, {weights}, {selection} top {frac:.0%}.** Two different tasks share {cross}; two "
                  "pseudo-tasks of {pool} share {null}; two halves of one task share {ceiling}. Task sets "
                  "overlap {rel_null} the null and sit {rel_ceiling} the ceiling.",
                  model=model, weights=w, selection=sel, frac=frac, pool=pool, cross=_ci(iv["cross"]), null=_ci(iv["null"]),
                  ceiling=_ci(iv["ceiling"]), rel_null=rel_null, rel_ceiling=rel_ceiling)
        family = by.get((w, sel, "within − between"))
        if family is not None:
            p = p + Prose("Tasks of one family share {diff} more than tasks of different families ({verdict}).",
                          diff=_ci(family.interval), verdict=VERDICT_WORDS.get(family.verdict, "undetermined"))
        rho = by.get((w, sel, "Spearman ρ"))
        if rho is not None:
            p = p + Prose("Its pair pattern follows the trained model's with Spearman ρ = {rho} ({verdict}).",
                          rho=_ci(rho.interval, ".2f"),
                          verdict=_word(rho, "the pattern persists", "the pattern does not persist",
                                        "undetermined at this sample"))
        parts.append(p)
    return join(parts)


# ============================================================================ cross-evaluation
def cross_chart(table: pd.DataFrame, order: Sequence[str], title: str = "", size: int = 340) -> Any:
    """Heatmap of top-1 ratio (pruned / unpruned): rows = task pruned for, columns = task evaluated (CI on hover)."""
    import altair as alt

    df = table.dropna(subset=["ratio"]).copy()
    return alt.Chart(df, title=title).mark_rect().encode(
        x=alt.X("evaluated_on:N", sort=list(order), title="evaluated on"),
        y=alt.Y("pruned_for:N", sort=list(order), title="pruned for"),
        color=alt.Color("ratio:Q", title="top-1 ratio", scale=alt.Scale(scheme="redyellowblue", domain=[0.5, 1.0],
                                                                          clamp=True)),
        tooltip=[alt.Tooltip("pruned_for:N", title="pruned for"), alt.Tooltip("evaluated_on:N", title="evaluated on"),
                 alt.Tooltip("frac:Q", title="fraction pruned", format=".4f"),
                 alt.Tooltip("base:Q", title="top-1 unpruned", format=".3f"),
                 alt.Tooltip("pruned:Q", title="top-1 pruned", format=".3f"), alt.Tooltip("ratio:Q", format=".3f"),
                 alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f"), alt.Tooltip("n:Q", title="units")],
    ).properties(width=size, height=size)


def cross_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per target: fraction pruned, own ratio on tuning and on evaluation rows (with interval), others' mean."""
    rows = []
    for t, part in table.groupby("pruned_for", sort=False):
        own = part[part.evaluated_on == t].iloc[0]
        others = part[part.evaluated_on != t]
        rows.append({"pruned_for": t, "frac": own.frac, "reached": own.reached, "own ratio (tuning)": own.tune_ratio,
                     "own ratio (evaluation)": f"{own.ratio:.3f} [{own.lo:.3f}, {own.hi:.3f}]",
                     "others' mean ratio": others.ratio.mean(),
                     "most hit": others.loc[others.ratio.idxmin(), "evaluated_on"] if len(others) else ""})
    return pd.DataFrame(rows, columns=["pruned_for", "frac", "reached", "own ratio (tuning)", "own ratio (evaluation)",
                                       "others' mean ratio", "most hit"]).set_index("pruned_for")


def cross_prose(table: pd.DataFrame, findings: Sequence[Finding], own: Interval, target: float, model: str,
                unit: str) -> Prose:
    """What the cross-evaluation says for one model."""
    if not findings:
        return Prose("No task of {model} could be cross-evaluated (no top-1 hit to lose).", model=model)
    fr = findings[0]
    missed = int((~table.drop_duplicates("pruned_for").reached.astype(bool)).sum())
    n_targets, units = table.pruned_for.nunique(), int(table.drop_duplicates("evaluated_on").n.sum())
    p = Prose("**{model}.** The search brought each of {n_targets} targets to {target:.0%} of its unpruned top-1 on "
              "its tuning rows (median fraction pruned {median_frac:.2%}{missed_text}). On the evaluation rows "
              "({units:,} {unit} in all), the targets keep {own} of their top-1 and the other tasks {others_mean:.1%} on "
              "average: pruning costs the target {diff} more ratio points than the others ({verdict}).",
              model=model, n_targets=n_targets, target=target,
              median_frac=float(table.drop_duplicates("pruned_for").frac.median()),
              missed_text=f"; {missed} did not reach it within the search range" if missed else "",
              units=units, unit=unit, own=_ci(own), others_mean=float(table[table.pruned_for != table.evaluated_on].ratio.mean()),
              diff=_ci(fr.interval), verdict=VERDICT_WORDS.get(fr.verdict, "undetermined at this sample"))
    if len(findings) > 1:
        f2 = findings[1]
        p = p + Prose("Tasks of the target's family lose {diff} more than tasks of other families "
                      "({verdict}; the sample can detect about {mde:.3f}).", diff=_ci(f2.interval),
                      verdict=VERDICT_WORDS.get(f2.verdict, "undetermined at this sample"), mde=f2.mde)
    return p


# ============================================================================ MoEfication
def moe_chart(conc: pd.DataFrame, title: str = "") -> Any:
    """Per layer, mean concentration of task neurons in k-means clusters vs permuted labels (band: 95 % CI over tasks)."""
    from ..charts import line_with_band
    from ..core.inference import group_summary

    long = pd.concat([conc.assign(clusters="k-means (MoEfication)", concentration=conc.kmeans),
                      conc.assign(clusters="permuted labels (null)", concentration=conc.perm_mean)])
    df = group_summary(long, ["layer", "clusters"], "concentration").rename(columns={"mean": "concentration"})
    return line_with_band(df, "layer", "concentration", "clusters", "lo", "hi", title=title, tooltip=["n"])


def moe_prose(conc: pd.DataFrame, findings: Sequence[Finding], aggregate: dict[str, float], depth: dict[str, Interval],
              model: str, n_clusters: int) -> Prose:
    """What the MoEfication analysis says for one model."""
    f0, early, late = findings
    share = float((conc.p < 0.05).mean())
    p = Prose("**{model}** ({n_clusters} clusters per layer). A task's top neurons of a layer sit in k-means clusters "
              "with concentration {kmeans:.4f} on average against {perm:.4f} for permuted labels (aggregate "
              "permutation test p = {p:.3g}); the excess per task is {excess} ({verdict}), and {share:.0%} of the "
              "(task, layer) pairs are beyond their own permutation null at p < 0.05.",
              model=model, n_clusters=n_clusters, kmeans=float(conc.kmeans.mean()), perm=float(conc.perm_mean.mean()),
              p=aggregate["p"], excess=_ci(f0.interval, ".4f"), verdict=VERDICT_WORDS.get(f0.verdict, "undetermined"),
              share=share)
    stronger = [part for part, f in (("early", early), ("late", late)) if f.verdict == HOLDS]
    weaker = [part for part, f in (("early", early), ("late", late)) if f.verdict == ABSENT]
    if len(stronger) == 2:
        summary = "stronger in both early and late layers than in the middle, as the paper says"
    elif weaker:
        summary = f"weaker in {listing(weaker)} layers than in the middle, against the paper"
    elif stronger:
        summary = f"stronger in {stronger[0]} layers than in the middle; the other contrast is undetermined at this sample"
    else:
        summary = "not distinguishable between early, middle and late layers at this sample"
    return p + Prose("By depth, the excess is {e} early, {m} in the middle and {l} late; early − middle {em}, "
                     "late − middle {lm}: the correspondence is {summary}.",
                     e=_ci(depth["early"], ".4f"), m=_ci(depth["middle"], ".4f"), l=_ci(depth["late"], ".4f"),
                     em=_ci(early.interval, ".4f"), lm=_ci(late.interval, ".4f"), summary=summary)


def kmeans_prose(agreement: pd.DataFrame, layers: Sequence[int]) -> Prose:
    """The measured k-means settings comparison (objective, agreement, time) on a few layers."""
    g = agreement.groupby("setting", sort=False).agg(inertia=("inertia", "mean"), cpu=("cpu_s", "mean"),
                                                     ari=("ari_vs_first", "mean"))
    first, last = g.index[0], g.index[-1]
    return Prose("On layers {layers}, k-means with {last} reaches an objective {gain:.2%} lower than with {first} "
                 "(mean inertia {i_last:.2f} vs {i_first:.2f}) at {ratio:.0f}× the CPU time; the two labellings agree "
                 "with adjusted Rand index {ari:.2f}.", layers=listing([str(x) for x in layers]), last=last, first=first,
                 gain=float(1 - g.inertia[last] / g.inertia[first]), i_last=float(g.inertia[last]),
                 i_first=float(g.inertia[first]), ratio=float(g.cpu[last] / max(g.cpu[first], 1e-9)),
                 ari=float(g.ari[last]))


# ============================================================================ verdicts
def verdict_table(rows: Sequence[tuple[str, str, Finding]]) -> pd.DataFrame:
    """One row per tested claim: model, context (weights and selection), claim, estimate, interval, n,
    minimum detectable effect, verdict."""
    out = []
    for model, context, f in rows:
        iv = f.interval
        ci = f"[{iv.lo:.3g}, {iv.hi:.3g}]" if np.isfinite(iv.lo) else "no interval"
        out.append({"model": model, "context": context, "claim": f.claim, "estimate": f"{iv.estimate:.3g}",
                    f"{iv.level:.0%} CI": ci, "n": iv.n, "detectable (MDE)": f"{f.mde:.3g}" if np.isfinite(f.mde) else "",
                    "unit": f.unit, "verdict": f.verdict})
    return pd.DataFrame(out)


def verdict_prose(rows: Sequence[tuple[str, str, Finding]]) -> Prose:
    """A closing count of verdicts per model."""
    parts = []
    for model in dict.fromkeys(m for m, _, _ in rows):
        mine = [f for m, _, f in rows if m == model]
        counts = {v: sum(f.verdict == v for f in mine) for v in dict.fromkeys(f.verdict for f in mine)}
        parts.append(Prose("**{model}**: of {n} tested claims, {summary}.", model=model, n=len(mine),
                           summary=listing([f"{c} {v}" for v, c in counts.items()])))
    return join(parts)
