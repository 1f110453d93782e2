"""Exercises as notebook cells, and the student version of a notebook (solutions removed).

The convention (one exercise, in this order; sphinx-exercise renders the directives):

1. markdown, tag ``exercise``: ``{exercise-start}`` (title, label, ``:nonumber:``), the header line
   (difficulty, importance, minutes), the task, and the hint (``{hint}``, collapsed);
2. code, tags ``exercise-stub`` and ``raises-exception``: the stub (signature, docstring,
   ``raise NotImplementedError``). Defining it raises nothing; the tag covers learners' top-level code
   under nbmake (papermill ignores the tag, so the book's chapters never raise at top level);
3. markdown, tag ``exercise``: "What you should see", then ``{exercise-end}``;
4. markdown, tag ``exercise-solution``: ``{solution-start}`` with ``:class: dropdown`` (collapsed);
5. code, tag ``exercise-solution``: the reference solution (it redefines the stub's function);
6. markdown, tag ``exercise-solution``: ``{solution-end}``;
7. code, tag ``exercise-check``: ``check_<name>(<function>)``; it prints its report and never raises.

:func:`student_notebook` drops every cell from ``{solution-start}`` to ``{solution-end}`` and every cell
tagged ``exercise-solution``, removes non-gated ``{solution}`` blocks from markdown, and clears the
check cells' outputs (and, unless ``keep_outputs``, every output). sphinx-exercise's ``hide_solutions``
alone does not make a student book: with gated solutions still in a notebook it drops
``{solution-start}`` but keeps ``{solution-end}``, and the HTML build fails ("unknown node type:
solution_end_node", sphinx-exercise 1.2.1). A student build renders :func:`student_notebook` copies
(``hide_solutions: true`` then only catches stray ``{solution}`` directives in Markdown pages).
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Iterable

import nbformat
from nbformat import NotebookNode

from .registry import CHAPTERS, Exercise, exercises

EXERCISE_TAG, STUB_TAG, SOLUTION_TAG, CHECK_TAG = "exercise", "exercise-stub", "exercise-solution", "exercise-check"
RAISES_TAG = "raises-exception"
_START = re.compile(r"^\s*(`{3,}|:{3,})\{solution-start\}", re.M)
_END = re.compile(r"^\s*(`{3,}|:{3,})\{solution-end\}", re.M)
_BLOCK = re.compile(r"^\s*(`{3,}|:{3,})\{solution\}")


class SolutionLeakError(ValueError):
    """A notebook whose solutions cannot be removed cleanly (unbalanced gated directives)."""


def _md(source: str, *tags: str) -> NotebookNode:
    return nbformat.v4.new_markdown_cell(source, metadata={"tags": list(tags)})


def _code(source: str, *tags: str) -> NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})


def exercise_cells(ex: Exercise) -> list[NotebookNode]:
    """The seven cells of one exercise (see the module docstring), without ids (nbformat adds them)."""
    opening = (f"```{{exercise-start}} {ex.id} · {ex.title}\n:label: {ex.label}\n:nonumber:\n```\n\n"
               f"{ex.header()} · checked by `{ex.check_name}`\n\n{ex.task}\n\n"
               f"```{{hint}}\n:class: dropdown\n{ex.hint}\n```")
    return [
        _md(opening, EXERCISE_TAG),
        _code(ex.stub(), STUB_TAG, RAISES_TAG),
        _md(f"**What you should see.** {ex.expected}\n\n```{{exercise-end}}\n```", EXERCISE_TAG),
        _md(f"```{{solution-start}} {ex.label}\n:class: dropdown\n```", SOLUTION_TAG),
        _code(ex.solution_code(), SOLUTION_TAG),
        _md("```{solution-end}\n```", SOLUTION_TAG),
        _code(ex.check_code(), CHECK_TAG),
    ]


def _strip_blocks(source: str) -> str:
    """Remove non-gated ``{solution}`` directive blocks (backtick or colon fences) from Markdown."""
    out, fence = [], None
    for line in source.splitlines(keepends=True):
        if fence is None:
            m = _BLOCK.match(line)
            if m:
                fence = m.group(1)
                continue
            out.append(line)
        elif line.strip() and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
            fence = None
    if fence is not None:
        raise SolutionLeakError(f"A {{solution}} block opened with {fence!r} is never closed.")
    return "".join(out)


def student_notebook(nb: NotebookNode, *, keep_outputs: bool = False) -> NotebookNode:
    """A copy of ``nb`` without solutions, for participants (see the module docstring).

    ``keep_outputs=True`` keeps the outputs of ordinary cells (for an executed chapter rendered as the
    student book); check cells always lose theirs, since they reported on the reference solution.
    Raises :class:`SolutionLeakError` on a ``{solution-start}`` without ``{solution-end}`` or the reverse.
    """
    nb = copy.deepcopy(nb)
    cells, inside, opened = [], False, -1
    for i, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        md = cell.cell_type == "markdown"
        if md and _START.search(cell.source):
            if inside:
                raise SolutionLeakError(f"cell {i}: a solution starts inside the solution opened in cell {opened}.")
            inside, opened = True, i
        drop = inside or SOLUTION_TAG in tags
        if md and _END.search(cell.source):
            if not inside:
                raise SolutionLeakError(f"cell {i}: {{solution-end}} with no {{solution-start}} before it.")
            inside = False
        if drop:
            continue
        if md:
            cell.source = _strip_blocks(cell.source)
        elif cell.cell_type == "code" and (not keep_outputs or CHECK_TAG in tags):
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    if inside:
        raise SolutionLeakError(f"cell {opened}: {{solution-start}} is never closed by {{solution-end}}.")
    nb.cells = cells
    return nb


def student_copy(src: str | Path, dest: str | Path, *, keep_outputs: bool = False) -> Path:
    """Write the student version of the notebook ``src`` to ``dest``."""
    nb = nbformat.read(str(src), as_version=4)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(student_notebook(nb, keep_outputs=keep_outputs), str(dest))
    return dest


def insert_exercises(nb: NotebookNode, placements: Iterable[tuple[str, Exercise]]) -> NotebookNode:
    """A copy of ``nb`` with each exercise's cells at the end of the section whose heading contains the text.

    ``placements``: ``(heading text, exercise)`` pairs; the cells go before the next heading of the same
    or a higher level (or at the end). An unknown heading raises, listing the notebook's headings.
    """
    nb = copy.deepcopy(nb)
    for heading, ex in placements:
        heads = [(i, len(m.group(1)), m.group(2)) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                 for m in [re.match(r"^(#{1,6})\s+(.*)", c.source)] if m]
        hit = [(i, level) for i, level, text in heads if heading in text]
        if not hit:
            raise ValueError(f"No heading contains {heading!r}. Headings: {[t for _, _, t in heads]}")
        i, level = hit[0]
        end = next((j for j, lv, _ in heads if j > i and lv <= level), len(nb.cells))
        nb.cells[end:end] = exercise_cells(ex)
    return nb


# ----------------------------------------------------------------------------- exercise pages
EXERCISES_DIR = Path("book") / "exercises"
"""Where the exercise pages live, one per chapter (``book/exercises/NN_name.md``), relative to the root."""
_KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def exercise_notebook(chapter: str) -> NotebookNode:
    """A chapter's exercises as one notebook: a title cell, then each exercise's cells (reference version).

    The rendered page is :func:`exercise_page` (the same cells as MyST Markdown); participants get
    :func:`student_notebook` of it (the student build writes it in the page's place).
    """
    stem = CHAPTERS[chapter[:2]]
    exs = exercises(chapter)
    minutes = sum(ex.minutes for ex in exs)
    intro = (f"# Exercises of chapter {stem[:2]}\n\n"
             f"These {len(exs)} exercises go with {{doc}}`../{stem}` (about {minutes} minutes in all). Each has a "
             "stub to fill in, a hint and a reference solution (both collapsed), what you should see, and a check "
             "cell that runs your function against the package's own implementation on a tiny model or small "
             "arrays, printing what passed or the first mismatch. Checks never stop the notebook.\n\n"
             + "".join(f"- **{ex.id}** {{ref}}`{ex.title} <{ex.label}>` ({ex.minutes} minutes; in the chapter: "
                       f"{ex.where})\n" for ex in exs))
    cells = [_md(intro.rstrip())]
    for ex in exs:
        cells += exercise_cells(ex)
    return nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(_KERNEL))


def _myst(nb: NotebookNode) -> str:
    """A notebook as a MyST Markdown notebook (what myst-nb reads; ``+++`` separates Markdown cells)."""
    lines = ["---", "jupytext:", "  text_representation:", "    format_name: myst", "kernelspec:",
             "  name: python3", "  display_name: Python 3", "  language: python", "---", ""]
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "markdown":
            if i:
                lines += ["", f"+++ {json.dumps({'tags': tags})}" if tags else "+++", ""]
            lines += [cell.source, ""]
        else:
            lines += ["```{code-cell} ipython3", *([f":tags: [{', '.join(tags)}]", ""] if tags else []),
                      cell.source.rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def exercise_page(chapter: str) -> str:
    """A chapter's exercise page, ``book/exercises/NN_name.md`` (generated: edit the registry, not the page)."""
    return _myst(exercise_notebook(chapter))


def write_exercise_pages(root: str | Path) -> list[Path]:
    """Write every chapter's exercise page under ``root/book/exercises``; returns the paths."""
    folder = Path(root) / EXERCISES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, stem in CHAPTERS.items():
        path = folder / f"{stem}.md"
        path.write_text(exercise_page(number))
        paths.append(path)
    return paths


def exercise_page_chapter(path: str | Path, root: str | Path) -> str | None:
    """The chapter number whose exercise page ``path`` is (``None`` for any other file)."""
    path = Path(path)
    rel = path.relative_to(root) if path.is_absolute() else path
    if rel.parent == EXERCISES_DIR and rel.suffix == ".md":
        return next((n for n, stem in CHAPTERS.items() if stem == rel.stem), None)
    return None


EXERCISE_LIST = ("<!-- exercise-list:start (generated by paragraph_planning.workshop.notebooks.exercise_list) -->",
                 "<!-- exercise-list:end -->")
"""The markers around the instructor page's exercise list (a test keeps it equal to :func:`exercise_list`)."""


def exercise_list() -> str:
    """Every chapter's exercises as Markdown (the instructor page's list): id, title, header values, check."""
    dots = lambda k: "●" * k + "○" * (3 - k)  # noqa: E731
    out = [EXERCISE_LIST[0]]
    for number, stem in CHAPTERS.items():
        exs = exercises(number)
        out += ["", f"**Chapter {number}** ({{doc}}`{stem}`; exercises: {{doc}}`exercises/{stem}`): {len(exs)} exercises, "
                    f"{sum(ex.minutes for ex in exs)} minutes", "",
                "| id | exercise | difficulty | importance | minutes | check |", "|---|---|---|---|---|---|"]
        out += [f"| {ex.id} | {ex.title.replace('|', chr(92) + '|')} | {dots(ex.difficulty)} | {dots(ex.importance)} | "
                f"{ex.minutes} | `{ex.check_name}` |" for ex in exs]
    return "\n".join(out + ["", EXERCISE_LIST[1]])
