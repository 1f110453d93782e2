"""Helpers of :class:`~paragraph_planning.core.statistics.NeuronStats`' update: float32 partial results
of one update chunk by chunk, and a small pool of single-threaded helper threads that share one
update's chunks on the unfused path (see the statistics module's docstring).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from .architectures import parse_name


class NonFiniteActivationError(ValueError):
    """An activation was NaN or infinite."""


def describe(name: str) -> str:
    parsed = parse_name(name)
    return f"{name} (layer {parsed[0]}, site {parsed[1]!r})" if parsed else repr(name or "NeuronStats")


def ranges(n: int, step: int) -> list[range]:
    """``range(0, n)`` cut into consecutive ranges of ``step`` (the last may be shorter)."""
    return [range(i, min(n, i + step)) for i in range(0, n, step)]


@dataclass
class Partials:
    """Float32 partial results of one update, one row per chunk of ``step`` tokens: nothing in it is committed yet."""

    step: int
    sizes: torch.Tensor  # [k] float64 tokens per chunk
    centre: torch.Tensor  # [k, n] chunk means (float32)
    sums: torch.Tensor  # [k, 5, n] sums of x - centre, (x - centre)**2, |x|, sqrt|x|, x > 0
    low: torch.Tensor  # [k, n] chunk minima
    high: torch.Tensor  # [k, n] chunk maxima
    counts: torch.Tensor | None  # [n * bins] int64 histogram counts, or None

    def check(self, name: str, chunks: slice = slice(None)) -> None:
        """Raise :class:`NonFiniteActivationError` if one of ``chunks`` held a NaN or inf."""
        low, high = self.low[chunks].amin(0), self.high[chunks].amax(0)
        finite = torch.isfinite(low) & torch.isfinite(high)
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten().tolist()
            raise NonFiniteActivationError(
                f"Activations at {describe(name)} contain NaN or inf (neurons {bad[:8]}"
                f"{' ...' if len(bad) > 8 else ''}). Check the model's dtype and inputs."
            )


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, workers, pool)


def _helpers(n: int) -> ThreadPoolExecutor:
    """The pool of ``n`` helper threads (torch threads set to 1 in each, once); made again after a fork."""
    global _POOL
    if _POOL is None or _POOL[:2] != (os.getpid(), n):
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown()
        _POOL = (os.getpid(), n, ThreadPoolExecutor(n, "paragraph-planning-stats", torch.set_num_threads, (1,)))
    return _POOL[2]


def run_split(tasks: Sequence[Any], fn: Callable[[Sequence[Any]], None], threads: int) -> None:
    """Run ``fn`` on ``threads`` interleaved shares of ``tasks``: this thread takes the first, helpers the others.

    Call it with this thread's torch threads set to 1, as the helpers' are. Returns when every share
    is done, raising the first error.
    """
    n = max(1, min(threads, len(tasks)))
    futures = [_helpers(threads - 1).submit(fn, tasks[i::n]) for i in range(1, n)]
    try:
        fn(tasks[0::n])
    finally:
        wait(futures)
    for f in futures:
        f.result()
