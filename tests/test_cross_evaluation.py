"""Cross-evaluation (paper 3): the search on tuning rows, evaluation rows, per-row top-1, bootstrap verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paragraph_planning.core.evaluation import evaluate_lm
from paragraph_planning.core.inference import ABSENT, HOLDS, UNDETERMINED
from paragraph_planning.data import tasks as T
from paragraph_planning.papers import cross_evaluation as ce
from paragraph_planning.papers import modularity as mod

THRESHOLDS = {"a": 0.02, "b": 0.05, "c": 0.2}  # "c" cannot be reached below hi = 0.128
BASE = {"a": 0.5, "b": 0.4, "c": 0.3}


def _hits_fn(spill, n_rows=40, tokens=10_000, noise=0.0, seed=0, calls=None):
    """``hits(prune_for, frac, task, use)`` of a synthetic model: top-1 falls linearly with the pruned fraction.

    Pruning for ``t`` at its threshold costs ``t`` 20 % of its top-1 and task ``u`` ``spill[(t, u)]`` times as much.
    """
    rng = np.random.default_rng(seed)
    row_noise = {}  # independent row noise per condition: pruning changes which tokens are hit

    def hits(prune_for, frac, task, use):
        if calls is not None:
            calls.append((prune_for, frac, task, use))
        key = (prune_for, round(frac, 12), task, use)
        if key not in row_noise:
            row_noise[key] = rng.normal(0, noise, n_rows)
        rate = 0.0 if prune_for is None else 1.0 if task == prune_for else spill.get((prune_for, task), 0.0)
        drop = 0.0 if prune_for is None else 0.2 * frac / THRESHOLDS[prune_for]
        p = np.clip(BASE[task] * max(0.0, 1 - rate * drop) + row_noise[key], 0, 1)
        return np.round(p * tokens).astype(np.int64)

    return hits


def _frame(df, tokens=10_000):
    return df.assign(unit=df.row, tokens=tokens)


def test_search_on_tuning_rows_finds_known_thresholds_and_measures_evaluation_rows():
    calls = []
    cfg = ce.CrossConfig(tol=1.05, n_boot=200)
    df = _frame(ce.cross_evaluation(["a", "b", "c"], _hits_fn({("a", "b"): 0.5}, calls=calls), cfg))
    table = ce.cross_table(df, 200).set_index(["pruned_for", "evaluated_on"])
    for t in ("a", "b"):
        assert THRESHOLDS[t] <= table.loc[(t, t), "frac"] <= THRESHOLDS[t] * 1.06 and table.loc[(t, t), "reached"]
        assert table.loc[(t, t), "tune_ratio"] <= 0.8
    assert table.loc[("c", "c"), "frac"] == pytest.approx(0.128) and not table.loc[("c", "c"), "reached"]
    assert table.loc[("a", "b"), "ratio"] == pytest.approx(1 - 0.5 * 0.2 * table.loc[("a", "b"), "frac"] / 0.02, abs=0.02)
    assert table.loc[("a", "c"), "ratio"] == 1.0
    searched = [c for c in calls if c[0] == "a" and c[2] == "a"]
    assert all(c[3] == "tune" for c in searched[:-1])  # the search only ever looks at tuning rows
    assert len([c for c in searched if c[3] == "tune"]) <= 2 + math.ceil(math.log2(math.log(128) / math.log(1.05)))
    assert {c[3] for c in calls if c[0] == "a" and c[2] != "a"} == {"eval"}
    with pytest.raises(ValueError, match="relative tolerance"):
        ce.CrossConfig(tol=0.5)
    with pytest.raises(ValueError, match="eval_size"):
        ce.CrossConfig(eval_size=0)


def test_cross_verdicts_follow_known_answers():
    tasks = [T.Task("a", "wiki-en", (), "wiki"), T.Task("b", "wiki-en", (), "wiki"), T.Task("c", "bbc", (), "bbc")]
    cfg = ce.CrossConfig(tol=1.05, n_boot=500, hi=0.5)
    clear = _frame(ce.cross_evaluation(["a", "b", "c"], _hits_fn({("a", "b"): 0.6, ("b", "a"): 0.6}, noise=0.01), cfg))
    f = ce.cross_findings(clear, tasks, cfg)
    assert f[0].verdict == HOLDS and f[0].interval.estimate > 0.1  # the own task loses more than the others
    assert f[1].verdict == HOLDS  # the same family loses more
    own = ce.own_ratio(clear, cfg)
    assert own.lo <= 0.8 <= own.hi + 0.02
    # spill of the same size as the own effect: the target is not special
    same = _frame(ce.cross_evaluation(["a", "b", "c"], _hits_fn({(t, u): 1.0 for t in "abc" for u in "abc"}, noise=0.01),
                                      cfg))
    assert ce.cross_findings(same, tasks, cfg)[0].verdict in (UNDETERMINED, ABSENT)
    # a small family effect drowned in row noise
    noisy = _frame(ce.cross_evaluation(["a", "b", "c"], _hits_fn({("a", "b"): 0.05, ("b", "a"): 0.05}, noise=0.1), cfg))
    assert ce.cross_findings(noisy, tasks, cfg)[1].verdict == UNDETERMINED


def test_bootstrap_pairs_conditions_on_the_same_units():
    cfg = ce.CrossConfig(tol=1.5, n_boot=300)
    df = _frame(ce.cross_evaluation(["a", "b"], _hits_fn({}, noise=0.2), cfg))
    same = df[(df.pruned_for == "a") & (df.evaluated_on == "b")].index
    df.loc[same, "hits"] = df[(df.pruned_for == "") & (df.evaluated_on == "b")].hits.to_numpy()
    est, boot, targets, tasks = ce.cross_bootstrap(df, 300, seed=0)
    j = tasks.index("b")
    assert est[targets.index("a"), j] == 1.0
    assert boot[:, targets.index("a"), j].std() < 1e-12  # identical hits stay identical on every draw: paired
    assert boot[:, targets.index("b"), j].std() > 0


class _Tok:
    bos_token_id = None

    def __call__(self, text, add_special_tokens=False, verbose=False):
        return {"input_ids": [ord(c) % 50 for c in text]}


def test_spread_rows_spread_over_documents_first():
    pieces = T.chunked([f"d{i}" for i in range(5)], ["x" * (40 * (i + 1)) for i in range(5)])
    rows, unit = ce.spread_rows(pieces, _Tok(), n_tokens=7 * 19, seq_len=20, seed=0)
    assert rows.shape == (7, 20)
    assert len(set(unit[:5].tolist())) == 5  # one row from each document before a second from any
    assert np.array_equal(unit, ce.spread_rows(pieces, _Tok(), 7 * 19, 20, seed=0)[1])
    with pytest.raises(ValueError, match="fewer than"):
        ce.spread_rows(pieces, _Tok(), n_tokens=10_000, seq_len=20)


def test_token_hits_agree_with_evaluate_lm_and_masks_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path))
    ref = mod.ModelRef("tiny-llama")
    model = ref.get()
    rows = torch.randint(0, 100, (6, 12), generator=torch.Generator().manual_seed(0))
    hits = ce.token_hits(model, rows, max_logit_bytes=1)  # one row per step
    assert hits.shape == (6,) and hits.sum() / (6 * 11) == pytest.approx(evaluate_lm(model, rows)["top1"])
    before = model(rows)
    scores = torch.rand(2, 48, dtype=torch.float64)
    with ce._masks(model, scores, 0.25):
        assert not torch.equal(model(rows), before)
    assert torch.equal(model(rows), before)


def test_cross_evaluation_on_a_tiny_vit_runs_each_class_once_and_restores_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path))
    tasks = T.image_tasks(["T-shirt/top", "Trouser", "group/tops"])
    ref = mod.ModelRef("tiny-vit-classifier")
    scores = {t.name: torch.rand(2, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
              for i, t in enumerate(tasks)}
    x = torch.randn(2, 1, 8, 8)
    before = ref.get()(x)
    calls = []
    real = ce._hits
    monkeypatch.setattr(ce, "_hits", lambda model, s: calls.append(len(s.unit)) or real(model, s))
    cfg = ce.CrossConfig(tune_size=4, eval_size=6, tol=2.0, hi=0.5, n_boot=100)
    df = ce.run_cross_evaluation(ref, tasks, scores, cfg)
    assert set(df.evaluated_on) == {t.name for t in tasks}
    base = df[df.pruned_for == ""]
    assert base.groupby("evaluated_on").size().to_dict() == {"T-shirt/top": 6, "Trouser": 6, "group/tops": 24}
    assert (base.tokens == 1).all() and base[base.evaluated_on == "group/tops"].unit.nunique() == 24
    n_targets = df[df.pruned_for != ""].pruned_for.nunique()
    # each class's evaluation images run once unpruned and once per target, whatever the tasks holding the class
    assert calls.count(6) == 5 * (1 + n_targets)
    assert torch.equal(ref.get()(x), before)  # masks removed
