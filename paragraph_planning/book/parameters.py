"""A chapter's parameters: read from its ``parameters`` cell, and every value checked before a kernel starts.

Each assignment of the cell tagged ``parameters`` is a parameter (read by papermill's inspection).
Its **type** is the type of its default (``12`` -> int, ``0.3`` -> float, ``[0, 1]`` -> list[int],
``"cpu"`` -> str); a comment may say more, in square brackets at its start::

    dtype = "float32"      # [float32 | bfloat16 | float16] "bfloat16" halves the memory on a GPU
    n_texts = 40           # [min 2] texts in the main experiment
    temperature = 0.3      # [0 .. 2] sampling temperature (0: greedy)
    n_topics = None        # [int | None; min 1] a seeded subset of the topics (None: all)
    patch_layer = 6        # [layer of model] the layer whose residual stream we patch
    methods = ["zero", "mean"]  # [zero | mean | peak | resample] replacements (each element)

Items are separated by ``;``: types (``int``, ``float``, ``str``, ``bool``, ``list``, ``list[int]``,
``dict``, ``None``, joined by ``|``), choices (any other ``a | b | c``; for a list, of each element),
bounds (``min 1``, ``max 1``, ``> 0``, ``< 1``, ``lo .. hi``: no ``=`` sign, papermill skips a line
with two) and ``layer of <parameter>`` (an index below the number of layers of the model that
parameter names, checked when that number can be read without loading the model: tiny models,
converted offline models, local folders).

Values from ``book/params.yml`` and from ``-p NAME VALUE`` are checked against this; a list
parameter given one element (``-p seeds 0``) gets a one-element list. A bad value raises one line
naming the parameter, the value and what is expected.
"""
from __future__ import annotations

import ast
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..util import did_you_mean
from .chapters import PROFILES_FILE, ROOT, BookError, Chapter, profile_parameters

SCALARS = ("int", "float", "str", "bool")
TYPES = (*SCALARS, "list", "dict", "None", *(f"list[{t}]" for t in SCALARS))
_BOUND = re.compile(r"^(min|max|>|<)\s*(-?\d+(?:\.\d*)?(?:e-?\d+)?)$")
_OPS = {"min": ">=", "max": "<=", ">": ">", "<": "<"}
_RANGE = re.compile(r"^(-?\d+(?:\.\d*)?)\s*\.\.\s*(-?\d+(?:\.\d*)?)$")
_LAYER = re.compile(r"^layer of (\w+)$")


class CliText(str):
    """A value as typed after ``-p NAME``: read according to the parameter's type (text stays text)."""


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML: ``3`` -> 3, ``0.5`` -> 0.5, ``[1, 2]`` -> list, ``abc`` -> 'abc'."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, text


def _type_of(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, bool):
        return ("bool",)
    for name in ("int", "float", "str", "dict"):
        if isinstance(v, {"int": int, "float": float, "str": str, "dict": dict}[name]):
            return (name,)
    if isinstance(v, (list, tuple)):
        kinds = {_type_of(x)[0] if _type_of(x) else "None" for x in v}
        if kinds == {"int", "float"}:
            kinds = {"float"}
        return (f"list[{kinds.pop()}]",) if len(kinds) == 1 and kinds <= set(SCALARS) else ("list",)
    return ()


@dataclass(frozen=True)
class Parameter:
    """One parameter of a chapter: its default, type, choices, bounds and help."""

    name: str
    source: str  # the default as written in the notebook
    default: Any = None  # its value (the text itself when it is not a Python literal)
    types: tuple[str, ...] = ()  # () means anything
    choices: tuple[Any, ...] = ()
    bounds: tuple[tuple[str, float], ...] = ()
    layer_of: str | None = None
    help: str = ""
    declared: str = field(default="", compare=False)  # the bracketed spec as written

    @property
    def kind(self) -> str:
        """What it takes, for tables and errors: ``int >= 1``, ``str: cpu | cuda``, ``layer of model``."""
        out = " | ".join(self.types) or "any"
        if self.choices:
            out += ": " + " | ".join(map(str, self.choices))
        if self.bounds:
            out += " " + ", ".join(f"{op} {_num(x)}" for op, x in self.bounds)
        if self.layer_of:
            out += f", layer of {self.layer_of}"
        return out

    # ------------------------------------------------------------------ checking one value
    def check(self, value: Any, where: str = "") -> Any:
        """``value`` in this parameter's type (a :class:`CliText` is read by that type); raise :class:`BookError`."""
        text = value if isinstance(value, CliText) else None
        if text is not None:
            value = str(text) if self.types == ("str",) else parse_value(text)
            if text.strip() in ("None", "none") and "None" in self.types:
                value = None
        out = self._typed(value)
        if out is _BAD and text is not None and "str" in self.types:
            out = str(text)
        if out is _BAD:
            raise self._error(value if text is None else str(text), f"expected {self._expected()}", where)
        for x in out if isinstance(out, list) else [out]:
            if self.choices and x not in self.choices and not (x is None and "None" in self.types):
                raise self._error(x, f"expected one of {', '.join(map(str, self.choices))}."
                                     f"{did_you_mean(str(x), map(str, self.choices))}", where)
            for op, bound in self.bounds:
                if isinstance(x, (int, float)) and not _holds(x, op, bound):
                    raise self._error(x, f"expected a value {op} {_num(bound)}", where)
        return out

    def _typed(self, v: Any) -> Any:
        if not self.types:
            return v
        for t in self.types:
            out = _as(t, v)
            if out is not _BAD:
                return out
        for t in self.types:  # a list parameter given one element
            if t.startswith("list[") and not isinstance(v, (list, tuple, dict)) and v is not None:
                out = _as(t, [v])
                if out is not _BAD:
                    return out
        return _BAD

    def _expected(self) -> str:
        ok = " or ".join("None" if t == "None" else f"{'an' if t == 'int' else 'a'} {t}" for t in self.types)
        return f"{ok} (default {_short(self.source)})"

    def _error(self, value: Any, expected: str, where: str) -> BookError:
        end = "" if expected.endswith((".", "?")) else "."
        return BookError(f"{where}parameter {self.name!r} = {value!r}: {expected}{end}")


_BAD = object()


def _as(t: str, v: Any) -> Any:
    """``v`` as type ``t`` (ints widen to float), or ``_BAD``."""
    if t == "None":
        return None if v is None else _BAD
    if t == "bool":
        return v if isinstance(v, bool) else _BAD
    if t == "int":
        return v if isinstance(v, int) and not isinstance(v, bool) else _BAD
    if t == "float":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str):  # YAML reads 1e-3 as text
            try:
                return float(v)
            except ValueError:
                return _BAD
        return _BAD
    if t == "str":
        return v if isinstance(v, str) else _BAD
    if t == "dict":
        return dict(v) if isinstance(v, dict) else _BAD
    if t.startswith("list"):
        if not isinstance(v, (list, tuple)):
            return _BAD
        inner = t[5:-1] if t != "list" else None
        items = [x if inner is None else _as(inner, x) for x in v]
        return _BAD if any(x is _BAD for x in items) else items
    return _BAD


def _holds(x: float, op: str, bound: float) -> bool:
    return {">=": x >= bound, ">": x > bound, "<=": x <= bound, "<": x < bound}[op]


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# ============================================================================ reading the cell
def _split_spec(help_text: str) -> tuple[str, str]:
    """``"[int | None; >= 1] help"`` -> ``("int | None; >= 1", "help")`` (brackets may nest: ``list[int]``)."""
    if not help_text.startswith("["):
        return "", help_text
    depth = 0
    for i, ch in enumerate(help_text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth == 0:
            return help_text[1:i].strip(), help_text[i + 1:].strip()
    return "", help_text


def parse_parameter(name: str, source: str, help_text: str = "", annotation: str = "None") -> Parameter:
    """One parameter from its default (as written), its comment and papermill's type annotation, if any."""
    spec, help_text = _split_spec(help_text.strip())
    ok, default = _literal(source)
    types = _type_of(default) if ok else ()
    if annotation and annotation != "None":
        types = tuple(t.strip() for t in annotation.split("|"))
    choices: tuple[Any, ...] = ()
    bounds: list[tuple[str, float]] = []
    layer_of = None
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        alternatives = [a.strip() for a in item.split("|")]
        if m := _BOUND.match(item):
            bounds.append((_OPS[m.group(1)], float(m.group(2))))
        elif m := _RANGE.match(item):
            bounds += [(">=", float(m.group(1))), ("<=", float(m.group(2)))]
        elif m := _LAYER.match(item):
            layer_of = m.group(1)
        elif all(a in TYPES for a in alternatives):
            types = tuple(alternatives)
        elif len(alternatives) > 1 and all(alternatives):
            choices = tuple(parse_value(a) for a in alternatives)
        else:
            raise BookError(f"parameter {name!r}: cannot read {item!r} in [{spec}]. Write types (int | None), "
                            "choices (a | b | c), bounds (min 1, max 1, > 0, < 1, 0 .. 1) or 'layer of <parameter>', "
                            "separated by ';'.")
    unknown = [t for t in types if t not in TYPES]
    if unknown:
        raise BookError(f"parameter {name!r}: unknown type {unknown[0]!r}. Types: {', '.join(TYPES)}.")
    if layer_of and not types:
        types = ("int",)
    return Parameter(name, source, default, types, choices, tuple(bounds), layer_of, help_text, spec)


def declared_parameters(chapter: Chapter, root: Path = ROOT) -> dict[str, Parameter]:
    """The chapter's ``parameters`` cell, in order: ``{name: Parameter}`` (read by papermill's inspection)."""
    path = root / chapter.path
    return _declared(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _declared(path: str, _mtime: int) -> dict[str, Parameter]:
    import papermill

    out = {}
    for name, p in papermill.inspect_notebook(path).items():
        try:
            out[name] = parse_parameter(name, p["default"], p.get("help") or "", p.get("inferred_type_name") or "None")
        except BookError as err:
            raise BookError(f"{Path(path).name}: {err}") from None
    return out


# ============================================================================ layers of a model
def _config_layers(config: Mapping[str, Any]) -> int | None:
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(config.get(key), int):
            return config[key]
    text = config.get("text_config")
    return _config_layers(text) if isinstance(text, Mapping) else None


def model_layers(name: Any) -> int | None:
    """The number of layers of the model ``load_model(name)`` would load, when known without loading it."""
    from ..core.architectures import ARCHITECTURES
    from ..core.models import GGUF_MODELS, TINY_MODELS
    from ..util import cache_root

    name = str(name)
    try:
        if name in TINY_MODELS:
            return _config_layers(ARCHITECTURES[TINY_MODELS[name]].tiny)
        if name in GGUF_MODELS:
            folders = sorted((cache_root() / "models").glob(f"{name}-*/config.json"))
            return _config_layers(json.loads(folders[-1].read_text())) if folders else None
        config = Path(name).expanduser() / "config.json"
        return _config_layers(json.loads(config.read_text())) if config.is_file() else None
    except (OSError, ValueError, KeyError):
        return None


# ============================================================================ a chapter's values
def resolve(chapter: Chapter, profile: str, overrides: Mapping[str, Any] | None = None,
            root: Path = ROOT) -> dict[str, Any]:
    """The values papermill injects: ``profile``'s, then ``overrides`` (``-p``), each checked.

    Raises :class:`BookError` for an unknown profile or parameter, or a value of the wrong type,
    outside its choices or bounds, or a layer the model does not have.
    """
    declared = declared_parameters(chapter, root)
    prof = profile_parameters(profile, chapter, root)
    overrides = dict(overrides or {})
    _check_names(chapter, declared, prof, f" (from {PROFILES_FILE}, profile {profile})")
    _check_names(chapter, declared, overrides, " (from -p)")
    values = {k: declared[k].check(v, f"{PROFILES_FILE} ({profile}, {chapter.name}): ") for k, v in prof.items()}
    values.update({k: declared[k].check(v, "-p: ") for k, v in overrides.items()})
    full = {k: values.get(k, p.default) for k, p in declared.items()}
    for k, p in declared.items():
        if p.layer_of is None or full.get(k) is None:
            continue
        if p.layer_of not in declared:
            raise BookError(f"{chapter.name}: parameter {k!r} is a 'layer of {p.layer_of}', which is not a parameter.")
        n = model_layers(full[p.layer_of])
        for layer in full[k] if isinstance(full[k], list) else [full[k]]:
            if n is not None and isinstance(layer, int) and not 0 <= layer < n:
                where = "-p: " if k in overrides else ""
                raise BookError(f"{where}parameter {k!r} = {layer!r}: {p.layer_of} {full[p.layer_of]!r} has "
                                f"{n} layers (0 to {n - 1}).")
    return values


def _check_names(chapter: Chapter, declared: Mapping[str, Parameter], names: Mapping[str, Any], source: str = "") -> None:
    unknown = [k for k in names if k not in declared]
    if unknown:
        valid = ", ".join(f"{k} (default {_short(p.source)})" for k, p in declared.items()) or \
            "none (no cell tagged 'parameters')"
        raise BookError(f"Unknown parameter(s) {', '.join(map(repr, unknown))} for chapter {chapter.name}{source}."
                        f"{did_you_mean(unknown[0], declared)} Valid parameters: {valid}.")


def check_parameters(chapter: Chapter, params: Mapping[str, Any], root: Path = ROOT) -> None:
    """Raise :class:`BookError` if ``params`` has unknown names (listing the valid ones) or bad values."""
    declared = declared_parameters(chapter, root)
    _check_names(chapter, declared, params)
    for k, v in params.items():
        declared[k].check(v)


def full_values(chapter: Chapter, values: Mapping[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """Every parameter's value in a run: ``values`` (injected) over the notebook's defaults."""
    return {k: values.get(k, p.default) for k, p in declared_parameters(chapter, root).items()}


def cli_value(param: Parameter, value: Any) -> str:
    """``value`` as typed after ``-p NAME`` so that ``param`` reads it back the same (YAML flow style)."""
    if param.types == ("str",) and isinstance(value, str):
        return value  # text parameters take the text as typed
    if isinstance(value, str) and parse_value(value) == value and value == value.strip() and value:
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()
