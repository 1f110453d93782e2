"""Prose, tables and charts of the unlearning chapter, from the tidy frames of :mod:`.unlearning`.

Every sentence with a number is a :class:`~paragraph_planning.prose.Prose` whose numbers are its
values, and wording that only holds for some outcomes (a claim holds, fails or is undetermined)
is chosen here from the computed verdicts. Tables are pandas Stylers; charts are altair.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import altair as alt
import pandas as pd

from ..charts import histogram_with_marks
from ..core.inference import ABSENT, HOLDS, Finding, Interval, findings_table, t_interval
from ..prose import Prose
from .unlearning import SITE_LABELS, Pair, side_means
from .unlearning_verdicts import SIDES, drop_intervals, point_drops, selectivity_vs_random

SIDE_SCALE = alt.Scale(domain=list(SIDES))


# ============================================================================ formatting
def _ci(name: str, iv: Interval, spec: str) -> tuple[str, dict[str, float]]:
    """A template fragment ``{name} (95 % CI {name_lo} to {name_hi})`` and its values."""
    values = {name: iv.estimate, f"{name}_lo": iv.lo, f"{name}_hi": iv.hi}
    if not (math.isfinite(iv.lo) and math.isfinite(iv.hi)):
        if math.isfinite(iv.lo) and iv.hi == math.inf:
            return f"{{{name}:{spec}}} (95 % CI from {{{name}_lo:{spec}}}, unbounded above)", values
        return f"{{{name}:{spec}}} (no interval at this sample)", values
    return f"{{{name}:{spec}}} (95 % CI {{{name}_lo:{spec}}} to {{{name}_hi:{spec}}})", values


def _fmt(x: float, spec: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else ("∞" if x == math.inf else f"{x:{spec}}")


def _pick(finding: Finding, holds: str, absent: str, undetermined: str) -> str:
    return holds if finding.verdict == HOLDS else absent if finding.verdict == ABSENT else undetermined


# ============================================================================ data and scores
def data_prose(pair: Pair, kind: str = "rows") -> Prose:
    """How much data each side has: collection and evaluation units."""
    p = pair.params
    if kind == "rows":
        return Prose("Each side's statistics come from {collect:,} training tokens; evaluation uses {nf} held-out rows "
                     "of forget text and {nr} of retain text, {seq} tokens each ({tf:,} and {tr:,} tokens). The "
                     "intervals below resample these rows.", collect=p["collect_tokens"], nf=pair.units("forget"),
                     nr=pair.units("retain"), seq=p["seq_len"], tf=pair.units("forget") * p["seq_len"],
                     tr=pair.units("retain") * p["seq_len"])
    return Prose("Statistics come from {collect:,} training images per side; evaluation uses {nf:,} test images of the "
                 "forgotten class and {nr:,} of the others.", collect=p["collect_images"], nf=pair.units("forget"),
                 nr=pair.units("retain"))


def score_chart(frame: pd.DataFrame, score: str, ff_frac: float) -> alt.LayerChart:
    """Histogram of log10 scores of every neuron, by kind, with the first step's FF cut marked."""
    df = frame.assign(log10_score=frame.score.clip(lower=1e-12).map(math.log10))
    ff = df[df.neurons == "FF"]
    cut = ff.log10_score.nlargest(max(1, int(ff_frac * len(ff)))).min()
    return histogram_with_marks(df, "log10_score", marks={f"top {ff_frac:.0%} of FF": cut}, color="neurons",
                                density=True, title=f"Scores log10({score}(forget) / ({score}(retain) + ε)) of every neuron")


def first_cut(frame: pd.DataFrame, ff_frac: float, n_layers: int) -> pd.DataFrame:
    """FF neurons per layer among the first step's top ``ff_frac``."""
    ff = frame[frame.neurons == "FF"]
    top = ff[ff["rank"] <= max(1, int(ff_frac * len(ff)))]
    return top.groupby("layer").size().reindex(range(n_layers), fill_value=0).rename("neurons").reset_index()


def layer_chart(per_layer: pd.DataFrame) -> alt.Chart:
    """Bars: where the first step's FF neurons sit."""
    return alt.Chart(per_layer, title=f"Where the first step's {int(per_layer.neurons.sum())} FF neurons sit").mark_bar(
    ).encode(x=alt.X("layer:O", axis=alt.Axis(labelAngle=0)), y=alt.Y("neurons:Q", title="neurons pruned"),
             tooltip=["layer", "neurons"])


def score_prose(frame: pd.DataFrame, per_layer: pd.DataFrame, ff_frac: float) -> Prose:
    """The spread of FF scores and where the first cut concentrates."""
    ff = frame[frame.neurons == "FF"]
    cut = ff.score.nlargest(max(1, int(ff_frac * len(ff)))).min()
    top3 = per_layer.nlargest(3, "neurons")
    top3 = top3[top3.neurons > 0]
    return Prose("Most FF neurons fire about equally on both sides: the median score is {median:.2f}, while the top "
                 "{frac:.0%} starts at {cut:.2f} and the largest is {max:.1f}. The first step's neurons concentrate in "
                 "layers {layers} ({share} of {total}).", median=float(ff.score.median()), frac=ff_frac, cut=float(cut),
                 max=float(ff.score.max()), layers=", ".join(str(x) for x in top3.layer),
                 share=int(top3.neurons.sum()), total=int(per_layer.neurons.sum()))


def overlap_table(overlap: pd.DataFrame) -> Any:
    """The taker-vs-package overlap per score, neuron kind and selection."""
    df = overlap.rename(columns={"k": "selected", "shared": "in both"})
    return df.style.format({"overlap": "{:.1%}"}).hide(axis="index").set_caption(
        "Top-k selections with the reference library's formulas vs this package's (overlap = in both / selected)")


def overlap_prose(overlap: pd.DataFrame) -> Prose:
    """Which scores the reference formulas change, and by how much."""
    same = overlap[overlap.overlap >= 1.0]
    diff = overlap[overlap.overlap < 1.0].sort_values("overlap")
    if diff.empty:
        return Prose("Every selection is identical under both sets of formulas ({n} selections compared).", n=len(overlap))
    parts, values = [], {}
    for i, r in enumerate(diff.itertuples()):
        parts.append(f"`{r.score}` on {r.neurons} {r.selection} shares {{o{i}:.1%}} of its {{k{i}}}")
        values.update({f"o{i}": r.overlap, f"k{i}": r.k})
    return Prose("The reference formulas change " + "; ".join(parts) + ". The other {n_same} selections are identical "
                 "(the formulas agree there).", n_same=len(same), **values)


# ============================================================================ runs
def random_points(base: pd.DataFrame, random: pd.DataFrame, metric: str, step: int) -> pd.DataFrame:
    """Each random seed's metric per side (placed at ``step``, the selective run's last step)."""
    rows = [{"step": step, "seed": int(s), "side": k.split("_")[0], "value": v}
            for s, part in random.groupby("seed") for k, v in side_means(part, metric).items()]
    return pd.DataFrame(rows)


def run_chart(steps: pd.DataFrame, seeds: pd.DataFrame | None = None, title: str = "", width: int = 420) -> alt.LayerChart:
    """Forget and retain metric per step with 95 % bands; random seeds at the last step as hollow points."""
    metric = steps.metric.iloc[0]
    x = alt.X("step:O", title="pruning step", axis=alt.Axis(labelAngle=0))
    color = alt.Color("side:N", title="data", scale=SIDE_SCALE)
    base = alt.Chart(steps)
    layers = [
        base.mark_errorband().encode(x=x, y=alt.Y("value_lo:Q", title=metric), y2="value_hi:Q", color=color),
        base.mark_line(point=True).encode(
            x=x, y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)), color=color,
            tooltip=["step", "side", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("value_lo:Q", format=".3f"),
                     alt.Tooltip("value_hi:Q", format=".3f"), alt.Tooltip("drop:Q", format=".1%"),
                     alt.Tooltip("frac_ff:Q", format=".2%"), alt.Tooltip("frac_attn:Q", format=".2%")]),
    ]
    if seeds is not None and len(seeds):
        layers.append(alt.Chart(seeds).mark_point(filled=False, size=50, shape="diamond").encode(
            x=x, y="value:Q", color=color, tooltip=["side", "seed", alt.Tooltip("value:Q", format=".3f")]))
    return alt.layer(*layers).properties(width=width, height=240, title=title or f"{metric} per pruning step "
                                         "(bands: 95 % CI over evaluation units; diamonds: random pruning, one per seed)")


def run_table(steps: pd.DataFrame) -> Any:
    """One row per step: fractions pruned and each side's metric and drop with intervals."""
    wide = steps.pivot(index=["step", "frac_ff", "frac_attn"], columns="side",
                       values=["value", "value_lo", "value_hi", "drop", "drop_lo", "drop_hi"])
    out = pd.DataFrame(index=wide.index)
    for side in SIDES:
        out[f"{side}"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in
                          zip(wide["value", side], wide["value_lo", side], wide["value_hi", side])]
        out[f"{side} drop"] = [f"{v:.1%} [{lo:.1%}, {hi:.1%}]" for v, lo, hi in
                               zip(wide["drop", side], wide["drop_lo", side], wide["drop_hi", side])]
    out = out.reset_index()
    return out.style.format({"frac_ff": "{:.2%}", "frac_attn": "{:.2%}"}).hide(axis="index").set_caption(
        f"{steps.metric.iloc[0]} per step, with 95 % intervals over evaluation units")


def run_prose(run: pd.DataFrame, random: pd.DataFrame | None, findings: Sequence[Finding], beat: Finding | None,
              metric: str, kind: str, ratio_target: float, seed: int = 0) -> Prose:
    """What the last step did to each side, the ratio, and the random baseline, worded by the verdicts."""
    last = int(run.step.max())
    base, after = run[run.step == 0], run[run.step == last]
    diff, ratio = findings
    iv = {**drop_intervals(base, after, metric, seed, which=("forget", "retain")),
          "difference": diff.interval, "ratio": ratio.interval}
    b, a = side_means(base, metric), side_means(after, metric)
    frac = float(after.frac_ff.iloc[0] if kind == "FF" else after.frac_attn.iloc[0])
    t_f, v_f = _ci("fd", iv["forget"], ".1%")
    t_r, v_r = _ci("rd", iv["retain"], ".1%")
    t_q, v_q = _ci("ratio", iv["ratio"], ".1f")
    t_d, v_d = _ci("diff", iv["difference"], ".1%")
    text = ("After {steps} step" + ("s" if last != 1 else "") + " ({frac:.2%} of the " + kind + " neurons pruned), "
            "forget " + metric + " went from {f0:.3f} to {f1:.3f}, a drop of " + t_f + "; retain " + metric +
            " went from {r0:.3f} to {r1:.3f}, a drop of " + t_r + ". ")
    text += _pick(diff, "Forget loses more than retain: the difference of the drops is " + t_d + ", above zero. ",
                  "Retain loses at least as much as forget: the difference of the drops is " + t_d + ". ",
                  "Whether forget loses more than retain is undetermined at this sample: the difference is " + t_d +
                  ", and the sample detects differences of about {diff_mde:.1%}. ")
    text += "The ratio of the drops is " + t_q + ": " + _pick(
        ratio, "at least {target:g}× on the whole interval.", "below {target:g}× on the whole interval.",
        "the interval contains {target:g}×, so reaching that target is undetermined at this sample.")
    values = dict(steps=last, frac=frac, f0=b[f"forget_{metric}"], f1=a[f"forget_{metric}"], r0=b[f"retain_{metric}"],
                  r1=a[f"retain_{metric}"], target=ratio_target, diff_mde=diff.mde, **v_f, **v_r, **v_q, **v_d)
    out = Prose(text, **values)
    if random is not None and beat is not None:
        out = out + random_prose(base, after, random, beat, metric, kind, seed)
    return out


def random_prose(base: pd.DataFrame, after: pd.DataFrame, random: pd.DataFrame, beat: Finding, metric: str,
                 kind: str, seed: int = 0) -> Prose:
    """The random baseline's drops and spread over seeds, and the selective-vs-random verdict."""
    iv = selectivity_vs_random(base, after, random, metric, seed)
    per_seed = []
    for _, part in random.groupby("seed"):
        d = point_drops(base, part, metric)
        per_seed.append((d["forget"], d["retain"]))
    fd, rd = t_interval([p[0] for p in per_seed]), t_interval([p[1] for p in per_seed])
    t_s, v_s = _ci("sel", iv["selective"], ".1%")
    t_r, v_r = _ci("rsel", iv["random"], ".1%")
    t_g, v_g = _ci("gap", iv["gap"], ".1%")
    text = ("Pruning as many " + kind + " neurons at random ({seeds} seeds) drops forget " + metric + " by {rf:.1%} "
            "(seeds range {rf_min:.1%} to {rf_max:.1%}) and retain by {rr:.1%} ({rr_min:.1%} to {rr_max:.1%}). "
            "Selectivity, the forget drop minus the retain drop, is " + t_s + " for the selection by score and " + t_r +
            " for random pruning (the interval includes the spread over seeds); the gap is " + t_g + ". ")
    text += _pick(beat, "Selective pruning beats random pruning here.",
                  "Selective pruning is not more selective than random pruning here.",
                  "Whether selective pruning beats random pruning is undetermined at this sample (it detects gaps of "
                  "about {gap_mde:.1%}).")
    return Prose(text, seeds=iv["seeds"], rf=fd.estimate, rr=rd.estimate,
                 rf_min=min(p[0] for p in per_seed), rf_max=max(p[0] for p in per_seed),
                 rr_min=min(p[1] for p in per_seed), rr_max=max(p[1] for p in per_seed), gap_mde=beat.mde,
                 **v_s, **v_r, **v_g)


# ============================================================================ one-shot scores
def scores_frame(scores: pd.DataFrame, base: pd.DataFrame, random: Mapping[str, pd.DataFrame], metric: str,
                 seed: int = 0) -> pd.DataFrame:
    """Per (score, formula, kind): forget and retain drops and the selectivity gap to random, with intervals.

    ``random``: ``{site: run_random frame}`` at the same fraction of that kind.
    """
    rows = []
    for (score, formula, site), part in scores.groupby(["score", "formula", "site"], sort=False):
        d = drop_intervals(base, part, metric, seed, which=("forget", "retain"))
        row = {"score": score if formula == "package" else f"{score} (taker)", "neurons": SITE_LABELS[site],
               "frac": float(part.frac_ff.iloc[0] if site == "mlp.pre_out" else part.frac_attn.iloc[0])}
        for k in ("forget", "retain"):
            row.update({f"{k}_drop": d[k].estimate, f"{k}_lo": d[k].lo, f"{k}_hi": d[k].hi})
        if site in random:
            g = selectivity_vs_random(base, part, random[site], metric, seed)["gap"]
            row.update(gap=g.estimate, gap_lo=g.lo, gap_hi=g.hi,
                       beats_random=HOLDS if g.lo > 0 else ABSENT if g.hi < 0 else "undetermined")
        rows.append(row)
    return pd.DataFrame(rows)


def scores_table(df: pd.DataFrame) -> Any:
    """The one-shot grid as a table of intervals."""
    out = df[["score", "neurons", "frac"]].copy()
    for k, name in (("forget", "forget drop"), ("retain", "retain drop"), ("gap", "gap to random")):
        col = "gap" if k == "gap" else f"{k}_drop"
        lo, hi = ("gap_lo", "gap_hi") if k == "gap" else (f"{k}_lo", f"{k}_hi")
        if col in df:
            out[name] = [f"{v:.1%} [{a:.1%}, {b:.1%}]" for v, a, b in zip(df[col], df[lo], df[hi])]
    if "beats_random" in df:
        out["beats random"] = df.beats_random
    return out.style.format({"frac": "{:.2%}"}).hide(axis="index").set_caption(
        "One-shot pruning of one kind of neuron by each score (95 % intervals; gap = selectivity minus random's)")


def scores_chart(df: pd.DataFrame, metric: str) -> alt.Chart:
    """Forget and retain drops per score with intervals, one panel per kind."""
    long = pd.concat([df.assign(side=k, drop=df[f"{k}_drop"], lo=df[f"{k}_lo"], hi=df[f"{k}_hi"]) for k in SIDES])
    base = alt.Chart(long).encode(x=alt.X("score:N", sort=list(df.score.unique()), title=None,
                                          axis=alt.Axis(labelAngle=-30)), xOffset="side:N")
    bars = base.mark_bar().encode(y=alt.Y("drop:Q", axis=alt.Axis(format="%"), title=f"relative drop in {metric}"),
                                  color=alt.Color("side:N", scale=SIDE_SCALE),
                                  tooltip=["score", "neurons", "side", alt.Tooltip("drop:Q", format=".1%"),
                                           alt.Tooltip("lo:Q", format=".1%"), alt.Tooltip("hi:Q", format=".1%")])
    rules = base.mark_rule(color="#333").encode(y="lo:Q", y2="hi:Q")
    return alt.layer(bars, rules).properties(width=260, height=220).facet(column=alt.Column("neurons:N", title=None))


def scores_prose(df: pd.DataFrame) -> Prose:
    """Per kind: the most selective score and how many scores beat random."""
    parts, values = [], {}
    for i, (kind, part) in enumerate(df.groupby("neurons", sort=False)):
        part = part.assign(sel=part.forget_drop - part.retain_drop)
        best = part.sort_values("sel", ascending=False).iloc[0]
        s = (f"With {kind} neurons the most selective score is `{best.score}` (forget drop {{bf{i}:.1%}}, retain drop "
             f"{{br{i}:.1%}})")
        values.update({f"bf{i}": best.forget_drop, f"br{i}": best.retain_drop})
        if "beats_random" in part:
            s += f"; {{nb{i}}} of {{nt{i}}} scores beat random pruning of as many {kind} neurons"
            values.update({f"nb{i}": int((part.beats_random == HOLDS).sum()), f"nt{i}": len(part)})
        parts.append(s + ".")
    return Prose(" ".join(parts), **values)


# ============================================================================ vision
def class_table(run: pd.DataFrame, step: int, metric: str = "top1") -> pd.DataFrame:
    """Per class: the metric before pruning and at ``step``, and the share kept (``after / before``)."""
    def per(part: pd.DataFrame) -> pd.Series:
        return part.groupby("label", sort=False)[metric].mean()

    before, after = per(run[run.step == 0]), per(run[run.step == step])
    forget = set(run[(run.step == 0) & (run.side == "forget")].label)
    df = pd.DataFrame({"class": before.index, "forgotten": [c in forget for c in before.index],
                       "before": before.values, "after": after.reindex(before.index).values})
    df["kept"] = df.after / df.before.where(df.before > 0)
    return df


def class_chart(table: pd.DataFrame, step: int) -> alt.Chart:
    """Per-class accuracy before and after, grouped bars."""
    bars = table.melt(id_vars=["class", "forgotten"], value_vars=["before", "after"], var_name="when", value_name="top1")
    return alt.Chart(bars, title=f"Per-class accuracy before and after step {step}").mark_bar().encode(
        x=alt.X("class:N", sort=list(table["class"]), title=None, axis=alt.Axis(labelAngle=-30)),
        xOffset=alt.XOffset("when:N", sort=["before", "after"]), y=alt.Y("top1:Q", axis=alt.Axis(format="%")),
        color=alt.Color("when:N", sort=["before", "after"]), tooltip=["class", "when", alt.Tooltip("top1:Q", format=".1%")],
    ).properties(width=520, height=220)


def vision_prose(run: pd.DataFrame, forgot: Finding, keep: Finding, forget_class: str, target: float,
                 max_drop: float, n_classes: int) -> Prose:
    """The forgotten class and the kept ones at the last step, worded by the two verdicts."""
    last = int(run.step.max())
    table = class_table(run, last)
    others = table[~table.forgotten].sort_values("kept")
    worst = others.iloc[0]
    t_f, v_f = _ci("acc", forgot.interval, ".1%")
    t_k, v_k = _ci("rdrop", keep.interval, ".1%")
    after = run[run.step == last]
    text = ("After step {step} ({ff:.1%} of the FF and {attn:.1%} of the attention neurons pruned) the accuracy on **"
            + forget_class + "** is " + t_f + ", from {acc0:.1%}; the target is {target:.0%} and chance {chance:.0%}. ")
    text += _pick(forgot, "The class is forgotten by that standard. ", "The class is not forgotten by that standard. ",
                  "Whether it is below the target is undetermined at this sample. ")
    text += "The other classes' accuracy has a relative drop of " + t_k + ": " + _pick(
        keep, "below {max_drop:.0%}, so they are kept. ", "above {max_drop:.0%}, so they are not kept. ",
        "whether it is below {max_drop:.0%} is undetermined at this sample. ")
    text += "The class that suffers most is " + str(worst["class"]) + " ({w0:.1%} → {w1:.1%})."
    return Prose(text, step=last, ff=float(after.frac_ff.iloc[0]), attn=float(after.frac_attn.iloc[0]),
                 acc0=float(table[table.forgotten].before.iloc[0]), target=target, chance=1 / n_classes,
                 max_drop=max_drop, w0=float(worst.before), w1=float(worst.after), **v_f, **v_k)


def positions_prose(iv: Interval, main: str, other: str) -> Prose:
    """The selectivity difference between two positions policies (descriptive, two-sided)."""
    t, v = _ci("pdiff", iv, ".1%")
    verdict = ("more selective" if iv.lo > 0 else "less selective" if iv.hi < 0 else None)
    text = ("Scoring at `" + main + "` positions instead of `" + other + "` changes the selectivity (forget drop minus "
            "retain drop) at the last step by " + t + ": ")
    text += (f"`{main}` is {verdict} on the whole interval." if verdict else
             "the two policies are not distinguishable at this sample.")
    return Prose(text, **v)


# ============================================================================ verdicts
def verdict_frame(findings: Sequence[Finding]) -> pd.DataFrame:
    """Claim, estimate, interval, n, MDE and verdict per finding (the chapter's closing table)."""
    df = findings_table(findings)
    return df[["claim", "estimate", "lo", "hi", "unit", "note", "mde", "verdict"]].rename(
        columns={"note": "n", "mde": "detectable (80 % power)"})


def verdict_table(findings: Sequence[Finding]) -> Any:
    """:func:`verdict_frame` styled."""
    df = verdict_frame(findings)
    fmt = {c: (lambda x: _fmt(x, ".3f")) for c in ("estimate", "lo", "hi", "detectable (80 % power)")}
    return df.style.format(fmt).hide(axis="index").set_caption(
        "Claims tested in this chapter (95 % intervals; verdicts from the intervals)")


def power_prose(findings: Sequence[Finding], min_effect: float) -> Prose:
    """What the samples can detect, against the smallest effect of interest, and the sample that would.

    The MDE shrinks as ``1/√n``, so detecting ``min_effect`` takes about ``n · (mde / min_effect)²`` units.
    """
    diffs = [f for f in findings if f.unit in ("forget − retain drop", "selectivity gap") and math.isfinite(f.mde)]
    if not diffs:
        return Prose("")
    worst = max(diffs, key=lambda f: f.mde)
    fine = sum(f.mde <= min_effect for f in diffs)
    text = ("Of the {n} claims about differences of drops, {fine} can detect a difference of {eff:.0%} with 80 % power "
            "at their sample; the least sensitive (" + worst.claim + ", {units} evaluation units) detects {worst:.1%}")
    values = dict(n=len(diffs), fine=fine, eff=min_effect, worst=worst.mde, units=worst.interval.n)
    if worst.mde > min_effect > 0:
        text += ", and would need about {needed:,} units to detect {eff:.0%}"
        values["needed"] = int(math.ceil(worst.interval.n * (worst.mde / min_effect) ** 2))
    return Prose(text + ".", **values)


def summary_prose(findings: Sequence[Finding]) -> Prose:
    """How many claims hold, fail, or are undetermined."""
    counts = {v: sum(f.verdict == v for f in findings) for v in (HOLDS, ABSENT)}
    return Prose("Of {n} claims, {h} hold, {a} do not hold and {u} are undetermined at these samples.",
                 n=len(findings), h=counts[HOLDS], a=counts[ABSENT], u=len(findings) - counts[HOLDS] - counts[ABSENT])




def positions_chart(steps: Mapping[str, pd.DataFrame]) -> alt.Chart:
    """Forget and retain curves of the same pruning under each positions policy (``{policy: step_intervals}``)."""
    df = pd.concat([st.assign(positions=p) for p, st in steps.items()])
    metric = df.metric.iloc[0]
    return alt.Chart(df, title=f"{metric} per step with statistics at each positions policy").mark_line(point=True).encode(
        x=alt.X("step:O", title="pruning step", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("value:Q", title=metric), color=alt.Color("side:N", title="data", scale=SIDE_SCALE),
        strokeDash=alt.StrokeDash("positions:N", title="positions"),
        tooltip=["positions", "step", "side", alt.Tooltip("value:Q", format=".3f"),
                 alt.Tooltip("value_lo:Q", format=".3f"), alt.Tooltip("value_hi:Q", format=".3f")],
    ).properties(width=420, height=240)
