"""Chart builders return valid Vega-Lite with tooltips; the book renderer is safe and deterministic."""
from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd
import pytest
import torch

from paragraph_planning import charts as plots
from paragraph_planning.book import plots as render
from paragraph_planning.core.inference import group_summary

rng = np.random.default_rng(0)
RAW = pd.DataFrame({"group": np.repeat(["forget", "retain"], 6000), "value": rng.normal(size=12000),
                    "method": np.tile(["zero", "mean", "peak"], 4000)})  # more rows than altair allows


def _has_tooltip(spec: dict) -> bool:
    return '"tooltip"' in json.dumps(spec)


def _summary() -> pd.DataFrame:
    df = pd.DataFrame({"layer": np.tile(np.arange(6), 50), "method": np.repeat(["zero", "mean"], 150),
                       "loss": rng.normal(size=300)})
    return group_summary(df, ["method", "layer"], "loss")


BUILDERS = {
    "line_with_band": lambda: plots.line_with_band(_summary(), "layer", "mean", "method", "lo", "hi"),
    "line": lambda: plots.line_with_band(_summary(), "layer", "mean"),
    "heatmap": lambda: plots.heatmap(plots.to_frame(torch.randn(30, 80), ["layer", "pos"], "norm"), "pos", "layer", "norm"),
    "heatmap_diverging": lambda: plots.heatmap(plots.to_frame(torch.randn(4, 5), ["a", "b"]), "a", "b", "value", diverging=True),
    "histogram_with_marks": lambda: plots.histogram_with_marks(RAW, "value", {"threshold": 1.0, "mean": 0.0}, "group"),
    "histogram": lambda: plots.histogram_with_marks(RAW, "value", density=True),
    "box": lambda: plots.box(RAW, "group", "value"),
    "box_grouped": lambda: plots.box(RAW, "group", "value", "method", horizontal=True),
    "scatter": lambda: plots.scatter(_summary(), "layer", "mean", "method", size="n"),
    "bars": lambda: plots.bars(_summary(), "layer", "mean", "method", "lo", "hi"),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_builder_gives_valid_spec_with_tooltips(name):
    chart = BUILDERS[name]()
    assert isinstance(chart, (alt.Chart, alt.LayerChart))
    spec = chart.to_dict()  # validates against the Vega-Lite schema, raises MaxRowsError above 5000 rows
    assert _has_tooltip(spec)
    assert spec["$schema"].endswith(f"{alt.SCHEMA_VERSION}.json")


def test_heatmap_fits_the_text_column():
    wide = plots.heatmap(plots.to_frame(torch.rand(30, 150), ["layer", "pos"]), "pos", "layer", "value").to_dict()
    assert wide["width"] == 440 and wide["height"] == 320
    small = plots.heatmap(plots.to_frame(torch.rand(2, 5), ["layer", "pos"]), "pos", "layer", "value").to_dict()
    assert small["width"] == {"step": 16}


def test_builders_aggregate_raw_rows():
    data = plots.histogram_with_marks(RAW, "value", bins=30).to_dict()
    assert len(json.dumps(data)) < 20000  # 30 bins, not 12,000 rows
    with pytest.raises(alt.MaxRowsError):
        alt.Chart(RAW).mark_point().encode(x="value").to_dict()


def test_box_summary_values():
    df = pd.DataFrame({"g": ["a"] * 5, "v": [1.0, 2.0, 3.0, 4.0, 100.0]})
    data = next(iter(plots.box(df, "g", "v").to_dict()["datasets"].values()))[0]
    assert data["median"] == 3.0 and data["q1"] == 2.0 and data["q3"] == 4.0
    assert data["upper"] == 4.0 and data["n"] == 5  # 100 is beyond the Tukey whisker


def test_to_frame_and_summarise():
    df = plots.to_frame(torch.arange(6.0).reshape(2, 3), ["layer", "pos"], "x", token=("pos", ["a", "b", "c"]))
    assert list(df.columns) == ["layer", "pos", "x", "token"] and len(df) == 6
    assert df.loc[(df.layer == 1) & (df.pos == 2), ["x", "token"]].values.tolist() == [[5.0, "c"]]
    with pytest.raises(ValueError):
        plots.to_frame(torch.zeros(2, 3), ["only_one"])
    s = group_summary(pd.DataFrame({"g": ["a", "a", "b"], "v": [1.0, 3.0, 5.0]}), "g", "v")
    assert s.set_index("g").loc["a", "mean"] == 2.0 and s.set_index("g").loc["a", "lo"] < 2.0 < s.set_index("g").loc["a", "hi"]


def test_theme_is_enabled_on_import():
    assert alt.theme.active == plots.THEME
    assert plots.PALETTE[0] in json.dumps(alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x").to_dict())


def test_book_renderer_html_is_safe_and_stable(monkeypatch):
    monkeypatch.setenv(render.BOOK_ENV, "1")
    render.setup()
    assert alt.renderers.active == render.RENDERER
    nasty = pd.DataFrame({"token": ["</script><script>alert(1)</script>", "<!--"], "v": [1, 2]})
    spec = alt.Chart(nasty).mark_bar().encode(x="token", y="v").to_dict()
    a, b = render.embed_html(spec), render.embed_html(spec)
    script = a.split("<script>", 1)[1].rsplit("</script>", 1)[0]
    assert "</" not in script and "<!--" not in script  # nothing closes the script element early
    ids = [x.split('"')[0] for x in (a.split('id="')[1], b.split('id="')[1])]
    assert ids[0].startswith("pp-vega-") and ids[1] == ids[0] + "-1"  # stable, and unique within a page
    bundle = alt.Chart(nasty).mark_bar().encode(x="token", y="v")._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert 'class="pp-vega"' in bundle["text/html"] and "vegaEmbed" in bundle["text/html"]
    monkeypatch.delenv(render.BOOK_ENV)
    render.setup()
    assert alt.renderers.active == "default"


def test_top_tokens_table():
    class Tok:
        def decode(self, ids):
            return f"t{ids[0]}"

    class M:
        tokenizer = Tok()

    logits = torch.tensor([[[0.0, 3.0, 1.0, 2.0]]])
    table = plots.top_tokens(M(), logits, k=2)
    assert table["token"].tolist() == ["'t1'", "'t3'"] and table["prob"].iloc[0] > table["prob"].iloc[1]


def test_side_by_side_charts_share_one_legend_selection_without_a_warning():
    import warnings

    render.setup()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        render.setup()
        spec = alt.hconcat(BUILDERS["line_with_band"](), BUILDERS["line_with_band"]()).to_dict()
    assert len([p for p in spec.get("params", []) if "select" in p]) == 1
