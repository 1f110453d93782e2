"""Disk cache for expensive intermediate results, keyed by the parameters they depend on.

    stats = cached("neuron-stats", {"model": name, "dataset": "pile", "n_texts": 2000},
                   lambda: collect_stats(model, texts))

The key is a stable hash of ``params`` plus a code tag (by default a hash of this package's
source files), so re-running with the same parameters loads from disk, changing one parameter
recomputes only the results that were given that parameter, and editing the package recomputes
everything. Pass only the parameters that matter, as names and numbers (a model's *name*, not
the model object). Results live in ``cache_dir("results", kind, key)``: the value
(``value.parquet`` for a DataFrame, ``value.pt`` for anything else, tensors and modules
included) and ``params.json`` saying what produced it.

``$PARAGRAPH_PLANNING_NO_CACHE=1`` turns the cache off (always recompute, store nothing);
``refresh=True`` recomputes one result; :func:`clear` deletes results.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence, TypeVar

import torch

from .models import cache_dir

T = TypeVar("T")
log = logging.getLogger(__name__)
NO_CACHE_ENV = "PARAGRAPH_PLANNING_NO_CACHE"
_PACKAGE = Path(__file__).resolve().parent


def _canonical(x: Any) -> Any:
    """A JSON-able, order-independent form of ``x``; objects without a stable form raise TypeError."""
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
        return {"__tensor__": [list(t.shape), str(t.dtype), hashlib.sha256(t.view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()]}
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


@functools.lru_cache(maxsize=None)
def _source_hash(files: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).name.encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:12]


def code_tag(depends: Sequence[ModuleType] | None = None) -> str:
    """Package version plus a hash of the source it depends on (default: every module of the package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("paragraph_planning")
    except PackageNotFoundError:
        v = "0"
    if depends:
        files = tuple(sorted(str(Path(m.__file__).resolve()) for m in depends if getattr(m, "__file__", None)))
    else:
        files = tuple(sorted(str(p) for p in _PACKAGE.rglob("*.py")))
    return f"{v}-{_source_hash(files)}"


def result_dir(kind: str, params: Mapping[str, Any], depends: Sequence[ModuleType] | None = None) -> Path:
    """The folder that holds (or will hold) the result of ``kind`` for ``params``."""
    if not kind or "/" in kind or kind.startswith("."):
        raise ValueError(f"kind must be a plain name like 'neuron-stats', got {kind!r}")
    return cache_dir("results", kind, stable_hash(params, code_tag(depends)))


def _value_file(folder: Path) -> Path | None:
    for name in ("value.parquet", "value.pt"):
        if (folder / name).exists():
            return folder / name
    return None


def _save(value: Any, folder: Path) -> None:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        try:
            value.to_parquet(folder / "value.parquet")
            return
        except (ValueError, TypeError, ImportError):  # e.g. object columns parquet cannot hold
            (folder / "value.parquet").unlink(missing_ok=True)
    torch.save(value, folder / "value.pt")


def _load(path: Path) -> Any:
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path)
    return torch.load(path, map_location="cpu", weights_only=False)  # our own files only


def cached(
    kind: str,
    params: Mapping[str, Any],
    compute: Callable[[], T],
    *,
    depends: Sequence[ModuleType] | None = None,
    refresh: bool = False,
) -> T:
    """Return the stored result of ``kind`` for ``params``, computing and storing it if needed.

    ``depends``: modules whose source the result depends on (default: the whole package), so
    edits elsewhere keep the result. Tensors come back on the CPU.
    """
    if os.environ.get(NO_CACHE_ENV, "") not in ("", "0"):
        return compute()
    folder = result_dir(kind, params, depends)
    found = _value_file(folder)
    if found is not None and not refresh:
        try:
            value = _load(found)
            log.info("cache: loaded %s from %s", kind, folder)
            return value
        except Exception as err:  # a truncated or incompatible file: recompute
            log.warning("cache: could not read %s (%s); recomputing", found, err)
    t0 = time.perf_counter()
    value = compute()
    seconds = time.perf_counter() - t0
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save(value, tmp)
    meta = {"kind": kind, "params": _canonical(dict(params)), "code": code_tag(depends),
            "seconds": round(seconds, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (tmp / "params.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    shutil.rmtree(folder, ignore_errors=True)  # cache_dir created it empty, or refresh replaces it
    try:
        tmp.rename(folder)
    except OSError:  # another process stored the same result first
        shutil.rmtree(tmp, ignore_errors=True)
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
