"""One pass over an update on the CPU: moments, extremes and histogram counts of float32 activations.

:class:`~paragraph_planning.core.statistics.NeuronStats` reduces each update with the torch operations
of :mod:`~paragraph_planning.core.reduction` on any device. On the CPU with float32 data (the usual case)
it calls :func:`reduce_columns` instead: a numba kernel that reads every value once and, column by
column, adds ``x - shift`` and its square to float64 sums (``shift``: the update's first row, so the
shifted-data formula keeps the variance exact), ``|x|``, ``sqrt|x|`` and ``x > 0`` to float64 sums,
updates the float32 minimum and maximum, and counts the value's histogram bin. The bin index is computed
exactly as the torch path does, ``(x - lo) * scale`` in float32, clamped to ``[0, bins - 1]`` and
truncated, so both paths give the same counts. NaN never becomes an index (it counts in bin 0 of a
partial that is then rejected). The kernel releases the GIL; the caller splits the columns between
threads. Compiled on first use and cached on disk (numba's ``cache=True``).
"""
from __future__ import annotations

import numpy as np

try:  # an optional speed-up: without numba the torch path does the same work
    from numba import njit
except ImportError:  # pragma: no cover - numba is in requirements.txt
    njit = None

__all__ = ["AVAILABLE", "reduce_columns"]

AVAILABLE = njit is not None


def _kernel(x, shift, lo, scale, bins, c0, c1, moments, sums, low, high, hist):  # pragma: no cover - compiled
    """Reduce columns ``c0:c1`` of ``x`` [m, n] into ``sums`` [5, n], ``low``/``high`` [n] and ``hist`` [n * bins]."""
    m = x.shape[0]
    w = c1 - c0
    a0 = np.zeros(w)
    a1 = np.zeros(w)
    a2 = np.zeros(w)
    a3 = np.zeros(w)
    a4 = np.zeros(w)
    mn = np.full(w, np.inf, dtype=np.float32)
    mx = np.full(w, -np.inf, dtype=np.float32)
    top = np.float32(bins - 1)
    for i in range(m):
        row = x[i, c0:c1]
        if moments:
            for j in range(w):
                v = row[j]
                d = np.float64(v) - np.float64(shift[c0 + j])
                a0[j] += d
                a1[j] += d * d
                av = abs(v)
                a2[j] += av
                a3[j] += np.sqrt(av)
                a4[j] += 1.0 if v > 0 else 0.0
                mn[j] = min(mn[j], v)
                mx[j] = max(mx[j], v)
        if bins > 1:
            for j in range(w):
                p = (row[j] - lo[c0 + j]) * scale[c0 + j]
                b = 0
                if p >= top:
                    b = bins - 1
                elif p >= 1:
                    b = int(p)
                hist[(c0 + j) * bins + b] += 1
    if moments:
        for j in range(w):
            sums[0, c0 + j] = a0[j]
            sums[1, c0 + j] = a1[j]
            sums[2, c0 + j] = a2[j]
            sums[3, c0 + j] = a3[j]
            sums[4, c0 + j] = a4[j]
            low[c0 + j] = mn[j]
            high[c0 + j] = mx[j]


_compiled = njit(nogil=True, cache=True, fastmath=False, boundscheck=False)(_kernel) if AVAILABLE else None


def reduce_columns(x: np.ndarray, shift: np.ndarray, lo: np.ndarray, scale: np.ndarray, bins: int,
                   columns: range, moments: bool, sums: np.ndarray, low: np.ndarray, high: np.ndarray,
                   hist: np.ndarray) -> None:
    """Run the kernel on ``columns`` (``bins <= 1``: no histogram; ``moments=False``: histogram only)."""
    _compiled(x, shift, lo, scale, bins, columns.start, columns.stop, moments, sums, low, high, hist)
