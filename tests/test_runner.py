"""Re-running chapters safely: parameter checks, atomic pages, Ctrl-C, locks, provenance, honest prose.

Tests marked ``book`` start kernels (a one-cell fake book, or chapter 00 on the tiny profile);
the others run in the fast tier.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from paragraph_planning import cache, prose
from paragraph_planning.book import chapters as chs
from paragraph_planning.book import checks, execution, parameters, provenance
from paragraph_planning.book import runner as book
from paragraph_planning.book.cli import main as cli
from paragraph_planning.book.parameters import CliText, parse_parameter

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _fake_book(root: Path, cells: list[str], params: str = "x = 1  # [min 0] a knob") -> chs.Chapter:
    """A one-chapter book (``01_fake``) whose parameters cell is ``params`` and whose code cells are ``cells``."""
    (root / "book").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/01_fake\n")
    (root / "_config.yml").write_text("title: fake\n")
    (root / "book" / "intro.md").write_text("# Fake\n")
    (root / "book" / "params.yml").write_text("full:\n  01_fake: {}\ntiny:\n  01_fake: {x: 3}\n")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell("## First part"),
        *[nbformat.v4.new_code_cell(c) for c in cells[:1]],
        nbformat.v4.new_markdown_cell("## Second part"),
        *[nbformat.v4.new_code_cell(c) for c in cells[1:]],
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, str(root / "book" / "01_fake.ipynb"))
    return chs.find_chapter("fake", root)


def _tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` with the hash of its bytes."""
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


# ============================================================================ parameters
def test_types_come_from_the_defaults():
    assert parse_parameter("n", "12").types == ("int",)
    assert parse_parameter("t", "0.3").types == ("float",)
    assert parse_parameter("s", '"cpu"').types == ("str",)
    assert parse_parameter("b", "True").types == ("bool",)
    assert parse_parameter("seeds", "[0, 1, 2]").types == ("list[int]",)
    assert parse_parameter("fr", "[0.1, 1]").types == ("list[float]",)
    assert parse_parameter("d", '{"a": 1}').types == ("dict",)
    assert parse_parameter("n", "None").types == ()  # anything, unless declared
    assert parse_parameter("e", "2 ** 3").types == ()  # not a literal


def test_brackets_declare_types_choices_bounds_and_layers():
    p = parse_parameter("dtype", '"float32"', "[float32 | bfloat16] halves memory")
    assert p.choices == ("float32", "bfloat16") and p.help == "halves memory"
    q = parse_parameter("n_topics", "None", "[int | None; min 1] a subset")
    assert q.types == ("int", "None") and q.bounds == ((">=", 1.0),)
    assert parse_parameter("t", "0.3", "[0 .. 2]").bounds == ((">=", 0.0), ("<=", 2.0))
    assert parse_parameter("ids", "[1]", "[list[int] | None]").types == ("list[int]", "None")
    assert parse_parameter("layer", "6", "[layer of model] the layer").layer_of == "model"
    with pytest.raises(chs.BookError, match="cannot read 'between 1 and 2'"):
        parse_parameter("x", "1", "[between 1 and 2]")
    with pytest.raises(chs.BookError, match="unknown type 'integer'"):
        parse_parameter("x", "1", "", annotation="integer")


@pytest.mark.parametrize(("default", "spec", "typed", "expected"), [
    ("12", "", "abc", "expected an int"),
    ("12", "[min 1]", "0", "expected a value >= 1"),
    ("0.5", "", "[1]", "expected a float"),
    ('"float32"', "[float32 | bfloat16]", "float33", "expected one of float32, bfloat16. Did you mean 'float32'"),
    ("[0, 1]", "", "[0, a]", "expected a list[int]"),
    ("True", "", "3", "expected a bool"),
])
def test_a_bad_value_is_one_line_naming_parameter_value_and_type(default, spec, typed, expected):
    p = parse_parameter("knob", default, spec)
    with pytest.raises(chs.BookError) as err:
        p.check(CliText(typed), "-p: ")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("-p: parameter 'knob' = ") and typed in msg and expected in msg


def test_values_are_read_by_the_parameters_type():
    assert parse_parameter("m", '"smollm2"').check(CliText("123")) == "123"  # text stays text
    assert parse_parameter("t", "0.3").check(CliText("1")) == 1.0 and parse_parameter("t", "0.3").check(CliText("1e-3")) == 0.001
    assert parse_parameter("seeds", "[0, 1]").check(CliText("0")) == [0]  # one element: a one-element list
    assert parse_parameter("n", "None", "[int | None]").check(CliText("None")) is None
    assert parse_parameter("topics", '"builtin"', "[str | list]").check(CliText("[a, b]")) == ["a", "b"]
    assert parse_parameter("d", "{}").check({"a": 1}) == {"a": 1}  # values from params.yml as they are


@pytest.mark.parametrize(("default", "value"), [
    ('"x"', "gemma3-270m"), ('"x"', "123"), ('"x"', "a b | c"), ('"x"', ""), ("[0]", [1, 2]), ('["a"]', ["a b", "c"]),
    ("0.5", 0.25), ("True", False), ('{"a": 1}', {"b": 2, "c": "d"}), ("None", None), ("None", "null"),
])
def test_the_command_line_form_of_a_value_reads_back_the_same(default, value):
    p = parse_parameter("k", default)
    assert p.check(CliText(parameters.cli_value(p, value))) == value


def test_layer_parameters_are_checked_against_the_model_without_loading_it(tmp_path):
    assert parameters.model_layers("tiny-llama") == 2
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"num_hidden_layers": 7}}))
    assert parameters.model_layers(str(tmp_path)) == 7
    assert parameters.model_layers("no-such-model") is None


def test_mistyped_parameters_fail_in_seconds_before_anything_starts(tmp_path, capsys):
    """The command-line checks of issue 15: each fails at once with one line naming the parameter."""
    staging = tmp_path / "staging"
    cases = [(["-p", "max_new_tokens", "abc"], "'max_new_tokens' = 'abc': expected an int"),
             (["-p", "patch_layer", "99"], "'patch_layer' = 99: model 'tiny-llama' has 2 layers (0 to 1)"),
             (["-p", "dtype", "float33"], "expected one of float32, bfloat16, float16, float64"),
             (["-p", "n_neurons", "0"], "expected a value >= 1"),
             (["-p", "seeds", "0"], "Unknown parameter(s) 'seeds'")]
    for args, expected in cases:
        t0 = time.perf_counter()
        rc = cli(["run", "getting_started", "--profile", "tiny", "--no-html", "--staging", str(staging), *args])
        seconds = time.perf_counter() - t0
        err = capsys.readouterr().err
        assert rc == 1 and expected in err, err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert seconds < 5, f"{args}: {seconds:.1f} s"
    assert not staging.exists()  # nothing was staged, no kernel started


# ============================================================================ failures, excerpts, progress
TRACEBACK = [
    "\x1b[0;31mZeroDivisionError\x1b[0m Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[3], line 5\x1b[0m\n      3 c = 3\n      4 d = 4\n----> 5 e = f(d)\n      6 g = 6",
    "File \x1b[0;32m/x/paragraph_planning/papers/ablation.py:12\x1b[0m, in \x1b[0;36mf\x1b[0m(a, b)\n"
    "     11 a = 1\n---> 12 return a / 0\n     13 pass",
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
]


def test_the_excerpt_marks_the_failing_line_with_context():
    source = "\n".join(["a = 1", "b = 2", "c = 3", "d = 4", "e = f(d)", "g = 6", "h = 7", "i = 8", "j = 9"])
    text = execution.excerpt(source, TRACEBACK, context=2)
    lines = text.splitlines()
    assert lines[0].strip() == "3 c = 3" and "->   5 e = f(d)" in text and lines[4].strip() == "7 h = 7"
    assert "a = 1" not in text and "i = 8" not in text
    assert lines[-1].strip() == "raised in paragraph_planning/papers/ablation.py:12 (f): return a / 0"


def test_progress_prints_one_line_per_section_not_per_cell(capsys):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2"),
        nbformat.v4.new_markdown_cell("## Part two\ntext"), nbformat.v4.new_code_cell("3"),
        nbformat.v4.new_code_cell("4")])
    progress = execution.Progress("ch", tty=False)
    progress.start(nb)
    for i in (1, 2, 4, 5):
        progress.cell(i)
    progress.stop()
    out = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[-1] for line in out] == ["Title (cell 2/6)", "Part two (cell 5/6)"]


# ============================================================================ lock, environment, events
def test_a_second_run_on_one_staging_copy_waits_or_refuses(tmp_path, capsys):
    held, release = threading.Event(), threading.Event()

    def holder():
        with execution.book_lock(tmp_path, "run ablation"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    with pytest.raises(chs.BookError, match=r"in use by `run ablation` \(pid \d+"):
        with execution.book_lock(tmp_path, "build", wait=False):
            pass
    threading.Timer(0.5, release.set).start()
    with execution.book_lock(tmp_path, "build"):  # waits for the holder, then proceeds
        assert "waiting for `run ablation`" in capsys.readouterr().out
    t.join()


def test_kernels_get_an_absolute_cache_folder_and_the_events_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", "relative-cache")
    with execution.kernel_env(tmp_path / "events.jsonl"):
        assert os.environ["PARAGRAPH_PLANNING_CACHE"] == str(tmp_path / "relative-cache")
        assert os.environ[cache.EVENTS_ENV] == str(tmp_path / "events.jsonl")
        assert os.environ[execution.BOOK_ENV] == "1"
    assert os.environ["PARAGRAPH_PLANNING_CACHE"] == "relative-cache" and cache.EVENTS_ENV not in os.environ


def test_models_and_cached_results_are_reported_to_the_events_file(monkeypatch, tmp_path):
    from paragraph_planning import load_model

    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(cache.EVENTS_ENV, str(events))
    m = load_model("tiny-llama", seed=3)
    assert m._fingerprint is None  # the event does not change when fingerprints are taken
    cache.cached("test-kind", {"a": 1}, lambda: 41, model=m)
    cache.cached("test-kind", {"a": 1}, lambda: 41, model=m)
    rows = provenance.read_events(events)
    assert [r["event"] for r in rows] == ["model", "cache", "cache"]
    assert rows[0]["weights"] == m.fingerprint()["weights"] and rows[0]["label"] == "tiny-llama"
    assert [r["loaded"] for r in rows[1:]] == [False, True]
    monkeypatch.delenv(cache.EVENTS_ENV)
    load_model("tiny-llama")
    assert len(provenance.read_events(events)) == 3  # nothing is written without the variable


def test_provenance_box_names_models_changes_cache_and_a_command_that_reproduces_the_run(tmp_path):
    chapter = _fake_book(tmp_path, ["y = x"], 'x = 1  # [min 0] a knob\nname = "a b"  # text\nseeds = [0, 1]')
    declared = parameters.declared_parameters(chapter, tmp_path)
    values = parameters.resolve(chapter, "tiny", {"name": CliText("c d"), "seeds": CliText("7")}, tmp_path)
    full = parameters.full_values(chapter, values, tmp_path)
    events = [{"event": "model", "label": "tiny-llama", "dtype": "float32", "device": "cpu", "hardware": "2 CPU threads",
               "weights": "abc123", "torch": "9.9", "transformers": "8.8"},
              {"event": "cache", "kind": "neuron-stats", "loaded": True, "seconds": 0},
              {"event": "cache", "kind": "curves", "loaded": False, "seconds": 12.0}]
    base = chs.profile_parameters("tiny", chapter, tmp_path)
    box = provenance.provenance_markdown(chapter, "tiny", full, base, declared, events, 83.0, tmp_path)
    assert "`tiny-llama` (float32, cpu, weights `abc123`, loaded in 0.0 s)" in box and "torch 9.9, transformers 8.8" in box
    assert "1 loaded from the cache (neuron-stats)" in box and "1 computed and stored (curves; 12 s)" in box
    assert "1 min 23 s" in box and "not a git checkout" in box
    started = provenance.provenance_markdown(chapter, "tiny", full, base, declared, events, 83.0, tmp_path,
                                             git="commit `0123456789ab`")
    assert "commit `0123456789ab`" in started and "not a git checkout" not in started  # the state when the run began
    assert "| `x` | `3` | `3` |  |" in box and "| `name` | `'c d'` | `'a b'` | **yes** |" in box
    run = provenance.run_markdown(chapter, "tiny", full, base, declared)
    cmd = next(line for line in run.splitlines() if line.startswith("python -m paragraph_planning run"))
    assert cmd == "python -m paragraph_planning run fake --profile tiny -p name 'c d' -p seeds '[7]'"
    import shlex

    args = shlex.split(cmd)[4:]
    again = parameters.resolve(chapter, "tiny", {k: CliText(v) for k, v in zip(args[4::3], args[5::3])}, tmp_path)
    assert again == values  # the command reproduces the run's values
    assert "| `x` | `1` | int >= 0 | a knob |" in run


# ============================================================================ prose on the page
def test_prose_records_each_value_as_shown():
    p = prose.Prose("d = {d:.2f} ({d:.0%}), n = {n}, {v!r}", d=0.1234, n=3, v="x") + prose.Prose("again {d:.1f}", d=2.0)
    text, meta = p._repr_markdown_()
    assert meta[prose.META_KEY]["shown"] == {"d": ["0.12", "12%"], "n": ["3"], "v": ["'x'"], "d_2": ["2.0"]}
    assert meta[prose.META_KEY]["values"]["d_2"] == 2.0 and "again 2.0" in text


def _prose_notebook(shown: str) -> nbformat.NotebookNode:
    meta = {"text/markdown": {prose.META_KEY: {"values": {"d": 0.1234}, "shown": {"d": [shown]}}}}
    cell = nbformat.v4.new_code_cell("report()", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/markdown": f"It is {shown}."}, metadata=meta, execution_count=1)])
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), cell])


PAGE = ('<div class="cell tag_parameters docutils container"><pre>x = 1</pre></div>'
        '<div class="cell docutils container"><div class="cell_output docutils container">'
        "<p>It is <strong>0.12</strong> \u2018so\u2019 &lt; 1.</p></div></div>"
        '<div class="note pp-provenance admonition"><p>0.99</p></div>')


def test_a_page_must_show_each_prose_value_in_its_own_cell():
    assert checks.unquoted_values(_prose_notebook("0.12"), PAGE) == []
    assert checks.unquoted_values(_prose_notebook("'so' < 1"), PAGE) == []  # smart quotes and entities undone
    assert "0.13" in checks.unquoted_values(_prose_notebook("0.13"), PAGE)[0]  # a stale page fails
    assert checks.unquoted_values(_prose_notebook("0.99"), PAGE)  # only the cell's own output counts


@pytest.mark.parametrize("text", [
    "In the book's run both conditions move the output by 0.1.",
    "the text's own break by about 0.12 in cosine distance",
    "The claim holds here, narrowly (about 3.5 s.e.).",
    "With 20 texts the standard errors are about 0.03.",
    "about 0.7 times as much on average over layers",
    "Three layers are the exception (28, 2 and 1).".replace("(28", "(layers 28"),
    "the difference is 2.4 standard errors",
    "a 3-fold drop",
    "- item one\n- In this run the loss rose to 4.1",
])
def test_hand_quoted_results_are_found(text):
    assert checks.hand_quoted(text), text


@pytest.mark.parametrize("text", [
    "the centre of the fullest bin of a 100-bin histogram (100 bins)",
    "sampling with $T = 0.3$ and T = 0.3",
    "closer than neutral by more than 3 standard errors",
    "bands are mean ± 1.96 standard errors over seeds",
    "ablates 10 % of each layer's neurons per step, up to 100 %",
    "pieces of about 2,000 characters",
    "re-run with `-p temperature 0.7 -p layers [28, 2]`",
    "```bash\npython -m paragraph_planning run x -p scale 0.5\n```",
    "SmolLM2-135M has 30 layers; Gemma-3-270M 18.",
])
def test_method_constants_pass(text):
    assert checks.hand_quoted(text) == [], text


# ============================================================================ staging and execution
def test_stage_mirrors_sources_and_keeps_executed_chapters(tmp_path):
    _fake_book(tmp_path, ["pass"])
    staging = tmp_path / "_staging"
    (tmp_path / "book" / "extra.md").write_text("old")
    execution.stage(tmp_path, staging)
    (staging / "book" / "01_fake.ipynb").write_text("executed")  # stands for an executed copy
    (tmp_path / "book" / "extra.md").unlink()
    (tmp_path / "book" / "intro.md").write_text("# Changed\n")
    execution.stage(tmp_path, staging)
    assert not (staging / "book" / "extra.md").exists()
    assert (staging / "book" / "intro.md").read_text() == "# Changed\n"
    assert (staging / "book" / "01_fake.ipynb").read_text() == "executed"


@pytest.mark.book
def test_run_injects_parameters_and_reuse_skips(tmp_path):
    chapter = _fake_book(tmp_path, ["y = x * 10\nprint(y)"])
    staging = tmp_path / "_staging"
    execution.stage(tmp_path, staging)
    params = {**chs.profile_parameters("tiny", chapter, tmp_path), "x": 7}
    assert book.execute_chapter(chapter, params, staging, tmp_path, profile="tiny") is not None
    executed = nbformat.read(str(staging / chapter.path), as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code[-1].outputs[0]["text"].strip() == "70"  # the injected value won
    assert executed.metadata["paragraph_planning"]["parameters"] == {"x": 7}
    boxes = [c.source for c in executed.cells if provenance.TAG in c.metadata.get("tags", [])]
    assert len(boxes) == 2 and "run fake --profile tiny -p x 7" in boxes[1]
    assert book.execute_chapter(chapter, params, staging, tmp_path, reuse=True, profile="tiny") is None  # reused
    assert book.execute_chapter(chapter, {"x": 8}, staging, tmp_path, reuse=True, profile="tiny") is not None


@pytest.mark.book
def test_failing_chapter_names_chapter_cell_and_error(tmp_path):
    _fake_book(tmp_path, ["import math\nz = math.sqrt(-x)"])
    staging = tmp_path / "_staging"
    execution.stage(tmp_path, staging)
    with pytest.raises(chs.BookError) as err:
        book.execute_all(tmp_path, staging, "full")
    msg = str(err.value)
    assert "01_fake failed in cell" in msg and "->   2 z = math.sqrt(-x)" in msg and "ValueError" in msg


# ============================================================================ atomic runs (kernels)
@pytest.mark.book
def test_a_failing_run_keeps_the_previous_page_and_html_byte_identical(tmp_path, capsys):
    root = tmp_path / "src"
    _fake_book(root, ["y = 10 // x\nprint(y)", "z = 1\nz += 1\nw = 100 // (x - 5)\nprint(w)\nv = 0"])
    staging, out = tmp_path / "staging", tmp_path / "html"
    args = ["run", "fake", "--root", str(root), "--staging", str(staging), "--no-html"]
    assert cli([*args, "-p", "x", "2"]) == 0
    progress = capsys.readouterr().out
    assert "First part (cell" in progress and "Second part (cell" in progress and progress.count("(cell") == 3
    out.mkdir()  # stands for the previous HTML build
    (out / ".buildinfo").write_text("x")
    (out / "index.html").write_text("<p>previous</p>")
    page, html = _tree(staging / "book"), _tree(out)
    assert cli([*args[:-1], "--out", str(out), "-p", "x", "5"]) == 1
    err = capsys.readouterr().err
    assert "->   3 w = 100 // (x - 5)" in err and "z += 1" in err and "ZeroDivisionError" in err
    assert "01_fake: previous page kept; the failing notebook is " + str(staging / execution.FAILED / "01_fake.ipynb") in err
    assert _tree(staging / "book") == page and _tree(out) == html
    failed = nbformat.read(str(staging / execution.FAILED / "01_fake.ipynb"), as_version=4)
    assert any(o.get("ename") == "ZeroDivisionError" for c in failed.cells for o in c.get("outputs", []))
    assert not any((staging / execution.RUNNING).iterdir())


def _kernels_of(pid: int) -> list[int]:
    """Processes started by ``pid``'s kernel manager (ipykernel marks them with ``JPY_PARENT_PID``)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"JPY_PARENT_PID={pid}\0".encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _as_in_a_terminal() -> None:
    """SIGINT at its default, as for a command typed in a terminal. A job started with ``&`` by a
    non-interactive shell (``make test &``, ``nohup ... &`` in a script) inherits SIGINT *ignored*, and
    Python then installs no KeyboardInterrupt handler: the run would finish and exit 0."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.book
def test_ctrl_c_on_a_tiny_run_leaves_no_partial_page(tmp_path):
    staging = tmp_path / "staging"
    page = staging / "book" / "00_getting_started.ipynb"
    page.parent.mkdir(parents=True)
    page.write_text('{"previous": "page"}')  # stands for the page of an earlier run
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([PY, "-m", "paragraph_planning", "run", "getting_started", "--profile", "tiny",
                             "--no-html", "--staging", str(staging)], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_as_in_a_terminal)
    try:
        seen = ""
        while "Hook sites (cell" not in seen:  # the kernel is running the chapter
            line = proc.stdout.readline()
            assert line, f"the run ended early: {proc.stderr.read()}"
            seen += line
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted: 00_getting_started (previous page kept)"
    assert page.read_text() == '{"previous": "page"}'
    assert not any((staging / execution.RUNNING).iterdir())
    assert (staging / execution.FAILED / "00_getting_started.ipynb").exists()
    time.sleep(1)
    assert _kernels_of(proc.pid) == []
