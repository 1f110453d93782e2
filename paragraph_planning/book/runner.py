"""The book runner: execute chapters with papermill, then render them with Jupyter Book (v1).

Pipeline (``python -m paragraph_planning build``, or ``run CHAPTER -p NAME VALUE`` for one chapter):

1. The chapters are the notebooks that ``_toc.yml`` lists (:mod:`.chapters`); their parameters come
   from one profile of ``book/params.yml`` (``full``: the rendered book; ``tiny``: tests, seconds
   each) and ``-p`` overrides, all checked against the notebooks' ``parameters`` cells before any
   kernel starts (:mod:`.parameters`).
2. The sources are copied into a staging copy of the book (``_staging/``), held by one run at a
   time, and papermill executes each chapter there (:mod:`.execution`): into a temporary file that
   replaces the chapter's page only when every cell succeeded, with the provenance and "Run this
   chapter" boxes appended (:mod:`.provenance`). A failed or interrupted run keeps the previous page.
3. ``jupyter-book build`` renders the staging copy (``build --student``: its student version, see
   :mod:`.student`) with ``execute_notebooks: "off"`` and the
   HTML replaces ``_build/html`` (or ``--out``) in one rename (:mod:`.html`).

Adding a chapter: write ``book/NN_name.ipynb`` with its first code cell tagged ``parameters``
(every knob: model, sizes, seed, device, dtype; choices and bounds in brackets at the start of a
comment, see :mod:`.parameters`) and outputs stripped; list it in ``_toc.yml``; give it an entry
under both ``full`` and ``tiny`` in ``book/params.yml`` (``tiny``: tiny random models, a few
seconds). ``tests/test_book.py`` then checks and runs it like every other chapter.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Mapping

from .chapters import ROOT, Chapter, chapters, check_profile, find_chapter, load_profiles, profile_parameters
from .execution import Interrupted, Progress, book_lock, execute, stage
from .html import build_html
from .parameters import check_parameters, declared_parameters, full_values, resolve
from .provenance import append_boxes, git_state, read_events

STAGING = "_staging"


def _stamp(root: Path, chapter: Chapter, params: Mapping[str, Any], profile: str) -> str:
    """What an executed notebook depends on: its source, its parameters (and profile) and the package's code."""
    from ..cache import code_tag

    h = hashlib.sha256((root / chapter.path).read_bytes())
    h.update(json.dumps([profile, params], sort_keys=True, default=str).encode())
    h.update(code_tag().encode())
    return h.hexdigest()[:20]


def _executed_stamp(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("metadata", {}).get("paragraph_planning", {}).get("stamp")
    except (OSError, ValueError):
        return None


def execute_chapter(
    chapter: Chapter, params: Mapping[str, Any], staging: Path, root: Path = ROOT, *, reuse: bool = False,
    profile: str = "full", progress: Progress | None = None,
) -> float | None:
    """Execute one chapter with papermill into ``staging``; returns the wall time (None if reused).

    ``params``: the values to inject (``profile``'s, with any changes); ``profile`` names what they
    are compared with in the provenance box. ``reuse``: skip a chapter whose executed copy has the
    same source, parameters and package code. A failing cell raises
    :class:`~.execution.ChapterFailed` (the page in place is kept).
    """
    root, staging = Path(root), Path(staging).absolute()
    check_parameters(chapter, params, root)
    target = staging / chapter.path
    stamp = _stamp(root, chapter, params, profile)
    if reuse and target.exists() and _executed_stamp(target) == stamp:
        return None
    declared = declared_parameters(chapter, root)
    base = profile_parameters(profile, chapter, root)
    started = git_state(root)  # the code the chapter runs; a commit made during a long run must not claim it

    def finish(nb: Any, events: Path, seconds: float) -> None:
        nb.metadata["paragraph_planning"] = {
            "stamp": stamp, "profile": profile, "parameters": json.loads(json.dumps(dict(params), default=str)),
            "seconds": round(seconds, 1)}
        append_boxes(nb, chapter, profile, full_values(chapter, params, root), base, declared,
                     read_events(events), seconds, root, started)

    return execute(chapter, params, staging, root, progress=progress, finish=finish)


def execute_all(root: Path, staging: Path, profile: str, *, reuse: bool = False,
                params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, float | None]:
    """Execute every chapter of the toc with ``profile``, printing each name, its sections and wall time."""
    chs = chapters(root)
    params = params or {c.name: resolve(c, profile, None, root) for c in chs}
    times: dict[str, float | None] = {}
    for i, c in enumerate(chs, 1):
        print(f"[{i}/{len(chs)}] {c.name} ({profile})", flush=True)
        times[c.name] = execute_chapter(c, params[c.name], staging, root, reuse=reuse, profile=profile,
                                        progress=Progress(c.name))
        print(f"  {'unchanged, reused' if times[c.name] is None else f'done in {times[c.name]:.1f} s'}", flush=True)
    return times


def build(
    profile: str = "full", out: Path | str | None = None, *, root: Path = ROOT, staging: Path | str | None = None,
    reuse: bool = False, html: bool = True, wait: bool = True, student: bool = False,
) -> Path | None:
    """Execute every chapter with ``profile`` and render the HTML; returns the path of ``index.html``.

    ``student``: render the student book instead (no solutions, empty stubs; :mod:`.student`) from
    ``<staging>-student`` into ``out`` (default ``_build/student-html``); the chapters execute as usual.
    """
    root = Path(root)
    staging = Path(staging or root / STAGING).absolute()
    out = Path(out) if out else root / "_build" / ("student-html" if student else "html")
    t0 = time.perf_counter()
    chs = chapters(root)
    check_profile(root, profile, chs)
    params = {c.name: resolve(c, profile, None, root) for c in chs}  # bad values: fail before touching files
    with book_lock(staging, f"build --profile {profile}", wait=wait):
        stage(root, staging)
        execute_all(root, staging, profile, reuse=reuse, params=params)
        rendered = staging
        if student:
            from .student import student_tree  # imports the workshop (torch): only a student build needs it

            rendered = student_tree(staging)
        index = build_html(rendered, out) if html else None
    print(f"{'Student book' if student else 'Book'} built in {time.perf_counter() - t0:.0f} s")
    return index


def run(
    name: str, overrides: Mapping[str, Any] | None = None, profile: str = "full", out: Path | str | None = None,
    *, root: Path = ROOT, staging: Path | str | None = None, html: bool = True, wait: bool = True,
) -> Path | None:
    """Execute one chapter with ``profile``'s parameters updated by ``overrides``; then rebuild the HTML.

    ``overrides``: values, or :class:`~.parameters.CliText` as typed after ``-p`` (read by each
    parameter's type). Everything is checked before a kernel starts.
    """
    root = Path(root)
    staging = Path(staging or root / STAGING).absolute()
    chapter = find_chapter(name, root)
    params = resolve(chapter, profile, overrides, root)
    with book_lock(staging, f"run {chapter.alias}", wait=wait):
        fresh = not (staging / "book").exists()
        stage(root, staging)
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        print(f"{chapter.name} ({profile}{': ' + shown if shown else ''})", flush=True)
        seconds = execute_chapter(chapter, params, staging, root, profile=profile, progress=Progress(chapter.name))
        print(f"{chapter.name}: done in {seconds:.1f} s", flush=True)
        if fresh and len(chapters(root)) > 1:
            print("note: the other chapters were never executed here; run `python -m paragraph_planning build` once.")
        if not html:
            return None
        try:
            return build_html(staging, Path(out) if out else root / "_build" / "html")
        except KeyboardInterrupt:
            raise Interrupted(chapter.name, "the page is updated in the staging copy; the previous HTML is kept, "
                                            "`build --reuse` renders it") from None


def describe(root: Path = ROOT) -> str:
    """The chapters, their aliases and parameters with defaults, types and profile values (``list``)."""
    profiles = load_profiles(root)
    lines = []
    for c in chapters(root):
        lines.append(f"{c.name}  (alias: {c.alias}; {c.path})")
        for k, p in declared_parameters(c, root).items():
            per = [f"{name}: {chs[c.name][k]!r}" for name, chs in profiles.items() if k in (chs.get(c.name) or {})]
            doc = f"  # {p.kind}" + (f"; {p.help}" if p.help else "")
            lines.append(f"    {k} = {p.source}" + (f"   [{'; '.join(per)}]" if per else "") + doc)
    return "\n".join(lines)
