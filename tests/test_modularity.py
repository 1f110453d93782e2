"""Modularity (paper 3): tasks and their data, block statistics, overlap with its null and ceiling, verdicts."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from paragraph_planning.core.inference import ABSENT, HOLDS, UNDETERMINED
from paragraph_planning.data import tasks as T
from paragraph_planning.data.corpora import line_pieces
from paragraph_planning.papers import modularity as mod
from paragraph_planning.papers import modularity_stats as ms

TINY_TASKS = ["wiki/Mathematics", "bbc/sport", "recipes"]
TINY_SAMPLE = ms.SampleConfig(docs_per_task=16, doc_tokens=16, retain_docs=8, null_tasks=3, n_blocks=2,
                              images_per_class=8)


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
    return tasks, refs


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


class _Tok:
    """A whitespace tokenizer: one id per word (its length), no special tokens."""

    bos_token_id = None

    def __call__(self, texts, add_special_tokens=True, truncation=False, max_length=None, verbose=False):
        one = isinstance(texts, str)
        out = [[len(w) for w in t.split()] for t in ([texts] if one else texts)]
        if truncation:
            out = [r[:max_length] for r in out]
        return {"input_ids": out[0] if one else out}


def test_document_rows_take_one_truncated_row_per_document_in_a_seeded_order():
    pieces = T.chunked([f"d{i}" for i in range(10)], [f"{'w ' * (3 + i)}\n" * 3 for i in range(10)], max_chars=20)
    rows = ms.document_rows(pieces, _Tok(), n_docs=6, doc_tokens=4, seed=1)
    assert len(rows) == 6 and all(len(r) <= 4 for r in rows)
    again = ms.document_rows(pieces, _Tok(), n_docs=6, doc_tokens=4, seed=1)
    assert rows == again
    rest = ms.document_rows(pieces, _Tok(), n_docs=10, doc_tokens=4, seed=1, skip=6)
    assert len(rest) == 4  # the documents after the first six
    blocks = ms.split_blocks(12, 2, 3)
    assert blocks.tolist() == [0, 3, 1, 4, 2, 5, 0, 3, 1, 4, 2, 5]  # halves alternate, blocks in order


def test_sample_config_validates_with_clear_errors():
    with pytest.raises(ValueError, match="positions must be one of cls, all"):
        ms.SampleConfig(positions="first")
    with pytest.raises(ValueError, match="docs_per_task must be an integer >= 16"):
        ms.SampleConfig(docs_per_task=8, n_blocks=8)
    with pytest.raises(ValueError, match="null_tasks"):
        ms.SampleConfig(null_tasks=1)
    with pytest.raises(ValueError, match="Unknown selection"):
        mod.OverlapConfig(selections=("global", "per-head"))
    with pytest.raises(ValueError, match="fracs"):
        mod.OverlapConfig(fracs=(0.0, 0.1))
    assert mod.OverlapConfig(fracs=[0.1]).fracs == (0.1,)  # lists become tuples (hashable, cacheable)


# ----------------------------------------------------------------------------- synthetic designs
def _design(task_sums, ref_sums, null_sums, families=None, d=(4, 50)):
    """A text-like Design: tasks [T, 2, B, N] (two halves), reference [B, N], pseudo-tasks [J, B, N]; 1 token per block."""
    n_t, n_j = task_sums.shape[0], null_sums.shape[0]
    sums = torch.cat([task_sums.flatten(0, 1), ref_sums[None], null_sums]).float()
    counts = torch.ones(sums.shape[:2], dtype=torch.float64)
    families = families or ["f"] * n_t
    tasks = [T.Task(f"t{i}", "wiki-en", (), families[i]) for i in range(n_t)]
    atoms = [f"t{i}|{h}" for i in range(n_t) for h in (0, 1)] + ["reference"] + [f"null {j}" for j in range(n_j)]
    sources = ([("half", f"t{i}", h) for i in range(n_t) for h in (0, 1)] + [("null", f"null {j}", 0) for j in range(n_j)]
               + [("task", f"t{i}", -1) for i in range(n_t)])
    forget = ([[f"t{i}|{h}"] for i in range(n_t) for h in (0, 1)] + [[f"null {j}"] for j in range(n_j)]
              + [[f"t{i}|0", f"t{i}|1"] for i in range(n_t)])
    parts = [{"sums": sums[i:i + 1], "counts": counts[i:i + 1], "docs": counts[i:i + 1].long()} for i in range(len(atoms))]
    for p in parts:
        p["sums"] = p["sums"].view(1, sums.shape[1], *d)
    return mod._design(atoms, parts, sources, forget, [["reference"]] * len(forget), tasks)


def _reader_summary(design, frac, selection="global"):
    o = mod.overlaps(mod.top_sets(design.scores(rows=range(len(design.sources))), frac, selection, design.shape))
    return mod._Reader(design).summary(o)


def test_overlap_null_recovers_chance_on_random_scores():
    gen = torch.Generator().manual_seed(0)
    n_t, n_j, b, d = 6, 8, 2, (20, 500)
    n = d[0] * d[1]
    tasks = torch.rand(n_t, 2, b, n, generator=gen) + 1.0
    nulls = torch.rand(n_j, b, n, generator=gen) + 1.0
    flat_ref = torch.full((b, n), 1.5)  # a noiseless reference: scores are independent random numbers
    s = _reader_summary(_design(tasks, flat_ref, nulls, d=d), 0.05)
    assert s["null"] == pytest.approx(0.05, abs=0.01)  # chance = the fraction
    assert s["cross"] == pytest.approx(0.05, abs=0.01) and s["ceiling"] == pytest.approx(0.05, abs=0.02)
    per_layer = _reader_summary(_design(tasks, flat_ref, nulls, d=d), 0.05, "per-layer")
    assert per_layer["null"] == pytest.approx(0.05, abs=0.01)
    # a noisy reference shared by every task: all sets overlap above chance, the null with them
    noisy_ref = torch.rand(b, n, generator=gen) * 2 + 0.5
    shared = _reader_summary(_design(tasks, noisy_ref, nulls, d=d), 0.05)
    assert shared["null"] > 0.2 and shared["cross"] > 0.2 and abs(shared["cross"] - shared["null"]) < 0.05


def test_split_half_ceiling_is_one_on_identical_halves_and_tasks_with_own_neurons_sit_between():
    gen = torch.Generator().manual_seed(1)
    n_t, b, d = 4, 2, (5, 200)
    n = d[0] * d[1]
    base = torch.rand(b, n, generator=gen) + 1.0
    halves = base.expand(n_t, 2, b, n).clone()
    for i in range(n_t):  # each task: 50 neurons of its own, far more active than anywhere else
        own = torch.zeros(n, dtype=torch.bool)
        own[i * 50:(i + 1) * 50] = True
        halves[i, :, :, own] *= 10
        halves[i] += 0.01 * torch.rand(2, b, n, generator=gen)
    identical = halves.clone()
    identical[:, 1] = identical[:, 0]
    nulls = base.expand(3, b, n) + 0.5 * torch.rand(3, b, n, generator=gen)
    s = _reader_summary(_design(identical, base, nulls, d=d), 0.05)
    assert s["ceiling"] == 1.0
    s = _reader_summary(_design(halves, base, nulls, d=d), 0.05)
    assert s["ceiling"] == pytest.approx(1.0) and s["cross"] < 0.05 and s["null"] < 0.2


def _boot_frame(effect, sd, n_boot=400, weights=("trained", "random init"), rho=0.5, seed=0):
    """A synthetic :func:`run_overlap_bootstrap` table: cross − null = ``effect`` with bootstrap s.d. ``sd``."""
    rng = np.random.default_rng(seed)
    rows = []
    for rep in range(-1, n_boot):
        noise = np.zeros(4) if rep < 0 else rng.normal(0, sd, 4)
        for w in weights:
            for sel in ("global", "per-layer"):
                rows.append({"replicate": rep, "weights": w, "selection": sel, "null": 0.1, "cross": 0.1 + effect + noise[0],
                             "ceiling": 0.6 + noise[1], "within": 0.1 + effect + effect + noise[2],
                             "between": 0.1 + effect + noise[3], "rho": math.nan if w == "trained" else rho + noise[0],
                             "n_docs": 500, "n_blocks": 40})
    return pd.DataFrame(rows)


def test_overlap_verdicts_follow_known_answers():
    def verdicts(boot):
        return {(w, s, f.unit): f.verdict for w, s, f in mod.overlap_findings(boot)}

    clear = verdicts(_boot_frame(0.1, 0.01))
    assert clear["trained", "global", "cross − null"] == HOLDS
    assert clear["trained", "global", "ceiling − cross"] == HOLDS
    assert clear["trained", "global", "within − between"] == HOLDS
    assert clear["random init", "per-layer", "Spearman ρ"] == HOLDS
    noisy = verdicts(_boot_frame(0.01, 0.05, rho=0.02))  # a true effect well inside the noise
    assert noisy["trained", "global", "cross − null"] == UNDETERMINED
    assert noisy["random init", "global", "Spearman ρ"] == UNDETERMINED
    below = verdicts(_boot_frame(-0.1, 0.01))
    assert below["trained", "global", "cross − null"] == ABSENT
    f = [f for w, s, f in mod.overlap_findings(_boot_frame(0.1, 0.01)) if f.unit == "cross − null"][0]
    assert f.interval.lo < 0.1 < f.interval.hi and f.mde == pytest.approx(2.8 * 0.01, rel=0.1)


def test_interval_is_centred_on_the_estimate_and_correlations_stay_in_range():
    boot = _boot_frame(0.1, 0.01, rho=0.99)
    iv = mod.interval_of(boot, lambda d: d.cross - d.null, weights="trained", selection="global")
    assert iv.estimate == pytest.approx(0.1) and iv.hi - iv.estimate == pytest.approx(iv.estimate - iv.lo)
    assert iv.n == 500 and iv.n_clusters == 40
    rho = mod.interval_of(boot, "rho", bounds=(-1.0, 1.0), weights="random init", selection="global")
    assert rho.hi <= 1.0
    with pytest.raises(ValueError, match="No bootstrap rows"):
        mod.interval_of(boot, "cross", weights="nobody")


# ----------------------------------------------------------------------------- tiny models, end to end
def test_overlap_pipeline_on_a_tiny_model(tiny_lm):
    tasks, refs = tiny_lm
    cfg = mod.OverlapConfig(fracs=(0.1, 0.25), ref_frac=0.1, n_boot=100, sample=TINY_SAMPLE)
    table = mod.run_overlap(refs, tasks, cfg)
    assert set(table.weights) == {"trained", "random init"} and set(table.selection) == {"global", "per-layer"}
    for frac in (0.1, 0.25):
        m = mod.overlap_matrix_of(table, "trained", frac)
        assert m.shape == (3, 3) and list(m.index) == TINY_TASKS
        assert ((m.values >= 0) & (m.values <= 1)).all() and np.allclose(m.values, m.values.T)
    assert set(table.relation) == {"same task", "other family"}
    boot = mod.run_overlap_bootstrap(refs, tasks, cfg)
    assert sorted(boot.replicate.unique())[:2] == [-1, 0] and boot.replicate.max() == 99
    assert boot[boot.weights == "trained"].rho.isna().all() and boot[boot.weights == "random init"].rho.notna().any()
    again = mod.run_overlap_bootstrap(refs, tasks, cfg)
    pd.testing.assert_frame_equal(boot, again)  # same seed, same numbers (and cached)
    scores = mod.scores_for(refs["trained"], tasks, TINY_SAMPLE)
    assert list(scores) == TINY_TASKS and all(v.shape == (2, 48) and torch.isfinite(v).all() for v in scores.values())
    other = mod.scores_for(refs["random init"], tasks, TINY_SAMPLE)
    assert not torch.allclose(scores["recipes"], other["recipes"])


def test_bootstrap_draws_are_paired_across_weights(tiny_lm):
    tasks, refs = tiny_lm
    designs = {w: mod.design_for(r, tasks, TINY_SAMPLE) for w, r in refs.items()}
    a, b = designs.values()
    assert a.counts.shape == b.counts.shape and torch.equal(a.docs, b.docs) and torch.equal(a.counts, b.counts)
    w = mod._boot_weights(a, np.random.default_rng(0))
    assert w.shape == a.counts.shape and torch.all(w.sum(1) == a.counts.shape[1])


def test_image_statistics_use_the_positions_policy(tiny_cache):
    tasks = T.image_tasks(["T-shirt/top", "Trouser", "group/tops"])
    ref = mod.ModelRef("tiny-vit-classifier")
    cls = mod.design_for(ref, tasks, TINY_SAMPLE)
    every = mod.design_for(ref, tasks, ms.SampleConfig(**{**TINY_SAMPLE.__dict__, "positions": "all"}))
    n_pos = every.counts.sum() / cls.counts.sum()
    assert cls.counts.sum() == cls.docs.sum()  # one position (the class token) per image
    assert n_pos > 1 and not torch.allclose(cls.sums, every.sums)
    scores = mod.task_scores(cls)
    assert set(scores) == {t.name for t in tasks}
    # a group's forget side is its classes, its retain side every other class
    i = cls.index("task", "group/tops", -1)
    atoms = [a for a in range(cls.forget.shape[1]) if cls.forget[i, a]]
    assert len(atoms) == 8 and not (cls.forget[i].bool() & cls.retain[i].bool()).any()


# ----------------------------------------------------------------------------- MoEfication
def test_moefication_finds_planted_clusters_against_the_permutation_null(monkeypatch):
    from paragraph_planning.papers import moefication as moe

    n_clusters, d, n_layers = 8, 64, 6
    labels = {layer: np.repeat(np.arange(n_clusters), d // n_clusters) for layer in range(n_layers)}
    gen = torch.Generator().manual_seed(0)
    scores = {}
    for t in range(6):
        s = torch.rand(n_layers, d, generator=gen, dtype=torch.float64)
        for layer in (0, 1, 4, 5):  # early and late layers: the task's top neurons fill one cluster
            s[layer, (t % n_clusters) * 8:(t % n_clusters) * 8 + 8] += 10
        scores[f"t{t}"] = s
    cfg = moe.MoeConfig(n_clusters=n_clusters, frac=0.125, n_perm=199, n_boot=2000)
    conc = moe.concentration_table(scores, labels, cfg)
    assert len(conc) == 36 and set(conc.columns) >= {"task", "layer", "kmeans", "perm_mean", "excess", "p"}
    planted = conc[conc.layer.isin([0, 1, 4, 5])]
    assert np.allclose(planted.kmeans, 1.0) and (planted.p < 0.01).all()
    monkeypatch.setattr(moe, "moe_labels", lambda ref, layers, cfg: {k: labels[k] for k in layers})
    agg = moe.aggregate_test(None, scores, cfg)
    assert agg["p"] < 0.01 and agg["statistic"] > agg["null_mean"]
    pd.testing.assert_frame_equal(moe.run_moefication(None, scores, cfg), conc)
    found = {f.claim: f.verdict for f in moe.moe_findings(conc, n_layers, cfg, agg)}
    assert found["k-means clusters hold a task's neurons more than random equal-size clusters"] == HOLDS
    assert found["the correspondence is stronger in early than in middle layers"] == HOLDS
    assert found["the correspondence is stronger in late than in middle layers"] == HOLDS
    # no planted structure anywhere: inside the noise
    flat = {t: torch.rand(n_layers, d, generator=gen, dtype=torch.float64) for t in range(6)}
    conc = moe.concentration_table({f"u{t}": s for t, s in flat.items()}, labels, cfg)
    found = {f.claim: f.verdict for f in moe.moe_findings(conc, n_layers, cfg)}
    assert found["the correspondence is stronger in early than in middle layers"] == UNDETERMINED
    with pytest.raises(ValueError, match="n_perm"):
        moe.MoeConfig(n_perm=10)
    assert moe.MoeConfig(layer_step=4).layers(10) == [0, 4, 8, 9]


def test_moe_labels_on_a_tiny_model_are_equal_size_and_cached(tiny_cache):
    from paragraph_planning.papers import moefication as moe

    cfg = moe.MoeConfig(n_clusters=4)
    labels = moe.moe_labels(mod.ModelRef("tiny-llama"), [0, 1], cfg)
    assert set(labels) == {0, 1} and all(np.bincount(v).tolist() == [12] * 4 for v in labels.values())
    again = moe.moe_labels(mod.ModelRef("tiny-llama"), [0, 1], cfg)
    assert all(np.array_equal(labels[k], again[k]) for k in labels)


def test_block_sums_pool_to_collect_stats(tiny_cache):
    from paragraph_planning.core.statistics import collect_stats
    from paragraph_planning.data.images import image_positions, pixel_processor

    model = mod.ModelRef("tiny-llama").get()
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randint(1, 100, (n,), generator=gen).tolist() for n in (9, 16, 5, 16, 12, 3)]
    block = torch.tensor([0, 1, 2, 0, 1, 2])
    batches = [(ms._padded(rows[i:i + 4], 0), block[i:i + 4]) for i in (0, 4)]
    sums, counts = ms.block_sums(model, batches, 3)
    assert counts.tolist() == [25, 28, 8]  # the padding does not count
    ref = collect_stats(model, [b for b, _ in batches], sites=("mlp.pre_out",), bins=1, reservoir=0, progress=False)
    pooled = sums.sum(0) / counts.sum()
    for i, name in enumerate(model.hook_names("mlp.pre_out")):
        assert torch.allclose(pooled[i], ref[name].mean_abs.double(), rtol=1e-5, atol=1e-7)
    vit = mod.ModelRef("tiny-vit-classifier").get()
    imgs = pixel_processor(vit)(np.random.default_rng(0).integers(0, 255, (6, 28, 28), dtype=np.uint8))
    for policy in ("cls", "all"):
        pos = image_positions(policy)
        sums, counts = ms.block_sums(vit, [(imgs, block)], 3, pos)
        ref = collect_stats(vit, [imgs], sites=("mlp.pre_out",), bins=1, reservoir=0, progress=False, positions=pos)
        name = vit.hook_names("mlp.pre_out")[0]
        assert counts.sum() == ref[name].count and (counts.sum() == 6) == (policy == "cls")
        assert torch.allclose(sums.sum(0)[0] / counts.sum(), ref[name].mean_abs.double(), rtol=1e-5, atol=1e-7)


def test_overlap_chart_carries_every_cell_past_altairs_row_guard():
    from paragraph_planning.papers import modularity_report as rep

    tasks = [f"t{i}" for i in range(20)]
    rows = [{"task_a": a, "task_b": b, "relation": "pair", "overlap": 0.1, "null": 0.05, "chance": 0.01, "frac": f,
             "selection": s, "weights": w}
            for a in tasks for b in tasks for f in (0.01, 0.02, 0.05, 0.1) for s in ("global", "per layer")
            for w in ("trained", "random init")]
    spec = rep.overlap_chart(pd.DataFrame(rows), tasks).to_dict()  # 6,400 rows: over altair's default 5,000
    assert len(spec["data"]["values"]) == 6400
