"""The book: chapter hygiene, the runner and CLI, every chapter on the tiny profile, the tiny book's HTML.

Chapters are whatever ``_toc.yml`` lists; nothing here names a chapter. The chapter runs go
through papermill exactly as ``python -m paragraph_planning build`` does, into one staging
copy that the book build then reuses (no chapter is executed twice).
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

from paragraph_planning.book import runner as book
from paragraph_planning.book.cli import main as cli

pytestmark = pytest.mark.book  # the whole file: chapters under papermill and the book build
ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = book.chapters(ROOT)
PROFILES = book.load_profiles(ROOT)
NOTEBOOKS = sorted((ROOT / "book").rglob("*.ipynb"))
ids = [c.name for c in CHAPTERS]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


# ----------------------------------------------------------------------------- sources
def test_toc_lists_existing_documents_and_chapters():
    assert CHAPTERS, "_toc.yml lists no notebook"
    for f in book.toc_files(ROOT):
        assert any((ROOT / (f + s)).exists() for s in ("", ".md", ".ipynb")), f"toc entry {f} has no file"
        assert f.startswith("book/"), f"toc entry {f}: the book's sources live in book/"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=ids)
def test_one_parameters_cell_first(chapter):
    nb = _read(ROOT / chapter.path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [0], f"{chapter.name}: exactly one cell tagged 'parameters', the first code cell (got {tagged})"
    assert book.declared_parameters(chapter, ROOT), f"{chapter.name}: the parameters cell assigns nothing"


@pytest.mark.parametrize("profile", ["full", "tiny"])
def test_profiles_cover_the_toc(profile):
    assert profile in PROFILES, f"book/params.yml has no {profile!r} profile"
    names = {c.name for c in CHAPTERS}
    assert set(PROFILES[profile]) <= names, f"{profile}: entries for chapters not in _toc.yml"
    missing = names - set(PROFILES[profile])
    assert not missing, f"{profile}: no entry for {sorted(missing)} (add one, even empty, to book/params.yml)"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=ids)
@pytest.mark.parametrize("profile", ["full", "tiny"])
def test_profile_keys_are_declared_parameters(chapter, profile):
    declared = book.declared_parameters(chapter, ROOT)
    unknown = set(PROFILES.get(profile, {}).get(chapter.name) or {}) - set(declared)
    assert not unknown, f"{profile}/{chapter.name}: {sorted(unknown)} are not in the parameters cell ({sorted(declared)})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_sources_are_stripped_and_pip_free(path):
    nb = _read(path)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert not cell.get("outputs"), f"{path.name} cell {i}: committed outputs (strip them)"
        assert cell.get("execution_count") is None, f"{path.name} cell {i}: execution count committed"
        assert not re.search(r"^\s*[%!]\s*(pip|conda|uv)\b", cell.source, re.M), \
            f"{path.name} cell {i}: install packages through requirements.txt, not in a cell"
        assert "injected-parameters" not in cell.metadata.get("tags", []), f"{path.name}: an executed copy"
    assert "widgets" not in nb.metadata and "papermill" not in nb.metadata, f"{path.name}: executed metadata"


# ----------------------------------------------------------------------------- runner and CLI
def test_find_chapter_by_stem_alias_substring_and_errors():
    c = CHAPTERS[0]
    assert book.find_chapter(c.name, ROOT) == c
    assert book.find_chapter(c.alias, ROOT) == c
    assert book.find_chapter(str(c.path), ROOT) == c
    with pytest.raises(book.BookError, match=re.escape(c.name)):  # the error lists the chapters
        book.find_chapter("no-such-chapter", ROOT)


def test_unknown_parameter_lists_the_valid_ones():
    c = CHAPTERS[0]
    with pytest.raises(book.BookError) as err:
        book.check_parameters(c, {"no_such_knob": 1}, ROOT)
    for name in book.declared_parameters(c, ROOT):
        assert name in str(err.value)


def test_parse_value_is_yaml():
    assert book.parse_value("3") == 3 and book.parse_value("0.5") == 0.5
    assert book.parse_value("[1, 2]") == [1, 2] and book.parse_value("gemma3-270m") == "gemma3-270m"
    assert book.parse_value("The capital of Japan is") == "The capital of Japan is"


def test_cli_list_and_errors(capsys):
    assert cli(["list"]) == 0
    out = capsys.readouterr().out
    for c in CHAPTERS:
        assert c.name in out
        for name in book.declared_parameters(c, ROOT):
            assert f"{name} = " in out
    assert cli(["run", "no-such-chapter", "--no-html"]) == 1
    assert "Unknown chapter" in capsys.readouterr().err
    assert cli(["run", CHAPTERS[0].name, "-p", "no_such_knob", "1", "--no-html"]) == 1
    assert "Valid parameters" in capsys.readouterr().err
    assert cli(["build", "--profile", "no-such-profile", "--no-html", "--staging", "/nonexistent/x"]) == 1


def _fake_book(root: Path, cell: str) -> None:
    """A one-chapter book whose chapter has a parameter ``x`` and runs ``cell``."""
    (root / "book").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/01_fake\n")
    (root / "_config.yml").write_text("title: fake\n")
    (root / "book" / "intro.md").write_text("# Fake\n")
    (root / "book" / "params.yml").write_text("full:\n  01_fake: {x: 2}\ntiny:\n  01_fake: {x: 3}\n")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1  # a knob", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(cell),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, str(root / "book" / "01_fake.ipynb"))


def test_run_injects_parameters_and_reuse_skips(tmp_path):
    _fake_book(tmp_path, "y = x * 10\nprint(y)")
    staging = tmp_path / "_staging"
    book.stage(tmp_path, staging)
    chapter = book.find_chapter("fake", tmp_path)
    params = {**book.profile_parameters("tiny", chapter, tmp_path), "x": 7}
    assert book.execute_chapter(chapter, params, staging, tmp_path) is not None
    executed = _read(staging / chapter.path)
    assert executed.cells[-1].outputs[0]["text"].strip() == "70"  # the injected value won
    assert executed.metadata["paragraph_planning"]["parameters"] == {"x": 7}
    assert book.execute_chapter(chapter, params, staging, tmp_path, reuse=True) is None  # unchanged: reused
    assert book.execute_chapter(chapter, {"x": 8}, staging, tmp_path, reuse=True) is not None


def test_failing_chapter_names_chapter_cell_and_error(tmp_path):
    _fake_book(tmp_path, "import math\nz = math.sqrt(-x)")
    staging = tmp_path / "_staging"
    book.stage(tmp_path, staging)
    with pytest.raises(book.BookError) as err:
        book.execute_all(tmp_path, staging, "full")
    msg = str(err.value)
    assert "01_fake" in msg and "cell" in msg and "z = math.sqrt(-x)" in msg and "ValueError" in msg


def test_stage_mirrors_sources_and_keeps_executed_chapters(tmp_path):
    _fake_book(tmp_path, "pass")
    staging = tmp_path / "_staging"
    (tmp_path / "book" / "extra.md").write_text("old")
    book.stage(tmp_path, staging)
    (staging / "book" / "01_fake.ipynb").write_text("executed")  # stands for an executed copy
    (tmp_path / "book" / "extra.md").unlink()
    (tmp_path / "book" / "intro.md").write_text("# Changed\n")
    book.stage(tmp_path, staging)
    assert not (staging / "book" / "extra.md").exists()
    assert (staging / "book" / "intro.md").read_text() == "# Changed\n"
    assert (staging / "book" / "01_fake.ipynb").read_text() == "executed"


# ----------------------------------------------------------------------------- the tiny book
@pytest.fixture(scope="module")
def staging(tmp_path_factory):
    path = tmp_path_factory.mktemp("book") / "_staging"
    book.stage(ROOT, path)
    return path


@pytest.mark.parametrize("chapter", CHAPTERS, ids=ids)
def test_chapter_runs_with_tiny_profile(chapter, staging):
    params = book.profile_parameters("tiny", chapter, ROOT)
    book.execute_chapter(chapter, params, staging, ROOT)
    executed = _read(staging / chapter.path)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")


SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", re.I)
LINK_HREF = re.compile(r"<link\b[^>]*\bhref=\"([^\"]+)\"", re.I)
CDN = re.compile(r"cdn\.jsdelivr|unpkg\.com|cdnjs\.cloudflare|require\.min\.js|mathjax@|/npm/@", re.I)


def test_tiny_book_builds_offline_and_self_contained(staging, tmp_path):
    index = book.build("tiny", tmp_path / "html", root=ROOT, staging=staging, reuse=True)
    html = index.parent
    assert index.exists()
    pages = [p for p in sorted(html.rglob("*.html")) if "_static" not in p.relative_to(html).parts]  # not theme templates
    for page in pages:
        text = page.read_text()
        for src in SCRIPT_SRC.findall(text):
            assert not re.match(r"(https?:)?//", src), f"{page.name} loads a remote script: {src}"
            assert (page.parent / src.split("?")[0]).exists(), f"{page.name}: script {src} is missing"
        for href in LINK_HREF.findall(text):
            if re.match(r"(https?:)?//", href):
                assert "stylesheet" not in text[text.find(href) - 200:text.find(href)], f"{page.name}: remote CSS {href}"
        assert not CDN.search(text), f"{page.name} mentions a CDN: {CDN.search(text).group(0)}"
    for c in CHAPTERS:
        page = html / c.path.with_suffix(".html")
        text = page.read_text()
        assert "cell_output" in text, f"{c.name}: no outputs rendered"
        assert "Traceback" not in text, f"{c.name}: a traceback in the rendered page"
        if 'class="pp-vega"' in text:
            assert "_static/local/vega/vega-embed.js" in text, f"{c.name}: charts but no vega bundle"
        if "application/vnd.jupyter.widget-view+json" in text:
            assert "_static/local/html-manager/embed.js" in text, f"{c.name}: widgets but no local manager"
    assert (html / "_static/local/mathjax/tex-svg-full.js").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_tiny_book_draws_in_headless_chromium(staging, tmp_path):
    """Charts, math and widgets actually render in a browser with no network."""
    html = staging / "_build" / "html"
    if not (html / "index.html").exists():
        pytest.skip("the tiny book was not built (see test_tiny_book_builds_offline_and_self_contained)")
    spec = importlib.util.spec_from_file_location("screenshot", ROOT / "tools" / "screenshot.py")
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    pages = [html / c.path.with_suffix(".html") for c in CHAPTERS]
    reports = {p.name: shot.inspect(p) for p in pages}
    bad = {name: shot.problems(r) for name, r in reports.items() if shot.problems(r)}
    assert not bad, json.dumps({"problems": bad, "reports": reports}, indent=1)


def test_makefile_and_workflow_build_the_book():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^book:.*\n\t\$\(PY\) -m paragraph_planning build", make, re.M)
    flow = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    assert "make book" in flow and "_build/html" in flow
    assert textwrap.dedent(flow).count("actions/deploy-pages") == 1
