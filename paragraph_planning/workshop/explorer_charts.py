"""The explorers' charts (pure altair): one view for the live widgets, and the static fallbacks for the book.

Widgets in static HTML are frozen, so the rendered book shows these charts instead: their
dropdowns and sliders are vega parameters, interactive in the browser with no kernel. Each
``*_frame`` function turns results into a small tidy table (altair refuses more than 5,000 rows).
"""
from __future__ import annotations

import math
import textwrap
from typing import Any, Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from ..core.architectures import parse_name
from ..core.inference import group_summary

MAX_ROWS = 5000


# ============================================================================ neuron histograms
def neuron_key(name: str, neuron: int) -> str:
    """The label of one neuron, e.g. ``"layer 3 · mlp.pre_out · neuron 17"``."""
    parsed = parse_name(name)
    return f"layer {parsed[0]} · {parsed[1]} · neuron {neuron}" if parsed else f"{name} · neuron {neuron}"


def pick_neurons(stats: Mapping[str, Any], n: int = 24) -> list[tuple[str, int]]:
    """``n`` neurons worth a look for the static chart: per site, those whose peak lies farthest from their
    mean (in standard deviations), spread evenly over the sites."""
    names = list(stats)
    per = max(1, math.ceil(n / max(1, len(names))))
    picks = []
    for name in names:
        s = stats[name]
        gap = ((s.peak - s.mean).abs() / s.std.clamp_min(1e-12)).nan_to_num(0.0)
        picks += [(name, int(i)) for i in gap.topk(min(per, s.n_neurons)).indices]
    return picks[:n]


def histogram_frames(stats: Mapping[str, Any], picks: Sequence[tuple[str, int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bars (``key, start, end, count, share``) and marks (``key, mark, x``: mean, peak, zero) of the picked neurons."""
    bars, marks = [], []
    for name, i in picks:
        s = stats[name]
        counts = s.hist[i].double().cpu().numpy()
        edges = s.bin_edges[i].double().cpu().numpy()
        key = neuron_key(name, i)
        share = counts / max(counts.sum(), 1)
        bars.append(pd.DataFrame({"key": key, "start": edges[:-1], "end": edges[1:], "count": counts.astype(int),
                                  "share": share}))
        marks += [{"key": key, "mark": m, "x": float(v)} for m, v in
                  (("mean", s.mean[i]), ("peak", s.peak[i]), ("zero", 0.0))]
    out = pd.concat(bars, ignore_index=True)
    if len(out) > MAX_ROWS:
        raise ValueError(f"{len(picks)} neurons x {len(out) // max(1, len(picks))} bins is more than {MAX_ROWS} rows: "
                         "pick fewer neurons.")
    return out, pd.DataFrame(marks)


def neuron_histogram_chart(bars: pd.DataFrame, marks: pd.DataFrame, title: str = "") -> alt.LayerChart:
    """Histogram with its mean, peak and zero marked. One neuron per key; several keys get a dropdown."""
    keys = list(dict.fromkeys(bars["key"]))
    base_bars, base_marks = alt.Chart(bars), alt.Chart(marks)
    params = []
    if len(keys) > 1:
        pick = alt.param(name="neuron", value=keys[0], bind=alt.binding_select(options=keys, name="neuron "))
        params.append(pick)
        base_bars = base_bars.transform_filter(alt.datum.key == pick)
        base_marks = base_marks.transform_filter(alt.datum.key == pick)
    chart = alt.layer(
        base_bars.mark_bar(binSpacing=0, opacity=0.85).encode(
            x=alt.X("start:Q", title="activation"), x2="end:Q", y=alt.Y("count:Q", title="tokens"), y2=alt.datum(0),
            tooltip=[alt.Tooltip("start:Q", format=".4g"), alt.Tooltip("end:Q", format=".4g"), "count:Q",
                     alt.Tooltip("share:Q", format=".1%")]),
        base_marks.mark_rule(strokeDash=[5, 3], strokeWidth=2).encode(
            x="x:Q", color=alt.Color("mark:N", title="value", scale=alt.Scale(domain=["mean", "peak", "zero"],
                                                                            range=["#E69F00", "#D55E00", "#000000"])),
            tooltip=["mark:N", alt.Tooltip("x:Q", format=".4g")]),
        title=title or (keys[0] if len(keys) == 1 else "Activation histogram of one neuron"),
    )
    return chart.add_params(*params) if params else chart


# ============================================================================ ablated fraction
def ablation_frame(df: pd.DataFrame, metric: str = "loss") -> pd.DataFrame:
    """Mean ``metric`` over seeds with a Student-t interval per model, method and fraction."""
    need = {"model", "method", "frac", "seed", metric}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"The ablation table lacks {sorted(missing)}; it needs {sorted(need)}.")
    out = group_summary(df, ["model", "method", "frac"], metric)
    out.attrs["methods"] = list(dict.fromkeys(df["method"]))  # the table's own order (e.g. zero, mean, peak, resample)
    return out


def ablation_chart(summary: pd.DataFrame, metric: str = "loss", frac: float | None = None,
                   model: str | None = None, title: str = "") -> alt.VConcatChart:
    """Curves of ``metric`` against the ablated fraction per method (with intervals), and bars at one fraction.

    With ``frac`` (and ``model``) given, the chart shows that fraction (the widget's view); without, a
    slider and a model dropdown choose them in the browser (the static fallback).
    """
    fracs = sorted(summary["frac"].unique())
    models = list(dict.fromkeys(summary["model"]))
    methods = list(dict.fromkeys(summary.attrs.get("methods") or summary["method"]))
    data = summary if model is None else summary[summary["model"] == model]
    step = min(np.diff(fracs)) if len(fracs) > 1 else 1.0
    params, line_base, bar_base = [], alt.Chart(data), alt.Chart(data)
    if model is None and len(models) > 1:
        m = alt.param(name="model", value=models[0], bind=alt.binding_select(options=models, name="model "))
        params.append(m)
        line_base = line_base.transform_filter(alt.datum.model == m)
        bar_base = bar_base.transform_filter(alt.datum.model == m)
    if frac is None:
        f = alt.param(name="frac", value=fracs[len(fracs) // 2],
                      bind=alt.binding_range(min=fracs[0], max=fracs[-1], step=float(step), name="ablated fraction "))
        params.append(f)
        at = alt.expr.abs(alt.datum.frac - f) < step / 2
        rule = alt.Chart(pd.DataFrame({"x": [0]})).transform_calculate(fr=f.name).mark_rule(color="#555").encode(x="fr:Q")
    else:
        at = alt.expr.abs(alt.datum.frac - float(frac)) < step / 2
        rule = alt.Chart(pd.DataFrame({"fr": [float(frac)]})).mark_rule(color="#555").encode(x="fr:Q")
    color = alt.Color("method:N", title="method", scale=alt.Scale(domain=methods), legend=alt.Legend(symbolOpacity=1))
    tips = ["model:N", "method:N", alt.Tooltip("frac:Q", format=".3g"), alt.Tooltip("mean:Q", format=".4g"),
            alt.Tooltip("lo:Q", format=".4g"), alt.Tooltip("hi:Q", format=".4g"), "n:Q"]
    curves = alt.layer(
        line_base.mark_area(opacity=0.15).encode(x=alt.X("frac:Q", title="ablated fraction"), y="lo:Q", y2="hi:Q",
                                                 color=color),
        line_base.mark_line(point=True).encode(x="frac:Q", y=alt.Y("mean:Q", title=metric), color=color, tooltip=tips),
        rule,
    ).properties(width=420, height=220)
    bars = alt.layer(
        bar_base.transform_filter(at).mark_bar().encode(x=alt.X("method:N", title=None, sort=methods),
                                                        y=alt.Y("mean:Q", title=f"{metric} at this fraction"),
                                                        color=color, tooltip=tips),
        bar_base.transform_filter(at).mark_rule(color="#333").encode(x=alt.X("method:N", sort=methods), y="lo:Q",
                                                                     y2="hi:Q"),
    ).properties(width=420, height=160)
    chart = alt.vconcat(curves, bars, title=title or f"{metric} as more neurons are ablated (mean over seeds, t interval)")
    return chart.add_params(*params) if params else chart


# ============================================================================ chapter 01 texts
CONDITIONS_FIRST = ("full", "transferred", "shuffled", "neutral")
TEXT_COLUMNS = ("text", "condition", "output", "distance", "para1", "para2")


def _wrap(text: str, width: int = 90, lines: int = 6) -> str:
    wrapped = textwrap.wrap(" ".join(str(text).split()), width) or [""]
    return "\n".join(wrapped[:lines] + (["…"] if len(wrapped) > lines else []))


def texts_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per text and condition with a label per text and the three passages wrapped for display."""
    missing = set(TEXT_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"The chapter-01 table lacks {sorted(missing)}; it needs {list(TEXT_COLUMNS)}.")
    out = df[list(TEXT_COLUMNS)].copy()
    out["label"] = [f"text {t}: {' '.join(str(p).split())[:40]}…" for t, p in zip(out["text"], out["para1"])]
    for col in ("output", "para1", "para2"):
        out[f"{col}_wrapped"] = [_wrap(v) for v in out[col]]
    return out.reset_index(drop=True)


def condition_order(conditions: Sequence[str]) -> list[str]:
    """The chapter's reading order: full, transferred, shuffled, neutral, then the rest."""
    present = list(dict.fromkeys(conditions))
    return [c for c in CONDITIONS_FIRST if c in present] + [c for c in present if c not in CONDITIONS_FIRST]


def texts_chart(frame: pd.DataFrame, text: Any = None, condition: str | None = None, title: str = "") -> alt.VConcatChart:
    """Distances per condition (every text in grey, the chosen one in colour) and the chosen text's passages.

    With ``text`` and ``condition`` given, the chart shows them (the widget's view); without, a
    dropdown and radio buttons choose them in the browser (the static fallback).
    """
    labels = list(dict.fromkeys(frame["label"]))
    conds = condition_order(frame["condition"])
    params = []
    if text is None:
        t = alt.param(name="text", value=labels[0], bind=alt.binding_select(options=labels, name="text "))
        c = alt.param(name="condition", value=conds[0], bind=alt.binding_radio(options=conds, name="condition "))
        params += [t, c]
        is_text, is_cond = alt.datum.label == t, alt.datum.condition == c
    else:
        label = frame.loc[frame["text"] == text, "label"].iloc[0]
        is_text, is_cond = alt.datum.label == label, alt.datum.condition == (condition or conds[0])
    base = alt.Chart(frame)
    strip = alt.layer(
        base.mark_tick(color="#bbb", thickness=1).encode(x=alt.X("distance:Q", title="cosine distance to the original "
                                                                 "paragraph 2"), y=alt.Y("condition:N", sort=conds,
                                                                                         title=None)),
        base.transform_filter(is_text).mark_point(filled=True, size=90).encode(
            x="distance:Q", y=alt.Y("condition:N", sort=conds),
            color=alt.condition(is_cond, alt.value("#D55E00"), alt.value("#0072B2")),
            tooltip=["condition:N", alt.Tooltip("distance:Q", format=".3f")]),
    ).properties(width=440, height=max(90, 22 * len(conds)))
    passages = frame.melt(id_vars=["label", "condition", "distance"],
                          value_vars=["para1_wrapped", "para2_wrapped", "output_wrapped"], var_name="part",
                          value_name="passage")
    passages["row"] = passages["part"].map({"para1_wrapped": "paragraph 1", "para2_wrapped": "original paragraph 2",
                                            "output_wrapped": "output"})
    keep = (passages["part"] == "output_wrapped") | ~passages.duplicated(["label", "part"])
    passages = passages[keep]
    shown = alt.Chart(passages).transform_filter(is_text).transform_filter(
        (alt.datum.part != "output_wrapped") | is_cond)
    text_rows = alt.layer(
        shown.mark_text(align="left", baseline="top", fontWeight="bold", dy=-14).encode(
            x=alt.value(0), y=alt.Y("row:N", sort=["paragraph 1", "original paragraph 2", "output"], axis=None),
            text="row:N"),
        shown.mark_text(align="left", baseline="top", lineBreak="\n", fontSize=12).encode(
            x=alt.value(0), y=alt.Y("row:N", sort=["paragraph 1", "original paragraph 2", "output"], axis=None),
            text="passage:N"),
    ).properties(width=640, height=330)
    chart = alt.vconcat(strip, text_rows, title=title or "One text under each condition")
    return chart.add_params(*params) if params else chart
