"""Checks that a chapter's page tells the truth about its run (used by ``tests/test_pages.py``).

* :func:`hand_quoted` finds results typed by hand into a Markdown cell. A number is a result when
  its paragraph points at a run ("in the book's run", "this run", "we found"), when it is an
  approximate measurement (``about 0.12``, ``roughly 3 s.e.``, ``~40 %``), a statistic
  (``3.5 s.e.``, ``2 standard errors``, ``0.7 times as much``, ``3-fold``, unless it is a threshold:
  ``more than 3 standard errors``, ``± 1.96 standard errors``) or a list of layers (``layers 28, 2
  and 1``). Method constants pass: ``100 bins``, ``T = 0.3``, ``10 % of the neurons``, numbers in
  code spans and math.
* :func:`unquoted_values` checks a rendered page against its executed notebook: every value a
  :class:`~paragraph_planning.prose.Prose` output quotes appears, as formatted, in that cell's HTML.
"""
from __future__ import annotations

import html as html_lib
import re
from typing import Any

from ..prose import META_KEY

_CODE = re.compile(r"```.*?```|~~~.*?~~~|`[^`\n]*`", re.S)
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|\\\(.*?\\\)", re.S)
_RUN = re.compile(r"\b(?:book's|this|our) run\b|\bin (?:the|this|our) run\b|\bwe (?:found|find|measured|observed?|got)\b"
                  r"|\bresults? (?:show|shows|showed)\b", re.I)
_STAT_UNIT = r"(?:s\.\s?e\.|SE\b|standard errors?|σ|-fold|×|times (?:as|the|more|less|larger|smaller|higher|lower))"
_APPROX = re.compile(r"(?:\b(?:about|around|roughly|approximately|nearly|almost)\s+|[~≈]\s*)"
                     r"(?:\d*\.\d+|\d+(?:\.\d+)?\s*(?:%|percent\b|" + _STAT_UNIT + "))", re.I)
_STAT = re.compile(r"(?<!more than )(?<!less than )(?<!at least )(?<!at most )(?<!fewer than )(?<!± )(?<!\+/- )"
                   r"(?<![\d.])\d+(?:\.\d+)?\s*" + _STAT_UNIT, re.I)
_LAYERS = re.compile(r"\blayers?\s+\d+\s*(?:,\s*\d+\s*)*,?\s*and\s+\d+", re.I)


def hand_quoted(markdown: str) -> list[str]:
    """The hand-typed results in a Markdown text (empty when it holds none), each with some context."""
    text = _MATH.sub(" ", _CODE.sub(" ", markdown))
    found = []
    for para in re.split(r"\n\s*\n|\n(?=\s*(?:[-*+]|\d+\.)\s)", text):  # paragraphs and list items
        flat = " ".join(para.split())
        if _RUN.search(flat) and re.search(r"\d", flat):
            found.append(f"a run's numbers: {flat[:120]!r}")
            continue
        for rule, why in ((_APPROX, "approximate measurement"), (_STAT, "statistic"), (_LAYERS, "list of layers")):
            for m in rule.finditer(flat):
                found.append(f"{why}: ...{flat[max(0, m.start() - 40):m.end() + 20]}...")
    return found


# ============================================================================ Prose on the page
def prose_outputs(nb: Any) -> list[tuple[int, dict[str, list[str]], dict[str, Any]]]:
    """``(code cell number, shown, values)`` for every Prose output of an executed notebook.

    The cell number counts the code cells that the page shows (cells tagged ``remove-cell`` are
    not rendered).
    """
    out, i = [], -1
    for cell in nb.cells:
        if cell.cell_type != "code" or "remove-cell" in cell.metadata.get("tags", []):
            continue
        i += 1
        for o in cell.get("outputs", []):
            meta = (o.get("metadata") or {}).get("text/markdown", {}).get(META_KEY)
            if meta is not None:
                out.append((i, meta.get("shown") or {}, meta.get("values") or {}))
    return out


_SMART = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "--", "—": "---", "…": "...", "\xa0": " "})


def normalise(text: str) -> str:
    """Text as a reader sees it, comparable with Markdown source: tags and emphasis gone, Sphinx's
    smart quotes and dashes undone, whitespace collapsed."""
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", text)).translate(_SMART)
    return " ".join(text.replace("**", "").replace("`", "").split())


def page_cells(page: str) -> list[str]:
    """The HTML of each code cell of a rendered chapter page, in order (the boxes after the last cell cut off)."""
    starts = [m.start() for m in re.finditer(r'<div class="cell[ "]', page)]
    end = page.find("pp-provenance")
    bounds = [*starts[1:], end if end > (starts[-1] if starts else 0) else len(page)]
    return [page[a:b] for a, b in zip(starts, bounds)]


def unquoted_values(nb: Any, page: str) -> list[str]:
    """Problems: Prose values of ``nb`` that its rendered ``page`` does not show in the same cell."""
    cells = page_cells(page)
    outputs = prose_outputs(nb)
    shown_cells = sum(1 for c in nb.cells if c.cell_type == "code" and "remove-cell" not in c.metadata.get("tags", []))
    if outputs and len(cells) != shown_cells:
        return [f"the page has {len(cells)} code cells, the notebook {shown_cells}: cannot match outputs to cells"]
    problems = []
    for i, shown, values in outputs:
        text = normalise(cells[i])
        for field, forms in shown.items():
            for form in forms:
                if normalise(form) not in text:
                    problems.append(f"code cell {i}: {field} = {values.get(field.split('.')[0].split('[')[0])!r} "
                                    f"is shown as {form!r} in the text, but the page does not show it")
    return problems
