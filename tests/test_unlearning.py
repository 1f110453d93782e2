"""Unlearning experiments: tasks and their data, the summaries, the random baseline, vision evaluation."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core.pruning import PruningConfig
from paragraph_planning.data.corpora import load_corpus
from paragraph_planning.data.images import FASHION_MNIST_DIR, evaluate_images
from paragraph_planning.data.tasks import Task
from paragraph_planning.papers import unlearning as U

needs_fashion = pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                   reason="Fashion-MNIST files absent: apt-get install dataset-fashion-mnist")


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


def test_pieces_cut_at_line_ends_and_keep_all_text():
    text = "".join(f"line {i}\n" for i in range(100))  # 7-8 characters per line
    out = U.pieces([text, "one long line " * 20, "  \n"], 50)
    assert "".join(out[:-1]) == text and out[-1] == "one long line " * 20
    cut = out[:-1]
    assert all(len(p) <= 50 and p.endswith("\n") for p in cut)
    assert all(len(a) + len(b.splitlines(keepends=True)[0]) > 50 for a, b in zip(cut, cut[1:]))  # pieces are full


# ----------------------------------------------------------------------------- summaries
def _history(forget, retain, frac=0.02):
    n = len(forget)
    return pd.DataFrame({"step": range(n), "frac_mlp.pre_out": [frac * i for i in range(n)],
                         "forget_top1": forget, "retain_top1": retain})


def test_drop_summary_on_a_synthetic_history():
    h = _history([0.60, 0.50, 0.29, 0.10], [0.50, 0.49, 0.48, 0.40])
    s = U.drop_summary(h)
    assert s["reached"] and s["step"] == 2 and s["frac_mlp.pre_out"] == pytest.approx(0.04)
    assert s["forget_drop"] == pytest.approx(0.31 / 0.60) and s["retain_drop"] == pytest.approx(0.02 / 0.50)
    assert s["ratio"] == pytest.approx((0.31 / 0.60) / (0.02 / 0.50))
    late = U.drop_summary(h, fraction=0.8)  # target 0.12: reached at step 3
    assert late["step"] == 3 and late["ratio"] == pytest.approx((0.5 / 0.6) / (0.1 / 0.5))
    never = U.drop_summary(_history([0.6, 0.5, 0.45], [0.5, 0.5, 0.5]))
    assert not never["reached"] and never["step"] == 2 and never["ratio"] == math.inf
    absolute = U.drop_summary(h, target=0.5)  # an absolute target (vision: chance level)
    assert absolute["step"] == 1
    assert not U.drop_summary(_history([0.0, 0.0], [0.3, 0.2]))["reached"]  # nothing to halve
    assert not U.drop_summary(h, target=0.7)["reached"]  # a target above the unpruned value


def test_add_drops_uses_the_base_row():
    df = pd.DataFrame({"forget_top1": [0.3, 0.6], "retain_top1": [0.45, 0.5]})
    out = U.add_drops(df, {"forget_top1": 0.6, "retain_top1": 0.5})
    assert out.forget_drop.tolist() == pytest.approx([0.5, 0.0])
    assert out.retain_drop.tolist() == pytest.approx([0.1, 0.0])
    assert out.ratio.iloc[0] == pytest.approx(5.0) and math.isnan(out.ratio.iloc[1])


# ----------------------------------------------------------------------------- experiments
def test_collect_uses_first_statistics_once_and_skips_logits(llama, pair):
    names = llama.hook_names("mlp.pre_out")
    fresh = U.collect_fn(pair)(llama, "forget", names)
    first = {"forget": {n: "given" for n in names}}
    collect = U.collect_fn(pair, first)
    assert collect(llama, "forget", names) == {n: "given" for n in names}
    again = collect(llama, "forget", names)  # second call: collected on the model
    for n in names:
        torch.testing.assert_close(again[n].mean_abs, fresh[n].mean_abs)
    # collection asks for the last position's logits only, with the same statistics as a full forward pass
    from paragraph_planning.core.statistics import collect_stats
    full = collect_stats(llama, pair.forget_collect, sites="mlp.pre_out", progress=False, reservoir=0, bins=1)
    for n in names:
        torch.testing.assert_close(fresh[n].mean_abs, full[n].mean_abs.double())
        assert fresh[n].count == full[n].count


def test_random_baseline_prunes_the_same_fraction(llama, pair):
    cfg = PruningConfig(ff_frac=0.1, attn_frac=0.05, n_steps=2)
    res = U.run_unlearning(llama, pair, cfg, cache=False)
    last = res.history.iloc[-1]  # the fractions the selective run pruned in the end
    fracs = {k.removeprefix("frac_"): float(last[k]) for k in res.history.columns if k.startswith("frac_")}
    assert set(fracs) == {"mlp.pre_out", "attn.pre_out"}
    clean = llama("same model")
    rnd = U.random_baseline(llama, pair, fracs, cache=False)
    for site, f in fracs.items():
        assert rnd[f"frac_{site}"] == pytest.approx(f, abs=1e-12)
        selective = sum(int((~res.masks[n]).sum()) for n in llama.hook_names(site))
        random = sum(int((~k).sum()) for k in U.random_masks(llama, {site: f}).values())
        assert random == selective > 0
    assert torch.equal(llama("same model"), clean)  # masks removed
    assert "forget_top1" in rnd and "retain_skip50_top1" in rnd
    a, b = U.random_masks(llama, fracs, seed=0), U.random_masks(llama, fracs, seed=1)
    assert any(not torch.equal(a[n], b[n]) for n in a)


def test_run_unlearning_caches_and_leaves_the_model_clean(llama, pair, tmp_path, monkeypatch):
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path))
    monkeypatch.delenv("PARAGRAPH_PLANNING_NO_CACHE", raising=False)
    clean = llama("check")
    cfg = PruningConfig(ff_frac=0.05, n_steps=2, iterative=False)
    res = U.run_unlearning(llama, pair, cfg)
    assert torch.equal(llama("check"), clean)
    assert list(tmp_path.glob("results/unlearning-run/*/value.pt"))
    again = U.run_unlearning(llama, pair, cfg)
    assert again.history.equals(res.history)  # loaded, not recomputed: "seconds" match too
    assert all(torch.equal(again.masks[n], res.masks[n]) for n in res.masks)
    other = U.run_unlearning(llama, pair, PruningConfig(ff_frac=0.05, n_steps=2, iterative=False, score="freq"))
    assert not other.history.equals(res.history)


def test_compare_scores_table(llama, pair):
    moments = U.neuron_moments(llama, pair, cache=False)
    df = U.compare_scores(llama, pair, moments, 0.25, scores=("abs", "random"), cache=False)
    assert len(df) == 4 and set(df.neurons) == {"FF", "attention"} and set(df.score) == {"abs", "random"}
    n_ff = llama.cfg.d_mlp * llama.cfg.n_layers
    assert df[df.neurons == "FF"].frac.tolist() == pytest.approx([int(0.25 * n_ff) / n_ff] * 2)
    frame = U.score_frame(moments, llama)
    ff = frame[frame.neurons == "FF"]
    assert len(ff) == n_ff and ff["rank"].min() == 1 and ff.loc[ff["rank"].idxmin(), "score"] == ff.score.max()


# ----------------------------------------------------------------------------- vision
@needs_fashion
def test_vision_forget_class_evaluation_on_a_tiny_vit():
    vit = load_model("tiny-vit-classifier")  # 3 outputs: the first three Fashion-MNIST classes
    pair = U.image_pair(vit, "Pullover", collect_images=40, eval_per_class=30, batch_size=16)
    assert pair.classes == ("T-shirt/top", "Trouser", "Pullover") and len(pair.eval_set) == 90
    assert sum(len(b) for b in pair.forget_collect) == 40 and len(pair.retain_collect) == 3
    metrics = U.evaluate_fn(pair)(vit)
    logits = vit(pair.processor(pair.eval_set))
    y = torch.as_tensor(np.asarray(pair.eval_set["label"]))
    hit = (logits.argmax(-1) == y).float()
    assert metrics["forget_top1"] == pytest.approx(float(hit[y == 2].mean()))
    assert metrics["retain_top1"] == pytest.approx(float(hit[y != 2].mean()))
    assert metrics["top1[Trouser]"] == pytest.approx(float(hit[y == 1].mean()))
    assert metrics["forget_top1"] == pytest.approx(
        evaluate_images(vit, pair.eval_set, processor=pair.processor)["per_class"].loc["Pullover", "top1"])
    res = U.run_unlearning(vit, pair, PruningConfig(ff_frac=0.2, attn_frac=0.1, n_steps=2), cache=False)
    table = U.class_table(res.history, 2, pair.classes, pair.forget)
    assert table.forgotten.sum() == 1 and table.set_index("class").loc["Pullover", "forgotten"]
    with pytest.raises(ValueError, match="Classes: T-shirt/top, Trouser, Pullover"):
        U.image_pair(vit, "Bag")


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
