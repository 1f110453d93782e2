"""The student book (``python -m paragraph_planning build --student``): the same pages without solutions.

The chapters execute as usual into the staging copy (with the reference solutions, so the book's
results are the same); :func:`student_tree` then writes a second copy beside it, ``<staging>-student``,
in which

* every notebook is its :func:`~paragraph_planning.workshop.student_notebook` (solution cells gone,
  stubs empty, outputs of ordinary cells kept, check cells' outputs cleared);
* every exercise page (``book/exercises/NN_name.md``) becomes the chapter's student notebook
  (``.ipynb``, so each page's download button gives participants a notebook that opens with the stubs);
* ``hide_solutions: true`` is set in ``_config.yml`` (sphinx-exercise drops any stray ``{solution}``);

and :func:`check_no_solutions` refuses the copy if any file still holds a solution directive or
tag. Jupyter Book renders that copy into ``_build/student-html`` (or ``--out``).
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

from ..workshop.notebooks import (
    SOLUTION_TAG,
    SolutionLeakError,
    exercise_notebook,
    exercise_page_chapter,
    student_notebook,
)
from .chapters import BookError

SUFFIX = "-student"
"""The student copy of ``<staging>`` is ``<staging>-student``."""
HIDE = re.compile(r"^(\s*hide_solutions:\s*)false\b", re.M)
LEAK = re.compile(r"\{solution(?:-start|-end)?\}|" + re.escape(SOLUTION_TAG))


def student_dir(staging: Path) -> Path:
    """Where the student copy of the staging copy ``staging`` lives."""
    return staging.with_name(staging.name + SUFFIX)


def _write(path: Path, data: bytes) -> None:
    """Write only when the content changes (Sphinx then rebuilds only what changed)."""
    if not (path.exists() and path.read_bytes() == data):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    return (nbformat.writes(nb) + "\n").encode()


def student_tree(staging: Path, dest: Path | None = None) -> Path:
    """Write the student version of the staging copy ``staging`` into ``dest`` (default :func:`student_dir`).

    Raises :class:`BookError` when ``_config.yml`` lacks ``hide_solutions: false`` or a page cannot be
    cleaned (a Markdown page other than an exercise page with gated solutions, unbalanced directives).
    """
    staging = Path(staging)
    dest = Path(dest) if dest else student_dir(staging)
    config = (staging / "_config.yml").read_text()
    if not HIDE.search(config):
        raise BookError("_config.yml must set `hide_solutions: false` under sphinx.config "
                        "(the student build switches it to true).")
    _write(dest / "_config.yml", HIDE.sub(r"\1true", config).encode())
    _write(dest / "_toc.yml", (staging / "_toc.yml").read_bytes())
    wanted = set()
    for src in sorted((staging / "book").rglob("*")):
        rel = src.relative_to(staging)
        if src.is_dir() or {"_build", ".ipynb_checkpoints", "__pycache__"} & set(rel.parts):
            continue
        try:
            chapter = exercise_page_chapter(rel, staging)
            if chapter is not None:
                rel = rel.with_suffix(".ipynb")
                data = _notebook_bytes(student_notebook(exercise_notebook(chapter)))
            elif src.suffix == ".ipynb":
                data = _notebook_bytes(student_notebook(nbformat.read(str(src), as_version=4), keep_outputs=True))
            else:
                data = src.read_bytes()
        except SolutionLeakError as err:
            raise BookError(f"{rel}: {err}") from None
        wanted.add(rel)
        _write(dest / rel, data)
    for old in sorted((dest / "book").rglob("*"), reverse=True):
        rel = old.relative_to(dest)
        if old.is_file() and rel not in wanted and "_build" not in rel.parts:
            old.unlink()
    check_no_solutions(dest)
    return dest


def check_no_solutions(tree: Path) -> None:
    """Raise :class:`BookError` naming the first file of ``tree``'s book that still holds a solution."""
    for path in sorted((Path(tree) / "book").rglob("*")):
        if path.suffix in (".md", ".ipynb") and "_build" not in path.parts:
            m = LEAK.search(path.read_text(errors="replace"))
            if m:
                raise BookError(f"The student copy still holds {m.group(0)!r} in {path}: it cannot be published "
                                "without its solutions (write solutions as the workshop's notebook cells).")
