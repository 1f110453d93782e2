"""Rendering charts in the book: a self-contained altair renderer and :func:`setup`.

Chapters call :func:`setup` once; in the book it enables the book renderer, which writes a
``<div>`` plus a ``vegaEmbed`` call into the notebook. The book loads one local vega bundle on the
pages that hold charts (see :mod:`paragraph_planning.book.sphinx`), so the HTML fetches nothing from
a CDN. Chart builders live in :mod:`paragraph_planning.charts`.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any, Mapping

import altair as alt

from ..charts import THEME

RENDERER = "paragraph_planning"
BOOK_ENV = "PARAGRAPH_PLANNING_BOOK"
"""Set (to ``1``) by the book runner for the kernels it starts: charts are written for the book."""


_seen: dict[str, int] = {}


def _element_id(spec_json: str) -> str:
    """Stable element id from the spec (a repeat of the same chart in one kernel gets a suffix)."""
    digest = hashlib.sha1(spec_json.encode()).hexdigest()[:12]
    n = _seen.get(digest, 0)
    _seen[digest] = n + 1
    return f"pp-vega-{digest}" + (f"-{n}" if n else "")


def embed_html(spec: Mapping[str, Any]) -> str:
    """HTML for one chart: a div and a ``vegaEmbed`` call that waits for the shared bundle.

    The JSON is sorted (byte-identical rebuilds) and ``</`` / ``<!--`` are escaped so the spec
    cannot close the ``<script>`` element.
    """
    spec_json = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    element = _element_id(spec_json)
    safe = spec_json.replace("</", "<\\/").replace("<!--", "<\\!--")
    return (
        f'<div id="{element}" class="pp-vega"></div>\n'
        "<script>(function () {\n"
        f"  var spec = {safe};\n"
        f'  var draw = function () {{ vegaEmbed("#{element}", spec, '
        '{"actions": {"export": true, "source": false, "compiled": false, "editor": false}})'
        ".catch(console.error); };\n"
        "  if (window.vegaEmbed) { draw(); } else { (window.ppVegaQueue = window.ppVegaQueue || []).push(draw); }\n"
        "})();</script>"
    )


def _book_renderer(spec: dict, **_: Any) -> dict[str, str]:
    return {"text/html": embed_html(spec), "text/plain": "<altair chart: rendered in the book's HTML>"}


alt.renderers.register(RENDERER, _book_renderer)


MAX_ROWS = 50_000
"""Largest data frame a chart may embed in a page (altair's own limit is 5,000 rows)."""


def setup(renderer: str | None = None) -> None:
    """Enable the theme and a renderer.

    Default: the book renderer when run by the book runner (``$PARAGRAPH_PLANNING_BOOK`` set),
    altair's own ``default`` renderer elsewhere (JupyterLab draws that natively). Pass
    ``renderer="svg"`` for static images. Charts side by side that colour by the same field share
    one legend selection (clicking an entry highlights it in all of them): that is intended, so
    altair's warning that it merged the identical selections is silenced.
    """
    warnings.filterwarnings("ignore", message="Automatically deduplicated selection parameter", category=UserWarning)
    # Interactive charts carry every menu choice's data in the page; altair refuses frames over 5,000
    # rows, which a full-profile chart can pass. Keep a guard, at ten times that.
    alt.data_transformers.enable("default", max_rows=MAX_ROWS)
    alt.theme.enable(THEME)
    alt.renderers.enable(renderer or (RENDERER if os.environ.get(BOOK_ENV) else "default"))


