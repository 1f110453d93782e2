"""Paper 2's report: prose quotes the computed numbers, and its wording follows the verdicts."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pandas as pd
import pytest
from test_ablation_verdicts import clear_run, synthetic  # tests/ is on sys.path (pytest rootdir insertion)

from paragraph_planning.core.architectures import hook_name
from paragraph_planning.core.inference import ABSENT, HOLDS
from paragraph_planning.papers import ablation_report as report
from paragraph_planning.papers.ablation_verdicts import claim_findings, claim_kind, damage, pairwise


@pytest.fixture(scope="module")
def two_models():
    a = damage(clear_run(model="lm"), "loss")
    b = damage(synthetic({0.5: {"zero": 20.0, "mean": 30.0, "peak": 40.0, "resample": 90.0},
                          1.0: {"zero": 50.0, "mean": 60.0, "peak": 40.0, "resample": 70.0}}, sd=5.0, model="vit", top1=True),
               "top1")
    dmg = {"lm": a, "vit": b}
    pairs = pairwise(pd.concat(dmg.values(), ignore_index=True))
    return dmg, pairs, claim_findings(pairs)


def test_claim_kinds_cover_every_finding(two_models):
    _, _, findings = two_models
    kinds = [claim_kind(f.claim) for f in findings]
    assert ("lm", "least at focus") in kinds and ("vit", "resample usually worst") in kinds
    assert ("all models", "each method wins somewhere") in kinds
    with pytest.raises(ValueError, match="Not a claim"):
        claim_kind("lm: something else")


def test_sweep_prose_and_regime_table_quote_the_decisions(two_models):
    dmg, pairs, findings = two_models
    text = report.sweep_prose(pairs, findings, "lm")
    assert "decided at 3 of 3 fractions" in str(text) and "**peak** at 10 % to 100 %" in str(text)
    assert text.values["n"] == 200 and text.values["rw"] == 3
    table = report.regime_table(pairs[pairs.model == "vit"])
    assert list(table.index) == ["50 %", "100 %"]
    assert table.loc["50 %", "least damage"] == "zero" and table.loc["100 %", "least damage"] == "peak"
    assert "points" in " ".join(table.columns)


def test_conclusion_wording_follows_the_verdicts(two_models):
    _, pairs, findings = two_models
    text = str(report.conclusion_prose(findings, pairs))
    # mean and resample are decidedly beaten everywhere: the pooled claim does not hold, and the text says who lost
    pooled = [f for f in findings if f.claim.startswith("all models")][0]
    assert pooled.verdict == ABSENT and text.startswith("Not every method wins somewhere: mean and resample are")
    assert "holds for lm" in text and "peak for lm (3 of 3 fractions)" in text
    # a tie everywhere but one regime leaves it open
    tied = damage(synthetic({0.5: dict.fromkeys(("zero", "mean", "peak", "resample"), 1.0)}, model="tie"), "loss")
    p2 = pairwise(pd.concat([damage(clear_run(model="lm"), "loss"), tied], ignore_index=True))
    open_text = str(report.conclusion_prose(claim_findings(p2), p2))
    assert open_text.startswith("Whether every method wins somewhere is undetermined at this sample: mean, zero and resample")
    summary = report.summary_prose(findings)
    assert summary.values["h"] == sum(f.verdict == HOLDS for f in findings)
    assert re.search(r"“lm: resampling does the most damage at most fractions” holds \(estimate 100%", str(summary))
    table = report.verdict_table(findings)
    assert {"estimate", "interval", "n (units)", "MDE", "verdict"} <= set(table.columns) and len(table) == len(findings)
    row = table.loc["lm: resampling does the most damage at most fractions"]
    assert (row.estimate, row.interval, row.verdict) == ("100%", "100% to 100%", HOLDS) and row.MDE.endswith("nats")


def test_estimator_comparison_uses_the_units_both_runs_share():
    main = damage(synthetic({0.5: {"peak": 0.2, "mean": 0.3, "zero": 1.0}}, n=40), "loss")
    extra = damage(synthetic({0.5: {"median": 0.25}}, n=10, seed=3), "loss")
    cmp = report.estimator_comparison(main, extra, 0.5)
    assert set(cmp.method) == {"mean", "median"} and (cmp.n == 10).all()  # zero is no estimate of the centre
    alone = report.estimator_comparison(main, None, 0.5).set_index("method")
    assert alone.loc["mean", "n"] == 40 and alone.loc["mean", "minus peak"] == pytest.approx(0.1, abs=0.03)
    text = report.estimator_prose(cmp, 0.5)
    assert text.values["m"] == 2 and "50 %" in str(text)


def test_one_layer_prose_says_why_a_model_was_left_out():
    sizes = {hook_name(i, "attn.pre_out"): 8 for i in range(30)}
    refs = {"big": SimpleNamespace(sizes=sizes), "small": SimpleNamespace(sizes={hook_name(0, "attn.pre_out"): 8})}
    cfg = SimpleNamespace(methods=("zero", "mean", "peak", "resample"), fracs=(0.1, 0.25, 0.5, 0.75, 1.0))
    text = report.per_layer_skipped(refs, ["small"], cfg)
    assert text.values["c0"] == 120 and text.values["r0"] == pytest.approx(6.0) and "6.0 times its sweep" in str(text)
    assert "small" not in str(text) and text.values["s"] == 20
    assert str(report.per_layer_skipped(refs, ["big", "small"], cfg)) == "" and str(report.per_layer_prose(None)) == ""


def test_timer_reports_cpu_and_wall():
    t = report.Timer()
    sum(range(10_000))
    t.tick("part")
    assert re.match(r"chapter run time: \d+ s wall, \d+ CPU s \(part \d+ s \(\d+ CPU s\)\)", t.summary())
