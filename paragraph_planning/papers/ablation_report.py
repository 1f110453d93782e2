"""Prose, tables and charts of the ablation chapter (paper 2), from the runs of :mod:`.ablation`.

Every number in the chapter's text comes from here as :class:`~paragraph_planning.prose.Prose`,
and wording that holds only for some outcomes (which method wins, whether a claim holds) is
chosen from the computed results.
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from .. import charts
from ..core.architectures import hook_name, layer_of, site_of
from ..core.inference import ABSENT, HOLDS, UNDETERMINED, Finding, t_interval
from ..prose import Prose, join, listing
from .ablation import ReferenceStats, peak_estimates
from .ablation_eval import ALL_LAYERS
from .ablation_verdicts import (
    DAMAGE,
    UNITS,
    bands,
    claim_kind,
    damage,
    method_status,
    nearest,
    regimes,
    win_counts,
)

CENTRES = ("mean", "peak", "median", "peak-kde")
"""Replacements that estimate the centre of each neuron's distribution (compared in section 6)."""
PAPER_VIT_B16 = {"mean |skew|": 0.378, "peaks within 0.01 of 0": 1012, "means within 0.01 of 0": 1356,
                 "sum |mean - peak|": 754.7}
"""The paper's stored sanity values for ViT-B/16 (12 × 768 neurons, 1e4 tokens): quoted, not computed here."""


class Timer:
    """CPU and wall seconds per part of a chapter (cached parts take almost none on a re-run)."""

    def __init__(self) -> None:
        self.parts: dict[str, tuple[float, float]] = {}
        self._last = (time.process_time(), time.perf_counter())
        self._start = self._last

    def tick(self, label: str) -> None:
        """Charge the time since the last tick to ``label``."""
        now = (time.process_time(), time.perf_counter())
        cpu, wall = self.parts.get(label, (0.0, 0.0))
        self.parts[label] = (cpu + now[0] - self._last[0], wall + now[1] - self._last[1])
        self._last = now

    def summary(self) -> str:
        """One line: total and per-part wall (and CPU) seconds."""
        cpu, wall = (time.process_time() - self._start[0], time.perf_counter() - self._start[1])
        parts = ", ".join(f"{k} {w:.0f} s ({c:.0f} CPU s)" for k, (c, w) in self.parts.items())
        return f"chapter run time: {wall:.0f} s wall, {cpu:.0f} CPU s ({parts})"


def _pct(f: float) -> str:
    return f"{f:.0%}".replace("%", " %")


def _num(x: float, unit: str) -> str:
    return f"{x:.1f} points" if unit == "points" else f"{x:.3f} nats"


# ============================================================================ setup
def setup_prose(model: Any, data: Any, corpus: str = "") -> Prose:
    """What is measured on one model: neurons, reference sample, evaluation units."""
    ref, task = data.ref, data.task
    count = next(iter(ref.stats.values())).count
    if task.kind == "lm":
        text = ("**{model}**: {n_neurons} neurons at {sites} in {n_layers} layers. Reference statistics from "
                "{count} token positions{of}; evaluation on {units} rows of {size} next-token targets of the test "
                "split ({targets} targets in all), each row one unit with its own neuron subsets and resample source.")
    else:
        text = ("**{model}**: {n_neurons} neurons at {sites} in {n_layers} layers. Reference statistics from "
                "{count} token positions of training images; evaluation on {units} test images, each one unit with "
                "its own neuron subsets and resample source.")
    sites = listing(sorted({site_of(n) for n in ref.sizes}))
    return Prose(text, model=model.name, n_neurons=sum(ref.sizes.values()), sites=sites, n_layers=model.cfg.n_layers,
                 count=count, of=f" of {corpus} (training split)" if corpus else "",
                 units=task.n_units, size=task.unit_size, targets=task.n_units * task.unit_size)


def clean_prose(df: pd.DataFrame) -> Prose:
    """The clean model's score on the evaluation units (the zero point of every damage)."""
    c = df.drop_duplicates("unit")
    return Prose("Without ablation, {model} has a loss of {loss:.3f} nats and a top-1 accuracy of {top1:.1%} on these "
                 "{n} units.", model=df.model.iloc[0], loss=float(c.clean_loss.mean()), top1=float(c.clean_top1.mean()),
                 n=len(c))


# ============================================================================ neuron distributions
def neuron_explorer(ref: ReferenceStats, estimates: pd.DataFrame, site: str, n_layers: int,
                    per_layer: int = 4, seed: int = 0) -> alt.LayerChart:
    """An interactive histogram of single neurons: pick a layer and a neuron (the most skewed, the one
    whose mean lies farthest from its peak, and random ones); dashed lines mark the mean and the peak."""
    neurons = estimates[estimates.estimator == "mean"].reset_index(drop=True)
    neurons = neurons.assign(gap_std=(neurons["mean"] - neurons["peak"]).abs() / neurons["std"])
    labels = (["most skewed", "largest |mean - peak|"] + [f"random {i}" for i in range(1, max(1, per_layer - 1))])[:per_layer]
    rng = np.random.default_rng(seed)
    hist_rows, neuron_rows, mark_rows = [], [], []
    for layer in range(n_layers):
        name = hook_name(layer, site)
        s, part = ref.stats[name], neurons[neurons.name == name]
        picks = [int(part["skew"].abs().idxmax()), int(part["gap_std"].idxmax())]
        rest = [i for i in part.index if i not in picks]
        picks = (picks + list(rng.choice(rest, size=max(0, len(labels) - 2), replace=False)))[:len(labels)]
        hist, lo, hi = s.hist.numpy(), s.lo.numpy(), s.hi.numpy()
        for slot, idx in enumerate(picks):
            j, key, row = int(part.loc[idx, "neuron"]), layer * len(labels) + slot, part.loc[idx]
            nz = np.flatnonzero(hist[j])  # only the bins that hold tokens travel to the page
            hist_rows.append(pd.DataFrame({"id": key, "k": nz, "c": hist[j][nz]}))
            text = (f"layer {layer}, neuron {j} ({labels[slot]}): skew {row['skew']:+.2f}, mean {row['mean']:+.4g}, "
                    f"peak {row['peak']:+.4g}, |mean - peak| = {row['gap_std']:.2f} std")
            neuron_rows.append({"id": key, "lo": float(lo[j]), "w": float((hi[j] - lo[j]) / s.bins), "text": text})
            mark_rows += [{"id": key, "line": k, "x": float(row[k])} for k in ("mean", "peak")]
    hist_df, neuron_df, mark_df = pd.concat(hist_rows, ignore_index=True), pd.DataFrame(neuron_rows), pd.DataFrame(mark_rows)
    layer_p = alt.param(name="layer_pick", value=n_layers // 2,
                        bind=alt.binding_range(min=0, max=n_layers - 1, step=1, name="layer "))
    slot_p = alt.param(name="neuron_pick", value=0,
                       bind=alt.binding_select(options=list(range(len(labels))), labels=labels, name="neuron "))
    pick = alt.datum.id == layer_p * len(labels) + slot_p
    bars = alt.Chart(hist_df).transform_filter(pick).transform_lookup(
        lookup="id", from_=alt.LookupData(neuron_df, "id", ["lo", "w"])
    ).transform_calculate(x0="datum.lo + datum.k * datum.w", x1="datum.lo + (datum.k + 1) * datum.w").mark_bar(
        binSpacing=0, color=charts.PALETTE[0], opacity=0.85).encode(
        x=alt.X("x0:Q", title="activation"), x2="x1:Q", y=alt.Y("c:Q", title="tokens"), y2=alt.datum(0),
        tooltip=[alt.Tooltip("x0:Q", format=".4g", title="from"), alt.Tooltip("x1:Q", format=".4g", title="to"),
                 alt.Tooltip("c:Q", title="tokens")])
    rules = alt.Chart(mark_df).transform_filter(pick).mark_rule(strokeDash=[5, 3], strokeWidth=2).encode(
        x="x:Q", color=alt.Color("line:N", title="", scale=alt.Scale(range=[charts.PALETTE[3], charts.PALETTE[2]])),
        tooltip=["line:N", alt.Tooltip("x:Q", format=".4g")])
    caption = alt.Chart(neuron_df).transform_filter(pick).mark_text(
        align="left", baseline="top", dx=4, fontSize=12).encode(x=alt.value(0), y=alt.value(-18), text="text:N")
    return alt.layer(bars, rules, caption).add_params(layer_p, slot_p).properties(
        width=560, height=260, title=alt.Title("One neuron's activations on the reference corpus", offset=26))


def distribution_summary(refs: Mapping[str, ReferenceStats]) -> pd.DataFrame:
    """The paper's sanity numbers per model (columns), next to its stored ViT-B/16 values."""
    out = {}
    for name, ref in refs.items():
        e = peak_estimates(ref, sample_bins=[], kde=False)
        n = e[e.estimator == "mean"]
        out[name] = {"neurons": len(n), "mean |skew|": n["skew"].abs().mean(),
                     "median |mean - peak| / std": ((n["mean"] - n["peak"]).abs() / n["std"]).median(),
                     "peaks within 0.01 of 0": int((n.peak.abs() < 0.01).sum()),
                     "means within 0.01 of 0": int((n["mean"].abs() < 0.01).sum()),
                     "sum |mean - peak|": (n["mean"] - n["peak"]).abs().sum()}
    out["paper: ViT-B/16"] = {"neurons": 12 * 768, **PAPER_VIT_B16}
    return pd.DataFrame(out)


def skew_charts(estimates: pd.DataFrame) -> alt.HConcatChart:
    """Skewness and |mean − peak| / std per neuron, by layer (box plots)."""
    n = estimates[estimates.estimator == "mean"]
    n = n.assign(gap_std=(n["mean"] - n["peak"]).abs() / n["std"])
    return alt.hconcat(charts.box(n, "layer", "skew", title="Skewness per neuron, by layer"),
                       charts.box(n, "layer", "gap_std", title="|mean - peak| / std per neuron, by layer"))


def estimator_scatter(estimates: pd.DataFrame, n: int = 2000, seed: int = 0) -> alt.Chart:
    """Peak minus mean in std units, 100-bin histogram against KDE, for ``n`` random neurons."""
    wide = estimates.pivot_table(index=["name", "neuron"], columns="estimator", values="value")
    base = estimates[estimates.estimator == "mean"].set_index(["name", "neuron"])
    sample = wide.sample(min(n, len(wide)), random_state=seed)
    b = base.loc[sample.index]
    sc = pd.DataFrame({"hist100_peak": (sample["hist100 (all)"] - b["mean"]) / b["std"],
                       "kde_peak": (sample["kde (sample)"] - b["mean"]) / b["std"]}).reset_index()
    sc["layer"] = [layer_of(name) for name in sc["name"]]
    return charts.scatter(sc, "hist100_peak", "kde_peak", tooltip=["name", "neuron", "layer"],
                          title=f"Peak minus mean, in std units: 100-bin histogram vs KDE ({len(sc)} random neurons)")


# ============================================================================ sweeps
def curves(dmg: pd.DataFrame, title: str = "") -> alt.LayerChart:
    """Mean damage against the ablated fraction per method, with 95 % t-bands over units."""
    metric = dmg.metric.iloc[0]
    b = bands(dmg, ["method", "frac"]).rename(columns={"mean": DAMAGE[metric]})
    return charts.line_with_band(b, "frac", DAMAGE[metric], "method", "lo", "hi", title=title, tooltip=["n"])


def regime_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per fraction (or layer): the least and the most damaging method, the interval of its margin over
    the nearest other method (simultaneous level), whether that decides it, and the methods still tied."""
    r = regimes(pairs)
    unit = UNITS[r.metric.iloc[0]]

    def ci(row: pd.Series, role: str) -> str:
        return f"{row[f'{role}_margin']:+.3g} [{row[f'{role}_lo']:+.3g}, {row[f'{role}_hi']:+.3g}]"

    regime = "layer" if (r.layer != ALL_LAYERS).any() else "frac"
    return pd.DataFrame({
        regime: r[regime] if regime == "layer" else r.frac.map(_pct),
        "least damage": np.where(r.best_decided, r.best, r.best + " (undecided)"),
        f"margin ({unit})": [ci(row, "best") for _, row in r.iterrows()],
        "not excluded as least": r.tied_best,
        "most damage": np.where(r.worst_decided, r.worst, r.worst + " (undecided)"),
        f"margin ({unit}) ": [ci(row, "worst") for _, row in r.iterrows()],
        "not excluded as most": r.tied_worst,
    }).set_index(regime)


def ranking_table(dmg: pd.DataFrame, frac: float = 0.5) -> pd.DataFrame:
    """Mean damage per method at ``frac`` (marginal 95 % t-intervals), least damage first."""
    g = dmg[(dmg.layer == ALL_LAYERS) & (dmg.frac > 0)]
    f = nearest(g.frac.unique(), frac)
    b = bands(g[g.frac == f], ["method"]).sort_values("mean", kind="stable")
    return b.assign(frac=f)[["method", "frac", "mean", "lo", "hi", "n"]].reset_index(drop=True)


def sweep_prose(pairs: pd.DataFrame, findings: Sequence[Finding], model: str) -> Prose:
    """What one model's sweep shows, regime by regime, with the decided and the undecided fractions."""
    p = pairs[pairs.model == model]
    r = regimes(p)
    metric = p.metric.iloc[0]
    decided = r[r.best_decided]
    spans = _spans(decided)
    undecided = [_pct(f) for f in r[~r.best_decided].frac]
    worst = win_counts(p, "worst").set_index("method")
    text = "**{model}** ({what}, n = {n} units per condition, intervals simultaneous over all models at {level:.0%}): "
    if len(decided):
        text += "the least damaging method is decided at {k_dec} of {k} fractions: {spans}. "
    else:
        text += "at no fraction is the least damaging method decided. "
    if undecided:
        text += "Undecided at {undecided} (the leading methods' difference lies within the noise). "
    if "resample" in worst.index:
        w = worst.loc["resample"]
        text += ("Resampling does decidedly the most damage at {rw} of {k} fractions"
                 + (" and decidedly not at {rn}." if w.regimes - w.possible else "."))
    return Prose(text, model=model, what=DAMAGE[metric], n=int(p.n.min()), level=float(p.family_level.iloc[0]),
                 k_dec=len(decided), k=len(r), spans=spans, undecided=listing(undecided),
                 rw=int(worst.loc["resample"].decided) if "resample" in worst.index else 0,
                 rn=int(worst.loc["resample"].regimes - worst.loc["resample"].possible) if "resample" in worst.index else 0)


def _spans(decided: pd.DataFrame) -> str:
    """"**peak** at 10 %–30 %; **zero** at 50 %" from the decided winners (runs of consecutive rows)."""
    spans: list[list[Any]] = []
    for _, row in decided.iterrows():
        if spans and spans[-1][0] == row.best:
            spans[-1][2] = row.frac
        else:
            spans.append([row.best, row.frac, row.frac])
    return "; ".join(f"**{b}** at {_pct(lo)}" + (f" to {_pct(hi)}" if hi != lo else "") for b, lo, hi in spans)


def chain_prose(chain_df: pd.DataFrame) -> Prose:
    """The strict chain (peak ≤ mean ≤ zero, resample worst) as a description, per model."""
    parts = []
    for model, g in chain_df.groupby("model", sort=False):
        items = []
        for _, row in g.iterrows():
            sign = "within noise" if not row.excludes_0 else ("more damage" if row["diff"] > 0 else "less damage")
            items.append(f"{row.comparison} = {row['diff']:+.3g} [{row.lo:+.3g}, {row.hi:+.3g}] ({sign})")
        parts.append(f"{model} at {_pct(g.frac.iloc[0])}: " + "; ".join(items))
    return Prose("Read as a description, not a verdict (the paper claims no strict order), the chain at "
                 "the focus fraction, as paired differences of damage with marginal 95 % t-intervals over units: "
                 + " · ".join(parts) + ".")


# ============================================================================ one layer at a time
def per_layer_charts(dmg: pd.DataFrame, pairs: pd.DataFrame) -> alt.HConcatChart:
    """Heatmap of mean damage per (layer, method), and per method the layers it wins: decided
    (bar) and not excluded (rule end), from simultaneous intervals."""
    model = dmg.model.iloc[0]
    metric = dmg.metric.iloc[0]
    g = bands(dmg, ["layer", "method"])
    st = method_status(pairs)
    g = g.merge(st[["layer", "method", "best", "worst"]], on=["layer", "method"], how="left")
    frac = float(dmg.frac.iloc[0])
    heat = charts.heatmap(g.rename(columns={"mean": DAMAGE[metric]}), "method", "layer", DAMAGE[metric],
                          ["lo", "hi", "n", "best", "worst"], scheme="orangered",
                          title=f"{model}: {DAMAGE[metric]}, {_pct(frac)} of one layer", width=220)
    wins = win_counts(pairs, "best")
    bar = charts.bars(wins, "method", "decided", lo="decided", hi="possible",
                      title="Layers each method wins: decided (bar) to possible (line)", tooltip=["point", "regimes"])
    return alt.hconcat(heat, bar)


def per_layer_view(per_layer: Mapping[str, pd.DataFrame], pairs: pd.DataFrame | None) -> alt.VConcatChart | None:
    """:func:`per_layer_charts` for every model of the one-layer experiment (None when there is none)."""
    if not per_layer or pairs is None:
        return None
    return alt.vconcat(*[per_layer_charts(d, pairs[pairs.model == k]) for k, d in per_layer.items()])


def per_layer_prose(pairs: pd.DataFrame | None) -> Prose:
    """How many layers each method wins (decided to possible), per model."""
    if pairs is None or not len(pairs):
        return Prose("")
    parts = []
    values: dict[str, Any] = {}
    for i, (model, p) in enumerate(pairs.groupby("model", sort=False)):
        wins = win_counts(p, "best")
        desc = ", ".join(f"{r.method} {r.decided}–{r.possible}" for _, r in wins.iterrows())
        parts.append(f"**{{m{i}}}**: of {{L{i}}} layers, the least damaging method is decided in {{d{i}}}; "
                     f"layers won, decided–possible: {{w{i}}}")
        values.update({f"m{i}": model, f"L{i}": int(wins.regimes.iloc[0]), f"d{i}": int(regimes(p).best_decided.sum()),
                       f"w{i}": desc})
    return Prose("One layer at a time (n = {n} units per condition, simultaneous intervals over every layer and "
                 "pair of methods). " + ". ".join(parts) + ".", n=int(pairs.n.min()), **values)


def per_layer_skipped(refs: Mapping[str, ReferenceStats], per_layer_models: Sequence[str], cfg: Any) -> Prose:
    """Why the models outside ``per_layer_models`` have no one-layer experiment: its size in conditions."""
    skipped = [(name, len({layer_of(n) for n in ref.sizes})) for name, ref in refs.items() if name not in per_layer_models]
    if not skipped:
        return Prose("")
    n_methods, sweep = len(cfg.methods), len(cfg.fracs) * len(cfg.methods)
    parts, values = [], {}
    for i, (name, n_layers) in enumerate(skipped):
        parts.append(f"{{m{i}}} ({{L{i}}} layers: {{c{i}}} conditions, {{r{i}:.1f}} times its sweep)")
        values.update({f"m{i}": name, f"L{i}": n_layers, f"c{i}": n_layers * n_methods, f"r{i}": n_layers * n_methods / sweep})
    return Prose("The one-layer experiment is not run on " + listing(parts) + ", each on the same evaluation units "
                 "as the sweep of {s} conditions; add a model to `per_layer_models` to run it.", s=sweep, **values)


# ============================================================================ estimators
def estimator_comparison(dmg: pd.DataFrame, extra: pd.DataFrame | None, frac: float, reference: str = "peak",
                         level: float = 0.95) -> pd.DataFrame:
    """At ``frac``: each method's damage minus ``reference``'s, paired over units (``extra``: damage of
    further methods on the same units and subsets, e.g. other peak estimators)."""
    main = dmg[(dmg.frac == frac) & (dmg.layer == ALL_LAYERS)]
    if extra is not None:  # compare on the units both were run on
        extra = extra[extra.frac == frac]
        main = pd.concat([main[main.unit.isin(extra.unit)], extra[extra.unit.isin(main.unit)]], ignore_index=True)
    wide = main.pivot_table(index="unit", columns="method", values="damage")
    rows = []
    for m in wide.columns:
        if m == reference or m not in CENTRES:
            continue
        iv = t_interval((wide[m] - wide[reference]).to_numpy(), level)
        rows.append({"method": m, f"minus {reference}": iv.estimate, "lo": iv.lo, "hi": iv.hi, "n": iv.n,
                     "excludes 0": iv.excludes(0.0)})
    return pd.DataFrame(rows)


def estimator_prose(cmp: pd.DataFrame, frac: float, reference: str = "peak") -> Prose:
    """Whether other mode estimators change the damage of peak ablation."""
    clear = cmp[cmp["excludes 0"]]
    text = ("At {frac}, replacing by other estimates of each neuron's centre, compared with the paper's "
            "100-bin peak (paired over n = {n} units, 95 % t-intervals): {items}. ")
    items = [f"{r.method} {r[f'minus {reference}']:+.3g} [{r.lo:+.3g}, {r.hi:+.3g}]" for _, r in cmp.iterrows()]
    text += ("{k} of {m} differ clearly from the peak." if len(clear) else
             "None differs clearly from the peak at this sample.")
    return Prose(text, frac=_pct(frac), n=int(cmp.n.min()), items="; ".join(items), k=len(clear), m=len(cmp))


# ============================================================================ verdicts
def _fmt(f: Finding, x: float) -> str:
    """A finding's number as it reads: a share of fractions, a number of regimes, or a gap in its unit."""
    if not math.isfinite(x):
        return "n/a"
    if "share" in f.interval.method:
        return f"{x:.0%}"
    if "gap" in f.interval.method:
        return _num(x, f.unit)
    return f"{x:g} regime" + ("" if x == 1 else "s")


def verdict_table(findings: Sequence[Finding]) -> pd.DataFrame:
    """Per claim: estimate and simultaneous interval as they read, n, the smallest detectable gap between
    two methods (in the damage unit), the verdict, and how the interval was made."""
    return pd.DataFrame([{"claim": f.claim, "estimate": _fmt(f, f.interval.estimate),
                          "interval": f"{_fmt(f, f.interval.lo)} to {_fmt(f, f.interval.hi)}",
                          "n (units)": f.interval.n,
                          "MDE": _num(f.mde, f.unit) if f.unit in UNITS.values() and math.isfinite(f.mde) else "n/a",
                          "verdict": f.verdict, "how": f"{f.note}; {f.interval.method}"}
                         for f in findings]).set_index("claim")


def summary_prose(findings: Sequence[Finding]) -> Prose:
    """The verdicts in words; the sentence for each claim depends on its verdict."""
    lines, values = [], {}
    for i, f in enumerate(findings):
        iv = f.interval
        word = {HOLDS: "holds", ABSENT: "does **not** hold"}.get(f.verdict, "is **undetermined at this sample**")
        lines.append(f"- “{{c{i}}}” {word} (estimate {{e{i}}}, interval {{lo{i}}} to {{hi{i}}})")
        values.update({f"c{i}": f.claim, f"e{i}": _fmt(f, iv.estimate), f"lo{i}": _fmt(f, iv.lo), f"hi{i}": _fmt(f, iv.hi)})
    holds = [f for f in findings if f.verdict == HOLDS]
    absent = [f for f in findings if f.verdict == ABSENT]
    head = "Of the {n} verdicts, {h} hold, {a} do not hold and {u} are undetermined at this sample."
    return Prose(head + "\n\n" + "\n".join(lines), n=len(findings), h=len(holds), a=len(absent),
                 u=len(findings) - len(holds) - len(absent), **values)


def conclusion_prose(findings: Sequence[Finding], pairs: pd.DataFrame) -> Prose:
    """The answer to each of the paper's claims over all models, in words chosen by the verdicts."""
    rows = pd.DataFrame([(*claim_kind(f.claim), f.verdict) for f in findings], columns=["model", "kind", "verdict"])
    models = [m for m in dict.fromkeys(rows.model) if m != "all models"]
    values: dict[str, Any] = {}
    parts = []

    def who(kind: str, verdict: str) -> list[str]:
        return list(rows[(rows.kind == kind) & (rows.verdict == verdict) & rows.model.isin(models)].model)

    pooled = rows[(rows.model == "all models") & (rows.kind == "each method wins somewhere")]
    wins = win_counts(pairs, "best", by=()).set_index("method")
    if len(pooled):
        v = pooled.verdict.iloc[0]
        if v == HOLDS:
            parts.append("Across the models, every method is decidedly the least damaging in at least one regime, "
                         "as the paper says.")
        elif v == ABSENT:
            parts.append("Not every method wins somewhere: {losers} {be} decidedly beaten at every fraction of every "
                         "model.")
            losers = list(wins[wins.possible == 0].index)
            values.update(losers=listing(losers), be="is" if len(losers) == 1 else "are")
        else:
            parts.append("Whether every method wins somewhere is undetermined at this sample: {never} {be} never "
                         "decidedly the least damaging, but not ruled out everywhere either.")
            never = list(wins[wins.decided == 0].index)
            values.update(never=listing(never), be="is" if len(never) == 1 else "are")
    for kind, label in (("resample usually worst", "Resampling does the most damage at most fractions"),
                        ("peak often best", "Peak ablation is the least damaging at more than its share of fractions")):
        groups = [(HOLDS, "holds"), (ABSENT, "does not hold"), (UNDETERMINED, "is undetermined")]
        said = [f"{word} for {listing(who(kind, v))}" for v, word in groups if who(kind, v)]
        if said:
            parts.append(f"{label}: this {listing(said, 'and it')}.")
    best = win_counts(pairs, "best").sort_values("decided", ascending=False).drop_duplicates("model").set_index("model")
    top = [f"{r.method} for {m} ({r.decided} of {r.regimes} fractions)" for m, r in best.iterrows() if r.decided > 0]
    if top:
        parts.append("The method most often decidedly least damaging is " + listing(top) + ".")
    return Prose(" ".join(parts), **values)


def units_prose(dmg_by_model: Mapping[str, pd.DataFrame], pairs: pd.DataFrame) -> Prose:
    """The samples and what they can detect, per model (median MDE of the pairwise comparisons)."""
    parts, values = [], {}
    for i, (model, d) in enumerate(dmg_by_model.items()):
        p = pairs[pairs.model == model]
        unit = UNITS[d.metric.iloc[0]]
        m = float(p.mde.median())
        parts.append(f"{{m{i}}}: {{n{i}}} units × {{f{i}}} fractions × {{k{i}}} methods, smallest detectable "
                     f"difference between two methods ≈ {{d{i}}}")
        values.update({f"m{i}": model, f"n{i}": int(p.n.min()), f"f{i}": p.frac.nunique(),
                       f"k{i}": p.a.nunique(), f"d{i}": _num(m, unit)})
    return Prose("Samples (each unit: its own input, neuron subsets and resample source; 80 % power at the "
                 "simultaneous level, {level:.1%} per model, {family:.0%} for all models together): "
                 + "; ".join(parts) + ".", level=float(pairs.level.iloc[0]), family=float(pairs.family_level.iloc[0]),
                 **values)


__all__ = ["Timer", "chain_prose", "clean_prose", "conclusion_prose", "curves", "damage", "distribution_summary",
           "estimator_comparison", "estimator_prose", "estimator_scatter", "join", "neuron_explorer",
           "per_layer_charts", "per_layer_prose", "per_layer_skipped", "per_layer_view", "ranking_table",
           "regime_table", "setup_prose", "skew_charts", "summary_prose", "sweep_prose", "units_prose", "verdict_table"]
