"""The workshop edition in a real book: sphinx-exercise offline, the student build, notebooks that run.

A one-page book (the project's own ``_config.yml``) with three exercises is built twice with
jupyter-book: the reference (solutions collapsed) and the student version (solutions removed by
:func:`~paragraph_planning.workshop.student_notebook`, ``hide_solutions: true``). The notebook itself
runs under nbmake as a student gets it, stubs empty, and under papermill with the solutions, as the
book runner executes chapters.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from paragraph_planning.workshop import EXERCISES, exercise_cells, student_notebook

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


def _build(root: Path, student: bool) -> Path:
    (root / "book").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/exercises\n")
    config = (ROOT / "_config.yml").read_text()
    if student:
        assert "hide_solutions: false" in config
        config = config.replace("hide_solutions: false", "hide_solutions: true")
    (root / "_config.yml").write_text(config)
    (root / "book" / "intro.md").write_text("# A tiny book\n")
    nb = _notebook()
    nbformat.write(student_notebook(nb) if student else nb, str(root / "book" / "exercises.ipynb"))
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root),
           "--path-output", str(root), "--builder", "html"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    html = root / "_build" / "html"
    assert proc.returncode == 0 and (html / "index.html").exists(), (proc.stdout + proc.stderr)[-3000:]
    assert "WARNING" not in proc.stdout + proc.stderr, [ln for ln in (proc.stdout + proc.stderr).splitlines()
                                                        if "WARNING" in ln]
    return html


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    base = tmp_path_factory.mktemp("workshop-books")
    return _build(base / "reference", student=False), _build(base / "student", student=True)


def _solution_lines() -> list[str]:
    lines = []
    for ex_id in CHOSEN:
        ex = EXERCISES[ex_id]
        lines += [ln.strip() for ln in ex.solution_code().splitlines()
                  if ln.strip().startswith("return") and ln.strip() not in ex.stub()]
    return lines


def test_reference_book_has_collapsed_solutions_and_stays_offline(books):
    html, _ = books
    page = (html / "book" / "exercises.html").read_text()
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


def _plain(page: str) -> str:
    """The page's text without tags (Pygments splits code into one span per token)."""
    return re.sub(r"<[^>]+>", "", page).replace("&quot;", '"').replace("&#39;", "'")


def _tokens_present(line: str, page: str) -> bool:
    """The line's words, in the page's text."""
    text = _plain(page)
    return all(word in text for word in re.findall(r"\w+", line))


def test_student_book_has_no_solution(books):
    _, html = books
    page = (html / "book" / "exercises.html").read_text()
    assert page.count('class="exercise admonition"') == len(CHOSEN)
    assert "raise NotImplementedError" in _plain(page) and "exercise-stub" in page
    assert "solution" not in page.lower(), re.findall(r".{60}solution.{60}", page.lower())[:3]
    plain = _plain(page)
    for ex_id in CHOSEN:
        ex = EXERCISES[ex_id]
        body = [ln.strip() for ln in ex.solution_code().splitlines() if ln.strip() and ln.strip() not in ex.stub()
                and not ln.strip().startswith(("import", "from", "#"))]
        assert not any(re.sub(r"\W", "", ln) in re.sub(r"\W", "", plain) for ln in body if len(ln) > 12), ex_id


def test_notebooks_run_as_student_and_as_reference(tmp_path):
    """nbmake runs the student notebook (empty stubs; a learner's call tagged like a stub may raise), and
    papermill runs the reference notebook with every check passing."""
    import papermill

    student = student_notebook(_notebook())
    first_stub = next(i for i, c in enumerate(student.cells) if "exercise-stub" in c.metadata.get("tags", []))
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
    assert len(checks) == len(CHOSEN) and all("not implemented yet" in out for out in checks), checks

    src, dest = tmp_path / "reference.ipynb", tmp_path / "executed.ipynb"
    nbformat.write(_notebook(), str(src))
    papermill.execute_notebook(str(src), str(dest), kernel_name="python3", progress_bar=False)
    executed = nbformat.read(str(dest), as_version=4)
    outs = ["".join(o.get("text", "") for o in c.outputs) for c in executed.cells
            if "exercise-check" in c.metadata.get("tags", [])]
    assert len(outs) == len(CHOSEN) and all("checks passed" in o for o in outs), outs
