"""Live explorers (ipywidgets) for people running the notebooks, each with a static fallback for the book.

One call per notebook cell: :func:`explore_neurons`, :func:`explore_ablation`, :func:`explore_texts`
return the live explorer in a kernel and the static altair chart (:mod:`.explorer_charts`, still
interactive in the browser) when the book runner executes the chapter (``$PARAGRAPH_PLANNING_BOOK``
set), since widgets in static HTML are frozen. Pass ``static=True`` or ``False`` to choose.

Each explorer keeps its controls in ``.controls``, its whole widget in ``.widget`` and draws into an
``Output``; :meth:`Explorer.chart` is the current chart (tests build explorers with no display).
"""
from __future__ import annotations

import html
import os
from typing import Any, Mapping

import altair as alt
import ipywidgets as widgets
import pandas as pd

from .explorer_charts import (
    ablation_chart,
    ablation_frame,
    condition_order,
    histogram_frames,
    neuron_histogram_chart,
    neuron_key,
    pick_neurons,
    texts_chart,
    texts_frame,
)

BOOK_ENV = "PARAGRAPH_PLANNING_BOOK"
"""Set by the book runner in the kernels it starts (the same variable as ``paragraph_planning.book.plots``)."""


def in_book() -> bool:
    """Whether this kernel was started by the book runner (the page will be static HTML)."""
    return bool(os.environ.get(BOOK_ENV))


class Explorer:
    """Controls, an output area, and :meth:`chart` drawn again whenever a control changes."""

    def __init__(self, controls: list[widgets.Widget], extra: widgets.Widget | None = None):
        self.controls = controls
        self.output = widgets.Output()
        self.extra = extra
        rows: list[widgets.Widget] = [widgets.HBox(controls)]
        if extra is not None:
            rows.append(extra)
        self.widget = widgets.VBox([*rows, self.output])
        for c in controls:
            c.observe(lambda _change: self.redraw(), names="value")
        self.redraw()

    def chart(self) -> alt.TopLevelMixin:
        raise NotImplementedError

    def caption(self) -> str:
        """HTML shown above the chart (nothing by default)."""
        return ""

    def redraw(self) -> None:
        """Draw the current chart (and caption) into the output area."""
        from IPython.display import display

        if self.extra is not None:
            self.extra.value = self.caption()
        self.output.clear_output(wait=True)
        with self.output:
            display(self.chart())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class NeuronExplorer(Explorer):
    """Pick a site (layer) and a neuron: its activation histogram with mean, peak and zero marked."""

    def __init__(self, stats: Mapping[str, Any]):
        if not stats:
            raise ValueError("No statistics to explore: pass the dict that collect_stats returns.")
        self.stats = stats
        first = next(iter(stats.values()))
        self.site = widgets.Dropdown(options=[(neuron_key(n, 0).rsplit(" · ", 1)[0], n) for n in stats],
                                     description="layer")
        self.neuron = widgets.BoundedIntText(value=0, min=0, max=first.n_neurons - 1, description="neuron")
        self.site.observe(self._limit, names="value")
        super().__init__([self.site, self.neuron], widgets.HTML())

    def _limit(self, _change: Any) -> None:
        self.neuron.max = self.stats[self.site.value].n_neurons - 1

    def caption(self) -> str:
        s, i = self.stats[self.site.value], self.neuron.value
        return (f"mean {float(s.mean[i]):.4g} · peak {float(s.peak[i]):.4g} · std {float(s.std[i]):.4g} · "
                f"{s.count} tokens")

    def chart(self) -> alt.LayerChart:
        bars, marks = histogram_frames(self.stats, [(self.site.value, self.neuron.value)])
        return neuron_histogram_chart(bars, marks)


class AblationExplorer(Explorer):
    """Slide the ablated fraction: every method's damage there, with intervals over seeds."""

    def __init__(self, df: pd.DataFrame, metric: str = "loss"):
        metrics = [m for m in ("loss", "top1", "damage", "top1_drop", "top10", "top5") if m in df.columns]
        if metric not in metrics:
            raise ValueError(f"Unknown metric {metric!r}. Valid for this table: {', '.join(metrics)}.")
        self.df = df
        self.model = widgets.Dropdown(options=list(dict.fromkeys(df["model"])), description="model")
        self.metric = widgets.Dropdown(options=metrics, value=metric, description="metric")
        fracs = sorted(df["frac"].unique())
        self.frac = widgets.SelectionSlider(options=[(f"{f:.3g}", f) for f in fracs], value=fracs[len(fracs) // 2],
                                            description="ablated")
        super().__init__([self.model, self.metric, self.frac])

    def chart(self) -> alt.VConcatChart:
        summary = ablation_frame(self.df, self.metric.value)
        return ablation_chart(summary, self.metric.value, frac=self.frac.value, model=self.model.value)


class TextExplorer(Explorer):
    """Choose a text and a condition: paragraph 1, the original paragraph 2 and the output, with its distance."""

    def __init__(self, df: pd.DataFrame):
        self.frame = texts_frame(df)
        texts = list(dict.fromkeys(self.frame["text"]))
        labels = dict(zip(self.frame["text"], self.frame["label"]))
        self.text = widgets.Dropdown(options=[(labels[t], t) for t in texts], description="text")
        self.condition = widgets.ToggleButtons(options=condition_order(self.frame["condition"]), description="condition")
        super().__init__([self.text, self.condition], widgets.HTML())

    def caption(self) -> str:
        rows = self.frame[self.frame["text"] == self.text.value]
        row = rows[rows["condition"] == self.condition.value]
        if row.empty:
            return f"<p>No output for condition {html.escape(self.condition.value)} on this text.</p>"
        r = row.iloc[0]
        box = "<div style='margin:4px 0'><b>{}</b><br>{}</div>"
        return (box.format("Paragraph 1", html.escape(str(r.para1))) +
                box.format("Original paragraph 2", html.escape(str(r.para2))) +
                box.format(f"Output ({html.escape(r.condition)}), distance {r.distance:.3f}", html.escape(str(r.output))))

    def chart(self) -> alt.VConcatChart:
        return texts_chart(self.frame, text=self.text.value, condition=self.condition.value)


# ----------------------------------------------------------------------------- one call per cell
def _static(static: bool | None) -> bool:
    return in_book() if static is None else static


def explore_neurons(stats: Mapping[str, Any], *, static: bool | None = None, n_static: int = 24) -> Any:
    """The neuron-histogram explorer (live), or in the book a chart of ``n_static`` picked neurons with a dropdown."""
    if _static(static):
        bars, marks = histogram_frames(stats, pick_neurons(stats, n_static))
        return neuron_histogram_chart(bars, marks)
    return NeuronExplorer(stats)


def explore_ablation(df: pd.DataFrame, metric: str = "loss", *, static: bool | None = None) -> Any:
    """The ablated-fraction explorer (live), or in the book the same chart with a slider (static)."""
    if _static(static):
        return ablation_chart(ablation_frame(df, metric), metric)
    return AblationExplorer(df, metric)


def explore_texts(df: pd.DataFrame, *, static: bool | None = None) -> Any:
    """The chapter-01 explorer (live), or in the book the same view with a dropdown and radio buttons (static)."""
    if _static(static):
        return texts_chart(texts_frame(df))
    return TextExplorer(df)
