"""Paragraph planning on a ladder of models: the same texts design and decomposition on each model.

``run_ladder_model(name, text_cfg, cfg, ladder_cfg)`` loads one model, writes its texts (instruct
models answer the chat request; base models continue Wikipedia lead starts, see
:mod:`paragraph_planning.data.paragraph_texts`), probes how often it writes two paragraphs on
request, runs the conditions and returns its decomposition; the model is released afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, get_args

import pandas as pd

from ..core.models import load_model
from ..data.paragraph_texts import TextConfig, TextSet, make_texts, resolve_source
from ..util import unknown
from .planning import PlanningConfig, run_planning
from .planning_metrics import ScoreConfig, decomposition, score_rows

LadderSource = Literal["auto", "chat", "lead", "wiki"]


@dataclass(frozen=True)
class LadderConfig:
    """``copies``: texts per prompt on each ladder model; ``source``: ``"auto"`` (chat for models with
    a chat template, else lead) or a text source; ``probe``: natural-mode answers for chat models
    (0: none); ``device``: where the models run."""

    copies: int = 5
    source: LadderSource = "auto"
    probe: int = 24
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.source not in get_args(LadderSource):
            raise ValueError(unknown("ladder source", self.source, get_args(LadderSource)))
        if self.copies < 2 or self.probe < 0:
            raise ValueError(f"copies must be >= 2 (the same-prompt control) and probe >= 0, got {self.copies}, {self.probe}.")


@dataclass
class LadderResult:
    """One model of the ladder: its texts, the probe (None without one), its generations' decomposition."""

    model: str
    source: str
    params: int
    texts: TextSet
    probe: TextSet | None
    decomposition: pd.DataFrame


def count_params(hf_model: object) -> int:
    """Parameters of a torch module (embeddings included; tied weights counted once)."""
    seen, total = set(), 0
    for p in hf_model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return int(total)


def run_ladder_model(name: str, text_cfg: TextConfig, cfg: PlanningConfig, ladder: LadderConfig = LadderConfig(),
                     score: ScoreConfig = ScoreConfig()) -> LadderResult:
    """Texts, probe, conditions (no ``neutral+K``) and decomposition of one model (all generation cached)."""
    model = load_model(name, device=ladder.device)
    src = resolve_source(model, ladder.source)
    tcfg = replace(text_cfg, source=src, copies=ladder.copies)
    probe = None
    if src == "chat" and ladder.probe:
        probe = make_texts(model, replace(tcfg, break_mode="natural", n_prompts=ladder.probe, copies=1, oversample=1.0,
                                          seed=text_cfg.seed + 1000))
    texts = make_texts(model, tcfg)
    gens = run_planning(model, texts, replace(cfg, k_values=()))
    dec = decomposition(score_rows(gens, score), score)
    return LadderResult(name, src, count_params(model.hf), texts, probe, dec)


def ladder_table(results: list[LadderResult]) -> pd.DataFrame:
    """The decompositions of several models in one table (columns ``model``, ``params`` added)."""
    return pd.concat([r.decomposition.assign(model=r.model, params=r.params) for r in results], ignore_index=True)
