"""How a learner's function is checked: run it on small inputs, compare with the package, say what differs.

A check is written as ``body(c, fn)`` and wrapped by :func:`check`, which gives the learner-facing
``check_<name>(fn)``. Inside, :meth:`Checker.call` runs the learner's code (an exception becomes a
readable failure, ``NotImplementedError`` "not implemented yet"), and :meth:`Checker.close` /
:meth:`Checker.equal` compare a result with the package's own and stop at the first mismatch.
``mistakes`` name results a common wrong implementation would give (mean instead of peak, a
position off by one, ...): when the learner's result matches one, the report says so in words.

A check never raises for the learner's errors (a student notebook runs top to bottom with empty
stubs); it prints its report and returns a :class:`CheckResult` (``strict=True`` raises instead).
"""
from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..util import torch_threads

TINY_LM = "tiny-llama"
"""The model every model-based check runs on: 2 layers, d_model 32, d_mlp 48, a character tokenizer."""


@dataclass
class CheckResult:
    """The outcome of one check: ``passed``, the report lines, and the report as one string (``message``).

    In a notebook the report has been printed already, so the result itself displays nothing.
    """

    name: str
    passed: bool
    lines: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """The whole report."""
        return "\n".join(self.lines)

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"<{self.name}: {'passed' if self.passed else 'failed'}>"

    def _ipython_display_(self) -> None:  # the report was printed by the check
        return None


class _Stop(Exception):
    """Ends a check at its first failure."""


class Checker:
    """Collects what passed and stops at the first failure (see the module docstring)."""

    def __init__(self, name: str):
        self.name = name
        self.lines: list[str] = []
        self.n_passed = 0

    def ok(self, what: str) -> None:
        """Record a passed step."""
        self.lines.append(f"  ✓ {what}")
        self.n_passed += 1

    def fail(self, what: str, *details: str) -> None:
        """Record the failure and stop the check."""
        self.lines.append(f"  ✗ {what}")
        self.lines.extend(f"      {d}" for d in details if d)
        raise _Stop

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run learner code; an exception fails the step with its type, message and line."""
        try:
            return fn(*args, **kwargs)
        except _Stop:
            raise
        except NotImplementedError:
            self.fail(f"{what}: not implemented yet",
                      "Replace `raise NotImplementedError` in the stub with your code, run that cell, then this one.")
        except Exception as err:  # the learner's bug, reported in words
            frames = [f for f in traceback.extract_tb(err.__traceback__) if _learner_file(f.filename) and f.line]
            where = f"in your code, line {frames[-1].lineno}: {frames[-1].line}" if frames else ""
            self.fail(f"{what}: your function raised {type(err).__name__}: {err}", where)

    def close(self, what: str, expected: Any, got: Any, *, atol: float = 1e-5, rtol: float = 1e-4,
              dims: Sequence[str] = (), mistakes: Mapping[str, Any] | None = None, hint: str = "") -> None:
        """Pass if ``got`` equals ``expected`` within tolerances, else fail with the first mismatch."""
        problem = difference(expected, got, atol=atol, rtol=rtol, dims=dims)
        if problem is None:
            self.ok(what)
            return
        self.fail(what, problem, *_matches(got, mistakes, atol, rtol), hint)

    def equal(self, what: str, expected: Any, got: Any, *, mistakes: Mapping[str, Any] | None = None,
              hint: str = "") -> None:
        """Pass if ``got == expected`` exactly (ints, strings, lists), else fail naming both."""
        if _same(expected, got):
            self.ok(what)
            return
        found = [f"Your result is {desc}." for desc, value in (mistakes or {}).items() if _same(value, got)]
        self.fail(what, f"expected {expected!r}, got {got!r}", *found, hint)


def _learner_file(filename: str) -> bool:
    """Whether a traceback frame is the learner's code (not this package, not an installed library)."""
    from pathlib import Path

    package = str(Path(__file__).resolve().parents[1])
    return not (filename.startswith(package) or "site-packages" in filename or "/lib/python" in filename)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # e.g. comparing a tensor with a list
        return False


def _matches(got: Any, mistakes: Mapping[str, Any] | None, atol: float, rtol: float) -> list[str]:
    return [f"Your result matches {desc}." for desc, value in (mistakes or {}).items()
            if difference(value, got, atol=atol, rtol=rtol) is None]


def as_array(x: Any) -> np.ndarray:
    """A tensor, array, number or nested list as a float64 numpy array (raises TypeError if impossible)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    if isinstance(x, dict):
        raise TypeError("a dict")
    return np.asarray(x, dtype=np.float64)


def difference(expected: Any, got: Any, *, atol: float = 1e-5, rtol: float = 1e-4,
               dims: Sequence[str] = ()) -> str | None:
    """None if ``got`` equals ``expected`` within tolerances, else the first difference in words.

    ``atol`` is relative to the largest ``|expected|`` (tiny random models have activations of 1e-3),
    so the comparison does not depend on the scale of the values.
    """
    if got is None:
        return "Your function returned None: did you forget `return`?"
    e = as_array(expected)
    try:
        g = as_array(got)
    except (TypeError, ValueError):
        return f"expected numbers of shape {tuple(e.shape)}, got a {type(got).__name__}."
    if g.shape != e.shape:
        msg = f"expected shape {tuple(e.shape)}{_dims(dims)}, got shape {tuple(g.shape)}."
        if g.shape == (1, *e.shape):
            msg += " Drop the batch dimension (index it with [0])."
        elif e.size == g.size:
            msg += " Same number of values: transposed or reshaped?"
        return msg
    if e.size == 0:
        return None
    nan_e, nan_g = np.isnan(e), np.isnan(g)
    finite = e[np.isfinite(e)]
    scale = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    bad = (nan_e != nan_g) | (~nan_e & ~nan_g & ~np.isclose(g, e, atol=atol * scale, rtol=rtol))
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    where = ", ".join(f"{d} {i}" for d, i in zip(dims, idx)) if dims else (f"index {idx}" if idx else "")
    n_bad = int(bad.sum())
    return (f"first mismatch{' at ' + where if where else ''}: expected {e[idx]:.6g}, got {g[idx]:.6g}"
            f" ({n_bad} of {e.size} values differ).")


def _dims(dims: Sequence[str]) -> str:
    return f" [{', '.join(dims)}]" if dims else ""


def check(exercise: str) -> Callable[[Callable[[Checker, Callable], None]], Callable[..., CheckResult]]:
    """Turn ``body(c, fn)`` into the learner-facing ``check_<name>(fn, *, strict=False, quiet=False)``.

    The wrapped function prints the report (unless ``quiet``) and returns a :class:`CheckResult`;
    with ``strict=True`` a failure raises ``AssertionError`` carrying the report.
    """
    def wrap(body: Callable[[Checker, Callable], None]) -> Callable[..., CheckResult]:
        name = body.__name__

        @functools.wraps(body)
        def run(fn: Callable, *, strict: bool = False, quiet: bool = False) -> CheckResult:
            c = Checker(name)
            try:
                if not callable(fn):
                    c.fail(f"expected your function, got {type(fn).__name__}",
                           f"Pass the function itself, without calling it: {name}(my_function).")
                with torch_threads(1):  # tiny inputs: one thread is fastest, and no worse on a busy machine
                    body(c, fn)
                passed = True
            except _Stop:
                passed = False
            head = (f"{name} (exercise {exercise}): all {c.n_passed} checks passed." if passed else
                    f"{name} (exercise {exercise}): failed after {c.n_passed} passed check"
                    f"{'' if c.n_passed == 1 else 's'}.")
            result = CheckResult(name, passed, [head, *c.lines])
            if not quiet:
                print(result.message)
            if strict and not passed:
                raise AssertionError(result.message)
            return result

        run.exercise = exercise  # type: ignore[attr-defined]
        return run

    return wrap


# ----------------------------------------------------------------------------- small inputs
@functools.lru_cache(maxsize=1)
def _tiny_lm() -> Any:
    from ..core.models import load_model

    return load_model(TINY_LM)


def tiny_lm(fresh: bool = False) -> Any:
    """The tiny random Llama of every model check (shared; ``fresh=True`` for one a check may edit)."""
    if fresh:
        from ..core.models import load_model

        return load_model(TINY_LM)
    return _tiny_lm()


TEXTS = ("The cat sat on the mat.\n\nA dog ran by.", "Bees make honey.\n\nThe hive hums all day.")
"""Two short texts with a paragraph break (the tiny model's tokenizer has one token per character)."""


def tiny_mlp_stats(model: Any, n_rows: int = 8, seq: int = 24, seed: int = 0) -> dict[str, Any]:
    """:func:`~paragraph_planning.core.statistics.collect_stats` of ``mlp.pre_out`` on seeded random tokens."""
    from ..core.statistics import collect_stats

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 130, (n_rows, seq), generator=gen)
    return collect_stats(model, [ids[:4], ids[4:]], "mlp.pre_out", bins=20, reservoir=16, progress=False)


def logits_with(model: Any, inputs: Any, hooks: Sequence[tuple[str, Callable]] = ()) -> torch.Tensor:
    """Logits of ``model`` on ``inputs`` with ``hooks`` on."""
    with model.hooks(list(hooks)):
        return model(inputs)


def site_with(model: Any, inputs: Any, name: str, hook: Callable | None = None, read: str | None = None) -> torch.Tensor:
    """The activation at ``read`` (default: ``name`` itself, as the hook left it) with ``hook`` on ``name``.

    A recording hook placed after ``hook`` on the same site sees the activation ``hook`` returned, so a
    neuron-level comparison can name the position and neuron that differ (logits blur small changes).
    """
    read = read or name
    with model.hooks([(name, hook)] if hook is not None else []), model.record([read]) as rec:
        model(inputs)
    return rec[read]
