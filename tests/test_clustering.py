"""Modularity analyses: overlap, ordering, binary search, equal-size clusters, concentration."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paragraph_planning.core.clustering import (
    concentration,
    moefy,
    overlap_matrix,
    random_partition,
    similarity_order,
    smallest_fraction,
    top_fraction,
    top_pairs,
)


def test_overlap_of_identical_sets_is_one_and_of_disjoint_sets_zero():
    a = torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.bool)
    b = torch.tensor([0, 0, 1, 1, 0, 0], dtype=torch.bool)
    c = torch.tensor([1, 0, 1, 0, 0, 0], dtype=torch.bool)
    m = overlap_matrix({"a": a, "a2": a.clone(), "b": b, "c": c})
    assert m.loc["a", "a2"] == 1 and m.loc["a", "b"] == 0 and m.loc["a", "c"] == 0.5
    assert (np.diag(m.values) == 1).all()


def test_random_sets_overlap_at_chance():
    gen = torch.Generator().manual_seed(0)
    n, k = 20000, 1000
    sets = {i: torch.zeros(n, dtype=torch.bool).index_fill_(0, torch.randperm(n, generator=gen)[:k], True)
            for i in range(4)}
    off = overlap_matrix(sets).values[~np.eye(4, dtype=bool)]
    assert abs(off.mean() - k / n) < 0.01


def test_top_fraction_is_global_and_sized():
    scores = {"l0": torch.tensor([5.0, 0, 0, 0]), "l1": torch.tensor([4.0, 3, 0, 0])}
    assert top_fraction(scores, 0.25).tolist() == [True, False, False, False, True, False, False, False]
    with pytest.raises(ValueError, match="selects no neuron"):
        top_fraction(scores, 0.01)


def test_similarity_order_groups_related_tasks():
    sets = {}
    base1, base2 = torch.zeros(100, dtype=torch.bool), torch.zeros(100, dtype=torch.bool)
    base1[:20], base2[50:70] = True, True
    for name, base, shift in (("x1", base1, 0), ("y1", base2, 0), ("x2", base1, 2), ("y2", base2, 3)):
        sets[name] = base.roll(shift)
    order = similarity_order(overlap_matrix(sets))
    assert abs(order.index("x1") - order.index("x2")) == 1 and abs(order.index("y1") - order.index("y2")) == 1
    assert set(top_pairs(overlap_matrix(sets), 2)[["task_a", "task_b"]].apply(frozenset, axis=1)) == {
        frozenset({"x1", "x2"}), frozenset({"y1", "y2"})}


@pytest.mark.parametrize("threshold", [0.0137, 0.05, 0.1111])
def test_binary_search_finds_a_known_threshold(threshold):
    calls = []

    def metric(frac):  # a synthetic accuracy curve that crosses 0.8 exactly at `threshold`
        calls.append(frac)
        return 1.0 - 0.2 * frac / threshold

    found = smallest_fraction(metric, 0.8, hi=0.128, tol=0.001)
    assert threshold <= found <= threshold + 0.001 and len(calls) < 12
    assert smallest_fraction(lambda f: 1.0, 0.8) == 0.128  # never reached: the upper bound


def test_equal_size_clusters_are_equal_size_and_follow_structure():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    rows = np.concatenate([centres[i] + 0.05 * rng.normal(size=(8, 16)) for i in range(4)])
    labels = moefy(torch.tensor(rows), n_clusters=4)
    assert np.bincount(labels).tolist() == [8, 8, 8, 8]
    for i in range(4):  # each true group lands in one cluster
        assert len(set(labels[i * 8:(i + 1) * 8])) == 1
    rand = random_partition(32, 4, seed=1)
    assert np.bincount(rand).tolist() == [8, 8, 8, 8]
    with pytest.raises(ValueError, match="divisible"):
        moefy(torch.tensor(rows), n_clusters=5)


def test_concentration_bounds():
    labels = np.repeat(np.arange(4), 4)
    one = np.zeros(16, dtype=bool)
    one[:4] = True
    assert concentration(one, labels, 4) == pytest.approx(1.0)
    spread = np.zeros(16, dtype=bool)
    spread[[0, 4, 8, 12]] = True
    assert concentration(spread, labels, 4) == pytest.approx(0.0)
    assert math.isnan(concentration(np.zeros(16, dtype=bool), labels, 4))
