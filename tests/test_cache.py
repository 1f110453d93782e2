"""The disk cache: keyed by parameters and code, computed once, formats round-trip."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from paragraph_planning import cache


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path))
    monkeypatch.delenv(cache.NO_CACHE_ENV, raising=False)
    return tmp_path


class Counter:
    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value


def test_computes_once_then_loads():
    f = Counter({"mean": torch.arange(4.0), "n": 10})
    first = cache.cached("stats", {"model": "tiny-llama", "n": 10}, f)
    second = cache.cached("stats", {"n": 10, "model": "tiny-llama"}, f)  # key order does not matter
    assert f.calls == 1
    assert torch.equal(second["mean"], first["mean"]) and second["n"] == 10


def test_changing_a_parameter_recomputes_only_that_result():
    f, g = Counter(1), Counter(2)
    cache.cached("a", {"n": 10}, f)
    cache.cached("b", {"n": 10}, g)
    cache.cached("a", {"n": 20}, f)
    cache.cached("b", {"n": 10}, g)
    assert (f.calls, g.calls) == (2, 1)


def test_stable_hash_semantics():
    h = cache.stable_hash
    assert h({"a": 1, "b": [1, 2]}) == h({"b": (1, 2), "a": 1})
    assert h({"lr": 3.0}) == h({"lr": 3}) and h({"lr": 0.1}) != h({"lr": 0.10001})
    assert h({"dtype": torch.float16}) != h({"dtype": torch.float32})
    assert h({"x": torch.tensor([1, 2])}) != h({"x": torch.tensor([1, 3])})
    assert h({"a": 1}) != h({"a": 1}, "other-code")
    with pytest.raises(TypeError, match="model's name"):
        h({"model": torch.nn.Linear(2, 2)})


def test_dataframe_parquet_and_objects_roundtrip(tmp_cache):
    df = pd.DataFrame({"layer": [0, 1], "score": [0.5, 0.25], "name": ["a", "b"]})
    out = cache.cached("table", {"k": 1}, lambda: df)
    again = cache.cached("table", {"k": 1}, lambda: pytest.fail("recomputed"))
    pd.testing.assert_frame_equal(again, df)
    assert (cache.result_dir("table", {"k": 1}) / "value.parquet").exists()
    assert (cache.result_dir("table", {"k": 1}) / "params.json").exists()
    model = torch.nn.Linear(3, 2)
    back = cache.cached("model", {"seed": 0}, lambda: model)
    loaded = cache.cached("model", {"seed": 0}, lambda: pytest.fail("recomputed"))
    assert torch.equal(loaded.weight, back.weight)
    assert out is df


def test_code_change_invalidates(monkeypatch):
    f = Counter(1)
    cache.cached("x", {"n": 1}, f)
    monkeypatch.setattr(cache, "code_tag", lambda module=None, root=None: "edited")
    cache.cached("x", {"n": 1}, f)
    assert f.calls == 2


@pytest.fixture
def package_copy(tmp_path):
    """A temporary copy of the package's source tree (code tags are computed from files alone)."""
    dest = tmp_path / "src" / "paragraph_planning"
    shutil.copytree(cache.PACKAGE_ROOT, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _append(path, text="\n# an edit\n"):
    path.write_text(path.read_text() + text)


def test_code_tag_follows_imports_transitively(package_copy):
    """papers/ablation imports core/statistics, which imports util: editing util changes ablation's key."""
    root, mod = package_copy, "paragraph_planning.papers.ablation"
    deps = cache.dependencies(mod, root)
    for indirect in ("paragraph_planning.core.peaks", "paragraph_planning.core.statistics", "paragraph_planning.util",
                     "paragraph_planning.core.hooks", "paragraph_planning.core.architectures"):
        assert indirect in deps, indirect
    assert "paragraph_planning.papers.modularity" not in deps and "paragraph_planning.book.runner" not in deps
    assert not any(d.endswith("__init__") or d in ("paragraph_planning.core", "paragraph_planning") for d in deps)
    before = cache.code_tag(mod, root)
    _append(root / "core" / "peaks.py")  # imported directly
    after_peaks = cache.code_tag(mod, root)
    assert after_peaks != before
    _append(root / "util.py")  # imported only indirectly (ablation -> statistics -> util)
    assert cache.code_tag(mod, root) != after_peaks
    unrelated = cache.code_tag(mod, root)
    _append(root / "papers" / "modularity.py")
    _append(root / "book" / "runner.py")
    _append(root / "charts.py")
    assert cache.code_tag(mod, root) == unrelated


def test_a_companion_c_source_is_part_of_its_module(package_copy):
    """core/fused.c is compiled and called by core/fused.py: editing it changes the key of what uses statistics."""
    root, mod = package_copy, "paragraph_planning.papers.ablation"
    assert "paragraph_planning.core.fused" in cache.dependencies(mod, root)
    before, whole = cache.code_tag(mod, root), cache.code_tag(None, root)
    _append(root / "core" / "fused.c", "\n/* an edit */\n")
    assert cache.code_tag(mod, root) != before
    assert cache.code_tag(None, root) != whole


def test_lazy_imports_inside_functions_count(package_copy):
    root = package_copy
    (root / "papers" / "lazy.py").write_text("def f():\n    from ..core import peaks\n    return peaks\n")
    before = cache.code_tag("paragraph_planning.papers.lazy", root)
    assert "paragraph_planning.core.peaks" in cache.dependencies("paragraph_planning.papers.lazy", root)
    _append(root / "core" / "peaks.py")
    assert cache.code_tag("paragraph_planning.papers.lazy", root) != before


def test_cached_keys_on_the_computing_module(monkeypatch):
    """The key of a result computed by a package function uses that module's tag, not the whole package's."""
    from paragraph_planning.core import peaks

    f = Counter(1)
    key = cache.cache_key("x", {"n": 1}, peaks.hist_mode)
    assert key == cache.cache_key("x", {"n": 1}, code="paragraph_planning.core.peaks")
    assert key != cache.cache_key("x", {"n": 1}, code="paragraph_planning.core.statistics")
    cache.cached("x", {"n": 1}, f, code="paragraph_planning.core.peaks")
    cache.cached("x", {"n": 1}, f, code="paragraph_planning.core.peaks")
    assert f.calls == 1


def test_model_fingerprint_joins_the_key():
    from paragraph_planning import load_model

    a, b = load_model("tiny-llama"), load_model("tiny-llama")
    assert a.fingerprint() == b.fingerprint()
    k = cache.cache_key("s", {"n": 1}, model=a)
    assert k == cache.cache_key("s", {"n": 1}, model=b)
    assert k != cache.cache_key("s", {"n": 1}, model=load_model("tiny-llama", seed=1))  # other weights
    assert k != cache.cache_key("s", {"n": 1}, model=load_model("tiny-llama", dtype="bfloat16"))  # other dtype
    assert k != cache.cache_key("s", {"n": 1}, model=load_model("tiny-llama", random_init=True))
    f = Counter(2)
    cache.cached("s", {"n": 1}, f, model=a)
    cache.cached("s", {"n": 1}, f, model=b)
    cache.cached("s", {"n": 1}, f, model=load_model("tiny-llama", seed=1))
    assert f.calls == 2


def test_fingerprint_of_a_weight_file_changes_with_its_content(tmp_path):
    """Models loaded from files are identified by the files' hash: a retrained model under one name differs."""
    from paragraph_planning import load_model

    m = load_model("tiny-llama")
    m.hf.save_pretrained(tmp_path / "m")
    m.tokenizer.save_pretrained(tmp_path / "m")
    first = load_model(tmp_path / "m").fingerprint()
    assert first == load_model(str(tmp_path / "m")).fingerprint()
    with torch.no_grad():
        m.hf.model.layers[0].mlp.up_proj.weight[0, 0] += 1
    m.hf.save_pretrained(tmp_path / "m")
    assert load_model(tmp_path / "m").fingerprint()["weights"] != first["weights"]


def test_refresh_no_cache_and_clear(monkeypatch):
    f = Counter(5)
    cache.cached("r", {}, f)
    cache.cached("r", {}, f, refresh=True)
    assert f.calls == 2
    monkeypatch.setenv(cache.NO_CACHE_ENV, "1")
    cache.cached("r", {}, f)
    cache.cached("r", {}, f)
    assert f.calls == 4
    monkeypatch.delenv(cache.NO_CACHE_ENV)
    assert cache.clear("r") == 1
    cache.cached("r", {}, f)
    assert f.calls == 5
    with pytest.raises(ValueError):
        cache.cached("../escape", {}, f)


def test_corrupt_file_is_recomputed():
    f = Counter(torch.ones(3))
    cache.cached("c", {}, f)
    (cache.result_dir("c", {}) / "value.pt").write_bytes(b"not a torch file")
    assert torch.equal(cache.cached("c", {}, f), torch.ones(3)) and f.calls == 2
