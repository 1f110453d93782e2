"""Modularity experiments (paper 3): tasks and their data, overlap, twins, cross-evaluation, MoEfication."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from paragraph_planning.data import tasks as T
from paragraph_planning.data.corpora import line_pieces
from paragraph_planning.papers import modularity as mod
from paragraph_planning.papers import moefication as moe

TINY_TASKS = ["wiki/Mathematics", "bbc/sport", "recipes"]


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def tiny_lm(tiny_cache):
    tasks = T.text_tasks(TINY_TASKS)
    refs = {"trained": mod.ModelRef("tiny-llama"), "random init": mod.ModelRef("tiny-llama", random_init=True)}
    scores = {w: mod.text_scores(r, tasks, collect_tokens=128, seq_len=32, batch_size=4) for w, r in refs.items()}
    return tasks, refs, scores


# ----------------------------------------------------------------------------- tasks and data
def test_task_lists():
    text = T.text_tasks()
    names = [t.name for t in text]
    assert len(text) >= 12 and len(set(names)) == len(names)
    assert {"python", "shakespeare", "recipes", "french", "bbc/sport", "wiki/Mathematics"} <= set(names)
    assert not any("Uncategorized" in n for n in names)
    images = T.image_tasks()
    assert [t.name for t in images[:10]] == [t.classes[0] for t in images[:10]]
    groups = {t.name: t.classes for t in images[10:]}
    assert set(groups) == {"group/tops", "group/footwear"}  # single-class groups would repeat a class
    assert T.nested(images[0], images[10]) and not T.nested(images[0], images[1])
    assert T.text_tasks(["python", "recipes"])[1].name == "recipes"
    with pytest.raises(ValueError, match="Did you mean 'python'"):
        T.text_tasks(["pyton"])


@pytest.mark.slow
def test_every_text_task_has_forget_and_test_documents_disjoint_from_retain():
    retain = T.doc_ids(T.retain_texts())
    assert retain and {T.pool_of(i) for i in retain} == {"retain"}
    for task in T.text_tasks():
        forget, test = T.doc_ids(task.pieces("train", "forget")), T.doc_ids(task.pieces("test"))
        assert forget and test, task.name
        assert not forget & retain and not test & retain and not forget & test, task.name


def test_pool_is_a_stable_half_split_and_chunks_keep_the_text():
    ids = [f"doc{i}" for i in range(2000)]
    share = np.mean([T.pool_of(i) == "forget" for i in ids])
    assert 0.45 < share < 0.55 and T.pool_of("doc1") == T.pool_of("doc1")
    text = "".join(f"line {i}\n" for i in range(1000))
    pieces = line_pieces(text, 500)
    assert "".join(pieces) == text and max(map(len, pieces)) <= 500 and len(pieces) > 10


# ----------------------------------------------------------------------------- overlap and twins
def test_overlap_pipeline_on_a_tiny_model(tiny_lm):
    tasks, _, scores = tiny_lm
    s = scores["trained"]
    assert list(s) == TINY_TASKS and all(v.shape == (2, 48) and torch.isfinite(v).all() for v in s.values())
    table = mod.overlap_table({"trained": s}, [0.1, 0.25])
    for frac in (0.1, 0.25):
        m = mod.overlap_matrix_of(table, "trained", frac)
        assert m.shape == (3, 3) and list(m.index) == list(m.columns) == TINY_TASKS
        assert np.allclose(np.diag(m.values), 1) and ((m.values >= 0) & (m.values <= 1)).all()
        assert np.allclose(m.values, m.values.T)
    row = table.iloc[1]
    assert row["count"] == round(row.overlap * row.k) and row.chance == pytest.approx(int(0.1 * 96) / 96)
    summary = mod.overlap_summary(table, tasks)
    assert len(summary) == 2 and (summary.times_chance == summary.mean_offdiag / summary.chance).all()
    assert set(mod.task_order(table)) == set(TINY_TASKS)


def test_random_init_twin_gives_other_scores_and_is_cached(tiny_lm):
    tasks, refs, scores = tiny_lm
    assert refs["random init"].fingerprint() != refs["trained"].fingerprint()
    for t in TINY_TASKS:
        assert scores["random init"][t].shape == scores["trained"][t].shape
        assert not torch.allclose(scores["random init"][t], scores["trained"][t])
    table = mod.overlap_table(scores, [0.1])
    assert set(table.weights) == {"trained", "random init"}
    assert len(mod.pattern_correlation(table)) == 1
    again = mod.text_scores(mod.ModelRef("tiny-llama", random_init=True), tasks, collect_tokens=128,
                            seq_len=32, batch_size=4)
    assert all(torch.equal(again[t], scores["random init"][t]) for t in TINY_TASKS)


def test_image_scores_on_a_tiny_vit(tiny_cache):
    tasks = T.image_tasks()
    scores = mod.image_scores(mod.ModelRef("tiny-vit-classifier"), tasks, images_per_class=8, batch_size=8)
    assert list(scores) == [t.name for t in tasks]
    assert all(v.shape == (2, 48) and torch.isfinite(v).all() for v in scores.values())
    table = mod.overlap_table({"trained": scores}, [0.1])
    m = mod.overlap_matrix_of(table, "trained", 0.1)
    assert m.shape == (12, 12) and np.allclose(np.diag(m.values), 1)
    top = mod.overlap_top_pairs(table, tasks, "trained", 0.1, n=50)
    assert not any(t.startswith("group/") and o in ("T-shirt/top", "Sneaker") for t, o in zip(top.task_a, top.task_b))


def test_abs_scores_are_the_pruning_ratio():
    f, r = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    assert torch.allclose(mod.abs_scores(f, r), torch.tensor([[1 / 1.001, 2 / 0.001]], dtype=torch.float64))


# ----------------------------------------------------------------------------- cross-evaluation
def test_cross_evaluation_finds_known_thresholds():
    thresholds = {"a": 0.02, "b": 0.05, "c": 0.2}  # "c" cannot be reached below hi = 0.128
    spill = {("a", "b"): 0.5}  # pruning for "a" costs "b" half as much as "a"
    base = {"a": 0.5, "b": 0.4, "c": 0.3, "z": 0.0}
    calls = []

    def evaluate(prune_for, frac, on):
        calls.append((prune_for, frac, tuple(on)))
        out = {}
        for u in on:
            if prune_for is None:
                out[u] = base[u]
                continue
            rate = 1.0 if u == prune_for else spill.get((prune_for, u), 0.0)
            drop = 0.2 * frac / thresholds[prune_for] if prune_for in thresholds else 0.0
            out[u] = base[u] * max(0.0, 1 - rate * drop)
        return out

    df = mod.cross_evaluation(["a", "b", "c", "z"], evaluate, target=0.8, lo=0.001, hi=0.128, tol=1.05)
    assert len(df) == 16
    s = mod.cross_summary(df).set_index("pruned_for")
    for t in ("a", "b"):
        assert thresholds[t] <= s.loc[t, "frac"] <= thresholds[t] * 1.05 and s.loc[t, "reached"]
        assert s.loc[t, "own_ratio"] <= 0.8
    assert s.loc["c", "frac"] == pytest.approx(0.128) and not s.loc["c", "reached"]
    assert len([c for c in calls if c[0] == "a"]) <= 2 + math.ceil(math.log2(math.log(128) / math.log(1.05)))
    with pytest.raises(ValueError, match="relative tolerance"):
        mod.cross_evaluation(["a"], evaluate, tol=0.01)
    cell = df[(df.pruned_for == "a") & (df.evaluated_on == "b")].iloc[0]
    assert cell.ratio == pytest.approx(1 - 0.5 * 0.2 * cell.frac / 0.02)
    assert df[(df.pruned_for == "a") & (df.evaluated_on == "c")].ratio.iloc[0] == 1.0
    assert math.isnan(s.loc["z", "frac"]) and df[df.evaluated_on == "z"].ratio.isna().all()  # base 0: no ratio
    assert s.loc["a", "most_hit"] == "b"


def test_cross_evaluate_on_a_tiny_vit_runs_and_restores_the_model(tiny_cache):
    tasks = T.image_tasks(["T-shirt/top", "Trouser", "group/tops"])
    ref = mod.ModelRef("tiny-vit-classifier")
    scores = mod.image_scores(ref, tasks, images_per_class=8, batch_size=8)
    x = torch.randn(2, 1, 8, 8)
    before = ref.get()(x)
    df = mod.cross_evaluate(ref, tasks, scores, eval_size=8, tol=2.0)
    assert len(df) == 9 and set(df.pruned_for) == {t.name for t in tasks}
    assert torch.equal(ref.get()(x), before)  # masks removed


# ----------------------------------------------------------------------------- MoEfication
def test_concentration_beats_random_clusters_when_task_neurons_share_a_cluster():
    n_clusters, d = 4, 32
    labels = {0: np.repeat(np.arange(n_clusters), d // n_clusters), 1: np.repeat(np.arange(n_clusters), d // n_clusters)}
    planted = torch.zeros(2, d, dtype=torch.float64)
    planted[0, :8] = 10  # layer 0: the task's top neurons are exactly cluster 0
    planted[1] = torch.rand(d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    conc = moe.moe_concentration({"t": planted, "u": planted.flip(-1)}, labels, n_clusters, frac=0.25, n_random=10)
    assert len(conc) == 4 and set(conc.columns) >= {"task", "layer", "kmeans", "random", "excess", "above_p95"}
    row = conc[(conc.task == "t") & (conc.layer == 0)].iloc[0]
    assert row.kmeans == pytest.approx(1.0) and row.random < 0.6 and row.above_p95
    summary = moe.moe_layer_summary(conc)
    assert list(summary.layer) == [0, 1] and summary.excess.iloc[0] > summary.excess.iloc[1]


def test_moe_labels_on_a_tiny_model_are_equal_size(tiny_cache):
    labels = moe.moe_labels(mod.ModelRef("tiny-llama"), [0, 1], n_clusters=4)
    assert set(labels) == {0, 1} and all(np.bincount(v).tolist() == [12] * 4 for v in labels.values())


def _conc(excess_by_layer, n_tasks=8, noise=0.001, above=0.5):
    rng = np.random.default_rng(0)
    rows = [{"task": f"t{t}", "layer": layer, "excess": e + noise * rng.normal(), "kmeans": 0.1 + e, "random": 0.1,
             "above_p95": rng.random() < above} for t in range(n_tasks) for layer, e in enumerate(excess_by_layer)]
    return pd.DataFrame(rows)


def test_depth_profile_and_moe_claims_follow_the_numbers():
    ends = _conc([0.3, 0.3, 0.0, 0.0, 0.2, 0.2])
    p = moe.depth_profile(ends, 6)
    assert p.loc[["early", "middle", "late"], "excess"].to_numpy() == pytest.approx([0.3, 0.0, 0.2], abs=0.01)
    assert (p.lo <= p.excess).all() and (p.excess <= p.hi).all() and p.loc["early − middle", "lo"] > 0
    claim = "the correspondence is stronger in early and late layers"
    verdicts = {r["claim"]: r["verdict"] for r in moe.moe_claims(ends, 6, "m")}
    assert verdicts[claim] == "yes"
    assert verdicts["k-means clusters hold a task's neurons more than random clusters"] == "yes"
    middle = _conc([0.0, 0.0, 0.3, 0.3, 0.0, 0.0], above=0.0)
    verdicts = {r["claim"]: r["verdict"] for r in moe.moe_claims(middle, 6, "m")}
    assert verdicts[claim].startswith("no")
    assert verdicts["k-means clusters hold a task's neurons more than random clusters"] == "no"  # never significant
    late = {r["claim"]: r["verdict"] for r in moe.moe_claims(_conc([0.0, 0.0, 0.0, 0.0, 0.2, 0.2]), 6, "m")}
    assert late[claim] == "only in late layers"
    flat = {r["claim"]: r["verdict"] for r in moe.moe_claims(_conc([0.01] * 6, noise=0.05, above=0.1), 6, "m")}
    assert flat[claim].startswith("not clearly")
    assert flat["k-means clusters hold a task's neurons more than random clusters"] in ("weakly", "no")


def test_overlap_claims_follow_the_numbers():
    def summary(tr, ri, ri_within=0.1):
        return pd.DataFrame([{"weights": "trained", "frac": 0.05, "chance": 0.05, "mean_offdiag": 0.05 * tr,
                              "times_chance": tr, "within_family": 0.3, "between_family": 0.1},
                             {"weights": "random init", "frac": 0.05, "chance": 0.05, "mean_offdiag": 0.05 * ri,
                              "times_chance": ri, "within_family": ri_within, "between_family": 0.1}])

    corr = pd.DataFrame({"frac": [0.05], "spearman": [0.1]})
    v = [r["verdict"] for r in mod.overlap_claims(summary(3.0, 1.0), corr, 0.05, "m")]
    assert v[0] == "yes" and v[1] == "yes" and v[2].startswith("no")
    assert [r["verdict"] for r in mod.overlap_claims(summary(1.0, 1.0), corr, 0.05, "m")][0] == "no"
    v = [r["verdict"] for r in mod.overlap_claims(summary(3.0, 2.0), corr.assign(spearman=0.6), 0.05, "m")]
    assert v[2].startswith("partly: 50% of the excess") and "pattern differs" in v[2] and "stand out less" in v[2]
    v = [r["verdict"] for r in mod.overlap_claims(summary(3.0, 3.0, 0.3), corr.assign(spearman=0.9), 0.05, "m")]
    assert v[2].startswith("yes")


def test_charts_have_the_fraction_menu_and_tooltips(tiny_lm):
    _, _, scores = tiny_lm
    table = mod.overlap_table(scores, [0.1, 0.25])
    spec = mod.overlap_chart(table, mod.task_order(table)).to_dict()
    assert spec["params"][0]["bind"]["input"] == "select" and "facet" in spec
    tips = {t["field"] for t in spec["spec"]["encoding"]["tooltip"]}
    assert {"task_a", "task_b", "count"} <= tips
