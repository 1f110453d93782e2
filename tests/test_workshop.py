"""The workshop edition: exercises, their checks and solutions, student notebooks, explorers.

Every reference solution passes its check; every check fails on a deliberately wrong implementation
with a message that names the difference; a stub fails as "not implemented yet" without raising;
the student version of a notebook holds no solution text; explorers build with no display and their
static fallbacks are valid altair charts that vega can compile.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

import paragraph_planning as pp
from paragraph_planning.workshop import EXERCISES, exercise_cells, exercises, student_notebook
from paragraph_planning.workshop.checking import difference, tiny_lm, tiny_mlp_stats
from paragraph_planning.workshop.notebooks import (
    CHECK_TAG,
    SOLUTION_TAG,
    STUB_TAG,
    SolutionLeakError,
    exercise_page,
    insert_exercises,
)
from paragraph_planning.workshop.registry import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
IDS = list(EXERCISES)


# ----------------------------------------------------------------------------- wrong implementations
def _resid_post(model, text, layer):
    name = model.hook_names("resid_post", [layer])[0]
    return model.run_with_cache(text, [name])[1][name][0]


def _zero_positions(neurons):
    def fn(act, *, hook):
        act = act.clone()
        act[:, neurons] = 0.0
        return act
    return fn


def _patch_next(model, base, source, layer, pos):
    return EXERCISES["00.3"].solution(model, base, source, layer, pos + 1)


def _break_without_specials(tokenizer, text):
    start = text.index("\n\n")
    offsets = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
    return [i for i, (a, b) in enumerate(offsets) if b > a and a >= start and b <= start + 2]


def _transplant_first(model, donor_ids, break_pos, neutral_ids, layer):
    name = model.hook_names("resid_post", [layer])[0]
    with model.record([name]) as cache:
        model(torch.tensor([donor_ids]))
    values = cache[name][0, break_pos]

    def fn(act, *, hook):
        act = act.clone()
        act[0, : len(break_pos)] = values
        return act
    with model.hooks([(name, fn)]):
        return model(torch.tensor([neutral_ids]))[0, -1]


def _unpaired(a, b, n_boot=10_000, seed=0, level=0.95):
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a), np.asarray(b)
    means = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1) - b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    return tuple(np.quantile(means, [0.025, 0.975]))


def _mean_ablation(stats, neurons):
    mean = stats.mean.float()

    def fn(act, *, hook):
        act = act.clone()
        act[..., neurons] = mean[neurons]
        return act
    return fn


def _resample_first_position(neurons, source):
    def fn(act, *, hook):
        act = act.clone()
        act[..., neurons] = source[:, :1, neurons]
        return act
    return fn


def _normal_interval(x, level=0.95):
    x = np.asarray(x)
    se = x.std(ddof=1) / np.sqrt(len(x))
    return x.mean() - 1.96 * se, x.mean() + 1.96 * se


def _per_layer_top(scores, frac):
    return {n: torch.zeros_like(s, dtype=torch.bool).index_fill(0, s.topk(int(frac * s.numel())).indices, True)
            for n, s in scores.items()}


def _jaccard(a, b):
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return int((a & b).sum()) / int((a | b).sum()), int(a.sum()) / a.numel()


def _with_padding(acts, mask):
    return acts.abs().mean((0, 1))


def _return_lo(metric_at, target, lo=0.0, hi=0.128, tol=0.002):
    if metric_at(hi) > target:
        return hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if metric_at(mid) <= target else (mid, hi)
    return lo


def _reselect(scores, pruned, frac):
    return EXERCISES["03.1"].solution(scores, frac)


def _zero_columns(model, layer, neurons):
    with torch.no_grad():
        model.weights(layer)["W_out"][:, neurons] = 0.0


def _same_position(logits, ids):
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))
    return float(loss), float((logits.argmax(-1) == ids).float().mean())


WRONG = {  # exercise -> (a wrong implementation, words the failure message must contain)
    "00.1": (_resid_post, "resid_post"),
    "00.2": (_zero_positions, "POSITIONS"),
    "00.3": (_patch_next, "patching position"),
    "01.1": (_break_without_specials, "shifted by one"),
    "01.2": (_transplant_first, "FIRST positions"),
    "01.3": (lambda a, b: 1 - (np.asarray(a) * np.asarray(b)).sum(-1), "1 − a·b"),
    "01.4": (_unpaired, "resample the PAIRS"),
    "02.1": (lambda counts, edges: edges[torch.arange(len(counts)), counts.argmax(1)], "LEFT edge"),
    "02.2": (_mean_ablation, "MEAN ablation"),
    "02.3": (_resample_first_position, "position 0"),
    "02.4": (_normal_interval, "NORMAL quantile"),
    "02.5": (lambda lo, hi, null=0.0, direction="greater": "holds" if lo > null else "does not hold", "undetermined"),
    "03.1": (_per_layer_top, "EACH site"),
    "03.2": (_jaccard, "Jaccard"),
    "03.3": (_with_padding, "padding"),
    "03.4": (_return_lo, "above the target"),
    "04.1": (lambda f, r, eps=1e-3: f / r, "no eps"),
    "04.2": (_reselect, "pruned in earlier steps"),
    "04.3": (_zero_columns, "row i of W_out"),
    "04.4": (_same_position, "OWN token"),
}


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize("ex_id", IDS)
def test_reference_solution_passes_its_check(ex_id, capsys):
    ex = EXERCISES[ex_id]
    result = ex.check(ex.solution)
    assert result.passed, result.message
    out = capsys.readouterr().out
    assert "checks passed" in out and "✓" in out and "✗" not in out


def test_every_exercise_has_a_wrong_implementation():
    assert set(WRONG) == set(EXERCISES)


@pytest.mark.parametrize("ex_id", IDS)
def test_check_fails_on_a_wrong_implementation_and_names_it(ex_id):
    ex = EXERCISES[ex_id]
    wrong, words = WRONG[ex_id]
    result = ex.check(wrong, quiet=True)
    assert not result.passed, f"{ex.check_name} passed a wrong implementation"
    assert "✗" in result.message and "expected" in result.message.lower()
    assert words in result.message, f"{ex.check_name}: the message does not say {words!r}:\n{result.message}"


@pytest.mark.parametrize("ex_id", IDS)
def test_stub_fails_as_not_implemented_without_raising(ex_id):
    ex = EXERCISES[ex_id]
    namespace: dict = {}
    exec(ex.stub(), namespace)  # noqa: S102  (the stub cell as a learner runs it)
    result = ex.check(namespace[ex.name], quiet=True)
    assert not result.passed and "not implemented yet" in result.message


def test_check_reports_a_learner_exception_with_its_line():
    def broken(stats, neurons):
        return stats.no_such_field

    result = EXERCISES["02.2"].check(broken, quiet=True)
    assert not result.passed and "AttributeError" in result.message
    assert "return stats.no_such_field" in result.message  # the learner's own line, not the package's


def test_check_modes_strict_and_not_callable():
    ex = EXERCISES["04.1"]
    assert not ex.check(42, quiet=True).passed
    with pytest.raises(AssertionError, match="no eps"):
        ex.check(lambda f, r, eps=1e-3: f / r, strict=True, quiet=True)
    assert repr(ex.check(ex.solution, quiet=True)) == "<check_forget_retain_score: passed>"


def test_difference_in_words():
    assert difference([1.0, 2.0], [1.0, 2.0]) is None
    assert "shape" in difference(np.zeros((3, 4)), np.zeros((1, 3, 4))) and "batch" in difference(
        np.zeros((3, 4)), np.zeros((1, 3, 4)))
    msg = difference(np.zeros((2, 3)), np.array([[0, 0, 0], [0, 5.0, 0]]), dims=("row", "neuron"))
    assert "row 1, neuron 1" in msg and "expected 0" in msg and "got 5" in msg
    assert "None" in difference([1.0], None)
    assert difference(np.array([1e-3, 2e-3]), np.array([1e-3, 2e-3 + 1e-12])) is None  # scale-relative tolerance
    assert difference(np.array([1e-3, 2e-3]), np.array([1e-3, 2.1e-3])) is not None


def test_checks_leave_the_global_random_state_alone():
    before = torch.random.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    for ex in EXERCISES.values():
        ex.check(ex.solution, quiet=True)
    assert torch.equal(before, torch.random.get_rng_state())
    assert np.array_equal(np_before, np.random.get_state()[1])


# ----------------------------------------------------------------------------- the registry
def test_three_to_five_exercises_per_chapter_and_fifteen_in_all():
    assert len(EXERCISES) >= 15
    for number, stem in CHAPTERS.items():
        assert 3 <= len(exercises(number)) <= 5, stem
        assert exercises(stem) == exercises(number)
    toc = (ROOT / "_toc.yml").read_text()
    for stem in CHAPTERS.values():
        assert f"book/{stem}" in toc, f"{stem} is not a chapter of _toc.yml"
    with pytest.raises(ValueError, match="00_getting_started"):
        exercises("07")


def test_names_labels_and_checks_are_unique():
    exs = list(EXERCISES.values())
    for attr in ("name", "label", "check_name", "title"):
        values = [getattr(e, attr) for e in exs]
        assert len(set(values)) == len(values), attr
    for e in exs:
        assert e.check.exercise == e.id  # type: ignore[attr-defined]


def _chapter_names() -> set[str]:
    """Names that chapter code binds (imports, assignments, definitions) or uses from ``pp``."""
    names = set(pp.__all__)
    for nb_path in (ROOT / "book").glob("*.ipynb"):
        for cell in nbformat.read(str(nb_path), as_version=4).cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in node.names}
                elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


def test_exercise_functions_shadow_no_chapter_name():
    """A learner's stub (raising NotImplementedError) must never replace a name the chapter uses later."""
    clash = sorted({e.name for e in EXERCISES.values()} & _chapter_names())
    assert not clash, f"exercise functions named like chapter names or the public API: {clash}"


@pytest.mark.parametrize("ex_id", IDS)
def test_stub_and_solution_are_valid_learner_code(ex_id):
    ex = EXERCISES[ex_id]
    stub, solution = ast.parse(ex.stub()), ast.parse(ex.solution_code())
    defs = [n for n in stub.body if isinstance(n, ast.FunctionDef)]
    assert [d.name for d in defs] == [ex.name]
    sol_def = next(n for n in solution.body if isinstance(n, ast.FunctionDef))
    assert ast.dump(defs[0].args) == ast.dump(sol_def.args), "the stub's signature is the solution's"
    assert "raise NotImplementedError" in ex.stub() and "raise NotImplementedError" not in ex.solution_code()
    assert "paragraph_planning" not in ex.solution_code() and "pp." not in ex.solution_code(), \
        "a solution is written by hand, not as a call into the package it is checked against"
    assert ex.header().count("●") == ex.difficulty + ex.importance


# ----------------------------------------------------------------------------- notebooks
def _notebook(with_outputs: bool = True) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_markdown_cell("# A chapter"),
             nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})]
    for ex in EXERCISES.values():
        cells += exercise_cells(ex)
    cells.append(nbformat.v4.new_markdown_cell(
        "Some prose.\n\n````{solution} ex-00-1\n:class: dropdown\nSECRET ANSWER TEXT\n````\n\nMore prose."))
    nb = nbformat.v4.new_notebook(cells=cells)
    if with_outputs:
        for c in nb.cells:
            if c.cell_type == "code":
                c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="out\n")]
                c.execution_count = 1
    return nb


def test_exercise_cells_follow_the_convention():
    ex = EXERCISES["02.2"]
    cells = exercise_cells(ex)
    assert [c.cell_type for c in cells] == ["markdown", "code", "markdown", "markdown", "code", "markdown", "code"]
    assert cells[0].source.startswith("```{exercise-start} 02.2 · Implement peak ablation\n:label: ex-02-2")
    assert "**Difficulty** ●●○" in cells[0].source and ":class: dropdown" in cells[0].source and ex.hint in cells[0].source
    assert {STUB_TAG, "raises-exception"} <= set(cells[1].metadata["tags"])
    assert "{exercise-end}" in cells[2].source and ex.expected in cells[2].source
    assert cells[3].source == "```{solution-start} ex-02-2\n:class: dropdown\n```"
    assert cells[4].source == ex.solution_code() and SOLUTION_TAG in cells[4].metadata["tags"]
    assert cells[6].source.endswith("check_peak_ablation(peak_ablation_hook)") and CHECK_TAG in cells[6].metadata["tags"]


def test_student_notebook_holds_no_solution_text():
    nb = _notebook()
    student = student_notebook(nb)
    text = json.dumps(student)
    public = json.dumps([c.source for c in nb.cells if SOLUTION_TAG not in c.metadata.get("tags", [])])
    sources = [c.source for c in student.cells]
    for ex in EXERCISES.values():
        assert ex.solution_code() not in sources
        body = {ln.strip() for ln in ex.solution_code().splitlines() if ln.strip()}
        leaked = [ln for ln in body if json.dumps(ln)[1:-1] in text and json.dumps(ln)[1:-1] not in public]
        assert not leaked, f"{ex.id}: solution lines left in the student notebook: {leaked}"
        assert ex.stub() in sources, f"{ex.id}: the stub is missing or changed"
    assert "{solution" not in text and SOLUTION_TAG not in text
    assert "SECRET ANSWER TEXT" not in text and "Some prose." in text and "More prose." in text
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")
    assert len(student.cells) == len(nb.cells) - 3 * len(EXERCISES)
    assert json.dumps(nb).count("SECRET ANSWER TEXT") == 1  # the source notebook is untouched


def test_student_notebook_can_keep_outputs_but_not_the_checks():
    student = student_notebook(_notebook(), keep_outputs=True)
    for c in student.cells:
        if c.cell_type == "code":
            assert bool(c.outputs) != (CHECK_TAG in c.metadata.get("tags", []))


def test_student_notebook_refuses_unbalanced_solutions():
    md = nbformat.v4.new_markdown_cell
    for cells, match in (([md("```{solution-start} ex\n```")], "never closed"),
                         ([md("```{solution-end}\n```")], "no {solution-start}"),
                         ([md("```{solution-start} a\n```"), md("```{solution-start} b\n```")], "inside"),
                         ([md("````{solution} a\nleft open")], "never closed")):
        with pytest.raises(SolutionLeakError, match=re.escape(match)):
            student_notebook(nbformat.v4.new_notebook(cells=cells))


def test_insert_exercises_at_the_end_of_a_section():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[md("# Title"), md("## Record"), code("a"), md("### Detail"), code("b"),
                                         md("## Patch"), code("c")])
    out = insert_exercises(nb, [("Record", EXERCISES["00.1"]), ("Patch", EXERCISES["00.3"])])
    sources = [c.source for c in out.cells]
    assert sources.index("## Patch") == 5 + 7 and EXERCISES["00.1"].stub() == sources[6]
    assert sources[-7:] == [c.source for c in exercise_cells(EXERCISES["00.3"])]
    with pytest.raises(ValueError, match="Headings"):
        insert_exercises(nb, [("No such section", EXERCISES["00.1"])])


@pytest.mark.parametrize("stem", list(CHAPTERS.values()))
def test_exercise_pages_are_generated_from_the_registry(stem):
    path = ROOT / "book" / "exercises" / f"{stem}.md"
    hint = "regenerate: python -c 'from paragraph_planning.workshop.notebooks import write_exercise_pages as w; w(\".\")'"
    assert path.exists(), hint
    assert path.read_text() == exercise_page(stem), f"{path.name} is stale; {hint}"
    assert path.read_text().count("{exercise-start}") == len(exercises(stem)) >= 3


def test_config_and_requirements_enable_sphinx_exercise():
    cfg = (ROOT / "_config.yml").read_text()
    assert re.search(r"extra_extensions:\s*\[[^\]]*\bsphinx_exercise\b", cfg)
    assert re.search(r"^sphinx-exercise\b", (ROOT / "requirements.txt").read_text(), re.M)


# ----------------------------------------------------------------------------- explorers
@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(0)
    ablation = pd.DataFrame([dict(model=m, method=me, frac=f, seed=s, loss=3 + f * k + rng.normal(0, 0.05),
                                  top1=0.4 - f * k / 10)
                             for m in ("a", "b") for k, me in enumerate(("zero", "mean", "peak", "resample"), 1)
                             for f in (0.0, 0.25, 0.5, 0.75, 1.0) for s in range(3)])
    texts = pd.DataFrame([dict(text=i, condition=c, output=f"output {i} {c} <b>", distance=rng.uniform(),
                               para1=f"first paragraph {i} " * 8, para2=f"second paragraph {i} " * 6)
                          for i in range(4) for c in ("neutral", "transferred", "full", "shuffled")])
    return ablation, texts


def _compiles(chart) -> None:
    import vl_convert

    spec = chart.to_dict()  # validates against the vega-lite schema
    assert "<svg" in vl_convert.vegalite_to_svg(spec)  # and vega can evaluate every expression


def test_neuron_explorer_builds_and_follows_its_controls():
    from paragraph_planning.workshop.widgets import NeuronExplorer, explore_neurons

    stats = tiny_mlp_stats(tiny_lm())
    e = NeuronExplorer(stats)
    first = e.chart().to_dict()
    e.neuron.value = 7
    assert e.chart().to_dict() != first and "peak" in e.caption()
    e.site.value = list(stats)[1]
    _compiles(e.chart())
    static = explore_neurons(stats, static=True, n_static=6)
    assert "neuron" in {p["name"] for p in static.to_dict()["params"]}  # a dropdown in the browser
    _compiles(static)


def test_ablation_explorer_builds_and_follows_its_controls(tables):
    from paragraph_planning.workshop.widgets import AblationExplorer, explore_ablation

    ablation, _ = tables
    e = AblationExplorer(ablation)
    first = e.chart().to_dict()
    e.frac.value, e.metric.value, e.model.value = 0.75, "top1", "b"
    assert e.chart().to_dict() != first
    _compiles(e.chart())
    static = explore_ablation(ablation, static=True)
    assert {"frac", "model"} <= {p["name"] for p in static.to_dict()["params"]}
    _compiles(static)
    with pytest.raises(ValueError, match="Valid for this table"):
        AblationExplorer(ablation, metric="no_such_metric")


def test_text_explorer_builds_escapes_and_follows_its_controls(tables, monkeypatch):
    from paragraph_planning.workshop.widgets import BOOK_ENV, TextExplorer, explore_texts

    _, texts = tables
    e = TextExplorer(texts)
    assert [o for o in e.condition.options][:4] == ["full", "transferred", "shuffled", "neutral"]
    e.text.value, e.condition.value = 2, "shuffled"
    assert "output 2 shuffled &lt;b&gt;" in e.caption()  # model text is shown literally
    _compiles(e.chart())
    monkeypatch.setenv(BOOK_ENV, "1")
    static = explore_texts(texts)  # in the book: the static chart
    assert {"text", "condition"} <= {p["name"] for p in static.to_dict()["params"]}
    _compiles(static)
    monkeypatch.delenv(BOOK_ENV)
    assert isinstance(explore_texts(texts), TextExplorer)
    with pytest.raises(ValueError, match="para2"):
        explore_texts(texts.drop(columns="para2"))


def test_book_variable_is_the_runners():
    from paragraph_planning.book.plots import BOOK_ENV as RUNNER
    from paragraph_planning.workshop.widgets import BOOK_ENV

    assert BOOK_ENV == RUNNER


def test_instructor_page_matches_the_registry_and_the_makefile():
    page = (ROOT / "book" / "instructor.md").read_text()
    rows = re.findall(r"^\| [\d:]+ \| (\d\d\.\d) \| ([^|]+) \| (\d+) \| `(\w+)` \|$", page, re.M)
    assert len(rows) >= 6
    for ex_id, title, minutes, check in rows:
        ex = EXERCISES[ex_id]
        assert (title.strip(), int(minutes), check) == (ex.title, ex.minutes, ex.check_name), ex_id
    assert sum(int(m) for _, _, m, _ in rows) <= 75, "the 90-minute plan leaves time for reading and demos"
    for block in re.findall(r"^\| [A-Z][^|]+ \| ([\d., ]+) \| [^|]+ \| (\d+) \|$", page, re.M):
        ids = [i.strip() for i in block[0].split(",")]
        assert sum(EXERCISES[i].minutes for i in ids) == int(block[1]), ids
    for ex_id in re.findall(r"(?<![\w.=])(\d\d\.\d)(?![\w.])", page):
        assert ex_id in EXERCISES, ex_id
    nodeps = re.search(r"^NODEPS := (.*?)(?<!\\)$", (ROOT / "Makefile").read_text(), re.M | re.S).group(1)
    listed = re.search(r"pip download --no-deps (.*?) -d wheels/", page, re.S).group(1)
    assert sorted(nodeps.replace("\\", " ").split()) == sorted(listed.replace("\\", " ").split())


def test_instructor_page_lists_every_exercise_and_quotes_real_commands():
    """The exercise list is the registry's; every command the page quotes parses, names a chapter and a profile."""
    import shlex

    from paragraph_planning.book import chapters as chs
    from paragraph_planning.book.cli import make_parser
    from paragraph_planning.workshop.notebooks import EXERCISE_LIST, exercise_list

    page = (ROOT / "book" / "instructor.md").read_text()
    start, end = page.index(EXERCISE_LIST[0]), page.index(EXERCISE_LIST[1]) + len(EXERCISE_LIST[1])
    assert page[start:end] == exercise_list(), "stale exercise list: paste exercise_list() between the markers"
    for ex in EXERCISES.values():
        assert f"| {ex.id} | " in page[start:end] and f"`{ex.check_name}`" in page[start:end], ex.id
    commands = re.findall(r"python -m paragraph_planning ([^`\n]+)", page)
    assert {"build --student", "run ablation --profile workshop"} <= {c.strip() for c in commands}
    profiles = chs.load_profiles(ROOT)
    for command in commands:
        args = make_parser().parse_args(shlex.split(command.split("#")[0]))
        if args.command == "run":
            chs.find_chapter(args.chapter, ROOT)
        if args.command != "list":
            assert args.profile in profiles, command
    assert {chs.find_chapter(c, ROOT).name for c in re.findall(r"run (\w+) --profile workshop", page)} == {
        c.name for c in chs.chapters(ROOT)}
    toc = chs.toc_files(ROOT)
    assert "book/instructor" in toc and all(f"book/exercises/{stem}" in toc for stem in CHAPTERS.values())


def test_workshop_profile_uses_real_models_and_no_ladder():
    from paragraph_planning.book import chapters as chs

    profile = chs.load_profiles(ROOT)["workshop"]
    assert set(profile) == {c.name for c in chs.chapters(ROOT)}
    for chapter, values in profile.items():
        models = [v for k, v in values.items() if k == "model" or k.endswith("_model")]
        models += [m for k, v in values.items() if k.endswith("_models") for m in v]
        assert models and not any(str(m).startswith("tiny") for m in models), (chapter, models)
    assert profile["01_paragraph_planning"]["ladder"] == []


# Chapters whose notebooks do not yet link their exercise page (their helpers were editing them when the pages
# were added). The lead removes each name when he adds the link (strict: a linked chapter still listed fails).
EXERCISE_LINK_PENDING: set[str] = set()


@pytest.mark.parametrize("stem", list(CHAPTERS.values()))
def test_chapter_links_its_exercise_page(stem, request):
    if stem in EXERCISE_LINK_PENDING:
        request.applymarker(pytest.mark.xfail(strict=True, reason="pending: the lead adds the link"))
    nb = nbformat.read(str(ROOT / "book" / f"{stem}.ipynb"), as_version=4)
    assert any(f"exercises/{stem}" in c.source for c in nb.cells if c.cell_type == "markdown"), stem
