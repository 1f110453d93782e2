"""Unlearning experiments: tasks and their data, per-unit evaluation, the runs and their caches, vision."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core.evaluation import evaluate_lm
from paragraph_planning.core.pruning import PruningConfig
from paragraph_planning.data.corpora import load_corpus
from paragraph_planning.data.images import FASHION_MNIST_DIR, evaluate_images
from paragraph_planning.data.tasks import Task
from paragraph_planning.papers import unlearning as U

needs_fashion = pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                   reason="Fashion-MNIST files absent: apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="module", autouse=True)
def tiny_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.delenv("PARAGRAPH_PLANNING_NO_CACHE", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def llama():
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def pair(llama):
    return U.text_pair(llama.tokenizer, "wiki-en:Mathematics", "wiki-en:!Mathematics",
                       collect_tokens=512, eval_tokens=512, seq_len=64, batch_size=4)


# ----------------------------------------------------------------------------- tasks and data
def test_forget_and_retain_documents_are_disjoint(llama, pair):
    forget, retain = Task.parse(pair.forget).ids(), Task.parse(pair.retain).ids()
    assert forget and retain and not forget & retain
    assert len(forget | retain) == len(load_corpus("wiki-en", "all"))
    # collection (train) and evaluation (test) documents differ too
    assert not Task.parse(pair.forget).ids("train") & Task.parse(pair.forget).ids("test")
    with pytest.raises(ValueError, match="share"):
        U.text_pair(llama.tokenizer, "wiki-en:History", "wiki-en:History,Arts", 64, 64, seq_len=32)


def test_text_pair_batches_come_from_their_task(llama, pair):
    assert pair.forget_collect.shape[-1] == 64 and pair.forget_eval.numel() >= 512
    text = llama.tokenizer.decode(pair.forget_eval.flatten().tolist())
    docs = load_corpus("wiki-en", "test", topic="Mathematics")["text"]
    assert docs[0][:40] in text or any(d[:40] in text for d in docs)
    assert not torch.equal(pair.forget_eval[..., :32], pair.retain_eval[..., :32])
    assert len(pair.forget_skip) <= 50
    assert pair.units("forget") == pair.forget_eval.numel() // 64


def test_pieces_cut_at_line_ends_and_keep_all_text():
    text = "".join(f"line {i}\n" for i in range(100))  # 7-8 characters per line
    out = U.pieces([text, "one long line " * 20, "  \n"], 50)
    assert "".join(out[:-1]) == text and out[-1] == "one long line " * 20
    cut = out[:-1]
    assert all(len(p) <= 50 and p.endswith("\n") for p in cut)
    assert all(len(a) + len(b.splitlines(keepends=True)[0]) > 50 for a, b in zip(cut, cut[1:]))  # pieces are full


# ----------------------------------------------------------------------------- statistics and evaluation
def test_collect_uses_first_statistics_once_and_computes_no_logits(llama, pair):
    names = llama.hook_names("mlp.pre_out")
    head_positions = []
    handle = llama.hf.get_output_embeddings().register_forward_hook(
        lambda mod, args, out: head_positions.append(out.shape[-2]))
    try:
        fresh = U.collect_fn(pair)(llama, "forget", names)
    finally:
        handle.remove()
    assert fresh and head_positions == []  # the unembedding never ran: collection needs no logits
    first = {"forget": {n: "given" for n in names}}
    collect = U.collect_fn(pair, first)
    assert collect(llama, "forget", names) == {n: "given" for n in names}
    again = collect(llama, "forget", names)  # second call: collected on the model
    for n in names:
        torch.testing.assert_close(again[n].mean_abs, fresh[n].mean_abs)
    # the same statistics as a full forward pass
    from paragraph_planning.core.statistics import collect_stats
    full = collect_stats(llama, pair.forget_collect, sites="mlp.pre_out", progress=False, reservoir=0, bins=1)
    for n in names:
        torch.testing.assert_close(fresh[n].mean_abs, full[n].mean_abs.double())
        torch.testing.assert_close(fresh[n].var, full[n].var.double())
        assert fresh[n].count == full[n].count


def test_evaluate_units_sum_to_evaluate_lm(llama, pair):
    # the tiny tokenizer has few distinct tokens: skip only five, so the skip50 metrics are defined
    pair = dataclasses.replace(pair, forget_skip=pair.forget_skip[:5], retain_skip=pair.retain_skip[:5])
    units = U.evaluate_units(llama, pair)
    assert list(units.columns[:4]) == ["side", "unit", "label", "n"]
    for side in ("forget", "retain"):
        part = units[units.side == side]
        assert len(part) == pair.units(side) and (part.label == getattr(pair, side)).all()
        ref = evaluate_lm(llama, getattr(pair, f"{side}_eval"), skip_ids=getattr(pair, f"{side}_skip"))
        assert part.top1.sum() / part.n.sum() == pytest.approx(ref["top1"])
        assert part.loss.sum() / part.n.sum() == pytest.approx(ref["loss"])
        assert part.skip50_top1.sum() / part.kept.sum() == pytest.approx(ref["skip50_top1"])
        assert U.side_means(units, "skip50_top1")[f"{side}_skip50_top1"] == pytest.approx(ref["skip50_top1"])


# ----------------------------------------------------------------------------- experiments
@pytest.mark.parametrize("iterative", [True, False])
def test_run_unlearning_is_tidy_counts_as_predicted_and_leaves_the_model_clean(llama, pair, iterative):
    clean = llama("check")
    cfg = PruningConfig(ff_frac=0.1, attn_frac=0.05, n_steps=2, iterative=iterative)
    run = U.run_unlearning(llama, pair, cfg)
    assert torch.equal(llama("check"), clean)
    assert sorted(run.step.unique()) == [0, 1, 2]
    assert {"step", "frac_ff", "frac_attn", "side", "unit", "top1"} <= set(run.columns)
    base = U.base_units(llama, pair)
    assert run[run.step == 0].drop(columns=["step", "frac_ff", "frac_attn"]).reset_index(drop=True).equals(base)
    last = run[run.step == 2].iloc[0]
    counts = U.final_counts(llama, cfg)
    assert last.frac_ff == pytest.approx(counts["mlp.pre_out"] / U.site_size(llama, "mlp.pre_out"))
    assert last.frac_attn == pytest.approx(counts["attn.pre_out"] / U.site_size(llama, "attn.pre_out"))
    assert run[run.step == 2].loss.sum() != run[run.step == 0].loss.sum()  # pruning changed something


def test_run_unlearning_is_cached_by_config(llama, pair, tmp_path):
    from paragraph_planning import cache

    cfg = PruningConfig(ff_frac=0.05, n_steps=2, iterative=False)
    first = U.run_unlearning(llama, pair, cfg)
    n = len(cache.events)
    again = U.run_unlearning(llama, pair, cfg)
    assert again.equals(first) and all(e["loaded"] for e in cache.events[n:])
    other = U.run_unlearning(llama, pair, dataclasses.replace(cfg, score="freq"))
    assert not other.equals(first)
    assert any(not e["loaded"] and e["kind"] == "unlearning-run" for e in cache.events[n:])


def test_random_baseline_matches_the_selective_budget_and_varies_by_seed(llama, pair):
    from paragraph_planning import cache

    cfg = PruningConfig(ff_frac=0.1, attn_frac=0.05, n_steps=2)
    res = U.run_unlearning(llama, pair, cfg)
    rcfg = U.RandomConfig.matching(llama, cfg, seeds=(0, 1))
    clean = llama("same model")
    rnd = U.run_random(llama, pair, rcfg)
    assert torch.equal(llama("same model"), clean)  # masks removed
    last = res[res.step == 2].iloc[0]
    assert set(rnd.seed) == {0, 1}
    assert (rnd.frac_ff == last.frac_ff).all() and (rnd.frac_attn == last.frac_attn).all()
    for site, f in rcfg.fracs().items():
        random = sum(int((~k).sum()) for k in U.random_masks(llama, {site: f}).values())
        assert random == U.final_counts(llama, cfg)[site] > 0
    a, b = U.random_masks(llama, rcfg.fracs(), seed=0), U.random_masks(llama, rcfg.fracs(), seed=1)
    assert any(not torch.equal(a[n], b[n]) for n in a)
    n = len(cache.events)
    more = U.run_random(llama, pair, dataclasses.replace(rcfg, seeds=(0, 1, 2)))  # seeds 0 and 1 come from the cache
    assert [e["loaded"] for e in cache.events[n:]] == [True, True, False]
    assert more[more.seed < 2].reset_index(drop=True).equals(rnd)


def test_configs_are_frozen_and_validated(llama):
    with pytest.raises(dataclasses.FrozenInstanceError):
        U.RandomConfig(ff_frac=0.1).ff_frac = 0.2
    with pytest.raises(ValueError, match="Nothing to prune"):
        U.RandomConfig()
    with pytest.raises(ValueError, match="distinct"):
        U.RandomConfig(ff_frac=0.1, seeds=(1, 1))
    assert U.RandomConfig(ff_frac=0.1, seeds=[3, 4]).seeds == (3, 4)
    with pytest.raises(ValueError, match="Valid scores: abs"):
        U.ScoresConfig(scores=("abs", "l2"))
    with pytest.raises(ValueError, match=r"ff_frac must be a number in \[0, 1\]"):
        U.ScoresConfig(ff_frac=2)
    cells = U.ScoresConfig(ff_frac=0.1, attn_frac=0, scores=("abs", "std")).cells()
    assert cells == [("mlp.pre_out", "abs", False), ("mlp.pre_out", "std", False), ("mlp.pre_out", "std", True)]
    with pytest.raises(TypeError, match="PruningConfig"):
        U.run_unlearning(llama, None, U.RandomConfig(ff_frac=0.1))


def test_final_counts_and_fractions():
    assert U.frac_for(2300, 46080) * 46080 >= 2300 and int(U.frac_for(2300, 46080) * 46080) == 2300
    assert round(U.frac_for(7, 10) * 10) == 7
    with pytest.raises(ValueError):
        U.frac_for(11, 10)


def test_one_shot_scores_and_taker_overlap(llama, pair):
    cfg = U.ScoresConfig(ff_frac=0.25, attn_frac=0.25, scores=("abs", "rms"))
    df = U.run_scores(llama, pair, cfg)
    cells = df[["score", "formula", "neurons"]].drop_duplicates()
    assert len(cells) == 6 and set(df.formula) == {"package", "taker"}
    n_ff = llama.cfg.d_mlp * llama.cfg.n_layers
    assert (df[df.neurons == "FF"].frac_ff == int(0.25 * n_ff) / n_ff).all()
    assert (df[df.neurons == "FF"].frac_attn == 0).all()
    moments = U.neuron_moments(llama, pair)
    ov = U.taker_overlap(llama, moments, cfg.fracs(), scores=("abs", "freq", "rms", "std"))
    neurons = ov[ov.selection == "neurons"].set_index(["score", "neurons"])
    assert neurons.loc[("abs", "FF"), "overlap"] == 1 and neurons.loc[("freq", "attention"), "overlap"] == 1
    assert (neurons.k == neurons.shared / neurons.overlap).all()
    assert set(ov[ov.selection == "heads"].neurons) == {"attention"}
    # an evaluation is cached under the neurons it prunes: the same selection is never evaluated twice
    from paragraph_planning import cache
    n = len(cache.events)
    U.run_scores(llama, pair, U.ScoresConfig(ff_frac=0.25, attn_frac=0.25, scores=("abs",), taker=False))
    assert [e["loaded"] for e in cache.events[n:] if e["kind"] == "unlearning-pruned"] == [True, True]
    frame = U.score_frame(moments, llama)
    ff = frame[frame.neurons == "FF"]
    assert len(ff) == n_ff and ff["rank"].min() == 1 and ff.loc[ff["rank"].idxmin(), "score"] == ff.score.max()


# ----------------------------------------------------------------------------- vision
@needs_fashion
def test_vision_units_and_run_on_a_tiny_vit():
    vit = load_model("tiny-vit-classifier")  # 3 outputs: the first three Fashion-MNIST classes
    pair = U.image_pair(vit, "Pullover", collect_images=40, eval_per_class=30, batch_size=16)
    assert pair.classes == ("T-shirt/top", "Trouser", "Pullover") and len(pair.eval_labels) == 90
    assert sum(len(b) for b in pair.forget_collect) == 40 and len(pair.retain_collect) == 3
    units = U.evaluate_units(vit, pair)
    y = pair.eval_labels
    hit = (vit(pair.eval_pixels).argmax(-1) == y).double()
    assert units[units.side == "forget"].top1.mean() == pytest.approx(float(hit[y == 2].mean()))
    assert units[units.side == "retain"].top1.mean() == pytest.approx(float(hit[y != 2].mean()))
    assert set(units[units.side == "forget"].label) == {"Pullover"} and pair.units("forget") == 30
    res = U.run_unlearning(vit, pair, PruningConfig(ff_frac=0.2, attn_frac=0.1, n_steps=2))
    assert sorted(res.step.unique()) == [0, 1, 2] and len(res) == 3 * 90
    with pytest.raises(ValueError, match="Classes: T-shirt/top, Trouser, Pullover"):
        U.image_pair(vit, "Bag")


@needs_fashion
def test_vision_units_match_evaluate_images():
    vit = load_model("tiny-vit-classifier")
    pair = U.image_pair(vit, "Trouser", collect_images=8, eval_per_class=20, batch_size=8)
    units = U.evaluate_units(vit, pair, batch_size=7)
    from paragraph_planning.data.corpora import load_corpus as corpus
    from paragraph_planning.data.images import labels_array

    test = corpus("fashion-mnist", "test")
    keep = np.sort(np.concatenate([np.flatnonzero(labels_array(test) == c)[:20] for c in range(3)]))
    ref = evaluate_images(vit, test.select(keep))["per_class"]
    for cls in pair.classes:
        assert units[units.label == cls].top1.mean() == pytest.approx(ref.loc[cls, "top1"])


@needs_fashion
def test_vision_statistics_at_the_class_token_or_every_token():
    vit = load_model("tiny-vit-classifier")
    names = [*vit.hook_names("mlp.pre_out"), *vit.hook_names("attn.pre_out")]
    cls = U.image_pair(vit, "Trouser", collect_images=24, eval_per_class=4, batch_size=8)
    every = U.image_pair(vit, "Trouser", collect_images=24, eval_per_class=4, batch_size=8, positions="all")
    with vit.record(names) as rec:
        for x in cls.forget_collect:
            vit(x)
    got_cls = U.collect_fn(cls)(vit, "forget", names)
    got_all = U.collect_fn(every)(vit, "forget", names)
    for n in names:
        acts = torch.cat(rec.history[n]).flatten(2) if n.endswith("attn.pre_out") else torch.cat(rec.history[n])
        torch.testing.assert_close(got_cls[n].mean_abs, acts[:, 0].abs().double().mean(0), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got_all[n].mean_abs, acts.flatten(0, 1).abs().double().mean(0), rtol=1e-5, atol=1e-7)
        assert got_cls[n].count == 24 and got_all[n].count == 24 * acts.shape[1]
    with pytest.raises(ValueError, match="positions"):
        U.image_pair(vit, "Trouser", positions="patches")
