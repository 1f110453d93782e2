"""The fused CPU kernel of :class:`~paragraph_planning.core.statistics.NeuronStats`' update (a small C library).

The unfused path makes about twenty passes over every activation (one torch operation per statistic,
each reading and writing memory) and then bins them (``torch.bincount``, single-threaded per call).
``fused.c`` (next to this module) does the whole update in one pass over memory, in blocks of
:data:`ROWS` tokens by :data:`COLUMNS` neurons shared between torch's threads:

* every chunk's float32 mean, sums of ``x - mean``, ``(x - mean)**2``, ``|x|``, ``sqrt|x|`` and ``x > 0``,
  minimum and maximum: the :class:`~paragraph_planning.core.reduction.Partials` the unfused path makes,
  merged in float64 the same way;
* the histogram bin of every value by the unfused path's float32 formula (``(x - lo) * scale`` clamped to
  ``[0, bins - 1]``, so the same bins), counted in per-thread counters that stay in cache.

Sums differ from the unfused path's by float32 rounding (another summation order); extremes, counts and
bins are identical, and nothing depends on the number of threads.

The library is compiled once per machine with the system's C compiler (``$CC``, else ``gcc``, ``cc`` or
``clang``; about a second) into the cache folder (``kernels/``, named by a hash of the source, the
compiler and the flags) and loaded with :mod:`ctypes`. It uses OpenMP; with gcc on Linux that is the
``libgomp`` torch has loaded, so the kernel runs on torch's own thread pool.

:data:`FUSED`: ``None`` (default) uses the kernel on the CPU where it builds and otherwise warns once,
naming the reason, and uses the unfused path; ``True`` requires it (errors propagate); ``False`` never
uses it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path

import torch

from ..util import cache_dir
from .reduction import Partials

FUSED: bool | None = None
"""Use the compiled kernel: None (where it builds), True (always; errors propagate), False (never)."""
ROWS = 128
"""Tokens per chunk of the partial moments: float32 sums, accumulated in order, over at most this many tokens
(keep it small: the rounding error grows with it)."""
COLUMNS = 64
"""Neurons per block of work: a block's rows and its ``COLUMNS x bins`` int32 counters stay in cache (fewer
neurons per block where ``bins`` exceeds 1,024)."""
SOURCE = Path(__file__).with_name("fused.c")
FLAGS = ("-O3", "-shared", "-fPIC", "-fno-math-errno", "-ffp-contract=off", "-fopenmp")
"""Compiler flags. No ``-march=native`` (the cache folder may be shared by other CPUs) and no fast-math
(the bins must be torch's float32 ones); ``-fno-math-errno`` lets ``sqrtf`` vectorise."""
_MAX_ROWS = 1 << 30  # rows per call: the per-thread int32 counters cannot overflow
_COUNTERS = 1 << 16  # at most this many int32 counters per thread (fewer neurons per block for many bins)
_MAX_COLUMNS = 4096  # neurons per block at most: the kernel keeps six float32 arrays of them on each thread's stack
_broken: str | None = None  # why the build failed here (then the unfused path is used)
_lib: ctypes.CDLL | None = None


def active(x: torch.Tensor) -> bool:
    """Whether an update of ``x`` uses the fused kernel."""
    return x.device.type == "cpu" and FUSED is not False and (FUSED is True or _broken is None)


def _compiler() -> list[str]:
    """The C compiler's command: ``$CC`` (which may hold arguments, ``ccache gcc``), else gcc, cc or clang."""
    found = shlex.split(os.environ.get("CC", "")) or [c for c in ("gcc", "cc", "clang") if shutil.which(c)][:1]
    if not found:
        raise RuntimeError("no C compiler found (install gcc, or set $CC)")
    return found


def build(rebuild: bool = False) -> Path:
    """Compile ``fused.c`` into the cache folder unless it is there already (or ``rebuild``); returns its path."""
    cc, source = _compiler(), SOURCE.read_bytes()
    version = subprocess.run([*cc, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256(b"\0".join(s if isinstance(s, bytes) else s.encode() for s in (
        source, " ".join(cc), version, " ".join(FLAGS), platform.machine(), platform.system()))).hexdigest()[:16]
    path = cache_dir("kernels") / f"fused-{key}.so"
    if rebuild or not path.exists():
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
        try:
            done = subprocess.run([*cc, *FLAGS, str(SOURCE), "-o", str(tmp), "-lm"], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{cc[-1]} failed to compile {SOURCE.name}: {done.stderr.strip()[:500]}")
            tmp.chmod(0o755)  # other users of a shared cache folder can load it
            os.replace(tmp, path)  # atomic: another process sees no half-written library
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL(str(build()))
        except OSError:  # a damaged cached library: build it again, once
            lib = ctypes.CDLL(str(build(rebuild=True)))
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        lib.pp_update.argtypes = [ptr, i64, i64, i64, i64, i64, ctypes.c_int, ptr, ptr, ptr, ptr, ptr, ptr,
                                  ctypes.c_int32, ptr]
        lib.pp_update.restype = ctypes.c_int
        _lib = lib
    return _lib


def _unavailable(err: Exception) -> None:
    """Record why the build failed and warn (once: :func:`active` is False from now on); re-raise if required."""
    global _broken
    if FUSED:
        raise err
    first = str(err).strip().splitlines()
    _broken = f"{type(err).__name__}: {first[0] if first else ''}"[:300]
    warnings.warn(f"The fused statistics kernel is unavailable here ({_broken}); using the unfused torch "
                  f"path (slower). Set paragraph_planning.core.fused.FUSED = False to skip trying.",
                  RuntimeWarning, stacklevel=4)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def update(x: torch.Tensor, *, moments: bool = True, lo: torch.Tensor | None = None,
           scale: torch.Tensor | None = None, bins: int = 1) -> Partials | None:
    """:class:`Partials` of ``x`` ``[tokens, neurons]`` (chunks of :data:`ROWS` tokens; the last may be shorter).

    ``moments=False`` skips the chunk moments (the fields are then empty). With ``lo`` and ``scale``
    (float32 ``[neurons]``, bin = ``(x - lo) * scale``), ``counts`` holds the flat ``[neurons * bins]``
    int64 histogram. ``x`` is read in float32 (other dtypes are converted first, as the unfused path
    rounds them). None where the kernel cannot be built (warned; see :data:`FUSED`).
    """
    try:
        lib = _library()
    except Exception as err:  # no compiler, no OpenMP, an unsupported platform, ...
        _unavailable(err)
        return None
    if (lo is None) != (scale is None):
        raise ValueError("Pass both lo and scale (the histogram's bins), or neither.")
    x = x.detach()
    if x.dtype != torch.float32 or x.stride(1) != 1:
        x = x.float().contiguous()
    rows, n = x.shape
    k = -(-rows // ROWS) if moments else 0
    f32 = {"dtype": torch.float32, "device": "cpu"}  # whatever torch's defaults are: the C code writes these
    centre, low, high = (torch.empty(k, n, **f32) for _ in range(3))
    sums = torch.empty(k, 5, n, **f32)
    binned = lo is not None and scale is not None
    edges = (lo.float().contiguous(), scale.float().contiguous()) if binned else (None, None)  # kept alive
    counts = torch.zeros(n * bins, dtype=torch.int64, device="cpu") if binned else None
    step = max(1, _MAX_ROWS // ROWS) * ROWS  # whole chunks per call
    columns = max(1, min(COLUMNS, _MAX_COLUMNS, _COUNTERS // bins if binned else _MAX_COLUMNS))
    for start in range(0, rows, step):
        part, first = x[start: start + step], start // ROWS
        with torch.profiler.record_function("paragraph_planning::fused_update"):  # named in torch.profiler tables
            failed = lib.pp_update(part.data_ptr(), part.shape[0], n, x.stride(0), ROWS, columns,
                                   torch.get_num_threads(),
                                   *(_ptr(t[first:]) if moments else None for t in (centre, sums, low, high)),
                                   *map(_ptr, edges), bins, _ptr(counts))
        if failed:
            raise MemoryError(f"The fused statistics kernel could not allocate {columns * bins:,} counters per thread.")
    sizes = torch.full((k,), float(ROWS), dtype=torch.float64, device="cpu")
    if k and rows % ROWS:
        sizes[-1] = rows % ROWS
    return Partials(ROWS, sizes, centre, sums, low, high, counts)
