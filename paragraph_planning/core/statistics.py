"""Streaming per-neuron activation statistics: moments, a histogram with its peak, and a reservoir.

:func:`collect_stats` runs a model over a token stream and returns one :class:`NeuronStats` per
hook site (``blocks.{i}.{site}``). Each holds, per neuron:

* ``count``, ``mean``, ``var`` (the unbiased sample variance) and ``std`` (its square root);
* ``mean_abs`` (mean ``|x|``), ``mean_sqrt_abs`` (mean ``sqrt|x|``), ``rms`` (``sqrt(mean x**2)``),
  ``frac_pos`` (fraction of tokens with ``x > 0``), ``min`` and ``max``;
* ``hist`` (``bins`` fixed bins between ``lo`` and ``hi``) and ``peak``, the centre of the fullest bin
  (the "peak" replacement value of the peak-ablation paper);
* ``reservoir``: up to ``reservoir`` activation vectors of uniformly sampled tokens (for resampling).

How it is computed. :func:`collect_stats` runs only the blocks up to the last hooked layer
(:meth:`~paragraph_planning.core.hooks.HookedModel.run_body`): statistics never need logits. Each
update is reduced chunk by chunk: per chunk, float32 sums of ``x - c``, ``(x - c)**2`` (``c`` the
chunk's float32 mean), ``|x|``, ``sqrt|x|`` and ``x > 0``, and the minimum and maximum. After the
whole update is checked for NaN/inf, the chunks are merged into float64 accumulators, mean and
variance with the pairwise formula of Chan et al., so ``var`` stays accurate when ``|mean| >> std``.
Then each value's histogram bin is counted, a group of neurons at a time, so that the counters being
incremented stay in cache.

On the CPU, one compiled C kernel (:mod:`paragraph_planning.core.fused`, built once per machine with the
system's C compiler) does all of this in one pass over memory, on torch's threads, in blocks of
``fused.ROWS`` tokens by ``fused.COLUMNS`` neurons. Where it cannot be built (no C compiler, say) a
warning names the reason and the unfused path is used: one torch operation per statistic, on chunks of
about ``_CHUNK`` values (an even number of them), split between :data:`REDUCTION_THREADS`
single-threaded threads (default: as many as torch uses), the histogram read straight from the
activations in pieces of at most ``_PIECE`` values per group of ``_GROUP`` neurons (bin indices
``neuron in group * bins + bin``, int16 where they fit, one ``torch.bincount`` per group). Both paths
give the same extremes, counts and bins; sums differ by float32 rounding. Neither depends on the number
of threads.

Histogram range. It is fixed after a pilot (the first ``pilot`` non-empty updates): the per-neuron
``[min, max]`` of the pilot, widened by 1% of its span on each side (by 1% of ``max(|x|, 1)`` for a
neuron that was constant), with ``lo`` rounded to float32. The pilot's tokens are histogrammed too,
so no token is left out (a pilot of several updates keeps the earlier ones' activations until then);
later values outside the range are counted in the edge bins. Bin ``k`` holds
``lo + k*w <= x < lo + (k+1)*w`` with ``w = (hi - lo) / bins`` (``x = hi`` goes to the last bin, as in
:func:`torch.histc`); the bin index is computed in float32, so a value within float32 rounding of an
edge may land in the neighbouring bin. ``peak`` is exact only up to half a bin width.

The reservoir uses reservoir sampling (algorithm R) with its own seeded generator, so every site of
one :func:`collect_stats` call keeps the same token positions.

Memory does not grow with the number of tokens: per site it is a few ``[n_neurons]`` vectors,
the ``[n_neurons, bins]`` histogram, the ``[reservoir, n_neurons]`` float32 reservoir, plus the
activations of the pilot's updates but its last until the range is fixed. An update's scratch is
about its own size (the chunk partials) plus, per thread, up to 256 KiB of counters (fused kernel) or a
few MiB (unfused path).
"""
from __future__ import annotations

from contextlib import contextmanager
from os import PathLike
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..util import torch_threads
from . import fused
from .architectures import NEURON_SITES, parse_name, site_of
from .hooks import HookedModel, HookPoint
from .reduction import NonFiniteActivationError, Partials, describe, ranges, run_split

__all__ = ["NeuronStats", "NonFiniteActivationError", "REDUCTION_THREADS", "collect_stats", "load_stats", "save_stats",
           "stats_frame"]

_CHUNK = 1 << 18  # values per float32 work chunk (1 MiB: a chunk and its scratch stay in a core's cache)
_PIECE = 1 << 18  # values of one column group binned at a time (float32 and int16 scratch per thread)
_GROUP = 128  # neurons binned together: their 128 x bins int64 counters stay in cache
_MARGIN = 0.01  # widening of the pilot range, as a fraction of its span
_MAX_BINS = 1 << 24  # float32 holds every bin index exactly up to here
REDUCTION_THREADS: int | None = None
"""Threads that reduce one update on the CPU on the unfused path, each single-threaded (None: as many as
``torch.get_num_threads()``). The fused kernel uses torch's threads."""
# Accumulated state, saved by to_dict: float64 sums, extremes, histogram and reservoir.
_STATE = ("_mean", "_m2", "_sum_abs", "_sum_sqrt_abs", "_n_pos", "_min", "_max", "_hist", "_res", "_res_index")


class NeuronStats:
    """Streaming statistics of ``n_neurons`` neurons, fed ``[n_tokens, n_neurons]`` activations.

    Args:
        n_neurons: width of the activations passed to :meth:`update`.
        bins: number of histogram bins per neuron.
        reservoir: number of activation vectors kept by reservoir sampling (0: none).
        pilot: number of non-empty updates whose per-neuron min/max fix the histogram range.
            Reading ``hist``, ``peak``, ``lo``, ``hi``, ``bin_edges`` or :meth:`to_dict` earlier
            ends the pilot there.
        seed: seed of the reservoir sampler.
        name: hook name (``blocks.{i}.{site}``), used in error messages.

    Accumulators live on the device of the data (they move with the first update).

    Example:
        >>> s = pp.NeuronStats(2, bins=4, reservoir=3)
        >>> s.update(torch.tensor([[1.0, -2.0], [3.0, 2.0]]))
        >>> s.update(torch.tensor([[5.0, 0.0]]))
        >>> s.count, s.mean.tolist(), s.mean_abs.tolist(), s.frac_pos.tolist()
        (3, [3.0, 0.0], [3.0, 1.3333333333333333], [1.0, 0.3333333333333333])
        >>> s.reservoir.shape, s.hist.sum(1).tolist()
        (torch.Size([3, 2]), [3, 3])
    """

    def __init__(self, n_neurons: int, *, bins: int = 100, reservoir: int = 1024, pilot: int = 1,
                 seed: int = 0, name: str = ""):
        if n_neurons < 1 or not 1 <= bins <= _MAX_BINS or reservoir < 0 or pilot < 1:
            raise ValueError(f"Need n_neurons >= 1, 1 <= bins <= {_MAX_BINS:,} (bin indices are float32), "
                             f"reservoir >= 0 and pilot >= 1; got {n_neurons}, {bins}, {reservoir}, {pilot}.")
        self.n_neurons, self.bins, self.reservoir_size = n_neurons, bins, reservoir
        self.pilot, self.seed, self.name = pilot, seed, name
        self.count = 0  # tokens seen
        self._updates = 0  # non-empty updates seen
        self._mean, self._m2, self._sum_abs, self._sum_sqrt_abs, self._n_pos = (
            torch.zeros(n_neurons, dtype=torch.float64) for _ in range(5))
        self._min = torch.full((n_neurons,), float("inf"), dtype=torch.float64)
        self._max = torch.full((n_neurons,), float("-inf"), dtype=torch.float64)
        self._hist = torch.zeros(n_neurons * bins, dtype=torch.int64)  # flat [neuron * bins + bin]
        self._res = torch.empty(reservoir, n_neurons)  # [reservoir, n_neurons]; rows < count are filled
        self._res_index = torch.full((reservoir,), -1, dtype=torch.int64)
        self._gen = torch.Generator().manual_seed(seed)
        self._pilot_data: list[torch.Tensor] = []
        self._lo: torch.Tensor | None = None
        self._hi: torch.Tensor | None = None

    def __repr__(self) -> str:
        return (f"NeuronStats({self.name!r}, n_neurons={self.n_neurons}, count={self.count}, "
                f"bins={self.bins}, reservoir={self.reservoir_size})")

    # ----------------------------------------------------------------- feeding
    def update(self, x: torch.Tensor) -> None:
        """Add activations ``x`` ``[n_tokens, n_neurons]``; raises on NaN/inf without changing the state."""
        if x.ndim != 2 or x.shape[1] != self.n_neurons:
            raise ValueError(f"{describe(self.name)}: expected activations [n_tokens, {self.n_neurons}], "
                             f"got {tuple(x.shape)}.")
        if x.shape[0] == 0:
            return
        x = x.detach()
        if x.device != self._mean.device:
            self._to(x.device)
        part = self._reduce_fused(x) if fused.active(x) else None  # None: compiling failed (warned)
        with _single_threaded(x.device, keep=part is not None) as threads:
            if part is None:
                part = self._reduce_all(x, threads)
            self._sample(x)
            self._commit(part)
        if self._lo is None:
            if self._updates >= self.pilot:
                self._fix_range(x)
            else:
                self._pilot_data.append(x.clone())

    def _reduce_fused(self, x: torch.Tensor) -> Partials | None:
        """The partial results of the whole update with the fused kernel (see :mod:`.fused`); None where
        it cannot be built."""
        binned = self._lo is not None and self.bins > 1
        part = fused.update(x, lo=self._lo32 if binned else None, scale=self._scale if binned else None,
                            bins=self.bins)
        if part is not None:
            part.check(self.name)  # before a count is committed
        return part

    def _step(self, rows: int) -> int:
        """Tokens per work chunk: about ``_CHUNK`` values, in an even number of chunks (two threads share them evenly)."""
        k = -(-rows * self.n_neurons // _CHUNK)
        return -(-rows // (k + k % 2)) if k > 1 else rows

    def _reduce_all(self, x: torch.Tensor, threads: int) -> Partials:
        """Partial results of the whole update (``threads`` threads); raises on NaN/inf before binning it."""
        n, step = self.n_neurons, self._step(x.shape[0])
        chunks = ranges(x.shape[0], step)
        binned = self._lo is not None and self.bins > 1
        part = Partials(step, torch.tensor([len(r) for r in chunks], dtype=torch.float64, device=x.device),
                         *(x.new_empty(shape, dtype=torch.float32)
                           for shape in ((len(chunks), n), (len(chunks), 5, n), (len(chunks), n), (len(chunks), n))),
                         torch.zeros(n * self.bins, dtype=torch.int64, device=x.device) if binned else None)
        run_split(chunks, lambda share: self._reduce(x, share, part), threads)
        part.check(self.name)  # before a NaN becomes a bin index
        if part.counts is not None:
            run_split(ranges(n, _GROUP), lambda share: self._bin(x, share, part.counts), threads)
        return part

    def _reduce(self, x: torch.Tensor, chunks: Sequence[range], part: Partials) -> None:
        """Float32 partial sums and extremes of ``chunks`` of ``x`` into ``part``.

        Writes only the slices of ``part`` that belong to these chunks (threads share them).
        """
        work = torch.empty((2, len(chunks[0]), self.n_neurons), dtype=torch.float32, device=x.device)
        copy = None if x.dtype == torch.float32 else torch.empty_like(work[0])
        for r in chunks:
            i, m, c = r.start // part.step, len(r), x[r.start: r.stop]
            if copy is not None:
                c = copy[:m].copy_(c)
            w, v, s = work[0, :m], work[1, :m], part.sums[i]
            centre = torch.sum(c, 0, out=part.centre[i]).div_(m)  # chunk-centred sums: exact variance
            torch.sub(c, centre, out=w)
            torch.sum(w, 0, out=s[0])  # ~0; makes the chunk's mean exact (shifted-data formula)
            torch.sum(w.square_(), 0, out=s[1])
            torch.sum(torch.abs(c, out=w), 0, out=s[2])
            torch.sum(torch.sqrt(w, out=v), 0, out=s[3])  # out of place: faster than sqrt_
            torch.sum(torch.gt(c, 0, out=w), 0, out=s[4])
            torch.amin(c, 0, out=part.low[i])  # amin/amax propagate NaN
            torch.amax(c, 0, out=part.high[i])

    def _bin(self, x: torch.Tensor, groups: Sequence[range], counts: torch.Tensor) -> None:
        """Add the histogram counts of the column ``groups`` of ``x`` to ``counts`` (flat ``[neuron * bins + bin]``).

        Bin ``(x - lo) * scale`` clamped to ``[0, bins - 1]``, in float32; a group's columns are read in
        pieces of at most ``_PIECE`` values straight from ``x`` (no copy of the update). Writes only the
        counters of ``groups`` (threads share the groups).
        """
        b, rows = self.bins, x.shape[0]
        step = max(1, _PIECE // _GROUP)
        size = min(rows, step) * min(_GROUP, self.n_neurons)
        pos = torch.empty(size, dtype=torch.float32, device=x.device)
        index = torch.empty(size, dtype=self._index_dtype, device=x.device)
        for cols in groups:
            width, lo, scale = len(cols), self._lo32[cols.start: cols.stop], self._scale[cols.start: cols.stop]
            for r in ranges(rows, step):
                src = x[r.start: r.stop, cols.start: cols.stop]
                if src.dtype != torch.float32:  # float64: round first, as the chunks' moments do
                    src = src.float()
                p = torch.sub(src, lo, out=pos[: len(r) * width].view(len(r), width)).mul_(scale).clamp_(0, b - 1)
                i = index[: len(r) * width].view(len(r), width).copy_(p).add_(self._local[:width])
                counts[cols.start * b: cols.stop * b] += torch.bincount(i.view(-1), minlength=width * b)

    def _commit(self, part: Partials) -> None:
        """Fold checked chunk partials into the float64 state (Chan et al. for mean and M2)."""
        m = part.sizes[:, None]  # [k, 1] tokens per chunk
        s = part.sums.double()
        mu = part.centre.double().add_(s[:, 0] / m)  # chunk means
        size, n0 = float(m.sum()), self.count
        batch_mean = (mu * m).sum(0).div_(size)
        batch_m2 = (s[:, 1] - s[:, 0].square() / m).sum(0).add_(((mu - batch_mean).square_() * m).sum(0))
        n = n0 + int(size)
        delta = batch_mean.sub_(self._mean)  # batch mean - running mean
        self._mean.add_(delta, alpha=size / n)
        self._m2.add_(batch_m2).add_(delta.square_(), alpha=n0 * size / n)
        self._sum_abs += s[:, 2].sum(0)
        self._sum_sqrt_abs += s[:, 3].sum(0)
        self._n_pos += s[:, 4].sum(0)
        torch.minimum(self._min, part.low.amin(0).double(), out=self._min)
        torch.maximum(self._max, part.high.amax(0).double(), out=self._max)
        if part.counts is not None:
            self._hist += part.counts
        elif self._lo is not None:  # one bin: every value lands in it
            self._hist += int(size)
        self.count = n
        self._updates += 1

    def _fix_range(self, x: torch.Tensor | None = None) -> None:
        """End the pilot: fix ``lo``/``hi`` from min/max seen so far and histogram the pilot's data (and ``x``)."""
        span = self._max - self._min
        pad = _MARGIN * torch.where(span > 0, span, self._max.abs().clamp_min(1.0))
        lo = (self._min - pad).float().double()  # representable in float32, so x - lo is exact or nearly
        self._set_range(lo, self._max + pad)
        for data in [*self._pilot_data, *([] if x is None else [x])]:
            if self.bins == 1:  # every value lands in the one bin
                self._hist += data.shape[0]
                continue
            got = fused.update(data, moments=False, lo=self._lo32, scale=self._scale, bins=self.bins) \
                if fused.active(data) else None
            if got is not None:
                self._hist += got.counts
                continue
            with _single_threaded(data.device) as threads:
                run_split(ranges(self.n_neurons, _GROUP), lambda share: self._bin(data, share, self._hist), threads)
        self._pilot_data = []

    def _set_range(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        self._lo, self._hi = lo, hi
        self._lo32, self._scale = lo.float(), (self.bins / (hi - lo)).float()  # bin = (x - lo) * scale
        width = min(_GROUP, self.n_neurons)
        self._index_dtype = torch.int16 if width * self.bins <= torch.iinfo(torch.int16).max else torch.int32
        self._local = torch.arange(width, dtype=self._index_dtype, device=lo.device) * self.bins

    def _sample(self, x: torch.Tensor) -> None:
        """Reservoir sampling (algorithm R) of the rows of ``x`` ``[n, n_neurons]``, vectorised."""
        k, n = self.reservoir_size, x.shape[0]
        if k == 0:
            return
        index = torch.arange(self.count, self.count + n, dtype=torch.float64)  # global token index
        draw = torch.rand(n, generator=self._gen, dtype=torch.float64).mul_(index + 1).floor_()
        slot = torch.where(index < k, index, draw).long()
        take = (slot < k).nonzero().flatten()
        # Several tokens may draw the same slot; the last one wins, as in the sequential algorithm.
        owner = torch.full((k,), -1, dtype=torch.int64).scatter_reduce_(0, slot[take], take, reduce="amax")
        dest = (owner >= 0).nonzero().flatten()
        src, dest = owner[dest].to(x.device), dest.to(x.device)
        self._res.index_copy_(0, dest, x.index_select(0, src).to(self._res.dtype))  # row copies, no gather
        self._res_index[dest] = src + self.count

    def _to(self, device: torch.device) -> None:
        for key in _STATE:
            setattr(self, key, getattr(self, key).to(device))
        if self._lo is not None:
            self._set_range(self._lo.to(device), self._hi.to(device))  # type: ignore[union-attr]

    # ----------------------------------------------------------------- reading
    def _checked(self, t: torch.Tensor) -> torch.Tensor:
        if self.count == 0:
            raise ValueError(f"{describe(self.name)}: zero tokens seen, no statistics to read.")
        return t

    def _ranged(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._checked(self._mean)
        if self._lo is None:
            self._fix_range(None)
        return self._lo, self._hi  # type: ignore[return-value]

    @property
    def mean(self) -> torch.Tensor:
        """``[n_neurons]`` float64 mean."""
        return self._checked(self._mean).clone()

    @property
    def var(self) -> torch.Tensor:
        """``[n_neurons]`` unbiased sample variance (divides by ``count - 1``; NaN for one token)."""
        m2 = self._checked(self._m2).clamp_min(0)  # float rounding could leave -1e-20 for a constant neuron
        return m2 / (self.count - 1) if self.count > 1 else torch.full_like(m2, float("nan"))

    @property
    def std(self) -> torch.Tensor:
        """``[n_neurons]`` sample standard deviation, ``sqrt(var)``."""
        return self.var.sqrt()

    @property
    def mean_abs(self) -> torch.Tensor:
        """``[n_neurons]`` mean of ``|x|``."""
        return self._checked(self._sum_abs) / self.count

    @property
    def mean_sqrt_abs(self) -> torch.Tensor:
        """``[n_neurons]`` mean of ``sqrt(|x|)``."""
        return self._checked(self._sum_sqrt_abs) / self.count

    @property
    def rms(self) -> torch.Tensor:
        """``[n_neurons]`` root mean square, ``sqrt(mean(x**2)) = sqrt(M2 / count + mean**2)``."""
        return (self._checked(self._m2).clamp_min(0) / self.count + self._mean.square()).sqrt()

    @property
    def frac_pos(self) -> torch.Tensor:
        """``[n_neurons]`` fraction of tokens with ``x > 0``."""
        return self._checked(self._n_pos) / self.count

    @property
    def min(self) -> torch.Tensor:
        """``[n_neurons]`` smallest value seen."""
        return self._checked(self._min).clone()

    @property
    def max(self) -> torch.Tensor:
        """``[n_neurons]`` largest value seen."""
        return self._checked(self._max).clone()

    @property
    def lo(self) -> torch.Tensor:
        """``[n_neurons]`` lower edge of the histogram range."""
        return self._ranged()[0].clone()

    @property
    def hi(self) -> torch.Tensor:
        """``[n_neurons]`` upper edge of the histogram range."""
        return self._ranged()[1].clone()

    @property
    def bin_edges(self) -> torch.Tensor:
        """``[n_neurons, bins + 1]`` bin edges, ``lo + k * (hi - lo) / bins``."""
        lo, hi = self._ranged()
        k = torch.arange(self.bins + 1, dtype=torch.float64, device=lo.device)
        return lo[:, None] + (hi - lo)[:, None] / self.bins * k

    @property
    def hist(self) -> torch.Tensor:
        """``[n_neurons, bins]`` int64 counts; each row sums to ``count``."""
        self._ranged()
        return self._hist.view(self.n_neurons, self.bins).clone()

    @property
    def peak(self) -> torch.Tensor:
        """``[n_neurons]`` mode estimate: centre of the fullest bin (the first one on ties)."""
        lo, hi = self._ranged()
        top = self._hist.view(self.n_neurons, self.bins).argmax(1)
        return lo + (top + 0.5) * (hi - lo) / self.bins

    @property
    def reservoir(self) -> torch.Tensor:
        """``[min(count, reservoir), n_neurons]`` float32 activation vectors of sampled tokens."""
        return self._checked(self._res)[: min(self.count, self.reservoir_size)].clone()

    @property
    def reservoir_index(self) -> torch.Tensor:
        """``[min(count, reservoir)]`` index of each reservoir row's token in the stream this site saw."""
        return self._checked(self._res_index)[: min(self.count, self.reservoir_size)].clone()

    # ----------------------------------------------------------------- saving
    def to_dict(self) -> dict[str, Any]:
        """Complete state as plain tensors and numbers (ends the pilot); inverse of :meth:`from_dict`."""
        lo, hi = self._ranged()
        return {
            "n_neurons": self.n_neurons, "bins": self.bins, "reservoir": self.reservoir_size, "pilot": self.pilot,
            "seed": self.seed, "name": self.name, "count": self.count, "updates": self._updates,
            "generator": self._gen.get_state(), "lo": lo.cpu(), "hi": hi.cpu(),
            **{key.lstrip("_"): getattr(self, key).cpu() for key in _STATE},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NeuronStats":
        """Rebuild from :meth:`to_dict`; further updates continue exactly where the saved one stopped."""
        s = cls(d["n_neurons"], bins=d["bins"], reservoir=d["reservoir"], pilot=d["pilot"], seed=d["seed"],
                name=d["name"])
        s.count, s._updates = d["count"], d["updates"]
        s._gen.set_state(d["generator"])
        for key in _STATE:
            setattr(s, key, d[key.lstrip("_")].clone())
        s._set_range(d["lo"].clone(), d["hi"].clone())
        return s


@contextmanager
def _single_threaded(device: torch.device, keep: bool = False) -> Iterator[int]:
    """Torch single-threaded in this thread (on the CPU); yields the number of reduction threads to use.

    ``keep``: leave torch's threads as they are (the fused kernel uses them) and yield 1.
    """
    if device.type != "cpu" or keep:
        yield 1
        return
    threads = REDUCTION_THREADS or torch.get_num_threads()  # read before this thread drops to one
    with torch_threads(1):
        yield threads


def save_stats(stats: Mapping[str, NeuronStats], path: str | PathLike) -> None:
    """Save ``{name: NeuronStats}`` (e.g. from :func:`collect_stats`) to one file with :func:`torch.save`.

    Example:
        >>> import tempfile, pathlib
        >>> model = pp.load_model("tiny-llama")
        >>> stats = pp.collect_stats(model, [model.to_tokens("Bees make honey.")], "mlp.pre_out", progress=False)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "stats.pt"
        >>> pp.save_stats(stats, path)
        >>> again = pp.load_stats(path)
        >>> list(again) == list(stats), torch.equal(again["blocks.1.mlp.pre_out"].peak, stats["blocks.1.mlp.pre_out"].peak)
        (True, True)
    """
    torch.save({name: s.to_dict() for name, s in stats.items()}, path)


def load_stats(path: str | PathLike) -> dict[str, NeuronStats]:
    """Load what :func:`save_stats` wrote (tensors on the CPU).

    Example:
        >>> import tempfile, pathlib
        >>> s = pp.NeuronStats(3, name="blocks.0.mlp.pre_out")
        >>> s.update(torch.arange(6.0).view(2, 3))
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "stats.pt"
        >>> pp.save_stats({s.name: s}, path)
        >>> pp.load_stats(path)["blocks.0.mlp.pre_out"].mean.tolist()
        [1.5, 2.5, 3.5]
    """
    return {name: NeuronStats.from_dict(d) for name, d in torch.load(path, map_location="cpu").items()}


def _model_inputs(batch: torch.Tensor | Mapping[str, torch.Tensor], device: torch.device) -> dict[str, Any]:
    if isinstance(batch, torch.Tensor):
        return {"inputs": batch}
    if isinstance(batch, Mapping):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    raise TypeError(f"A batch must be a tensor or a dict of tensors (input_ids, attention_mask, ...), "
                    f"got {type(batch).__name__}.")


def collect_stats(
    model: HookedModel,
    batches: Iterable[torch.Tensor | Mapping[str, torch.Tensor]],
    sites: str | Sequence[str] = NEURON_SITES,
    layers: Iterable[int] | None = None,
    *,
    bins: int = 100,
    reservoir: int = 1024,
    pilot_batches: int = 1,
    progress: bool = True,
    seed: int = 0,
    positions: Sequence[int] | None = None,
) -> dict[str, NeuronStats]:
    """Run ``model`` over ``batches`` and collect :class:`NeuronStats` at every site of every layer.

    Each batch runs through :meth:`HookedModel.run_body` up to the last requested layer: no head, no
    logits, no later blocks (hooks already active on those layers do not run). Hooks active around the
    call on the requested layers and earlier apply as in a full forward pass.

    Args:
        model: the model; its outputs are not changed.
        batches: token ids ``[batch, pos]``, pixel values ``[batch, channels, h, w]``, or dicts of model
            inputs such as :meth:`HookedModel.to_tokens` returns (other keys go to the model as they
            are). Positions where a dict's ``attention_mask`` is 0 (padding) are left out of every statistic.
        sites: site names (see :data:`paragraph_planning.SITES`); attention pre-out neurons are
            numbered ``head * d_head + i``.
        layers: layer indices (default: all).
        bins, reservoir, seed: passed to each :class:`NeuronStats`.
        positions: only these sequence positions count (e.g. ``[0]``, a ViT's class token); default all.
        pilot_batches: batches whose per-neuron min/max fix the histogram range (their tokens are
            counted too; the activations of all but the last are held in memory until then).
        progress: show a tqdm progress bar.

    Returns:
        ``{hook name: NeuronStats}`` in layer order, e.g. ``stats["blocks.3.mlp.pre_out"].peak``.

    Raises:
        UnknownHookError: unknown site or layer. NonFiniteActivationError: a NaN/inf activation.
        ValueError: the stream had zero (non-padding) tokens.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> batches = pp.token_batches("wiki-en", model.tokenizer, n_tokens=512, seq_len=64, batch_size=4)
        >>> stats = pp.collect_stats(model, batches, sites="mlp.pre_out", progress=False)
        >>> list(stats), stats["blocks.0.mlp.pre_out"].count
        (['blocks.0.mlp.pre_out', 'blocks.1.mlp.pre_out'], 512)
        >>> stats["blocks.0.mlp.pre_out"].mean_abs.shape
        torch.Size([48])
    """
    stats = {  # hook_names raises on an unknown site or layer, listing the valid ones
        name: NeuronStats(model.cfg.n_neurons(site_of(name)), bins=bins, reservoir=reservoir,
                          pilot=pilot_batches, seed=seed, name=name)
        for name in model.hook_names(sites, layers)
    }
    keep: torch.Tensor | None = None  # row indices of the current batch's non-padding positions (None: all)

    def hook_for(s: NeuronStats) -> Callable[..., None]:
        def fn(act: torch.Tensor, *, hook: HookPoint) -> None:
            act = act.detach() if positions is None else act.detach()[:, list(positions)]
            x = act.reshape(-1, s.n_neurons)
            s.update(x if keep is None else x.index_select(0, keep.to(x.device)))  # row copies, no mask gather

        return fn

    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    bar = tqdm(batches, total=total, desc="collect_stats", unit="batch", disable=not progress)
    if not stats:
        raise ValueError("collect_stats needs at least one site and one layer.")
    first = next(iter(stats.values()))
    last = max(model.parse(name)[0] for name in stats)
    with model.hooks([(name, hook_for(s)) for name, s in stats.items()]):
        for batch in bar:
            inputs = _model_inputs(batch, model.device)
            mask = inputs.get("attention_mask")
            if mask is not None and positions is not None:
                mask = mask[:, list(positions)]
            keep = None if mask is None or bool(mask.all()) else mask.reshape(-1).nonzero().flatten()
            model.run_body(**inputs, last_layer=last)  # no head, no later blocks: statistics need no logits
            bar.set_postfix(tokens=first.count, refresh=False)
    if first.count == 0:
        raise ValueError("collect_stats saw zero tokens: `batches` was empty or entirely padding.")
    return stats


def stats_frame(stats: Mapping[str, NeuronStats]) -> pd.DataFrame:
    """Tidy per-neuron table: layer, site, neuron, count, mean, var, std, ..., peak (one row per neuron).

    ``layer`` and ``site`` are read from ``blocks.{i}.{site}`` names; other names give layer -1 and
    the name as site.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> stats = pp.collect_stats(model, [model.to_tokens("Bees make honey.")], "attn.pre_out", progress=False)
        >>> df = pp.stats_frame(stats)
        >>> len(df), df.columns[:6].tolist()  # 2 layers x 32 attention neurons
        (64, ['layer', 'site', 'neuron', 'count', 'mean', 'var'])
    """
    frames = []
    for name, s in stats.items():
        parsed = parse_name(name)
        columns: dict[str, Any] = {
            "layer": parsed[0] if parsed else -1, "site": parsed[1] if parsed else name,
            "neuron": range(s.n_neurons), "count": s.count,
        }
        for key in ("mean", "var", "std", "mean_abs", "mean_sqrt_abs", "rms", "frac_pos", "min", "max", "peak"):
            columns[key] = getattr(s, key).cpu().numpy()
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)
