"""Scoring paragraph-planning generations: the public scorer, the decomposition, retrieval, topics, power.

Anyone can score generations made elsewhere (a bigger model, another paper's data) with exactly
the book's metric: write one row per generated paragraph to a JSON-lines file and call
:func:`score_generations` (or ``score_generations(load_generations("gens.jsonl"))``).

Columns (:data:`REQUIRED` and optional):

===============  ================================================================================
``prompt``       prompt id: texts of one prompt share their topics; intervals resample prompts
``original``     the original paragraph 2 of the text the row belongs to
``condition``    ``transferred``, ``neutral``, ``shuffled``, ``same-prompt``, ``full``, ``neutral+K``, ...
``output``       the generated text (truncated like the paper: :func:`~paragraph_planning.data.paragraphs.first_paragraph`)
``text``         optional: text id (default: one text per distinct ``(prompt, original)``)
``donor``        optional: text id whose break was patched in (``same-prompt`` rows: donor retrieval)
``topic``        optional: the text's topic (topic retrieval)
``donor_topic``  optional: the donor's topic (``shuffled`` rows: do outputs carry the donor's topic?)
===============  ================================================================================

Example (two lines of a file)::

    {"prompt": 0, "text": 0, "original": "Bees make honey.", "condition": "transferred", "output": "Bees ..."}
    {"prompt": 0, "text": 0, "original": "Bees make honey.", "condition": "neutral", "output": "def f(): ..."}

The decomposition (all distances ``1 − cos`` to the text's original paragraph 2, paired by text,
95 % cluster-bootstrap intervals over prompts): **claim** = neutral − transferred, **format** =
neutral − shuffled, **topic** = shuffled − same-prompt, **paragraph-specific** = same-prompt −
transferred (the three components add up to the claim's effect).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core import embedding
from ..core.inference import (
    ABSENT,
    HOLDS,
    UNDETERMINED,
    Interval,
    assess,
    bootstrap_difference,
    bootstrap_mean,
    mde_paired,
    n_for_mde,
    paired_bootstrap,
    permutation_test,
    verdict,
    wilson,
)
from ..data.paragraphs import first_paragraph

REQUIRED = ("prompt", "original", "condition", "output")
"""Columns every generations table needs."""

COMPONENTS: tuple[tuple[str, str, str, str], ...] = (
    ("claim", "neutral", "transferred", "the text's own break brings the output closer to its paragraph 2 than a bare break"),
    ("format", "neutral", "shuffled", "any break written mid-answer helps (a break of another topic category)"),
    ("topic", "shuffled", "same-prompt", "a break of the same topics helps more than one of other topics"),
    ("paragraph-specific", "same-prompt", "transferred", "the text's own break helps more than another text of its prompt"),
    ("full context", "neutral", "full", "reference: the model continuing its own part 1"),
)
"""``(name, farther condition, closer condition, meaning)``: effect = distance(farther) − distance(closer)."""

READING = {HOLDS: "present", ABSENT: "absent", UNDETERMINED: "undetermined at this n"}
"""Verdicts read as the presence of a component."""
RETRIEVAL_TARGETS = {"transferred": "own", "full": "own", "same-prompt": "donor", "neutral": "own"}
"""Retrieval within a prompt: whose paragraph 2 each condition's output should be nearest to."""


@dataclass(frozen=True)
class ScoreConfig:
    """Settings of the metric and of the intervals.

    ``margin``: the smallest effect that matters, in cosine distance: a component whose whole
    interval lies below it is "absent" (and above 0, "present"). ``candidates``: topic names for
    topic retrieval (default: the table's ``topic`` and ``donor_topic`` values).
    """

    embedder: str = "all-MiniLM-L6-v2"
    device: str = "cpu"
    min_chars: int = 100
    margin: float = 0.02
    level: float = 0.95
    n_boot: int = 10_000
    n_perm: int = 5_000
    seed: int = 0
    candidates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.candidates, list):
            object.__setattr__(self, "candidates", tuple(self.candidates))
        if self.margin < 0 or not 0 < self.level < 1 or self.min_chars < 0:
            raise ValueError(f"Need margin >= 0, 0 < level < 1, min_chars >= 0; got {self.margin}, {self.level}, "
                             f"{self.min_chars}.")
        if self.n_boot < 100 or self.n_perm < 100:
            raise ValueError(f"n_boot and n_perm must be >= 100, got {self.n_boot}, {self.n_perm}.")


@dataclass(frozen=True)
class PlanningScores:
    """What :func:`score_generations` returns: per-row scores and the three tables."""

    rows: pd.DataFrame
    decomposition: pd.DataFrame
    retrieval: pd.DataFrame
    topics: pd.DataFrame


# ----------------------------------------------------------------------------- the table
def check_generations(table: pd.DataFrame) -> pd.DataFrame:
    """A validated copy of a generations table (text ids added when missing)."""
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"The generations table lacks {missing}; it needs {list(REQUIRED)} (optional: text, donor, "
                         "topic, donor_topic).")
    df = table.reset_index(drop=True).copy()
    for c in ("original", "output", "condition"):
        if df[c].isna().any():
            raise ValueError(f"Column {c!r} has missing values.")
        df[c] = df[c].astype(str)
    if "text" not in df:
        keys = list(zip(df["prompt"], df["original"]))
        ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        df["text"] = [ids[k] for k in keys]
    per_text = df.groupby("text").agg(prompts=("prompt", "nunique"), originals=("original", "nunique"))
    bad = per_text[(per_text.prompts > 1) | (per_text.originals > 1)]
    if len(bad):
        raise ValueError(f"Text ids {bad.index[:5].tolist()} have several prompts or originals: one text id per text.")
    dup = df.duplicated(["text", "condition"] + (["k"] if "k" in df else []))
    if dup.any() and not {"mode", "layer"} <= set(df.columns):
        raise ValueError(f"{int(dup.sum())} rows repeat a (text, condition): one output per text and condition.")
    return df


def load_generations(path: str | Path) -> pd.DataFrame:
    """Read a JSON-lines generations file (one object per row; see the module doc) and validate it."""
    return check_generations(pd.read_json(path, lines=True, dtype={"original": str, "output": str}))


def save_generations(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a generations table as JSON lines (readable by :func:`load_generations`)."""
    path = Path(path)
    table.to_json(path, orient="records", lines=True, force_ascii=False)
    return path


# ----------------------------------------------------------------------------- per-row scores
def _embed_unique(texts: Sequence[str], cfg: ScoreConfig) -> np.ndarray:
    uniq = list(dict.fromkeys(texts))
    emb = embedding.embed(uniq, cfg.embedder, cfg.device)
    where = {t: i for i, t in enumerate(uniq)}
    return emb[[where[t] for t in texts]]


def nearest_sets(sim: np.ndarray, tol: float = 1e-6) -> list[np.ndarray]:
    """Per row of a similarity matrix, the columns tied for the highest similarity."""
    top = sim.max(1, keepdims=True)
    return [np.flatnonzero(r) for r in sim >= top - tol]


def score_rows(table: pd.DataFrame, cfg: ScoreConfig = ScoreConfig()) -> pd.DataFrame:
    """Per row: ``paragraph`` (the truncated output), ``distance`` (1 − cos to the text's original),
    ``n_copies`` and ``nearest_copies`` (text ids of the prompt's originals nearest to the output,
    ties included), and with ``topic``: ``nearest_topic``, ``topic_hit``, ``donor_topic_hit``."""
    df = check_generations(table)
    df["paragraph"] = [first_paragraph(t, cfg.min_chars) for t in df["output"]]
    originals = df.groupby("text")["original"].first()
    prompt_of = df.groupby("text")["prompt"].first()
    out_emb = _embed_unique(list(df["paragraph"]), cfg)
    ref_emb = embedding.normalise(_embed_unique(list(originals), cfg))
    row_of = {t: i for i, t in enumerate(originals.index)}
    ref = ref_emb[[row_of[t] for t in df["text"]]]
    df["distance"] = embedding.cosine_distance(out_emb, ref)
    nearest, n_copies = [], []
    members = {p: [row_of[t] for t in ts] for p, ts in prompt_of.groupby(prompt_of).groups.items()}
    sims = embedding.normalise(out_emb) @ ref_emb.T
    for i, p in enumerate(df["prompt"]):
        cols = members[p]
        best = nearest_sets(sims[i:i + 1, cols])[0]
        nearest.append([int(originals.index[cols[j]]) for j in best])
        n_copies.append(len(cols))
    df["nearest_copies"], df["n_copies"] = nearest, n_copies
    if "topic" in df:
        extra = list(df["donor_topic"].dropna()) if "donor_topic" in df else []
        cands = list(cfg.candidates) or list(dict.fromkeys([*df["topic"].dropna(), *extra]))
        near = embedding.nearest(out_emb, embedding.embed(cands, cfg.embedder, cfg.device))
        df["nearest_topic"] = [cands[j] for j in near]
        df["topic_hit"] = (df["nearest_topic"] == df["topic"]).astype(float)
        if "donor_topic" in df:
            df["donor_topic_hit"] = np.where(df["donor_topic"].isna(), np.nan,
                                             (df["nearest_topic"] == df["donor_topic"]).astype(float))
    return df


# ----------------------------------------------------------------------------- paired effects
def paired_values(scored: pd.DataFrame, a: str, b: str, value: str = "distance") -> pd.DataFrame:
    """Texts with both conditions: columns ``text, prompt, a, b`` (the value under each)."""
    base = scored[scored["condition"].isin([a, b])]
    wide = base.pivot_table(index=["text", "prompt"], columns="condition", values=value, aggfunc="first")
    if a not in wide or b not in wide:
        return pd.DataFrame(columns=["text", "prompt", "a", "b"])
    wide = wide[[a, b]].dropna().reset_index()
    return wide.rename(columns={a: "a", b: "b"})[["text", "prompt", "a", "b"]]


def paired_effect(scored: pd.DataFrame, farther: str, closer: str, cfg: ScoreConfig = ScoreConfig(),
                  value: str = "distance") -> Interval | None:
    """Cluster-bootstrap interval of ``value[farther] − value[closer]`` over texts (clusters: prompts)."""
    w = paired_values(scored, farther, closer, value)
    if len(w) < 2:
        return None
    return paired_bootstrap(w["a"], w["b"], w["prompt"], level=cfg.level, n_boot=cfg.n_boot, seed=cfg.seed)


def _row(name: str, a: str, b: str, meaning: str, iv: Interval, cfg: ScoreConfig, sd: float) -> dict:
    f = assess(name, iv, margin=cfg.margin or None)
    return {"component": name, "contrast": f"{a} − {b}", "meaning": meaning, "estimate": iv.estimate, "lo": iv.lo,
            "hi": iv.hi, "se": iv.se, "n": iv.n, "clusters": iv.n_clusters, "sd": sd, "mde": f.mde,
            "verdict": f.verdict, "reading": READING[f.verdict]}


def decomposition(scored: pd.DataFrame, cfg: ScoreConfig = ScoreConfig()) -> pd.DataFrame:
    """One row per component of :data:`COMPONENTS` whose two conditions are in ``scored``: estimate,
    interval, s.e., n texts, clusters, paired s.d., minimum detectable effect, verdict and reading
    (present / absent / undetermined at this n)."""
    rows = []
    for name, a, b, meaning in COMPONENTS:
        iv = paired_effect(scored, a, b, cfg)
        if iv is not None:
            w = paired_values(scored, a, b)
            rows.append(_row(name, a, b, meaning, iv, cfg, float((w["a"] - w["b"]).std(ddof=1))))
    return pd.DataFrame(rows)


def effects_against(scored: pd.DataFrame, baseline: str, conditions: Sequence[str],
                    cfg: ScoreConfig = ScoreConfig()) -> pd.DataFrame:
    """``baseline − condition`` (distance) with its interval for each condition (e.g. a layer sweep)."""
    rows = []
    for c in conditions:
        iv = paired_effect(scored, baseline, c, cfg)
        if iv is not None:
            rows.append({"condition": c, "estimate": iv.estimate, "lo": iv.lo, "hi": iv.hi, "n": iv.n,
                         "verdict": READING[verdict(iv)]})
    return pd.DataFrame(rows, columns=["condition", "estimate", "lo", "hi", "n", "verdict"])


def subset_difference(scored: pd.DataFrame, column: str, cfg: ScoreConfig = ScoreConfig()) -> pd.DataFrame:
    """Each component on the texts with ``column`` True vs the others: both estimates and their
    difference (cluster bootstrap); ``agreement`` reads the difference: "differs", "agrees within
    ± margin" or "undetermined at this n"."""
    flags = scored.groupby("text")[column].first().astype(bool)
    rows = []
    for name, a, b, _ in COMPONENTS:
        w = paired_values(scored, a, b)
        if len(w) < 2:
            continue
        inside = flags.loc[w["text"]].to_numpy()
        d = (w["a"] - w["b"]).to_numpy()
        if inside.all() or not inside.any():
            continue
        iv = bootstrap_difference(d, inside, w["prompt"], level=cfg.level, n_boot=cfg.n_boot, seed=cfg.seed)
        v = verdict(iv, direction="two-sided", margin=cfg.margin or None)
        rows.append({"component": name, "subset": float(d[inside].mean()), "n_subset": int(inside.sum()),
                     "rest": float(d[~inside].mean()), "n_rest": int((~inside).sum()), "difference": iv.estimate,
                     "lo": iv.lo, "hi": iv.hi,
                     "agreement": {HOLDS: "differs", ABSENT: "agrees within ± margin"}.get(v, UNDETERMINED)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- retrieval within a prompt
def _credit(nearest: Sequence[Sequence[int]], copies: list[list[int]]) -> np.ndarray:
    """``[rows, max copies]``: 1/|ties| where the copy is among the nearest, else 0."""
    width = max(len(c) for c in copies)
    out = np.zeros((len(nearest), width))
    for i, (near, cs) in enumerate(zip(nearest, copies)):
        for t in near:
            out[i, cs.index(t)] = 1.0 / len(near)
    return out


def retrieval(scored: pd.DataFrame, cfg: ScoreConfig = ScoreConfig(),
              targets: dict[str, str] | None = None) -> pd.DataFrame:
    """Is each output nearest to its target's paragraph 2 among all copies of its prompt (hit@1)?

    ``targets``: condition -> ``"own"`` (the text's own paragraph 2) or ``"donor"`` (the paragraph 2
    of the text whose break was patched in); default :data:`RETRIEVAL_TARGETS`. Ties share the
    credit. Per condition: hit@1, chance (mean of 1/copies), the excess over chance with a
    cluster-bootstrap interval and its reading, and a permutation p-value (targets shuffled within
    each prompt). Prompts with a single text are left out.
    """
    targets = targets or RETRIEVAL_TARGETS
    texts_of = scored.groupby("prompt")["text"].apply(lambda s: sorted(set(s)))
    rows = []
    for cond, target in targets.items():
        d = scored[(scored["condition"] == cond) & (scored["n_copies"] > 1)]
        if target == "donor":
            d = d[d["donor"].notna() & (d["donor"] >= 0)] if "donor" in d else d.iloc[:0]
        if len(d) < 2:
            continue
        copies = [texts_of[p] for p in d["prompt"]]
        label_ids = (d["text"] if target == "own" else d["donor"]).astype(int).tolist()
        if any(t not in cs for t, cs in zip(label_ids, copies)):
            raise ValueError(f"{cond}: a {target} text is not a text of the row's prompt.")
        credit = _credit(list(d["nearest_copies"]), copies)
        labels = np.array([cs.index(t) for t, cs in zip(label_ids, copies)])
        hits = credit[np.arange(len(d)), labels]
        chance = 1.0 / d["n_copies"].to_numpy()
        excess = bootstrap_mean(np.round(hits - chance, 12), d["prompt"].to_numpy(), level=cfg.level, n_boot=cfg.n_boot,
                                seed=cfg.seed)
        idx = np.arange(len(d))
        perm = permutation_test(idx, labels, lambda v, lab: float(credit[v, lab].mean()), d["prompt"].to_numpy(),
                                n_perm=cfg.n_perm, seed=cfg.seed)
        f = assess(f"{cond} retrieves the {target} paragraph 2", excess)
        rows.append({"condition": cond, "target": target, "hit_at_1": float(hits.mean()), "chance": float(chance.mean()),
                     "excess": excess.estimate, "lo": excess.lo, "hi": excess.hi, "n": len(d),
                     "copies_min": int(d["n_copies"].min()), "copies_max": int(d["n_copies"].max()),
                     "clusters": excess.n_clusters, "mde": f.mde, "p": perm["p"], "reading": READING[f.verdict]})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- topics
def topic_table(scored: pd.DataFrame, cfg: ScoreConfig = ScoreConfig()) -> pd.DataFrame:
    """Per condition: the share of outputs whose nearest topic name is the text's topic (Wilson
    interval) and, where donors have topics, the share nearest to the donor's topic."""
    if "topic_hit" not in scored:
        return pd.DataFrame()
    rows = []
    for cond, d in scored.groupby("condition", sort=False):
        k, n = int(d["topic_hit"].sum()), len(d)
        w = wilson(k, n, cfg.level)
        row = {"condition": cond, "n": n, "own_topic": w.estimate, "own_lo": w.lo, "own_hi": w.hi}
        if "donor_topic_hit" in d and d["donor_topic_hit"].notna().any():
            h = d["donor_topic_hit"].dropna()
            wd = wilson(int(h.sum()), len(h), cfg.level)
            row.update(donor_topic=wd.estimate, donor_lo=wd.lo, donor_hi=wd.hi)
        rows.append(row)
    return pd.DataFrame(rows)


def topic_findings(scored: pd.DataFrame, cfg: ScoreConfig = ScoreConfig()) -> pd.DataFrame:
    """Paired topic contrasts against the neutral outputs of the same texts (cluster bootstrap):
    the transferred outputs' hit rate on the text's own topic, and the shuffled outputs' hit rate
    on the *donor's* topic, each minus the rate at which neutral outputs land on that same topic."""
    if "topic_hit" not in scored or "neutral" not in set(scored["condition"]):
        return pd.DataFrame()
    neutral = scored[scored["condition"] == "neutral"].set_index("text")["nearest_topic"]
    rows = []
    for cond, col, what in (("transferred", "topic", "own"), ("same-prompt", "topic", "own"),
                            ("shuffled", "donor_topic", "donor's")):
        d = scored[(scored["condition"] == cond) & scored["text"].isin(neutral.index)]
        if col not in d or d[col].isna().all() or len(d) < 2:
            continue
        d = d[d[col].notna()]
        hit = (d["nearest_topic"] == d[col]).to_numpy(float)
        base = (neutral.loc[d["text"]].to_numpy() == d[col].to_numpy()).astype(float)
        iv = paired_bootstrap(hit, base, d["prompt"].to_numpy(), level=cfg.level, n_boot=cfg.n_boot, seed=cfg.seed)
        f = assess(f"{cond} outputs carry the {what} topic", iv)
        rows.append({"component": f"{what} topic in {cond}", "rate": float(hit.mean()), "neutral_rate": float(base.mean()),
                     "estimate": iv.estimate, "lo": iv.lo, "hi": iv.hi, "n": iv.n, "clusters": iv.n_clusters,
                     "mde": f.mde, "reading": READING[f.verdict]})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- power
def power_table(scored: pd.DataFrame, cfg: ScoreConfig = ScoreConfig(), n_values: Sequence[int] = (100, 200, 400),
                target: float | None = None) -> pd.DataFrame:
    """Measured power of each component: paired s.d., design effect of the clustering (cluster-bootstrap
    variance over the independent-texts variance), the MDE at this n and at each of ``n_values`` texts
    (same copies per prompt), and the texts needed for an MDE of ``target`` (default ``cfg.margin``)."""
    target = target or cfg.margin
    rows = []
    for r in decomposition(scored, cfg).itertuples(index=False):
        naive = r.sd / math.sqrt(r.n)
        deff = max(1.0, (r.se / naive) ** 2) if naive > 0 else 1.0
        row = {"component": r.component, "n": r.n, "sd": r.sd, "design_effect": deff, "mde": r.mde}
        row.update({f"mde_at_{n}": mde_paired(r.sd, n, design_effect=deff) for n in n_values})
        row["n_for_target"] = n_for_mde(r.sd, target, design_effect=deff) if r.sd > 0 else 2
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- everything at once
def score_generations(table: pd.DataFrame, cfg: ScoreConfig = ScoreConfig()) -> PlanningScores:
    """Score a generations table (see the module doc) with the book's metric: per-row scores, the
    decomposition (:func:`decomposition`), retrieval within a prompt (:func:`retrieval`) and topic
    contrasts (:func:`topic_findings`)."""
    rows = score_rows(table, cfg)
    return PlanningScores(rows, decomposition(rows, cfg), retrieval(rows, cfg), topic_findings(rows, cfg))


def attention_summary(per_text: pd.DataFrame, prompts: Sequence[int] | np.ndarray,
                      cfg: ScoreConfig = ScoreConfig()) -> pd.DataFrame:
    """Per layer (and ``"mean"`` over layers): the geometric-mean ratio of attention to the break over
    the distance baseline, with a cluster-bootstrap interval over texts (clusters: ``prompts[text]``)."""
    d = per_text.copy()
    d["log_ratio"] = np.log(d["to_break"] / d["baseline"])
    mean = d.groupby("text", as_index=False)["log_ratio"].mean().assign(layer="mean")
    rows = []
    for layer, g in pd.concat([d[["text", "layer", "log_ratio"]], mean]).groupby("layer", sort=False):
        g = g[np.isfinite(g["log_ratio"])]
        if len(g) < 2:
            continue
        iv = bootstrap_mean(g["log_ratio"], np.asarray(prompts)[g["text"].to_numpy()], level=cfg.level,
                            n_boot=cfg.n_boot, seed=cfg.seed)
        reading = "more than baseline" if iv.lo > 0 else "less than baseline" if iv.hi < 0 else UNDETERMINED
        rows.append({"layer": str(layer), "ratio": math.exp(iv.estimate), "lo": math.exp(iv.lo), "hi": math.exp(iv.hi),
                     "n": iv.n, "reading": reading})
    return pd.DataFrame(rows)
