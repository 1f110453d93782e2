"""Paragraph planning's scorer: the decomposition, retrieval within a prompt, topics, power, subsets, JSON lines."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from paragraph_planning.core import inference as inf
from paragraph_planning.papers import planning_metrics as metrics

FAST = metrics.ScoreConfig(n_boot=2000, n_perm=1000)


def synthetic(fmt: float, topic: float, specific: float, n_prompts: int = 20, copies: int = 10, noise: float = 0.01,
              seed: int = 0) -> pd.DataFrame:
    """Distances built from known components: neutral = base + fmt + topic + specific, shuffled = base + topic +
    specific, same-prompt = base + specific, transferred = base (each with independent noise)."""
    rng = np.random.default_rng(seed)
    n = n_prompts * copies
    prompt = np.repeat(np.arange(n_prompts), copies)
    base = rng.uniform(0.5, 0.8, n_prompts)[prompt] + rng.normal(0, 0.05, n)
    levels = {"neutral": fmt + topic + specific, "shuffled": topic + specific, "same-prompt": specific, "transferred": 0.0}
    rows = [{"text": i, "prompt": prompt[i], "condition": c, "distance": base[i] + off + rng.normal(0, noise)}
            for c, off in levels.items() for i in range(n)]
    return pd.DataFrame(rows)


def test_decomposition_recovers_known_components():
    dec = metrics.decomposition(synthetic(0.10, 0.05, 0.03), FAST).set_index("component")
    for name, true in [("claim", 0.18), ("format", 0.10), ("topic", 0.05), ("paragraph-specific", 0.03)]:
        r = dec.loc[name]
        assert r.lo < true < r.hi and r.estimate == pytest.approx(true, abs=0.005)
        assert r.reading == "present" and r.n == 200 and r.clusters == 20 and r.mde < 0.01
    parts = dec.loc[["format", "topic", "paragraph-specific"], "estimate"].sum()
    assert parts == pytest.approx(dec.loc["claim", "estimate"])  # the components add up to the claim's effect
    assert dec.loc["claim", "verdict"] == inf.HOLDS


def test_a_missing_component_reads_absent_and_a_noisy_one_undetermined():
    dec = metrics.decomposition(synthetic(0.10, 0.05, 0.0), FAST).set_index("component")
    assert dec.loc["paragraph-specific", "reading"] == "absent"  # interval within the 0.02 margin
    noisy = metrics.decomposition(synthetic(0.10, 0.0, 0.0, n_prompts=4, copies=2, noise=0.2), FAST).set_index("component")
    assert noisy.loc["topic", "reading"] == "undetermined at this n" and noisy.loc["topic", "mde"] > 0.1
    no_control = synthetic(0.1, 0.0, 0.0).query("condition != 'same-prompt'")
    assert set(metrics.decomposition(no_control, FAST).component) == {"claim", "format"}


def _retrieval_rows(correct: bool, n_prompts: int = 30, copies: int = 4, seed: int = 0) -> pd.DataFrame:
    """Transferred outputs whose nearest original is their own (``correct``) or a random copy of their prompt."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        texts = list(range(p * copies, (p + 1) * copies))
        for t in texts:
            near = t if correct else int(rng.choice(texts))
            rows.append({"text": t, "prompt": p, "condition": "transferred", "distance": 0.5, "nearest_copies": [near],
                         "n_copies": copies, "donor": t})
    return pd.DataFrame(rows)


def test_retrieval_finds_own_paragraphs_and_is_at_chance_on_shuffled_labels():
    good = metrics.retrieval(_retrieval_rows(True), FAST).set_index("condition").loc["transferred"]
    assert good.hit_at_1 == 1.0 and good.chance == 0.25 and good.p < 0.01 and good.reading == "present"
    for seed in range(3):
        chance = metrics.retrieval(_retrieval_rows(False, seed=seed), FAST).set_index("condition").loc["transferred"]
        assert abs(chance.hit_at_1 - 0.25) < 0.1 and chance.p > 0.05 and chance.lo < 0 < chance.hi
        assert chance.reading == "undetermined at this n"


def test_retrieval_ties_share_the_credit():
    rows = _retrieval_rows(True, n_prompts=10, copies=2)
    rows["nearest_copies"] = [[2 * (t // 2), 2 * (t // 2) + 1] for t in rows.text]  # both copies tie
    r = metrics.retrieval(rows, FAST).iloc[0]
    assert r.hit_at_1 == 0.5 and r.excess == 0.0 and r.lo == 0.0 == r.hi


def test_topic_findings_against_the_neutral_rate():
    rng = np.random.default_rng(1)
    rows = []
    for i in range(120):
        p, topic, donor = i // 6, f"t{i // 6}", f"t{(i // 6 + 1) % 20}"
        rows += [{"text": i, "prompt": p, "condition": "transferred", "topic": topic, "donor_topic": topic,
                  "nearest_topic": topic if rng.random() < 0.6 else "other"},
                 {"text": i, "prompt": p, "condition": "shuffled", "topic": topic, "donor_topic": donor,
                  "nearest_topic": "other"},
                 {"text": i, "prompt": p, "condition": "neutral", "topic": topic, "donor_topic": None,
                  "nearest_topic": "other"}]
    df = pd.DataFrame(rows).assign(topic_hit=lambda d: (d.nearest_topic == d.topic).astype(float))
    t = metrics.topic_findings(df, FAST).set_index("component")
    assert t.loc["own topic in transferred", "reading"] == "present"
    assert t.loc["own topic in transferred", "rate"] == pytest.approx(0.6, abs=0.1)
    assert t.loc["donor's topic in shuffled", "rate"] == 0 and t.loc["donor's topic in shuffled", "reading"] != "present"


def test_power_table_uses_the_measured_sd_and_design_effect():
    df = synthetic(0.10, 0.05, 0.03, noise=0.05)
    power = metrics.power_table(df, FAST, n_values=(100, 400), target=0.01).set_index("component")
    r = power.loc["topic"]
    sd = (df[df.condition == "shuffled"].distance.to_numpy() - df[df.condition == "same-prompt"].distance.to_numpy()).std(ddof=1)
    assert r.sd == pytest.approx(sd) and 0.9 < r.design_effect < 1.5  # independent noise: little clustering
    assert r.mde_at_400 == pytest.approx(inf.mde_paired(sd, 400, design_effect=r.design_effect))
    assert inf.mde_paired(sd, int(r.n_for_target), design_effect=r.design_effect) <= 0.01


def test_subset_difference_tells_differs_from_agrees():
    df = synthetic(0.10, 0.0, 0.0)
    df["natural"] = df.text % 2 == 0
    same = metrics.subset_difference(df, "natural", FAST).set_index("component")
    assert same.loc["format", "agreement"] == "agrees within ± margin" and same.loc["format", "n_subset"] == 100
    df.loc[(df.condition == "neutral") & df.natural, "distance"] += 0.1  # the claim is larger on natural texts
    differs = metrics.subset_difference(df, "natural", FAST).set_index("component")
    assert differs.loc["claim", "agreement"] == "differs" and differs.loc["claim", "difference"] == pytest.approx(0.1, abs=0.01)


GENERATIONS = [  # prompt, text, original, condition, output
    (0, 0, "Bees make honey in their hives all summer.", "transferred", "Bees make honey in hives during the summer."),
    (0, 0, "Bees make honey in their hives all summer.", "neutral", "def f(x): return x + 1"),
    (0, 1, "Whales sing long songs in the deep cold sea.", "transferred", "Whales sing songs deep in the sea."),
    (0, 1, "Whales sing long songs in the deep cold sea.", "neutral", "1. Open the box. 2. Close it."),
    (1, 2, "Trains run fast on long steel rails.", "transferred", "Trains run on steel rails, fast and long."),
    (1, 2, "Trains run fast on long steel rails.", "neutral", "Click here to subscribe."),
    (1, 3, "Chess is a game of kings, queens and pawns.", "transferred", "Chess: a game with kings and pawns."),
    (1, 3, "Chess is a game of kings, queens and pawns.", "neutral", "<html><body></body></html>"),
]


def test_scorer_round_trips_a_jsonl_file(tmp_path):
    table = pd.DataFrame(GENERATIONS, columns=["prompt", "text", "original", "condition", "output"])
    path = metrics.save_generations(table, tmp_path / "gens.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == len(GENERATIONS) and json.loads(lines[0])["condition"] == "transferred"
    back = metrics.load_generations(path)
    pd.testing.assert_frame_equal(back[table.columns], table, check_dtype=False)
    a, b = metrics.score_generations(table, FAST), metrics.score_generations(back, FAST)
    pd.testing.assert_frame_equal(a.decomposition, b.decomposition)
    pd.testing.assert_frame_equal(a.retrieval, b.retrieval)
    claim = a.decomposition.set_index("component").loc["claim"]
    assert claim.estimate > 0.3 and claim.n == 4 and claim.clusters == 2  # paraphrases are far closer than junk
    ret = a.retrieval.set_index("condition").loc["transferred"]
    assert ret.hit_at_1 == 1.0 and ret.chance == 0.5
    rows = a.rows.set_index(["text", "condition"])
    assert rows.loc[(0, "transferred"), "nearest_copies"] == [0]


def test_text_ids_are_derived_and_bad_tables_rejected(tmp_path):
    table = pd.DataFrame(GENERATIONS, columns=["prompt", "text", "original", "condition", "output"]).drop(columns="text")
    checked = metrics.check_generations(table)
    assert checked.text.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match=r"lacks \['output'\]"):
        metrics.check_generations(table.drop(columns="output"))
    with pytest.raises(ValueError, match="repeat"):
        metrics.check_generations(pd.concat([checked, checked.iloc[:1]]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": 0, "original": "x", "condition": "neutral"}\n')
    with pytest.raises(ValueError, match="lacks"):
        metrics.load_generations(bad)
    with pytest.raises(ValueError, match="margin"):
        metrics.ScoreConfig(margin=-1)
