"""Estimators of the peak (mode) of each neuron's activation distribution, and its skewness.

The paper's peak is the centre of the fullest of 100 equal histogram bins (:func:`hist_mode`;
:meth:`~.statistics.NeuronStats.peak` does the same on streaming histograms). :func:`kde_mode` is
the mode of a Gaussian KDE (scipy's bandwidth rules), batched over neurons; :func:`kde_mode_scipy`
is the slow reference it is tested against. All take rows of samples ``[N, S]``: one neuron a row.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def hist_mode(samples: torch.Tensor, bins: int = 100) -> torch.Tensor:
    """Mode estimate per row of ``samples`` ``[N, S]``: centre of the fullest of ``bins`` equal bins.

    The bins span each row's ``[min, max]`` (``torch.histc``'s convention, ``max`` in the last bin);
    ties go to the first bin; a constant row returns its value.
    """
    x = torch.as_tensor(samples).double()
    x = x[None] if x.dim() == 1 else x
    lo, hi = x.min(1).values, x.max(1).values
    width = ((hi - lo) / bins).clamp_min(1e-300)
    idx = ((x - lo[:, None]) / width[:, None]).floor().clamp_(0, bins - 1).long()
    counts = torch.zeros(x.shape[0], bins, dtype=torch.float64).scatter_add_(1, idx, torch.ones_like(x))
    return torch.where(hi > lo, lo + (counts.argmax(1) + 0.5) * width, lo)


def _kde_factor(n: int, bw_method: str | float) -> float:
    """scipy's bandwidth factor: Scott ``n^(-1/5)``, Silverman ``(3n/4)^(-1/5)``, or a number."""
    if bw_method == "scott":
        return n ** (-1 / 5)
    if bw_method == "silverman":
        return (n * 3 / 4) ** (-1 / 5)
    if isinstance(bw_method, (int, float)) and bw_method > 0:
        return float(bw_method)
    raise ValueError(f"bw_method must be 'scott', 'silverman' or a positive number, got {bw_method!r}.")


@torch.no_grad()
def kde_mode(samples: torch.Tensor, bw_method: str | float = "scott", grid: int = 1024, refine: int = 16,
             chunk: int = 512) -> torch.Tensor:
    """Mode of a 1-D Gaussian KDE per row of ``samples`` ``[N, S]``, batched.

    The KDE is ``scipy.stats.gaussian_kde``'s: bandwidth ``h = factor · std(ddof=1)``, the factor
    from ``bw_method`` as in scipy (Scott ``S^(-1/5)``, Silverman, or a number). The search:
    the density on ``grid`` points spanning each row's ``[min, max]`` by linear binning and an FFT
    convolution with the Gaussian (the usual fast KDE), then the exact density on ``refine``
    points within two grid steps of its argmax. :func:`kde_mode_scipy` does the same search
    with scipy's exact density everywhere (slow; the tests compare the two).
    """
    x = torch.as_tensor(samples).double()
    x = x[None] if x.dim() == 1 else x
    n = x.shape[1]
    out = torch.empty(x.shape[0], dtype=torch.float64)
    k = torch.arange(2 * grid, dtype=torch.float64)
    offset = torch.where(k < grid, k, k - 2 * grid)  # circular offsets of a length-2G FFT
    u = torch.linspace(-2, 2, refine, dtype=torch.float64)
    for s in range(0, x.shape[0], chunk):
        xs = x[s:s + chunk]
        h = (_kde_factor(n, bw_method) * xs.std(1, unbiased=True)).clamp_min(1e-300)
        lo, hi = xs.min(1).values, xs.max(1).values
        step = ((hi - lo) / (grid - 1)).clamp_min(1e-300)
        pos = (xs - lo[:, None]) / step[:, None]
        j = pos.floor().clamp_(0, grid - 2)
        w = pos - j
        binned = torch.zeros(xs.shape[0], 2 * grid, dtype=torch.float64)
        binned.scatter_add_(1, j.long(), 1 - w).scatter_add_(1, j.long() + 1, w)
        kernel = torch.exp(-0.5 * (offset[None] * step[:, None] / h[:, None]).square())
        dens = torch.fft.irfft(torch.fft.rfft(binned) * torch.fft.rfft(kernel), n=2 * grid)[:, :grid]
        coarse = lo + dens.argmax(1) * step
        pts = coarse[:, None] + step[:, None] * u[None]  # [c, refine]
        exact = torch.exp(-0.5 * ((pts[:, :, None] - xs[:, None, :]) / h[:, None, None]).square()).sum(-1)
        best = pts.gather(1, exact.argmax(1, keepdim=True))[:, 0]
        out[s:s + chunk] = torch.where(hi > lo, best, lo)
    return out


def kde_mode_scipy(sample: Sequence[float] | np.ndarray, bw_method: str | float = "scott", grid: int = 4096) -> float:
    """The mode of ``scipy.stats.gaussian_kde(sample)``: its exact density on ``grid`` points over
    ``[min, max]``, then on 64 points within one step of the best (slow; for checks)."""
    from scipy.stats import gaussian_kde

    x = np.asarray(sample, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return lo
    kde = gaussian_kde(x, bw_method=bw_method)
    pts = np.linspace(lo, hi, grid)
    c = pts[np.argmax(kde(pts))]
    fine = c + (hi - lo) / (grid - 1) * np.linspace(-1, 1, 64)
    return float(fine[np.argmax(kde(fine))])


def skewness(samples: torch.Tensor) -> torch.Tensor:
    """Sample skewness ``m3 / m2^1.5`` per row of ``[N, S]`` (0 for a constant row)."""
    x = torch.as_tensor(samples).double()
    d = x - x.mean(1, keepdim=True)
    m2, m3 = d.square().mean(1), d.pow(3).mean(1)
    return torch.where(m2 > 0, m3 / m2.clamp_min(1e-300).pow(1.5), torch.zeros_like(m2))
