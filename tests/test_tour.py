"""Chapter 0's patch sweep and the sentences chosen by its results."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from paragraph_planning import hook_name, load_model
from paragraph_planning.book import tour
from paragraph_planning.core.interventions import patch_fn


def _sweep(base: list[float], source: list[float], tokens: tuple[str, str] = (" Tokyo", " Rome")) -> pd.DataFrame:
    rows = [{"layer": i, "answer": k, "token": t, "probability": p}
            for i, (b, s) in enumerate(zip(base, source)) for k, t, p in (("base", tokens[0], b), ("source", tokens[1], s))]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("base", "source", "expected"), [
    ([0.1, 0.2, 0.9, 0.9], [0.8, 0.7, 0.0, 0.1], "win at layers 0 and 1 and no later: from layer 2 on"),
    ([0.1, 0.1, 0.1, 0.1, 0.9], [0.8, 0.8, 0.8, 0.8, 0.0], "win at layers 0 to 3 and no later: from layer 4 on"),
    ([0.9, 0.9], [0.1, 0.0], "leaves the base answer ' Tokyo' more likely"),
    ([0.1, 0.1], [0.8, 0.9], "win at every one of the 2 layers"),
    ([0.9, 0.1, 0.9], [0.1, 0.8, 0.0], "win at layers 1 (of 3)"),
    ([0.9, 0.1, 0.1, 0.1, 0.9, 0.1], [0.1, 0.8, 0.8, 0.8, 0.0, 0.8], "win at layers 1 to 3 and 5 (of 6)"),
])
def test_sweep_sentence_follows_the_result(base, source, expected):
    p = tour.sweep_prose(_sweep(base, source), pos=4)
    assert expected in str(p) and "position 4" in str(p)


def test_same_answer_for_both_prompts_is_said_so():
    assert "the same answer (' Tokyo')" in str(tour.sweep_prose(_sweep([0.5], [0.5], (" Tokyo", " Tokyo")), pos=1))


@pytest.mark.parametrize(("first", "expected"), [(10.0, "far larger"), (2.0, "larger than"), (1.0, "about as large"),
                                                 (0.2, "smaller")])
def test_norm_sentence_follows_the_ratio(first, expected):
    norms = torch.ones(3, 5)
    norms[-1, 0] = first
    p = tour.norm_prose(norms)
    assert expected in str(p) and p.values["ratio"] == pytest.approx(first)


def test_patch_position_and_sweep_match_a_hand_patch():
    m = load_model("tiny-llama")
    base, source_prompt = "abcdef", "abXdef"
    pos = tour.patch_position(m, base, source_prompt)
    assert pos == m.to_tokens(base)["input_ids"].shape[1] - 4  # the third character (after <bos> if any)
    names = m.hook_names("resid_pre")
    with m.record(names) as source:
        m(source_prompt)
    sweep = tour.patch_sweep(m, base, source, pos, {"base": 5, "source": 7})
    name = hook_name(1, "resid_pre")
    with m.hooks([(name, patch_fn(source[name][:, [pos]], [pos]))]):
        probs = m(base)[0, -1].softmax(-1)
    row = sweep[(sweep.layer == 1) & (sweep.answer == "source")]
    assert float(row.probability.iloc[0]) == pytest.approx(float(probs[7]))
    with pytest.raises(ValueError, match="as many tokens"):
        tour.patch_position(m, "abc", "abcd")
    with pytest.raises(ValueError, match="same text"):
        tour.patch_position(m, "abc", "abc")
