"""Charts: one altair theme and shared chart builders (pure altair; rendering is the book's job).

Importing this module registers and enables the ``paragraph_planning`` theme. How charts are
rendered (the book's self-contained renderer, or JupyterLab's own) is set by
:func:`paragraph_planning.book.plots.setup`.

Builders take a tidy (long) DataFrame and return an ``alt.Chart``/``alt.LayerChart`` with
tooltips. altair refuses more than 5,000 rows: aggregate first (:func:`summarise`, or the
builders that bin/summarise raw values themselves: :func:`histogram_with_marks`, :func:`box`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

THEME = "paragraph_planning"

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
"""Okabe-Ito colours (distinguishable with the common colour-vision deficiencies)."""


@alt.theme.register(THEME, enable=True)
def theme() -> alt.theme.ThemeConfig:
    """The book's look: readable fonts, light grids, colour-blind-safe categories."""
    font = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
    return {
        "config": {
            # ~680 px fit the book's text column, legend included
            "view": {"continuousWidth": 440, "continuousHeight": 260, "stroke": None},
            "font": font,
            "title": {"fontSize": 15, "fontWeight": 600, "anchor": "start", "offset": 10},
            "axis": {"labelFontSize": 12, "titleFontSize": 13, "gridColor": "#e8e8e8",
                     "domainColor": "#888", "tickColor": "#888", "titleFontWeight": 500},
            "legend": {"labelFontSize": 12, "titleFontSize": 13, "orient": "right", "labelLimit": 180},
            "range": {"category": PALETTE},
            "line": {"strokeWidth": 2},
            "point": {"size": 36, "filled": True},
            "bar": {"color": PALETTE[0]},
            "rect": {"stroke": None},
        }
    }


# ----------------------------------------------------------------------------- data helpers
def to_frame(values: Any, dims: Sequence[str], value: str = "value", **labels: tuple[str, Sequence[Any]]) -> pd.DataFrame:
    """A tensor/array as a long DataFrame: one column per dimension plus ``value``.

    ``labels`` add columns looked up from one dimension, e.g.
    ``to_frame(norms, ["layer", "pos"], "norm", token=("pos", tokens))``.
    """
    arr = values.detach().float().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    if arr.ndim != len(dims):
        raise ValueError(f"values have {arr.ndim} dimensions, but {len(dims)} names were given: {list(dims)}")
    index = pd.MultiIndex.from_product([range(n) for n in arr.shape], names=list(dims))
    df = pd.DataFrame({value: arr.reshape(-1)}, index=index).reset_index()
    for column, (dim, table) in labels.items():
        if dim not in dims:
            raise ValueError(f"label {column!r} refers to {dim!r}, which is not one of {list(dims)}")
        df[column] = [table[i] for i in df[dim]]
    return df


def top_tokens(model: Any, logits: Any, k: int = 5) -> pd.DataFrame:
    """The ``k`` most likely next tokens after the last position of ``logits`` ``[batch, pos, vocab]``."""
    probs = logits[0, -1].float().softmax(-1)
    p, ids = probs.topk(k)
    return pd.DataFrame({
        "rank": range(1, k + 1),
        "token": [repr(model.tokenizer.decode([int(i)])) for i in ids],
        "prob": [round(float(x), 4) for x in p],
    })


# ----------------------------------------------------------------------------- builders
def _title(field: str) -> str:
    return field.replace("_", " ")


def _tooltips(df: pd.DataFrame, fields: Sequence[str | None], extra: Sequence[str] | None) -> list[alt.Tooltip]:
    out, seen = [], set()
    for f in [*fields, *(extra or [])]:
        if f is None or f in seen or f not in df.columns:
            continue
        seen.add(f)
        kind = "quantitative" if pd.api.types.is_float_dtype(df[f]) else None
        out.append(alt.Tooltip(f, format=".4g") if kind else alt.Tooltip(f))
    return out


def line_with_band(
    df: pd.DataFrame, x: str, y: str, color: str | None = None, lo: str | None = None, hi: str | None = None,
    *, title: str = "", tooltip: Sequence[str] | None = None, x_type: str = "Q", points: bool = True,
) -> alt.LayerChart:
    """Lines (one per ``color``) with an optional ``lo``–``hi`` band; click the legend to highlight."""
    base = alt.Chart(df, title=title)
    axis = alt.Axis(format="d", tickMinStep=1) if x_type == "Q" and pd.api.types.is_integer_dtype(df[x]) else alt.Axis()
    enc: dict[str, Any] = {"x": alt.X(f"{x}:{x_type}", title=_title(x), axis=axis)}
    layers = []
    select = None
    if color is not None:
        select = alt.selection_point(fields=[color], bind="legend")
        enc["color"] = alt.Color(f"{color}:N", title=_title(color))
        enc["opacity"] = alt.condition(select, alt.value(1.0), alt.value(0.15))
    if lo is not None and hi is not None:
        band_enc = {**enc, "opacity": alt.condition(select, alt.value(0.2), alt.value(0.04)) if select else alt.value(0.2)}
        layers.append(base.mark_area().encode(y=alt.Y(f"{lo}:Q", title=_title(y)), y2=f"{hi}:Q", **band_enc))
    line = base.mark_line(point=points).encode(
        y=alt.Y(f"{y}:Q", title=_title(y)), tooltip=_tooltips(df, [color, x, y, lo, hi], tooltip), **enc
    )
    layers.append(line)
    chart = alt.layer(*layers)
    return chart.add_params(select) if select is not None else chart


def heatmap(
    df: pd.DataFrame, x: str, y: str, value: str, tooltip: Sequence[str] | None = None,
    *, title: str = "", diverging: bool = False, scheme: str | None = None, log: bool = False,
    width: int | None = None, height: int | None = None,
) -> alt.Chart:
    """A rect heatmap of ``value`` over ordinal ``x``/``y`` (``diverging``: a red-blue scale centred on 0).

    Categories keep the data's order; ``log``: a log colour scale (positive values).
    """
    scale: dict[str, Any] = {"scheme": scheme or ("redblue" if diverging else "viridis")}
    if diverging:
        scale.update(domainMid=0, reverse=True)
    if log:
        scale["type"] = "log"
    axis = alt.Axis(labelOverlap="greedy", labelAngle=0, labelSeparation=4)
    chart = alt.Chart(df, title=title).mark_rect().encode(
        x=alt.X(f"{x}:O", title=_title(x), sort=None, axis=axis),
        y=alt.Y(f"{y}:O", title=_title(y), sort=None, axis=axis),
        color=alt.Color(f"{value}:Q", title=_title(value), scale=alt.Scale(**scale)),
        tooltip=_tooltips(df, [y, x, value], tooltip),
    )
    # 16 px per cell while that fits the text column, then squeeze the cells
    nx, ny = df[x].nunique(), df[y].nunique()
    return chart.properties(width=width or (alt.Step(16) if 16 * nx <= 440 else 440),
                            height=height or (alt.Step(16) if 16 * ny <= 320 else 320))


def histogram_with_marks(
    df: pd.DataFrame, value: str, marks: Mapping[str, float] | None = None, color: str | None = None,
    *, bins: int = 40, title: str = "", density: bool = False,
) -> alt.LayerChart:
    """Histogram of raw ``value``s (binned here, so any number of rows) with labelled vertical marks.

    ``marks``: ``{"label": x}``, e.g. a threshold or the mean. ``color``: overlaid groups.
    """
    values = df[value].to_numpy(dtype=float)
    edges = np.histogram_bin_edges(values[np.isfinite(values)], bins=bins)
    groups = [(None, df)] if color is None else list(df.groupby(color, sort=True, observed=True))
    rows = []
    for key, part in groups:
        counts, _ = np.histogram(part[value].to_numpy(dtype=float), bins=edges)
        share = counts / max(counts.sum(), 1)
        for i, c in enumerate(counts):
            rows.append({"start": edges[i], "end": edges[i + 1], "count": int(c), "share": float(share[i]),
                         **({color: key} if color else {})})
    binned = pd.DataFrame(rows)
    y = "share" if density else "count"
    enc: dict[str, Any] = {}
    if color is not None:
        enc["color"] = alt.Color(f"{color}:N", title=_title(color))
    bars = alt.Chart(binned, title=title).mark_bar(opacity=0.6 if color else 0.9, binSpacing=0).encode(
        x=alt.X("start:Q", title=_title(value)), x2="end:Q",
        y=alt.Y(f"{y}:Q", title=y, stack=None),
        tooltip=[*([alt.Tooltip(f"{color}:N")] if color else []), alt.Tooltip("start:Q", format=".4g"),
                 alt.Tooltip("end:Q", format=".4g"), alt.Tooltip("count:Q"), alt.Tooltip("share:Q", format=".1%")],
        **enc,
    )
    if not marks:
        return alt.layer(bars)
    mark_df = pd.DataFrame({"mark": list(marks), "x": [float(v) for v in marks.values()]})
    rules = alt.Chart(mark_df).mark_rule(strokeDash=[5, 3], color="#333", strokeWidth=1.5).encode(
        x="x:Q", tooltip=[alt.Tooltip("mark:N"), alt.Tooltip("x:Q", format=".4g")]
    )
    text = alt.Chart(mark_df).mark_text(align="left", dx=4, dy=-6, baseline="top", fontSize=11).encode(
        x="x:Q", y=alt.value(0), text="mark:N"
    )
    return alt.layer(bars, rules, text)


def box(
    df: pd.DataFrame, group: str, value: str, color: str | None = None,
    *, title: str = "", whisker: float = 1.5, horizontal: bool = False,
) -> alt.LayerChart:
    """Box plots of raw ``value`` per ``group``, summarised here (median, quartiles, Tukey whiskers, n)."""
    color = color or group
    keys = [group] if color == group else [group, color]
    rows = []
    for key, part in df.groupby(keys, sort=True, observed=True):
        v = part[value].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        reach = whisker * (q3 - q1)
        inside = v[(v >= q1 - reach) & (v <= q3 + reach)]
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), "q1": q1, "median": med, "q3": q3, "lower": inside.min(),
                     "upper": inside.max(), "mean": v.mean(), "n": int(v.size)})
    stats_df = pd.DataFrame(rows)
    g, q = ("y", "x") if horizontal else ("x", "y")
    tips = [alt.Tooltip(f"{k}:N") for k in keys] + [
        alt.Tooltip(f"{f}:Q", format=".4g") for f in ("median", "q1", "q3", "lower", "upper", "mean")
    ] + [alt.Tooltip("n:Q")]
    base = alt.Chart(stats_df, title=title).encode(
        **{g: alt.X(f"{group}:N", title=_title(group), sort=None) if g == "x" else
           alt.Y(f"{group}:N", title=_title(group), sort=None)},
        color=alt.Color(f"{color}:N", title=_title(color), legend=None if color == group else alt.Legend()),
        tooltip=tips,
    )
    Q = alt.X if q == "x" else alt.Y
    offset = {} if color == group else {f"{g}Offset": alt.XOffset(f"{color}:N") if g == "x" else alt.YOffset(f"{color}:N")}
    whiskers = base.mark_rule().encode(**{q: Q("lower:Q", title=_title(value)), f"{q}2": "upper:Q"}, **offset)
    boxes = base.mark_bar(size=18, opacity=0.85).encode(**{q: Q("q1:Q"), f"{q}2": "q3:Q"}, **offset)
    medians = base.mark_tick(color="white", thickness=2, size=18).encode(**{q: Q("median:Q")}, **offset)
    return alt.layer(whiskers, boxes, medians)


def scatter(
    df: pd.DataFrame, x: str, y: str, color: str | None = None, tooltip: Sequence[str] | None = None,
    *, title: str = "", size: str | None = None,
) -> alt.Chart:
    """Scatter plot with tooltips; drag to pan, scroll to zoom, click the legend to highlight."""
    enc: dict[str, Any] = {
        "x": alt.X(f"{x}:Q", title=_title(x)), "y": alt.Y(f"{y}:Q", title=_title(y)),
        "tooltip": _tooltips(df, [color, x, y, size], tooltip),
    }
    chart = alt.Chart(df, title=title).mark_point(filled=True, opacity=0.75)
    if size is not None:
        enc["size"] = alt.Size(f"{size}:Q", title=_title(size))
    if color is not None:
        select = alt.selection_point(fields=[color], bind="legend")
        enc["color"] = alt.Color(f"{color}:N", title=_title(color))
        enc["opacity"] = alt.condition(select, alt.value(0.8), alt.value(0.08))
        chart = chart.add_params(select)
    return chart.encode(**enc).interactive()


def bars(
    df: pd.DataFrame, x: str, y: str, color: str | None = None, lo: str | None = None, hi: str | None = None,
    *, title: str = "", tooltip: Sequence[str] | None = None,
) -> alt.LayerChart:
    """Bars of ``y`` per category ``x`` (grouped by ``color``) with optional ``lo``–``hi`` error bars."""
    offset = {"xOffset": alt.XOffset(f"{color}:N")} if color else {}
    col = {"color": alt.Color(f"{color}:N", title=_title(color))} if color else {}
    base = alt.Chart(df, title=title).encode(x=alt.X(f"{x}:N", title=_title(x), sort=None), **offset)
    layers = [base.mark_bar().encode(y=alt.Y(f"{y}:Q", title=_title(y)),
                                     tooltip=_tooltips(df, [x, color, y, lo, hi], tooltip), **col)]
    if lo is not None and hi is not None:
        layers.append(base.mark_rule(color="#333").encode(y=f"{lo}:Q", y2=f"{hi}:Q"))
    return alt.layer(*layers)
