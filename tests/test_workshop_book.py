"""The workshop edition in a real book: sphinx-exercise offline, the student build, notebooks that run.

A small book (the project's own ``_config.yml``; one chapter holding three exercises, executed by
papermill; every real exercise page as its sections) is built twice with the command line, as
``python -m paragraph_planning build --profile tiny`` and ``... --student``: the reference (solutions
collapsed) and the student book, whose HTML is searched for every line of every reference solution. The notebook itself
runs under nbmake as a student gets it, stubs empty, and under papermill with the solutions, as the
book runner executes chapters.
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import nbformat
import pytest

from paragraph_planning.workshop import EXERCISES, exercise_cells, exercises, student_notebook
from paragraph_planning.workshop.notebooks import exercise_notebook, write_exercise_pages
from paragraph_planning.workshop.registry import CHAPTERS

pytestmark = pytest.mark.book
ROOT = Path(__file__).resolve().parents[1]
CHOSEN = ("02.5", "01.3", "04.1")  # quick ones: no model needed
REMOTE = re.compile(r"""<(?:script|link)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]+"[^>]*>""", re.I)
CDN = re.compile(r"cdn\.jsdelivr|unpkg\.com|cdnjs\.cloudflare|require\.min\.js|mathjax@|/npm/@", re.I)


def _notebook() -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_markdown_cell("# Exercises")]
    for ex_id in CHOSEN:
        cells += exercise_cells(EXERCISES[ex_id])
    return nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def _chapter() -> nbformat.NotebookNode:
    """A chapter with a parameters cell and the chosen exercises in it (as chapters will hold them)."""
    nb = _notebook()
    for cell in nb.cells:  # its own labels: the exercise pages hold the same exercises
        cell.source = re.sub(r"(:label: |\{solution-start\} )ex-", r"\1demo-ex-", cell.source)
    nb.cells[1:1] = [nbformat.v4.new_code_cell("seed = 0  # [min 0] a knob", metadata={"tags": ["parameters"]})]
    return nb


def _book_root(root: Path) -> Path:
    """The smallest book that holds everything a student build transforms: the project's _config.yml, one
    executed chapter with exercises in it (``book/09_demo``) and every real exercise page as its section."""
    (root / "book").mkdir(parents=True)
    pages = "".join(f"  - file: book/{stem}\n    sections:\n      - file: book/exercises/{stem}\n"
                    for stem in CHAPTERS.values())
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n  - file: book/09_demo\n{pages}"
                                   "  - file: book/instructor\n")
    shutil.copy2(ROOT / "book" / "instructor.md", root / "book" / "instructor.md")  # its links and list must resolve
    for stem in CHAPTERS.values():  # the chapters the exercise pages link to (Markdown: nothing to execute)
        (root / "book" / f"{stem}.md").write_text(f"# Chapter {stem}\n")
    shutil.copy2(ROOT / "_config.yml", root / "_config.yml")
    (root / "book" / "intro.md").write_text("# A tiny book\n")
    (root / "book" / "params.yml").write_text("full:\n  09_demo: {}\ntiny:\n  09_demo: {seed: 1}\n")
    nbformat.write(_chapter(), str(root / "book" / "09_demo.ipynb"))
    write_exercise_pages(root)
    return root


def _build(root: Path, student: bool) -> Path:
    """``python -m paragraph_planning build --profile tiny [--student]``, as the lead runs it."""
    from paragraph_planning.book.cli import main as cli

    out = root / ("student-html" if student else "html")
    args = ["build", "--profile", "tiny", "--root", str(root), "--staging", str(root / "_staging"), "--reuse",
            "--out", str(out)]
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        rc = cli(args + (["--student"] if student else []))
    assert rc == 0 and (out / "index.html").exists(), log.getvalue()[-3000:]
    assert "WARNING" not in log.getvalue(), [ln for ln in log.getvalue().splitlines() if "WARNING" in ln][:5]
    return out


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    root = _book_root(tmp_path_factory.mktemp("workshop-book"))
    return _build(root, student=False), _build(root, student=True)


def _solution_lines() -> list[str]:
    lines = []
    for ex_id in CHOSEN:
        ex = EXERCISES[ex_id]
        lines += [ln.strip() for ln in ex.solution_code().splitlines()
                  if ln.strip().startswith("return") and ln.strip() not in ex.stub()]
    return lines


def _solution_body(ex) -> list[str]:
    """The lines of a reference solution that no stub, task, hint or note of any exercise gives away (long enough
    to be specific): what the student book must not contain."""
    given = re.sub(r"\W", "", "".join(e.task + e.hint + e.expected + e.stub() for e in EXERCISES.values()))
    return [ln.strip() for ln in ex.solution_code().splitlines() if ln.strip() and ln.strip() not in ex.stub()
            and not ln.strip().startswith(("import", "from", "#")) and len(re.sub(r"\W", "", ln)) > 9
            and re.sub(r"\W", "", ln) not in given]


def _pages(html: Path) -> dict[str, str]:
    return {str(p.relative_to(html)): _squash(p.read_text()) for p in sorted((html / "book").rglob("*.html"))}


def _squash(page: str) -> str:
    return re.sub(r"\W", "", _plain(page))


def test_reference_book_has_collapsed_solutions_and_stays_offline(books):
    html, _ = books
    page = (html / "book" / "09_demo.html").read_text()
    assert page.count('class="exercise admonition"') == len(CHOSEN)
    assert page.count('class="solution dropdown admonition"') == len(CHOSEN)  # collapsed by togglebutton
    assert 'href="../_static/exercise.css"' in page and (html / "_static" / "exercise.css").exists()
    assert "raise NotImplementedError" in _plain(page)
    assert not REMOTE.findall(page), REMOTE.findall(page)
    assert not CDN.search(page), CDN.search(page).group(0)
    css = (html / "_static" / "exercise.css").read_text()
    assert "http" not in css and "@import" not in css  # sphinx-exercise brings CSS only, nothing remote
    for line in _solution_lines():
        assert _tokens_present(line, page), line
    assert "checks passed" in _plain(page)  # the chapter executed its check cells on the reference solutions
    for stem in CHAPTERS.values():  # the exercise pages: every solution is there, collapsed (the search below works)
        page = (html / "book" / "exercises" / f"{stem}.html").read_text()
        exs = exercises(stem)
        assert page.count('class="exercise admonition"') == page.count('class="solution dropdown admonition"') == len(exs)
        for ex in exs:
            assert _solution_body(ex), f"{ex.id}: no solution line specific enough to search for"
            assert all(ln and re.sub(r"\W", "", ln) in _squash(page) for ln in _solution_body(ex)), ex.id


def _plain(page: str) -> str:
    """The page's text without tags (Pygments splits code into one span per token)."""
    return unescape(re.sub(r"<[^>]+>", "", page))


def _tokens_present(line: str, page: str) -> bool:
    """The line's words, in the page's text."""
    text = _plain(page)
    return all(word in text for word in re.findall(r"\w+", line))


def test_student_book_has_no_solution(books):
    """Every page of the student book: the exercises and their stubs, and no line of any reference solution."""
    _, html = books
    page = (html / "book" / "09_demo.html").read_text()
    assert page.count('class="exercise admonition"') == len(CHOSEN)
    assert "raise NotImplementedError" in _plain(page) and "exercise-stub" in page
    assert "checks passed" not in _plain(page)  # the check cells reported on the reference solutions: cleared
    pages = _pages(html)
    assert len(pages) == 3 + 2 * len(CHAPTERS), sorted(pages)  # intro, demo, instructor, chapters, exercise pages
    for name, text in pages.items():
        raw = (html / name).read_text()
        assert 'class="solution' not in raw and "solution-start" not in raw, name
        for ex in EXERCISES.values():
            leaked = [ln for ln in _solution_body(ex) if re.sub(r"\W", "", ln) in text]
            assert not leaked, f"{name}: solution of {ex.id} leaked: {leaked[:2]}"
    for stem in CHAPTERS.values():
        page = (html / "book" / "exercises" / f"{stem}.html").read_text()
        assert page.count('class="exercise admonition"') == len(exercises(stem)), stem
        source = html / "_sources" / "book" / "exercises" / f"{stem}.ipynb"  # the page's download: a notebook
        nb = nbformat.read(str(source), as_version=4)
        assert [c.source for c in nb.cells if "exercise-stub" in c.metadata.get("tags", [])] == [
            ex.stub() for ex in exercises(stem)]
        assert "exercise-solution" not in source.read_text()


def test_student_copy_refuses_a_markdown_page_with_solutions(tmp_path):
    from paragraph_planning.book.chapters import BookError
    from paragraph_planning.book.student import student_tree

    staging = tmp_path / "staging"
    (staging / "book").mkdir(parents=True)
    shutil.copy2(ROOT / "_config.yml", staging / "_config.yml")
    (staging / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (staging / "book" / "intro.md").write_text("# Intro\n\n```{solution-start} ex-1\n```\nx = 1\n```{solution-end}\n```\n")
    with pytest.raises(BookError, match="intro.md"):
        student_tree(staging)
    (staging / "book" / "intro.md").write_text("# Intro\n")
    nbformat.write(_chapter(), str(staging / "book" / "09_demo.ipynb"))
    dest = student_tree(staging)
    assert "hide_solutions: true" in (dest / "_config.yml").read_text()
    assert "exercise-solution" not in (dest / "book" / "09_demo.ipynb").read_text()
    (staging / "_config.yml").write_text("title: x\n")
    with pytest.raises(BookError, match="hide_solutions"):
        student_tree(staging)


def test_notebooks_run_as_student_and_as_reference(tmp_path):
    """nbmake runs a real student notebook (chapter 02's exercise page as participants download it: empty
    stubs; a learner's call tagged like a stub may raise), and papermill runs the reference with every check passing."""
    import papermill

    page = exercise_notebook("02")
    student = student_notebook(page)
    first_stub = next(i for i, c in enumerate(student.cells) if c.source == EXERCISES[CHOSEN[0]].stub())
    student.cells.insert(first_stub + 1, nbformat.v4.new_code_cell(  # a learner trying the unfinished function
        f"{EXERCISES[CHOSEN[0]].name}(0.1, 0.3)", metadata={"tags": ["exercise-stub", "raises-exception"]}))
    path = tmp_path / "student.ipynb"
    nbformat.write(student, str(path))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake", "--overwrite",
                           "--nbmake-timeout=300", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    ran = nbformat.read(str(path), as_version=4)
    tried = ran.cells[first_stub + 1]
    assert tried.outputs and tried.outputs[0].get("ename") == "NotImplementedError"  # raised, and allowed
    checks = ["".join(o.get("text", "") for o in c.outputs) for c in ran.cells
              if "exercise-check" in c.metadata.get("tags", [])]
    assert len(checks) == len(exercises("02")) and all("not implemented yet" in out for out in checks), checks

    src, dest = tmp_path / "reference.ipynb", tmp_path / "executed.ipynb"
    nbformat.write(page, str(src))
    papermill.execute_notebook(str(src), str(dest), kernel_name="python3", progress_bar=False)
    executed = nbformat.read(str(dest), as_version=4)
    outs = ["".join(o.get("text", "") for o in c.outputs) for c in executed.cells
            if "exercise-check" in c.metadata.get("tags", [])]
    assert len(outs) == len(exercises("02")) and all("checks passed" in o for o in outs), outs
