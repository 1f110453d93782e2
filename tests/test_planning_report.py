"""Chapter 01's closing paragraph says what the verdicts say: every present component, nothing more."""
from __future__ import annotations

import pandas as pd

from paragraph_planning.papers import planning_report as R

UND = "undetermined at this n"


def _dec(**readings):
    return pd.DataFrame([{"component": c.replace("_", "-"), "reading": r, "verdict": r} for c, r in readings.items()])


def _ret(reading):
    return pd.DataFrame([{"condition": "transferred", "reading": reading}])


def test_summary_names_every_present_component_and_the_retrieval_result():
    text = str(R.summary_prose(_dec(claim="holds", format="present", topic="present", paragraph_specific=UND),
                               _ret("present"), "m"))
    assert "what the controls can pin on it is its format and topic" in text
    assert "not shown by distance, though retrieval within a prompt finds some." in text
    text = str(R.summary_prose(_dec(claim="holds", format="present", topic=UND, paragraph_specific=UND), _ret(UND), "m"))
    assert "pin on it is its format;" in text and "retrieval within a prompt finds" not in text
    assert "topic component undetermined" in text


def test_summary_claims_a_paragraph_plan_only_when_it_is_present():
    text = str(R.summary_prose(_dec(claim="holds", format="present", topic="present", paragraph_specific="present"),
                               _ret(UND), "m"))
    assert "carries a plan for this particular paragraph" in text
    text = str(R.summary_prose(_dec(claim="does not hold", format=UND, topic=UND, paragraph_specific=UND), _ret(UND), "m"))
    assert "So the" not in text


def _retrieval(copies_min, copies_max, chance):
    return pd.DataFrame([{"condition": "transferred", "hit_at_1": 0.4, "chance": chance, "excess": 0.17, "lo": 0.05,
                          "hi": 0.3, "p": 0.005, "reading": "present", "copies_min": copies_min,
                          "copies_max": copies_max}])


def test_retrieval_prose_names_the_range_of_copies_when_prompts_differ():
    assert "Among the 3 to 5 paragraphs 2" in str(R.retrieval_prose(_retrieval(3, 5, 0.229)))
    assert "Among the 5 paragraphs 2" in str(R.retrieval_prose(_retrieval(5, 5, 0.2)))


def test_ladder_rows_keep_the_claim_verdict():
    dec = pd.DataFrame([{"component": "claim", "contrast": "neutral − transferred", "estimate": 0.06, "lo": 0.03,
                         "hi": 0.09, "mde": 0.04, "n": 35, "clusters": 8, "verdict": "holds", "reading": "present",
                         "model": "gemma3-270m"}])
    shown = R.findings_display(dec, by_model=True)
    assert shown.index.tolist() == ["gemma3-270m: claim"] and shown["reading"].tolist() == ["holds"]


def test_every_text_source_is_described_on_the_page():
    from typing import get_args

    from paragraph_planning.data.paragraph_texts import Source

    assert set(R.SOURCES) == set(get_args(Source))
