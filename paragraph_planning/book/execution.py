"""Executing chapters safely: the staging copy, one run at a time, atomic pages, progress, clear failures.

* :func:`stage` mirrors the book's sources into the staging copy, keeping executed chapters.
* :func:`book_lock` lets one ``run``/``build`` at a time work on a staging copy (others wait or refuse).
* :func:`execute` runs papermill into ``<staging>/_build/running/`` and moves the notebook into
  place only when every cell succeeded; a failing or interrupted run leaves the previous page
  untouched and keeps its notebook in ``<staging>/_build/failed/`` (``_build`` is never rendered).
* :class:`Progress` shows the running section and the elapsed time (one updating line on a
  terminal, one line per section in a log).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, TextIO

from ..cache import EVENTS_ENV
from ..util import CACHE_ENV, cache_root
from .chapters import BookError, Chapter, chapters

BOOK_ENV = "PARAGRAPH_PLANNING_BOOK"  # same value as plots.BOOK_ENV; not imported (altair is slow)
RUNNING = "_build/running"
"""Folder of the staging copy where chapters execute (moved into ``book/`` on success)."""
FAILED = "_build/failed"
"""Folder of the staging copy that keeps the executed notebook of the last failed run of each chapter."""
_SKIP = {"_build", ".ipynb_checkpoints", "__pycache__"}

KERNEL_ENV = {
    BOOK_ENV: "1",  # plots.setup() picks the book's renderer
    "TQDM_DISABLE": "1",  # a progress bar frozen at 100% is noise in a book
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar
}
"""Environment of the kernels that execute chapters for the book (plus the events file and the cache folder)."""


class ChapterFailed(BookError):
    """A chapter's cell raised; the message holds the excerpt, the error and where the notebook is kept."""


class Interrupted(BookError):
    """Ctrl-C while a chapter ran; the previous page is kept."""

    def __init__(self, chapter: str, kept: str = "previous page kept"):
        super().__init__(f"interrupted: {chapter} ({kept})")
        self.chapter = chapter


# ============================================================================ staging copy
def _same(a: Path, b: Path) -> bool:
    return b.exists() and a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def stage(root: Path, staging: Path) -> None:
    """Mirror the book sources into ``staging``, keeping executed chapter notebooks.

    Copies ``_config.yml``, ``_toc.yml`` and ``book/`` (files that differ only, so Sphinx's
    incremental build sees what changed); notebooks already executed there are kept;
    files whose source was deleted are removed.
    """
    staging.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        if not _same(root / name, staging / name):
            shutil.copy2(root / name, staging / name)
    src_book, dst_book = root / "book", staging / "book"
    executed = {c.path.relative_to("book") for c in chapters(root) if c.path.parts[0] == "book"}
    wanted = set()
    for src in src_book.rglob("*"):
        rel = src.relative_to(src_book)
        if src.is_dir() or _SKIP & set(rel.parts):
            continue
        wanted.add(rel)
        dst = dst_book / rel
        if rel in executed and dst.exists():
            continue  # an executed chapter: chapters are (re)executed explicitly
        if not _same(src, dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    if dst_book.exists():
        for dst in sorted(dst_book.rglob("*"), reverse=True):
            rel = dst.relative_to(dst_book)
            if _SKIP & set(rel.parts):
                continue
            if dst.is_file() and rel not in wanted:
                dst.unlink()
            elif dst.is_dir() and not any(dst.iterdir()):
                dst.rmdir()


@contextlib.contextmanager
def book_lock(staging: Path, what: str, *, wait: bool = True) -> Iterator[None]:
    """Hold ``<staging>/.lock`` while ``what`` (e.g. ``run ablation``) works on this staging copy.

    Another holder makes this wait (saying who holds it) or, with ``wait=False``, raise
    :class:`BookError` at once. The lock is released when the process ends, however it ends.
    """
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / ".lock"
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            if not wait:
                raise BookError(f"{staging} is in use by {holder}; wait for it to finish, or use another --staging.")
            print(f"waiting for {holder} to finish with {staging} ...", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"`{what}` (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def kernel_env(events: Path | None = None) -> Iterator[None]:
    """Kernels started inside inherit :data:`KERNEL_ENV`, the events file and the cache folder, made absolute."""
    env = {**KERNEL_ENV, CACHE_ENV: str(cache_root())}
    if events is not None:
        env[EVENTS_ENV] = str(events)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ============================================================================ progress
def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def sections(nb: Any) -> list[str]:
    """For each cell, the title of the section it belongs to (the last Markdown heading before it)."""
    out, current = [], "beginning"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heads = re.findall(r"^#{1,3}\s+(.+?)\s*#*\s*$", cell.source, re.M)
            if heads:
                current = heads[-1]
        out.append(current)
    return out


class Progress:
    """Which section of a chapter runs and for how long.

    On a terminal: one line, rewritten every second. Otherwise: one line per section.
    """

    def __init__(self, name: str, stream: TextIO | None = None, tty: bool | None = None):
        self.name, self.stream = name, stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.t0 = time.perf_counter()
        self.state: tuple[str | None, int, int] = (None, 0, 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sections: list[str] = []

    def start(self, nb: Any) -> None:
        """Begin: ``nb`` is the notebook being executed (read for its sections)."""
        self._sections = sections(nb)
        if self.tty:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()

    def cell(self, index: int) -> None:
        """Cell ``index`` starts."""
        section = self._sections[index] if index < len(self._sections) else "?"
        changed = section != self.state[0]
        self.state = (section, index + 1, len(self._sections))
        if changed and not self.tty:
            print(f"  {_clock(time.perf_counter() - self.t0):>6}  {section} (cell {index + 1}/{len(self._sections)})",
                  file=self.stream, flush=True)

    def _line(self) -> str:
        section, i, n = self.state
        where = f"{section[:60]} (cell {i}/{n})" if section is not None else "starting the kernel"
        return f"  {self.name}: {where} {_clock(time.perf_counter() - self.t0)}"

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.stream.write("\r\x1b[K" + self._line())
            self.stream.flush()

    def stop(self) -> None:
        """End (clears the terminal line)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _engine(progress: Progress | None) -> str:
    """Register (once) and return the papermill engine that reports each cell to ``progress``."""
    from papermill.engines import NBClientEngine, papermill_engines

    class _Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            if progress is not None:
                start = nb_man.cell_start
                progress.start(nb_man.nb)

                def cell_start(cell: Any, cell_index: int | None = None, **kw: Any) -> Any:
                    progress.cell(cell_index or 0)
                    return start(cell, cell_index, **kw)

                nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("paragraph_planning", _Engine)
    return "paragraph_planning"


# ============================================================================ failures
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def excerpt(source: str, traceback: list[str], context: int = 3) -> str:
    """The failing line of a cell with ``context`` lines around it (``->`` marks it), and where it raised.

    The line is the last ``Cell In[..], line N`` frame of the traceback (the innermost frame in
    the cell); the frame that raised, if it is in a module, is named after it.
    """
    text = _ANSI.sub("", "\n".join(traceback or []))
    lines = source.splitlines()
    cell_lines = [int(n) for n in re.findall(r"Cell In\s*\[\d*\],\s*line (\d+)", text)]
    if not cell_lines or not lines:
        head = "\n".join("    " + line for line in lines[:8])
        return head + ("\n    ..." if len(lines) > 8 else "")
    n = cell_lines[-1]
    lo, hi = max(1, n - context), min(len(lines), n + context)
    out = [f"  {'->' if i == n else '  '} {i:3d} {lines[i - 1]}" for i in range(lo, hi + 1)]
    frames = list(re.finditer(r"^File ([^\s:]+):(\d+), in (\w+)", text, re.M))
    if frames and frames[-1].start() > text.rfind("Cell In"):
        path, line, func = frames[-1].groups()
        arrow = re.search(r"^-+> *\d+ (.*)$", text[frames[-1].end():], re.M)
        code = f": {arrow.group(1).strip()[:100]}" if arrow else ""
        out.append(f"       raised in {_short_path(path)}:{line} ({func}){code}")
    return "\n".join(out)


def _short_path(path: str) -> str:
    parts = Path(path).parts
    return str(Path(*parts[parts.index("paragraph_planning"):])) if "paragraph_planning" in parts else path


# ============================================================================ one chapter
def execute(chapter: Chapter, params: Mapping[str, Any], staging: Path, root: Path, *,
            progress: Progress | None = None, finish: Any = None) -> float:
    """Execute ``chapter`` with ``params`` into the staging copy atomically; returns the wall time.

    papermill writes ``<staging>/_build/running/<chapter>.ipynb`` (the kernel appends its events next to
    it); ``finish(notebook, events_path, seconds)`` may edit the notebook (metadata, provenance);
    only then does the notebook replace ``<staging>/book/<chapter>.ipynb``. A failing cell raises
    :class:`ChapterFailed`, Ctrl-C :class:`Interrupted`; either way the page in place is untouched
    and the executed notebook goes to ``<staging>/_build/failed/<chapter>.ipynb``.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target = staging / chapter.path
    running = staging / RUNNING
    running.mkdir(parents=True, exist_ok=True)
    tmp = running / f"{chapter.name}.ipynb"
    events = running / f"{chapter.name}.events.jsonl"
    for f in (tmp, events):
        f.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        try:
            with kernel_env(events):
                papermill.execute_notebook(
                    str(root / chapter.path), str(tmp), parameters=dict(params), kernel_name="python3",
                    engine_name=_engine(progress), progress_bar=False, log_output=False, cwd=str(target.parent),
                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"],  # no start-up/shutdown chatter
                    shutdown_kernel="immediate",  # every output is in by then; Ctrl-C stops a busy kernel at once
                )
        finally:
            if progress is not None:
                progress.stop()
        seconds = time.perf_counter() - t0
        nb = nbformat.read(str(tmp), as_version=4)
        if finish is not None:
            finish(nb, events, seconds)
        nbformat.write(nb, str(tmp))
        os.replace(tmp, target)
        return seconds
    except KeyboardInterrupt:
        _keep_failed(tmp, staging, chapter)
        raise Interrupted(chapter.name) from None
    except PapermillExecutionError as err:
        kept = _keep_failed(tmp, staging, chapter)
        raise ChapterFailed(
            f"{chapter.name} failed in cell {err.cell_index} (execution count {err.exec_count}):\n"
            f"{excerpt(err.source or '', err.traceback)}\n{err.ename}: {err.evalue}\n"
            f"{chapter.name}: previous page kept; the failing notebook is {kept}"
        ) from None
    except Exception as err:  # the kernel died, papermill could not start it, ...
        kept = _keep_failed(tmp, staging, chapter)
        raise ChapterFailed(f"{chapter.name} could not run: {type(err).__name__}: {err}\n"
                            f"{chapter.name}: previous page kept; the notebook so far is {kept}") from None
    finally:
        tmp.unlink(missing_ok=True)
        events.unlink(missing_ok=True)


def _keep_failed(tmp: Path, staging: Path, chapter: Chapter) -> Path | str:
    """Move the executed notebook of a failed run to ``<staging>/_build/failed/`` (returns where, or why not)."""
    dest = staging / FAILED / chapter.path.name
    if not tmp.exists():
        return "not written (the kernel had not started)"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    return dest
