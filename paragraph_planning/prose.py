"""Prose from results: sentences that carry their numbers, rendered as Markdown in the book and in Jupyter.

Every number a chapter's text quotes comes from the run: the papers' ``*_report`` modules return
:class:`Prose` (Markdown text plus the values it quotes), and a notebook cell that ends with one
shows it as Markdown. The values travel in the output's metadata (``paragraph_planning.values``,
and ``paragraph_planning.shown``: each field as the text shows it), so a test can check that the
rendered page quotes exactly the computed numbers (``tests/test_pages.py``). Markdown cells of
the chapters hold no results, only what does not depend on the run. The text is CommonMark (the
book renders outputs that way): no MyST roles or ``$math$`` in it.

    >>> p = Prose("Transferred beats neutral by {d:.2f}.", d=0.1234)
    >>> str(p)
    'Transferred beats neutral by 0.12.'
"""
from __future__ import annotations

import math
import string
from typing import Any, Iterable, Mapping

META_KEY = "paragraph_planning"


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, (int, str, bool)) or v is None:
        return v
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item"):
        return _jsonable(v.item())
    return str(v)


class Prose:
    """Markdown text built from a template and the values it quotes.

    ``Prose(template, **values)`` formats ``template`` with ``values`` (``str.format`` syntax).
    ``a + b`` joins two pieces as paragraphs. In Jupyter it renders as Markdown, with the values
    in the output metadata.
    """

    def __init__(self, template: str = "", /, **values: Any):
        self.values: dict[str, Any] = dict(values)
        self.shown: dict[str, list[str]] = _shown(template, values) if values else {}
        self.text = template.format(**values) if values else template

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Prose({self.text!r})"

    def __add__(self, other: "Prose | str") -> "Prose":
        out = Prose()
        other_values = other.values if isinstance(other, Prose) else {}
        clash = {k for k in self.values.keys() & other_values.keys() if self.values[k] != other_values[k]}
        out.values = {**self.values, **{(f"{k}_2" if k in clash else k): v for k, v in other_values.items()}}
        other_shown = other.shown if isinstance(other, Prose) else {}
        out.shown = {k: list(v) for k, v in self.shown.items()}
        for k, v in other_shown.items():
            key = f"{k}_2" if k.split(".")[0].split("[")[0] in clash else k
            out.shown.setdefault(key, []).extend(x for x in v if x not in out.shown.get(key, []))
        out.text = "\n\n".join(t for t in (self.text, str(other)) if t)
        return out

    def _repr_markdown_(self) -> tuple[str, dict[str, Any]]:
        return self.text, {META_KEY: {"values": _jsonable(self.values), "shown": self.shown}}


def _shown(template: str, values: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each replacement field of ``template`` as ``str.format`` writes it: ``{field: [text, ...]}``."""
    fmt = string.Formatter()
    out: dict[str, list[str]] = {}
    for _, field, spec, conversion in fmt.parse(template):
        if field is None:
            continue
        obj, _ = fmt.get_field(field, (), values)
        text = fmt.format_field(fmt.convert_field(obj, conversion), fmt.vformat(spec or "", (), values))
        if text not in out.setdefault(field, []):
            out[field].append(text)
    return out


def join(parts: Iterable[Prose | str]) -> Prose:
    """Paragraphs joined into one :class:`Prose`."""
    out = Prose()
    for p in parts:
        out = out + p
    return out


def listing(items: Iterable[str], conj: str = "and") -> str:
    """``"a, b and c"``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conj} {items[-1]}"


def fmt_interval(interval: Any, spec: str = ".3f") -> str:
    """``"0.123 (95 % CI 0.045 to 0.201)"`` for an :class:`~paragraph_planning.core.inference.Interval`."""
    if not (math.isfinite(interval.lo) and math.isfinite(interval.hi)):
        return f"{interval.estimate:{spec}} (no interval at this sample)"
    level = f"{interval.level:.0%}".replace("%", " %")
    return f"{interval.estimate:{spec}} ({level} CI {interval.lo:{spec}} to {interval.hi:{spec}})"


def fmt_p(p: float) -> str:
    """``"p = 0.03"``, ``"p < 0.001"``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"
