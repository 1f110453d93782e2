"""Disk cache for expensive results, keyed by their parameters, the code that computes them and the model.

    stats = cached("neuron-stats", {"corpus": "wiki-en", "n_tokens": 8192},
                   lambda: collect_stats(model, batches), model=model)

The key of a result is a stable hash of

* ``params``: the parameters that matter, as names and numbers (dict order, tuple-vs-list and
  ``3.0``-vs-``3`` do not matter);
* the **code tag** of the computing module: a hash of its source and of the source of every
  module of this package it imports, transitively (read from the ``import`` statements with
  :mod:`ast`, so imports inside functions count too). The computing module is the module that
  defines ``compute`` (or ``code=``). Nobody keeps a list of dependencies by hand: edit
  ``core/peaks.py`` and every cached result whose module imports it, directly or not, is
  recomputed; edit an unrelated chapter's module and nothing else is. A module's companion C source
  (``core/fused.c`` beside ``core/fused.py``) counts as part of it. Package ``__init__`` files
  hold only re-exports and are not part of any tag;
* the **model fingerprint** (``model=``): name, dtype, device type and a hash of the weight files
  (:meth:`~paragraph_planning.core.hooks.HookedModel.fingerprint`), so a retrained model under the
  same alias, or another dtype, recomputes.

Results live in ``cache_dir("results", kind, key)``: the value (``value.parquet`` for a DataFrame,
``value.pt`` for anything else) and ``params.json`` saying what produced it. A folder is written
atomically: an interrupted computation leaves nothing behind.

``$PARAGRAPH_PLANNING_NO_CACHE=1`` turns the cache off (always recompute, store nothing);
``refresh=True`` recomputes one result; :func:`clear` deletes results; :data:`events` lists what
this process loaded from the cache and what it computed. When ``$PARAGRAPH_PLANNING_EVENTS`` names
a file, each of those events (and each model :func:`~paragraph_planning.load_model` loads) is also
appended to it as one JSON line (:func:`log_event`): the book runner reads it for the provenance
box at the end of each chapter.
"""
from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, TypeVar

from .util import atomic_dir, cache_dir

T = TypeVar("T")
log = logging.getLogger(__name__)
NO_CACHE_ENV = "PARAGRAPH_PLANNING_NO_CACHE"
EVENTS_ENV = "PARAGRAPH_PLANNING_EVENTS"
"""Environment variable naming a file that receives one JSON line per event (see :func:`log_event`)."""
PACKAGE = "paragraph_planning"
PACKAGE_ROOT = Path(__file__).resolve().parent
"""The package's folder: code tags are computed from the files below it."""

events: list[dict[str, Any]] = []
"""One entry per :func:`cached` call of this process: kind, key, whether it was loaded, seconds."""


def log_event(event: str, **fields: Any) -> None:
    """Append ``{"event": event, **fields}`` as one JSON line to the file ``$PARAGRAPH_PLANNING_EVENTS`` names.

    Does nothing when the variable is unset; a file that cannot be written is reported in the log,
    never raised (provenance must not break a computation).
    """
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    line = json.dumps({"event": event, "time": round(time.time(), 3), **fields}, sort_keys=True, default=str)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as err:
        log.warning("could not append to the events file %s: %s", path, err)


def _canonical(x: Any) -> Any:
    """A JSON-able, order-independent form of ``x``; objects without a stable form raise TypeError."""
    import torch  # imported where used: the command line imports this module and needs no torch

    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):  # 3.0 and 3 are the same parameter; repr round-trips (and keeps nan/inf)
        return int(x) if x.is_integer() else repr(x)
    if isinstance(x, enum.Enum):
        return _canonical(x.value)
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (torch.dtype, torch.device)):
        return str(x)
    if isinstance(x, Mapping):
        return {"__dict__": sorted([str(k), _canonical(v)] for k, v in x.items())}
    if isinstance(x, (list, tuple)):
        return [_canonical(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return {"__set__": sorted(json.dumps(_canonical(v), sort_keys=True) for v in x)}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {"__dataclass__": type(x).__qualname__, "fields": _canonical(dataclasses.asdict(x))}
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        digest = hashlib.sha256(t.view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
        return {"__tensor__": [list(t.shape), str(t.dtype), digest]}
    if type(x).__module__ == "numpy":
        import numpy as np

        if isinstance(x, np.generic):
            return _canonical(x.item())
        if isinstance(x, np.ndarray):
            return _canonical(torch.from_numpy(np.ascontiguousarray(x)))
    raise TypeError(
        f"Cannot use a {type(x).__name__} as a cache parameter: pass what identifies it "
        "(a model's name, a dataset's name and size, numbers, strings, lists of those)."
    )


def stable_hash(params: Mapping[str, Any], *extra: str) -> str:
    """Hex digest identifying ``params`` (dict order, tuple-vs-list and float formatting do not matter)."""
    blob = json.dumps([_canonical(dict(params)), list(extra)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# ============================================================================ code tags
def _module_file(module: str, root: Path) -> Path | None:
    """The source file of ``paragraph_planning.x.y`` under ``root`` (a module or a package's __init__)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _is_package(module: str, root: Path) -> bool:
    f = _module_file(module, root)
    return f is not None and f.name == "__init__.py"


def _imports(module: str, root: Path) -> set[str]:
    """Modules of the package that ``module``'s source imports (anywhere in the file)."""
    f = _module_file(module, root)
    if f is None:
        return set()
    return _parsed_imports(module, root, f, f.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _parsed_imports(module: str, root: Path, f: Path, _mtime: int) -> set[str]:
    package = module if f.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            subs = [f"{target}.{a.name}" for a in node.names if _module_file(f"{target}.{a.name}", root)]
            named = [a.name for a in node.names if not _module_file(f"{target}.{a.name}", root)]
            out.update(subs)
            if named or not subs:
                out.add(target)
    return {m for m in out if _module_file(m, root) is not None}


def dependencies(module: str, root: Path = PACKAGE_ROOT) -> list[str]:
    """``module`` and every module of the package it imports, transitively, sorted.

    Package ``__init__`` files are left out when they are only passed through (``from ..core.hooks
    import x`` runs ``core/__init__`` but does not depend on it); one imported for a name it
    defines itself (``from ..core import x``) is followed and kept.
    """
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(_imports(m, root) - seen)
    return sorted(m for m in seen if m == module or not _is_package(m, root) or _has_code(m, root))


def _has_code(module: str, root: Path) -> bool:
    """Whether a package ``__init__`` defines anything beyond imports, ``__all__`` and a docstring."""
    f = _module_file(module, root)
    tree = ast.parse(f.read_text(encoding="utf-8")) if f else ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            continue
        return True
    return False


COMPANIONS = (".c",)
"""Suffixes of a module's companion sources (``core/fused.c`` beside ``core/fused.py``): part of its code."""


def _source_files(f: Path) -> list[Path]:
    """A module file and its companion sources (same stem, a suffix of :data:`COMPANIONS`) that exist."""
    return [f, *(c for c in (f.with_suffix(s) for s in COMPANIONS) if c.is_file())]


@functools.lru_cache(maxsize=None)
def _tag(module: str, root: Path, stamp: tuple) -> str:
    h = hashlib.sha256()
    for m in dependencies(module, root):
        module_file, *companions = _source_files(_module_file(m, root))
        h.update(m.encode() + b"\0" + module_file.read_bytes() + b"\0")
        for f in companions:  # only where there are any: the tags of other modules stay as they were
            h.update(f.suffix.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def code_tag(module: str | ModuleType | Callable[..., Any] | None = None, root: Path = PACKAGE_ROOT) -> str:
    """Hash of the source of ``module`` and of every package module it imports (see :func:`dependencies`).

    ``module``: a module name (``"paragraph_planning.papers.ablation"``), a module, or a function or
    class (its module). Without it: every file of the package (what the book runner's ``--reuse`` uses).
    """
    if module is None:
        h = hashlib.sha256()
        for f in sorted(p for suffix in (".py", *COMPANIONS) for p in root.rglob(f"*{suffix}")):
            h.update(str(f.relative_to(root)).encode() + f.read_bytes())
        return h.hexdigest()[:16]
    name = _module_name(module)
    if _module_file(name, root) is None:
        raise ValueError(f"{name!r} is not a module of the package under {root}.")
    files = [s for m in dependencies(name, root) for s in _source_files(_module_file(m, root))]
    stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _tag(name, root, stamp)


def _module_name(obj: str | ModuleType | Callable[..., Any]) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, ModuleType):
        return obj.__name__
    mod = inspect.getmodule(obj)
    return mod.__name__ if mod is not None else getattr(obj, "__module__", "") or "__main__"


def _fingerprints(model: Any) -> Any:
    """``model.fingerprint()`` for one object or each of a list; dicts pass through."""
    if model is None:
        return None
    if isinstance(model, (list, tuple)):
        return [_fingerprints(m) for m in model]
    if isinstance(model, Mapping):
        return dict(model)
    if hasattr(model, "fingerprint"):
        return model.fingerprint()
    raise TypeError(f"model= takes a HookedModel (or anything with .fingerprint()), a dict or a list of them, "
                    f"got {type(model).__name__}.")


def cache_key(kind: str, params: Mapping[str, Any], compute: Callable[..., Any] | None = None, *,
              model: Any = None, code: str | ModuleType | None = None) -> str:
    """The key :func:`cached` uses for these arguments (``kind`` is the folder, not part of the hash)."""
    source = code if code is not None else compute
    name = _module_name(source) if source is not None else ""
    tag = code_tag(name) if name.split(".")[0] == PACKAGE else code_tag(None)
    return stable_hash({"params": dict(params), "model": _fingerprints(model)}, tag)


def result_dir(kind: str, params: Mapping[str, Any], compute: Callable[..., Any] | None = None, *,
               model: Any = None, code: str | ModuleType | None = None) -> Path:
    """The folder that holds (or will hold) the result of ``kind`` for these arguments."""
    if not kind or "/" in kind or kind.startswith("."):
        raise ValueError(f"kind must be a plain name like 'neuron-stats', got {kind!r}")
    return cache_dir("results", kind) / cache_key(kind, params, compute, model=model, code=code)


def _value_file(folder: Path) -> Path | None:
    for name in ("value.parquet", "value.pt"):
        if (folder / name).exists():
            return folder / name
    return None


def _save(value: Any, folder: Path) -> None:
    import pandas as pd
    import torch

    if isinstance(value, pd.DataFrame):
        try:
            value.to_parquet(folder / "value.parquet")
            return
        except (ValueError, TypeError, ImportError):  # e.g. object columns parquet cannot hold
            (folder / "value.parquet").unlink(missing_ok=True)
    torch.save(value, folder / "value.pt")


def _load(path: Path) -> Any:
    import torch

    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path)
    return torch.load(path, map_location="cpu", weights_only=False)  # our own files only


def cached(
    kind: str,
    params: Mapping[str, Any],
    compute: Callable[[], T],
    *,
    model: Any = None,
    code: str | ModuleType | None = None,
    refresh: bool = False,
) -> T:
    """Return the stored result of ``kind`` for these arguments, computing and storing it if needed.

    ``model``: the model(s) the result was computed with (their fingerprints join the key).
    ``code``: the computing module when ``compute`` is not defined in it (default: ``compute``'s
    module; a function defined outside the package, e.g. in a notebook, gets the whole package's
    tag). Tensors come back on the CPU.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> def compute():
        ...     print("computing")
        ...     return model("Bees").sum()
        >>> a = pp.cached("demo-logit-sum", {"text": "Bees"}, compute, model=model)
        computing
        >>> b = pp.cached("demo-logit-sum", {"text": "Bees"}, compute, model=model)  # stored: not computed again
        >>> torch.equal(a, b)
        True
    """
    if os.environ.get(NO_CACHE_ENV, "") not in ("", "0"):
        t0 = time.perf_counter()
        value = compute()
        log_event("cache", kind=kind, key=None, loaded=False, seconds=round(time.perf_counter() - t0, 3), off=True)
        return value
    folder = result_dir(kind, params, compute, model=model, code=code)
    found = _value_file(folder)
    if found is not None and not refresh:
        try:
            value = _load(found)
            log.info("cache: loaded %s from %s", kind, folder)
            events.append({"kind": kind, "key": folder.name, "loaded": True, "seconds": 0.0})
            log_event("cache", **events[-1])
            return value
        except Exception as err:  # a truncated or incompatible file: recompute
            log.warning("cache: could not read %s (%s); recomputing", found, err)
    t0 = time.perf_counter()
    value = compute()
    seconds = time.perf_counter() - t0
    with atomic_dir(folder) as tmp:
        _save(value, tmp)
        meta = {"kind": kind, "params": _canonical(dict(params)), "model": _fingerprints(model),
                "code": _module_name(code if code is not None else compute), "seconds": round(seconds, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / "params.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
    events.append({"kind": kind, "key": folder.name, "loaded": False, "seconds": seconds})
    log_event("cache", **{**events[-1], "seconds": round(seconds, 3)})
    log.info("cache: computed %s in %.1f s, stored in %s", kind, seconds, folder)
    return value


def clear(kind: str | None = None) -> int:
    """Delete stored results (of one ``kind``, or all); returns how many were deleted."""
    root = cache_dir("results")
    kinds = [root / kind] if kind else [p for p in root.iterdir() if p.is_dir()]
    n = 0
    for k in kinds:
        if k.is_dir():
            n += sum(1 for p in k.iterdir() if p.is_dir())
            shutil.rmtree(k)
    return n
