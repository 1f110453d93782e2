"""Paragraph planning (paper 1): the chapter's prose, tables and charts, built from computed results.

Every sentence that quotes a result is a :class:`~paragraph_planning.prose.Prose` whose numbers come
from the tables of :mod:`.planning_metrics`; wording that only holds for some outcomes is chosen by
the computed verdicts here, never written into the notebook.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import altair as alt
import pandas as pd

from .. import charts
from ..core.inference import bootstrap_mean, wilson
from ..data.paragraph_texts import TextSet
from ..prose import Prose, fmt_p, listing
from .planning_metrics import COMPONENTS, ScoreConfig

ORDER = ["full", "transferred", "same-prompt", "shuffled", "neutral"]
NAMES = {"claim": "the paper's claim", "format": "format", "topic": "topic", "paragraph-specific": "paragraph-specific",
         "full context": "full context"}


def condition_order(conds: Sequence[str]) -> list[str]:
    """Conditions in reading order: the decomposition's, then ``neutral+K`` by K, then the rest."""
    ks = sorted((c for c in conds if c.startswith("neutral+")), key=lambda c: int(c.split("+")[1]))
    return [c for c in ORDER if c in conds] + ks + [c for c in conds if c not in ORDER and c not in ks]


def ci(est: float, lo: float, hi: float, spec: str = ".3f") -> str:
    """``0.123 [0.045, 0.201]`` (or the estimate alone without an interval)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{est:{spec}} [no interval]"
    return f"{est:{spec}} [{lo:{spec}}, {hi:{spec}}]"


# ----------------------------------------------------------------------------- texts
SOURCES = {
    "chat": "the model answers a request for two paragraphs",
    "lead": "the model continues the first sentence of a Wikipedia lead (a base model answers no requests)",
    "wiki": "real Wikipedia leads, cut in two (no generation)",
}
"""How :func:`texts_prose` describes each text source."""


def texts_prose(ts: TextSet, model: str, probe: TextSet | None = None, source: str | None = None) -> Prose:
    """How many texts and prompts (and, given ``source``, where they come from), what was dropped, how
    many breaks were the model's own, and (with ``probe``) how often the model writes exactly two
    paragraphs on request."""
    copies = ts.texts.groupby("prompt_id").size()
    natural = int(ts.texts["natural"].sum())
    p = Prose("**{model}**: {report} Copies per prompt: {cmin} to {cmax}. In {natural} of the {n} texts "
              "({natural_share:.0%}) the model ended paragraph 1 itself where the break goes (a *natural onset*).",
              model=model, report=ts.report(), cmin=int(copies.min()) if len(copies) else 0,
              cmax=int(copies.max()) if len(copies) else 0, natural=natural, n=len(ts.splits),
              natural_share=natural / max(len(ts.splits), 1))
    if source:
        p = Prose("Texts from the `{source}` source: {how}.", source=source, how=SOURCES.get(source, source)) + p
    return p + probe_prose(probe) if probe is not None else p


def probe_prose(probe: TextSet) -> Prose:
    """The natural-mode probe: the share of answers with exactly one paragraph break (Wilson interval)."""
    k, n = len(probe.splits), probe.n_attempted
    if n == 0:
        return Prose("")
    w = wilson(k, n)
    code = probe.dropped.get("code block", 0)
    return Prose("Asked for two paragraphs, it wrote exactly one paragraph break in {k} of {n} answers "
                 "({share}, 95 % Wilson interval); {code} answers contained a code block.",
                 k=k, n=n, share=f"{w.estimate:.0%} [{w.lo:.0%}, {w.hi:.0%}]", code=code)


def probe_row(probe: TextSet, model: str) -> dict[str, Any]:
    """One row of the prose-quality table of the size ladder."""
    k, n = len(probe.splits), probe.n_attempted
    w = wilson(k, n) if n else None
    return {"model": model, "answers": n, "two paragraphs": k, "share": w.estimate if w else math.nan,
            "lo": w.lo if w else math.nan, "hi": w.hi if w else math.nan, "code blocks": probe.dropped.get("code block", 0)}


def examples(rows: pd.DataFrame, ts: TextSet, which: Sequence[int],
             conditions: Sequence[str] = ("transferred", "same-prompt", "shuffled", "neutral", "full")) -> str:
    """Markdown, one table per text: paragraph 1, the original paragraph 2 and each condition's output."""
    def cell(t: str) -> str:  # model text, shown literally: no HTML, emphasis, links or line breaks
        t = str(t).strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for ch in "\\|*_`[]#$":
            t = t.replace(ch, "\\" + ch)
        return t.replace("\n", " ⏎ ")

    blocks = []
    for i in which:
        row = ts.texts.iloc[i]
        head = f"**Text {i}** (prompt {row.prompt_id}): A = *{cell(row.topic_a)}*, B = *{cell(row.topic_b)}*"
        lines = [head, "", "| | text | distance |", "|---|---|---|",
                 f"| paragraph 1 | {cell(ts.splits[i].para1)} | |",
                 f"| **original paragraph 2** | {cell(ts.splits[i].para2)} | 0 |"]
        for c in conditions:
            r = rows[(rows["text"] == i) & (rows["condition"] == c)]
            if len(r):
                lines.append(f"| {c} | {cell(r.iloc[0]['paragraph'])} | {r.iloc[0]['distance']:.2f} |")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


# ----------------------------------------------------------------------------- distances and the verdict
def condition_means(rows: pd.DataFrame, cfg: ScoreConfig = ScoreConfig()) -> pd.DataFrame:
    """Mean distance per condition with a cluster-bootstrap interval (clusters: prompts)."""
    out = []
    for cond in condition_order(list(rows["condition"].unique())):
        d = rows[rows["condition"] == cond]
        iv = bootstrap_mean(d["distance"], d["prompt"], n_boot=cfg.n_boot, seed=cfg.seed)
        out.append({"condition": cond, "n": len(d), "distance": iv.estimate, "lo": iv.lo, "hi": iv.hi})
    return pd.DataFrame(out)


def distance_chart(rows: pd.DataFrame, title: str = "") -> alt.FacetChart:
    """Per-condition violin of distances with every text as a point (tooltip: the output)."""
    df = rows[["text", "prompt", "condition", "distance", "paragraph"]].copy()
    df["paragraph"] = df["paragraph"].str.slice(0, 160).str.replace(r"[\x00-\x08\x0b-\x1f\x7f]", "", regex=True)
    order = condition_order(list(df["condition"].unique()))
    violin = alt.Chart(df).transform_density(
        "distance", as_=["distance", "density"], groupby=["condition"], extent=[0, 1.2]
    ).mark_area(orient="horizontal", opacity=0.35).encode(
        y=alt.Y("distance:Q", title="cosine distance to the original paragraph 2"),
        x=alt.X("density:Q", stack="center", axis=None, title=None),
        color=alt.Color("condition:N", sort=order, legend=None),
    )
    points = alt.Chart(df).mark_circle(size=14, opacity=0.5).encode(
        y="distance:Q", x=alt.X("jitter:Q", axis=None, title=None),
        color=alt.Color("condition:N", sort=order, legend=None),
        tooltip=["condition:N", "prompt:Q", "text:Q", alt.Tooltip("distance:Q", format=".3f"), "paragraph:N"],
    ).transform_calculate(jitter="(random() - 0.5) * 0.6")
    return alt.layer(violin, points, data=df).properties(width=70, height=280).facet(
        column=alt.Column("condition:N", sort=order, title=title or None)
    ).resolve_scale(x="independent")


def findings_display(dec: pd.DataFrame, by_model: bool = False) -> pd.DataFrame:
    """The decomposition as the chapter shows it: one row per component, numbers as text.

    ``by_model``: rows are named ``model: component`` (a :func:`~.planning_ladder.ladder_table`).
    """
    return pd.DataFrame({
        "component": dec["model"] + ": " + dec["component"] if by_model else dec["component"],
        "contrast (distance)": dec["contrast"],
        "estimate [95 % CI]": [ci(r.estimate, r.lo, r.hi) for r in dec.itertuples()],
        "MDE": dec["mde"].map(lambda x: f"{x:.3f}"), "texts": dec["n"], "prompts": dec["clusters"],
        "reading": [r.verdict if r.component == "claim" else r.reading for r in dec.itertuples()],
    }).set_index("component")


def decomposition_chart(dec: pd.DataFrame, title: str = "") -> alt.LayerChart:
    """Each component's estimate with its 95 % interval (bars), in cosine distance."""
    df = dec.assign(component=[NAMES.get(c, c) for c in dec["component"]])
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#555").encode(y="y:Q")
    return alt.layer(charts.bars(df, "component", "estimate", lo="lo", hi="hi", title=title,
                                 tooltip=["contrast", "mde", "reading"]), zero).properties(width=420, height=240)


def said(verdict: str) -> str:
    """A verdict as a predicate: "holds", "does not hold", "is undetermined at this sample"."""
    return verdict if verdict in ("holds", "does not hold") else f"is {verdict}"


def _component(dec: pd.DataFrame, name: str) -> pd.Series | None:
    hit = dec[dec["component"] == name]
    return hit.iloc[0] if len(hit) else None


def verdict_prose(dec: pd.DataFrame, model: str, margin: float) -> Prose:
    """The verdict: the paper's claim and each component, each from its interval, with n and the MDE."""
    claim = _component(dec, "claim")
    if claim is None:
        return Prose("No verdict: the generations lack the transferred or the neutral condition.")
    p = Prose("**The paper's claim** (the break's activations bring the continuation closer to the text's own "
              "paragraph 2 than a bare break does) **{verdict}** for {model}: neutral − transferred = {claim_ci} "
              "(n = {n} texts in {k} prompts; the smallest effect this sample detects with 80 % power is {mde:.3f}).",
              verdict=said(claim.verdict), model=model, claim_ci=ci(claim.estimate, claim.lo, claim.hi), n=int(claim.n),
              k=int(claim.clusters), mde=claim.mde)
    bullets = []
    values: dict[str, Any] = {}
    for name, a, b, meaning in COMPONENTS[1:4]:
        r = _component(dec, name)
        if r is None:
            continue
        key = name.replace("-", "_")
        values.update({f"{key}_ci": ci(r.estimate, r.lo, r.hi), f"{key}_mde": r.mde, f"{key}_reading": r.reading})
        bullets.append(f"- **{name}** ({a} − {b}: {meaning}): {{{key}_ci}}, MDE {{{key}_mde:.3f}}: **{{{key}_reading}}**")
    p = p + Prose("\n".join(bullets), **values) if bullets else p
    present = [n for n, *_ in COMPONENTS[1:4] if (r := _component(dec, n)) is not None and r.reading == "present"]
    absent = [n for n, *_ in COMPONENTS[1:4] if (r := _component(dec, n)) is not None and r.reading == "absent"]
    open_ = [n for n, *_ in COMPONENTS[1:4] if (r := _component(dec, n)) is not None and r.reading.startswith("undet")]
    parts = []
    if present:
        parts.append(f"The break carries {listing(present)}.")
    if "paragraph-specific" in present:
        parts.append("The own break beats another text of the same prompt: there is a plan for *this* paragraph, "
                     "beyond its format and topic.")
    elif "paragraph-specific" in open_:
        parts.append("Whether the break holds a plan for *this* paragraph, beyond its format and topic, is not "
                     "settled at this sample.")
    elif "paragraph-specific" in absent:
        parts.append("A plan specific to this paragraph, if any, is smaller than the margin: another text of the "
                     "same prompt does as well as the text's own break.")
    if absent:
        parts.append(f"Absent (interval below the margin of {{margin:.2f}}): {listing(absent)}.")
    if open_:
        parts.append(f"Undetermined at this n: {listing(open_)}.")
    return p + Prose(" ".join(parts), margin=margin)


# ----------------------------------------------------------------------------- retrieval, topics
def retrieval_display(ret: pd.DataFrame) -> pd.DataFrame:
    """Retrieval within a prompt as the chapter shows it."""
    return pd.DataFrame({
        "condition": ret["condition"], "nearest should be": ret["target"] + " paragraph 2",
        "hit@1": ret["hit_at_1"].map(lambda x: f"{x:.3f}"), "chance": ret["chance"].map(lambda x: f"{x:.3f}"),
        "hit@1 − chance [95 % CI]": [ci(r.excess, r.lo, r.hi) for r in ret.itertuples()],
        "MDE": ret["mde"].map(lambda x: f"{x:.3f}"), "permutation p": ret["p"].map(fmt_p), "reading": ret["reading"],
    }).set_index("condition")


def retrieval_prose(ret: pd.DataFrame) -> Prose:
    """Retrieval within a prompt: is the transferred output nearest to its own paragraph 2 among its copies?"""
    t = ret[ret["condition"] == "transferred"]
    if not len(t):
        return Prose("No retrieval test: it needs several texts per prompt.")
    r = t.iloc[0]
    lo, hi = int(r.copies_min), int(r.copies_max)
    m = f"{lo}" if lo == hi else f"{lo} to {hi}"
    p = Prose("**Retrieval within a prompt.** Among the {m} paragraphs 2 of its prompt, a transferred output is "
              "nearest to its own in {hit:.1%} of texts against {chance:.1%} by chance (excess {excess}, {p}): "
              "the paragraph-specific content is **{reading}** by this test.",
              m=m, hit=r.hit_at_1, chance=r.chance, excess=ci(r.excess, r.lo, r.hi), p=fmt_p(r.p),
              reading=r.reading)
    s = ret[ret["condition"] == "same-prompt"]
    if len(s):
        q = s.iloc[0]
        p = p + Prose("An output patched with another copy's break is nearest to *that donor's* paragraph 2 in "
                      "{hit2:.1%} of texts (chance {chance2:.1%}; {reading2}).", hit2=q.hit_at_1, chance2=q.chance,
                      reading2=q.reading)
    return p


def topic_prose(topics: pd.DataFrame) -> Prose:
    """Do outputs land on the text's topic, and do shuffled outputs carry the donor's topic?"""
    if not len(topics):
        return Prose("No topic check (the generations carry no topics).")
    parts = []
    values: dict[str, Any] = {}
    for i, r in enumerate(topics.itertuples()):
        values.update({f"rate{i}": r.rate, f"base{i}": r.neutral_rate, f"ci{i}": ci(r.estimate, r.lo, r.hi),
                       f"reading{i}": r.reading, f"what{i}": r.component})
        parts.append(f"*{{what{i}}}*: {{rate{i}:.1%}} of outputs are nearest to that topic's name, against "
                     f"{{base{i}:.1%}} of the neutral outputs of the same texts (difference {{ci{i}}}: **{{reading{i}}}**).")
    return Prose("**Topics.** " + " ".join(parts), **values)


# ----------------------------------------------------------------------------- power, subsets, calibration
def power_display(power: pd.DataFrame) -> pd.DataFrame:
    """The power table as shown: paired s.d., design effect, MDE at this n and at other n, n for the target."""
    cols = {c: c.replace("mde_at_", "MDE at n=") for c in power.columns if c.startswith("mde_at_")}
    out = power.rename(columns={"sd": "paired s.d.", "design_effect": "design effect", "mde": "MDE (this run)",
                                "n_for_target": "texts for MDE = target", **cols})
    return out.set_index("component").round(3)


def power_prose(power: pd.DataFrame, n_prompts: int, copies: int, target: float) -> Prose:
    """Why this n: the measured paired s.d. and clustering, the MDE reached, and the n a smaller target needs."""
    d = power[power["component"] != "full context"]
    if not len(d):
        return Prose("")
    worst = d.loc[d["mde"].idxmax()]
    return Prose("**Sample size.** This run used {n} texts ({k} prompts × up to {c} copies). The paired s.d. of the "
                 "components is {sd_lo:.3f} to {sd_hi:.3f}, and resampling prompts instead of texts inflates their "
                 "variance by a design effect of {de_lo:.2f} to {de_hi:.2f}. So each component is detected with 80 % "
                 "power when it is at least {mde_lo:.3f} to {mde_hi:.3f} (worst: {worst}); an effect of {target:.2f} "
                 "would need about {n_target} texts for the worst component.",
                 n=int(d["n"].max()), k=n_prompts, c=copies, sd_lo=d["sd"].min(), sd_hi=d["sd"].max(),
                 de_lo=d["design_effect"].min(), de_hi=d["design_effect"].max(), mde_lo=d["mde"].min(),
                 mde_hi=d["mde"].max(), worst=worst["component"], target=target, n_target=int(d["n_for_target"].max()))


def subset_prose(sub: pd.DataFrame, n_natural: int) -> Prose:
    """Does the natural-onset subset agree with the other texts?"""
    if not len(sub):
        return Prose("**Natural onsets.** {n} texts have a natural onset: too few (or all) to compare the subsets.",
                     n=n_natural)
    values: dict[str, Any] = {"n": int(sub["n_subset"].iloc[0]), "rest": int(sub["n_rest"].iloc[0])}
    parts = []
    for i, r in enumerate(sub.itertuples()):
        values.update({f"c{i}": r.component, f"d{i}": ci(r.difference, r.lo, r.hi), f"a{i}": r.agreement})
        parts.append(f"{{c{i}}} {{d{i}}} ({{a{i}}})")
    return Prose("**Natural onsets.** On the {n} texts where the model ended paragraph 1 itself, against the other "
                 "{rest}, the components differ by (natural − other, 95 % CI): " + "; ".join(parts) + ".", **values)


def calibration_prose(means: pd.DataFrame) -> Prose:
    """Where the transferred distance falls among the ``neutral+K`` conditions (how many true tokens it is worth)."""
    ks = means[means["condition"].str.startswith("neutral+")]
    t = means[means["condition"] == "transferred"]
    if not len(ks) or not len(t):
        return Prose("")
    td = float(t["distance"].iloc[0])
    below = ks[ks["distance"] >= td]
    worth = (f"more than {below['condition'].iloc[-1].split('+')[1]} true tokens" if len(below) == len(ks)
             else "less than one true token" if not len(below) else
             f"between {below['condition'].iloc[-1].split('+')[1]} and "
             f"{ks[ks['distance'] < td]['condition'].iloc[0].split('+')[1]} true tokens")
    return Prose("**Calibration.** The transferred mean distance ({td:.3f}) is that of a neutral prompt given {worth} "
                 "of paragraph 2 (means in the table; a description, not a test).", td=td, worth=worth)


# ----------------------------------------------------------------------------- sweep and attention
def sweep_chart(effects: pd.DataFrame, title: str = "") -> alt.LayerChart:
    """neutral − patched distance (95 % band) against the patched layer, one line per mode."""
    df = effects.rename(columns={"estimate": "neutral − patched distance"})
    line = charts.line_with_band(df, "layer", "neutral − patched distance", color="mode", lo="lo", hi="hi", title=title)
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#555", strokeDash=[4, 3]).encode(y="y:Q")
    return alt.layer(line, zero).properties(width=480, height=260)


def sweep_prose(effects: pd.DataFrame) -> Prose:
    """Which layer sets suffice: the first layer whose patch alone (and up to which) has a present effect."""
    parts, values = [], {}
    for mode in ("only L", "up to L"):
        d = effects[effects["mode"] == mode].sort_values("layer")
        first = d[d["verdict"] == "present"]
        key = mode.split()[0]
        values[key] = int(first["layer"].iloc[0]) if len(first) else "none"
        values[f"{key}_n"] = int(d["n"].max()) if len(d) else 0
        parts.append(f"*{mode}*: first layer with an effect whose interval excludes 0: {{{key}}}")
    return Prose("**Layer sweep** (n = {only_n} texts per point). " + "; ".join(parts) + ".", **values)


def attention_charts(grid: pd.DataFrame, summary: pd.DataFrame, title: str = "") -> alt.HConcatChart:
    """Left: mean attention map around the break. Right: attention to the break over the distance baseline per layer."""
    heat = alt.Chart(grid).mark_rect().encode(
        x=alt.X("key_offset:O", title="key offset from the break"),
        y=alt.Y("query_offset:O", title="query offset from the break", sort="ascending"),
        color=alt.Color("attention:Q", scale=alt.Scale(type="sqrt", scheme="viridis"), title="attention"),
        tooltip=["query_offset:O", "key_offset:O", alt.Tooltip("attention:Q", format=".4f")],
    ).properties(width=280, height=280, title="mean attention (layers, heads, texts)")
    d = summary[summary["layer"] != "mean"].assign(layer=lambda x: x["layer"].astype(int))
    base = alt.Chart(d).encode(x=alt.X("layer:Q", title="layer", axis=alt.Axis(format="d", tickMinStep=1)))
    ratio = alt.layer(
        base.mark_area(opacity=0.2).encode(y=alt.Y("lo:Q", scale=alt.Scale(type="log"),
                                                   title="attention to break / baseline"), y2="hi:Q"),
        base.mark_line(point=True).encode(y="ratio:Q", tooltip=["layer:Q", alt.Tooltip("ratio:Q", format=".2f"),
                                                                  alt.Tooltip("lo:Q", format=".2f"),
                                                                  alt.Tooltip("hi:Q", format=".2f"), "reading:N"]),
        alt.Chart(pd.DataFrame({"y": [1.0]})).mark_rule(color="#555", strokeDash=[4, 3]).encode(y="y:Q"),
    ).properties(width=300, height=280, title="attention to the break, by layer (95 % band)")
    return alt.hconcat(heat, ratio).properties(title=title)


def attention_prose(summary: pd.DataFrame) -> Prose:
    """The mean-over-layers ratio and the layers that attend to the break more or less than the baseline."""
    m = summary[summary["layer"] == "mean"]
    if not len(m):
        return Prose("")
    r = m.iloc[0]
    d = summary[summary["layer"] != "mean"]
    more = d[d["reading"] == "more than baseline"]["layer"].tolist()
    less = d[d["reading"] == "less than baseline"]["layer"].tolist()
    return Prose("**Attention.** Averaged over layers, the first tokens of paragraph 2 pay the break {ratio:.2f} times "
                 "[{lo:.2f}, {hi:.2f}] the attention they pay to as many tokens at the same distance (n = {n} texts). "
                 "Layers above the baseline: {more}; below: {n_less} of {n_layers}.",
                 ratio=r.ratio, lo=r.lo, hi=r.hi, n=int(r.n), more=", ".join(more) or "none", n_less=len(less),
                 n_layers=len(d))


# ----------------------------------------------------------------------------- size ladder
def ladder_chart(ladder: pd.DataFrame, title: str = "") -> alt.FacetChart:
    """Each component against model size (parameters, log scale), with 95 % intervals; one panel per component."""
    df = ladder[ladder["component"] != "full context"].assign(params_m=lambda x: x["params"] / 1e6)
    base = alt.Chart(df).encode(
        x=alt.X("params_m:Q", scale=alt.Scale(type="log"), title="parameters (millions)"),
        color=alt.Color("model:N", title="model"))
    layer = alt.layer(
        alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#555").encode(y="y:Q"),
        base.mark_rule(strokeWidth=2).encode(y=alt.Y("lo:Q", title="effect (cosine distance)"), y2="hi:Q"),
        base.mark_point(size=70, filled=True).encode(
            y="estimate:Q", tooltip=["model:N", "component:N", alt.Tooltip("estimate:Q", format=".3f"),
                                     alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f"), "n:Q",
                                     "reading:N"]),
    ).properties(width=150, height=220)
    order = [c for c, *_ in COMPONENTS if c != "full context"]
    return layer.facet(column=alt.Column("component:N", sort=order, title=title or None), data=df)


def ladder_prose(ladder: pd.DataFrame, probes: pd.DataFrame | None = None) -> Prose:
    """One sentence per model: n, the claim's verdict and the components present; and the prose-quality probe."""
    parts, values = [], {}
    for i, (model, d) in enumerate(ladder.groupby("model", sort=False)):
        claim = _component(d, "claim")
        if claim is None:
            continue
        present = [c for c in ("format", "topic", "paragraph-specific")
                   if (r := _component(d, c)) is not None and r.reading == "present"]
        values.update({f"m{i}": model, f"n{i}": int(claim.n), f"v{i}": said(claim.verdict),
                       f"c{i}": ci(claim.estimate, claim.lo, claim.hi), f"p{i}": listing(present) or "none"})
        parts.append(f"- **{{m{i}}}** (n = {{n{i}}}): the claim {{v{i}}} ({{c{i}}}); components present: {{p{i}}}.")
    p = Prose("\n".join(parts), **values)
    if probes is not None and len(probes):
        q, qv = [], {}
        for i, r in enumerate(probes.itertuples()):
            qv.update({f"q{i}": r.model, f"s{i}": f"{r.share:.0%} [{r.lo:.0%}, {r.hi:.0%}]", f"k{i}": int(r.answers)})
            q.append(f"{{q{i}}} {{s{i}}} of {{k{i}}}")
        p = p + Prose("Answers with exactly one paragraph break when asked for two paragraphs (95 % Wilson interval): "
                      + "; ".join(q) + ".", **qv)
    return p


def summary_prose(dec: pd.DataFrame, ret: pd.DataFrame, model: str) -> Prose:
    """The closing paragraph: what the run shows about the paper's claim and its competitors."""
    claim = _component(dec, "claim")
    if claim is None:
        return Prose("")
    fmt, topic, spec = (_component(dec, c) for c in ("format", "topic", "paragraph-specific"))
    t = ret[ret["condition"] == "transferred"]
    carried = [name for name, c in (("format", fmt), ("topic", topic)) if c is not None and c.reading == "present"]
    values = {"model": model, "claim": said(claim.verdict),
              "fmt": fmt.reading if fmt is not None else "not measured",
              "topic": topic.reading if topic is not None else "not measured",
              "spec": spec.reading if spec is not None else "not measured",
              "retr": t["reading"].iloc[0] if len(t) else "not measured",
              "carried": " and ".join(carried)}
    text = ("For {model}, the paper's claim {claim}; the format component is {fmt} and the topic component {topic}; "
            "the paragraph-specific component is {spec} by distance and {retr} by retrieval within a prompt.")
    if values["spec"] == "present":
        text += " So the break carries a plan for this particular paragraph, beyond its format and topic."
    elif claim.verdict == "holds" and carried:
        text += (" So the transplant works here, and what the controls can pin on it is its {carried}; a plan for this "
                 "particular paragraph beyond them is not shown by distance"
                 + (", though retrieval within a prompt finds some." if values["retr"] == "present" else "."))
    return Prose(text, **values)
