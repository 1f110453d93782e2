"""Fused CPU kernels of :class:`~paragraph_planning.core.statistics.NeuronStats`' update (``torch.compile``).

The unfused path makes about twenty passes over every activation (one torch operation per statistic,
each reading and writing memory). Here inductor's C++ backend compiles two kernels:

* :func:`partials`: every chunk's float32 mean, sums of ``x - mean``, ``(x - mean)**2``, ``|x|``,
  ``sqrt|x|`` and ``x > 0``, minimum and maximum, in one pass over chunks of :data:`ROWS` tokens
  (the same :class:`~paragraph_planning.core.reduction.Partials` the unfused path makes, merged
  in float64 the same way);
* :func:`counts`: the histogram bin of every value, by the unfused path's float32 formula
  (``(x - lo) * scale`` clamped to ``[0, bins - 1]``, so the same bins), written column group by column
  group as ``neuron in group * bins + bin`` (int16 where it fits), so that each group's
  ``torch.bincount`` increments counters that stay in cache.

Both use torch's own CPU threads. Sums differ from the unfused path's by float32 rounding (other
summation order); extremes, counts and bins are identical.

:data:`FUSED`: ``None`` (default) uses the kernels on the CPU when ``torch.compile`` works here and
otherwise warns once, naming the reason, and uses the unfused path; ``True`` requires them (errors
propagate); ``False`` never uses them. The first compilation takes 10-30 s; inductor caches it on disk,
so later processes need a few seconds.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from .reduction import Partials

FUSED: bool | None = None
"""Use the compiled kernels: None (when they work), True (always; errors propagate), False (never)."""
ROWS = 128
"""Tokens per chunk of the fused partial moments (float32 sums over at most this many tokens)."""
_broken: str | None = None  # why compiling failed here (then the unfused path is used)
_compiled: dict[Callable[..., Any], Callable[..., Any]] = {}


def active(x: torch.Tensor) -> bool:
    """Whether an update of ``x`` uses the fused kernels."""
    return x.device.type == "cpu" and FUSED is not False and (FUSED is True or _broken is None)


def _partials_kernel(x3: torch.Tensor) -> tuple[torch.Tensor, ...]:
    c = x3.float()
    centre = c.mean(1)
    w = c - centre[:, None]
    a = c.abs()
    sums = torch.stack([w.sum(1), (w * w).sum(1), a.sum(1), a.sqrt().sum(1), (c > 0).float().sum(1)], 1)
    return centre, sums, c.amin(1), c.amax(1)


def _index_kernel(x: torch.Tensor, lo: torch.Tensor, scale: torch.Tensor, local: torch.Tensor,
                  top: torch.Tensor, groups: int, width: int) -> torch.Tensor:
    c = x.float().reshape(x.shape[0], groups, width)
    pos = ((c - lo.view(groups, width)) * scale.view(groups, width)).clamp_min(0).clamp_max(top)
    return (pos.to(local.dtype) + local).permute(1, 0, 2).contiguous()


def _call(fn: Callable[..., Any], *args: Any, compiled: bool = True) -> Any:
    """``fn`` on ``args`` without gradients, compiled (once per process; dynamic shapes) unless ``compiled`` is False.

    Uncompiled calls serve the odd shapes (a tail chunk, the last, narrower group) without a compilation
    each. Past torch's recompilation limit (many shapes or dtypes in one process) dynamo runs ``fn`` as it is.
    """
    if compiled and fn not in _compiled:
        _compiled[fn] = torch.compile(fn, dynamic=True)
    with torch.no_grad():  # one grad mode: no recompilation when a caller's differs
        return (_compiled[fn] if compiled else fn)(*args)


def _unavailable(err: Exception) -> None:
    """Record why compiling failed and warn (once: :func:`active` is False from now on); re-raise if required."""
    global _broken
    if FUSED:
        raise err
    first = str(err).strip().splitlines()
    _broken = f"{type(err).__name__}: {first[0] if first else ''}"[:300]
    warnings.warn(f"The fused statistics kernels are unavailable here ({_broken}); using the unfused torch "
                  f"path (slower). Set paragraph_planning.core.fused.FUSED = False to skip trying.",
                  RuntimeWarning, stacklevel=4)


def partials(x: torch.Tensor) -> Partials | None:
    """:class:`Partials` of ``x`` ``[tokens, neurons]`` in chunks of :data:`ROWS` tokens (the last may be shorter).

    None where compiling failed (warned; see :data:`FUSED`).
    """
    rows, n = x.shape
    full, tail = divmod(rows, ROWS)
    parts = []
    try:
        if full:
            parts.append(_call(_partials_kernel, x[: full * ROWS].reshape(full, ROWS, n)))
    except Exception as err:  # a missing compiler, an unsupported platform, ...
        _unavailable(err)
        return None
    if tail:
        parts.append(_call(_partials_kernel, x[full * ROWS:].reshape(1, tail, n), compiled=False))
    centre, sums, low, high = (torch.cat(t) if len(parts) > 1 else t[0] for t in zip(*parts))
    sizes = torch.tensor([ROWS] * full + ([tail] if tail else []), dtype=torch.float64)
    return Partials(ROWS, sizes, centre, sums, low, high, None)


def counts(x: torch.Tensor, lo: torch.Tensor, scale: torch.Tensor, local: torch.Tensor,
           bins: int) -> torch.Tensor | None:
    """Flat ``[neurons * bins]`` int64 histogram counts of ``x``, in column groups of ``len(local)`` neurons.

    ``local``: ``neuron in group * bins`` (int16 or int32, the dtype of the indices). None where
    compiling failed (warned; see :data:`FUSED`).
    """
    rows, n = x.shape
    group = len(local)
    full = n // group
    top = torch.tensor(bins - 1, dtype=torch.float32)
    out = torch.zeros(n * bins, dtype=torch.int64)
    for start, groups, width in ((0, full, group), (full * group, 1, n - full * group)):
        if groups and width:
            cols = slice(start, start + groups * width)
            try:
                index = _call(_index_kernel, x[:, cols], lo[cols], scale[cols], local[:width], top, groups, width,
                              compiled=start == 0)  # the last, narrower group uncompiled
            except Exception as err:
                _unavailable(err)
                return None
            for g in range(groups):
                first = (start + g * width) * bins
                out[first: first + width * bins] += torch.bincount(index[g].view(-1), minlength=width * bins)
    return out
