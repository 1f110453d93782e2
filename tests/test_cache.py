"""The disk cache: keyed by parameters and code, computed once, formats round-trip."""
from __future__ import annotations

import types

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
    monkeypatch.setattr(cache, "code_tag", lambda depends=None: "edited")
    cache.cached("x", {"n": 1}, f)
    assert f.calls == 2


def test_depends_narrows_the_code_tag(tmp_path):
    mod = types.ModuleType("fake")
    mod.__file__ = str(tmp_path / "fake.py")
    (tmp_path / "fake.py").write_text("A = 1\n")
    assert cache.code_tag([mod]) != cache.code_tag()


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
