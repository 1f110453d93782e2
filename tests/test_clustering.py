"""Modularity analyses: overlap, ordering, binary search, equal-size clusters, concentration."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from paragraph_planning.core.clustering import concentration, moefy, permuted_labels, similarity_order, smallest_fraction


def test_similarity_order_groups_related_tasks():
    names = ["x1", "y1", "x2", "y2"]
    close = {frozenset({"x1", "x2"}), frozenset({"y1", "y2"})}
    m = pd.DataFrame([[1.0 if a == b else 0.8 if frozenset({a, b}) in close else 0.1 for b in names] for a in names],
                     index=names, columns=names)
    order = similarity_order(m)
    assert abs(order.index("x1") - order.index("x2")) == 1 and abs(order.index("y1") - order.index("y2")) == 1


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
    labels = moefy(torch.tensor(rows), n_clusters=4)  # the library's defaults: n_init=10, max_iter=300
    assert np.bincount(labels).tolist() == [8, 8, 8, 8]
    for i in range(4):  # each true group lands in one cluster
        assert len(set(labels[i * 8:(i + 1) * 8])) == 1
    with pytest.raises(ValueError, match="divisible"):
        moefy(torch.tensor(rows), n_clusters=5)
    perms = permuted_labels(labels, 50, seed=1)
    assert perms.shape == (50, 32) and all(np.bincount(p).tolist() == [8, 8, 8, 8] for p in perms)
    assert not (perms == labels).all(1).any() and np.array_equal(perms, permuted_labels(labels, 50, seed=1))


def test_concentration_bounds_and_shapes():
    labels = np.repeat(np.arange(4), 4)
    one = np.zeros(16, dtype=bool)
    one[:4] = True
    assert concentration(one, labels, 4) == pytest.approx(1.0)
    spread = np.zeros(16, dtype=bool)
    spread[[0, 4, 8, 12]] = True
    assert concentration(spread, labels, 4) == pytest.approx(0.0)
    assert math.isnan(concentration(np.zeros(16, dtype=bool), labels, 4))
    sets = np.array([[0, 1, 2, 3], [0, 4, 8, 12], [0, 1, 4, 5]])  # all in one, spread, two halves
    c = concentration(sets, labels, 4)
    assert c.shape == (3,) and c == pytest.approx([1.0, 0.0, 1 - math.log(2) / math.log(4)])
    many = concentration(sets, np.stack([labels, labels[::-1]]), 4)
    assert many.shape == (2, 3) and many[1] == pytest.approx(c)  # reversing the labels keeps the grouping


def test_random_sets_are_not_concentrated_on_average():
    labels = np.repeat(np.arange(8), 64)
    perms = permuted_labels(labels, 400, seed=0)
    chosen = np.arange(0, 512, 8)[None]  # 64 neurons, 8 per cluster: evenly spread under the true labels
    assert concentration(chosen, labels, 8)[0] == pytest.approx(0.0)
    null = concentration(chosen, perms, 8)[:, 0]
    assert 0.02 < null.mean() < 0.1  # a random partition puts them unevenly, a little
