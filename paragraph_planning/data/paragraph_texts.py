"""Two-paragraph texts for the paragraph-planning chapter: several texts per prompt, written by the model.

The paper's design is 20 prompts x 10 copies: each prompt (a request for two paragraphs on topics
A and B) is answered 10 times at temperature 0.3, so texts of the same prompt share their topics
and differ in their wording. A :class:`TextConfig` says how to build them, :func:`make_texts`
builds them (cached) as a :class:`TextSet`. Two sources:

* ``source="chat"`` (instruct models): the model answers "write two short paragraphs, the first
  about A, the second about B" through its chat template.
* ``source="lead"`` (base models, which answer no requests): the prompt is the first sentence of
  an English Wikipedia lead, and the model continues it; the copies of a prompt are several
  continuations of the same start. Topic A = topic B = the article's title.
* ``source="wiki"`` (real text, no generation; quick checks): a prompt is a Wikipedia topic (at
  most 11) and its copies are leads of different articles of that topic, cut into two sentence groups.

``break_mode="forced"`` (default): paragraph 1 is the model's first line (its first paragraph)
when it ends it itself after at least ``min_words`` words of whole sentences, else its first whole
sentences with at least ``min_words`` words; the break is appended, tokenised as between two
words, and the model writes paragraph 2 from there (up to its first line break). The texts keep
the token ids the model saw, so the patched break is the one the model wrote after. ``natural``
keeps only answers in which the model wrote exactly one paragraph break itself (the paper's
filter; small models rarely do: this mode measures how well a model writes two paragraphs on request).
In forced mode a text is a *natural onset* when the model ended paragraph 1 itself (a line break)
exactly where the break is inserted (the break is still tokenised as between two words).
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence, get_args

import numpy as np
import pandas as pd

from ..cache import cached
from ..core.generation import generate_ids
from ..core.hooks import HookedModel
from ..util import unknown
from .corpora import load_corpus
from .paragraphs import (
    BREAK,
    Split,
    break_ids_between_words,
    count_words,
    cut_at_sentence,
    forced_paragraph1,
    forced_paragraph2,
    natural_onset,
    parse_natural,
    split_texts,
    strip_headers,
)

TOPICS: dict[str, list[str]] = {
    "science": ["volcanoes", "black holes", "photosynthesis", "the human heart", "electricity", "dinosaurs",
                "the moon", "earthquakes"],
    "arts": ["jazz", "the piano", "oil painting", "ballet", "poetry", "cinema"],
    "history": ["the Roman Empire", "ancient Egypt", "the Vikings", "the printing press", "medieval castles"],
    "sport": ["football", "chess", "tennis", "the Olympic Games", "swimming"],
    "food": ["coffee", "chocolate", "bread", "cheese", "pizza"],
    "technology": ["computers", "the internet", "smartphones", "airplanes", "trains"],
    "nature": ["bees", "whales", "forests", "rain", "the ocean", "elephants"],
}
"""Built-in topics (40, in 7 categories): well known, so that even a small model writes about them."""

PROMPT = "Write two short paragraphs: the first about {a}, the second about {b}. Do not name either topic."
"""Default request for ``source="chat"``; the paper's was "Tell me about {A} in 50 words, then tell me
about {B} in 50 words. Structure it as 2 paragraphs, 1 paragraph each. Do NOT explicitly name either topic."."""

Source = Literal["chat", "lead", "wiki"]
BreakMode = Literal["forced", "natural"]
LEAD_SKIP = ("Uncategorized",)
"""Wikipedia topics not used for lead prompts (no common subject)."""


def resolve_source(model: HookedModel, source: str) -> str:
    """``source`` itself, or for ``"auto"``: ``"chat"`` when the model's tokenizer has a chat template, else ``"lead"``.

    A base model has no chat template and answers no requests (asked for two paragraphs it mostly
    repeats or extends the request), so it continues Wikipedia leads instead.
    """
    if source == "auto":
        return "chat" if getattr(model.tokenizer, "chat_template", None) else "lead"
    _choice("source", source, Source)
    return source


def _choice(kind: str, value: Any, literal: Any) -> None:
    if value not in get_args(literal):
        raise ValueError(unknown(kind, value, get_args(literal)))


@dataclass(frozen=True)
class TextConfig:
    """How the texts are made (every field keys the disk cache).

    ``n_prompts`` prompts x ``copies`` texts each; ``ceil(copies * oversample)`` answers are
    generated per prompt and the first ``copies`` that split cleanly are kept (a prompt with fewer
    than two is dropped when ``copies >= 2``: the same-prompt control needs two).
    """

    source: Source = "chat"
    n_prompts: int = 20
    copies: int = 10
    break_mode: BreakMode = "forced"
    topics: str | tuple[str, ...] = "builtin"
    template: str = PROMPT
    temperature: float = 0.3
    seed: int = 0
    min_words: int = 25
    para_tokens: int = 100
    oversample: float = 1.2
    batch_size: int = 64

    def __post_init__(self) -> None:
        _choice("source", self.source, Source)
        _choice("break_mode", self.break_mode, BreakMode)
        if isinstance(self.topics, list):
            object.__setattr__(self, "topics", tuple(self.topics))
        if isinstance(self.topics, str) and self.topics != "builtin" or not isinstance(self.topics, str) and (
                len(set(self.topics)) < 2 or not all(isinstance(t, str) and t.strip() for t in self.topics)):
            raise ValueError(f"topics must be 'builtin' or a list of at least two topic names, got {self.topics!r}.")
        for name, low in (("n_prompts", 1), ("copies", 1), ("min_words", 2), ("para_tokens", 1), ("batch_size", 1)):
            if int(getattr(self, name)) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}.")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}.")
        if self.oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {self.oversample}.")
        if self.source == "chat" and "{a}" not in self.template and "{b}" not in self.template:
            raise ValueError("template must name the topics as {a} and {b}.")

    @property
    def attempts(self) -> int:
        """Answers generated per prompt."""
        return max(self.copies, math.ceil(self.copies * self.oversample))


# ----------------------------------------------------------------------------- prompts
def topic_list(topics: str | Sequence[str] = "builtin", n_topics: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Topics with a category: ``"builtin"`` (:data:`TOPICS`) or an explicit list (one category each).
    ``n_topics`` keeps a seeded subset."""
    if isinstance(topics, str) and topics == "builtin":
        df = pd.DataFrame([{"topic": t, "category": c} for c, ts in TOPICS.items() for t in ts])
    elif isinstance(topics, str):
        raise ValueError(f"topics must be 'builtin' or a list of topic names, got {topics!r}.")
    else:
        df = pd.DataFrame({"topic": list(topics), "category": [f"c{i}" for i in range(len(topics))]})
    if n_topics is not None and n_topics < len(df):
        df = df.sample(n=n_topics, random_state=seed).sort_index()
    return df.reset_index(drop=True)


def topic_pairs(topics: pd.DataFrame, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` seeded (A, B) pairs of topics from different categories; topics are not reused while
    unused ones can still form a pair, and no pair repeats until all are used."""
    rows = list(topics.itertuples(index=False))
    pairs = [(a.topic, b.topic) for a in rows for b in rows if a.category != b.category]
    if not pairs:
        raise ValueError("Topic pairs need topics from at least two categories.")
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        batch = pairs[:]
        rng.shuffle(batch)
        used: set[str] = set()
        fresh = []
        for a, b in batch:
            if a not in used and b not in used:
                fresh.append((a, b))
                used |= {a, b}
        rest = [p for p in batch if p not in fresh]
        out += (fresh + rest)[: n - len(out)]
    return out


def _chat_prompts(tokenizer: Any, pairs: Sequence[tuple[str, str]], template: str) -> list[str]:
    asks = [template.format(a=a, b=b) for a, b in pairs]
    if not getattr(tokenizer, "chat_template", None):
        return [q + BREAK for q in asks]  # a model without a chat template: the request as plain text
    out = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
           for q in asks]
    bos = tokenizer.bos_token
    adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    if adds_bos:  # the tokenizer adds BOS itself: a literal one in the text would make two (the paper's pitfall)
        out = [p[len(bos):] if p.startswith(bos) else p for p in out]
    return out


def chat_prompts(tokenizer: Any, cfg: TextConfig) -> pd.DataFrame:
    """One row per prompt: ``prompt_id, topic_a, topic_b, category_a, category_b, prompt, sep``."""
    table = topic_list(cfg.topics, seed=cfg.seed)
    cat = dict(zip(table.topic, table.category))
    pairs = topic_pairs(table, cfg.n_prompts, cfg.seed)
    return pd.DataFrame({"prompt_id": range(len(pairs)), "topic_a": [a for a, _ in pairs], "topic_b": [b for _, b in pairs],
                         "category_a": [cat[a] for a, _ in pairs], "category_b": [cat[b] for _, b in pairs],
                         "prompt": _chat_prompts(tokenizer, pairs, cfg.template), "sep": ""})


def lead_prompts(n: int, seed: int = 0, min_words: int = 6) -> pd.DataFrame:
    """``n`` prompts from English Wikipedia leads: the lead's first sentence(s) (at least ``min_words``
    words), articles with short plain titles spread over the corpus's topics (seeded)."""
    ds = load_corpus("wiki-en", split="all")
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    by_cat: dict[str, list[dict[str, str]]] = {}
    for i in order:
        title, text, topic = ds["title"][i], ds["text"][i], ds["topic"][i]
        if topic in LEAD_SKIP or len(title.split()) > 3 or not title.isascii() or "(" in title:
            continue
        start = cut_at_sentence(text.split("\n")[0], min_words)
        if start and count_words(start) <= 40:
            by_cat.setdefault(topic, []).append({"title": title, "topic": topic, "start": start})
    rows: list[dict[str, str]] = []
    depth = 0
    while len(rows) < n and any(depth < len(v) for v in by_cat.values()):
        rows += [v[depth] for _, v in sorted(by_cat.items()) if depth < len(v)]
        depth += 1
    rows = rows[:n]
    return pd.DataFrame({"prompt_id": range(len(rows)), "topic_a": [r["title"] for r in rows],
                         "topic_b": [r["title"] for r in rows], "category_a": [r["topic"] for r in rows],
                         "category_b": [r["topic"] for r in rows], "prompt": [r["start"] for r in rows], "sep": " "})


def make_prompts(tokenizer: Any, cfg: TextConfig) -> pd.DataFrame:
    """The prompts of ``cfg.source`` (see :func:`chat_prompts`, :func:`lead_prompts`)."""
    return chat_prompts(tokenizer, cfg) if cfg.source == "chat" else lead_prompts(cfg.n_prompts, cfg.seed)


def wiki_texts(cfg: TextConfig) -> tuple[pd.DataFrame, Counter]:
    """Real two-paragraph texts (no generation): ``cfg.n_prompts`` Wikipedia topics x ``cfg.copies``
    articles each; paragraph 1 is the lead's first paragraph when it has several, else its first
    sentences (at least ``min_words`` words); paragraph 2 the next paragraph or sentences (at most
    ``2 * min_words + 20`` words, cut at a sentence end). Topic A = topic B = the title."""
    ds = load_corpus("wiki-en", split="all")
    order = list(range(len(ds)))
    random.Random(cfg.seed).shuffle(order)
    cats = sorted({t for t in ds["topic"] if t not in LEAD_SKIP})
    random.Random(cfg.seed).shuffle(cats)
    cats = cats[: cfg.n_prompts]
    rows, dropped, per = [], Counter(), Counter()
    for i in order:
        topic = ds["topic"][i]
        if topic not in cats or per[topic] >= cfg.attempts:
            continue
        paras = [p.strip() for p in ds["text"][i].split("\n") if p.strip()]
        max_words = 2 * cfg.min_words + 20
        p1 = cut_at_sentence(paras[0], cfg.min_words, 2 * max_words if len(paras) >= 2 else None)
        rest = (paras[1] if len(paras) >= 2 else paras[0][len(p1):]) if p1 else ""
        p2 = cut_at_sentence(rest, cfg.min_words // 2, max_words) if p1 else None
        if not p1 or not p2:
            dropped["lead too short for two paragraphs"] += 1
            continue
        per[topic] += 1
        title = ds["title"][i]
        rows.append({"prompt_id": cats.index(topic), "topic_a": title, "topic_b": title, "category_a": topic,
                     "category_b": topic, "prompt": "", "sep": "", "text": p1 + BREAK + p2.strip(), "para1": p1,
                     "para2": p2.strip(), "natural": True})
    return pd.DataFrame(rows).sort_values("prompt_id", kind="stable").reset_index(drop=True), +dropped


# ----------------------------------------------------------------------------- writing the texts
def _first_line_done(t: str) -> bool:
    """Paragraph 1 is complete once the model ends its first line (after any header lines)."""
    return "\n" in strip_headers(t)


def write_texts(model: HookedModel, attempts: pd.DataFrame, cfg: TextConfig) -> tuple[pd.DataFrame, Counter]:
    """Generate one text per row of ``attempts`` (prompt rows, repeated per copy); returns the kept
    texts (the prompt's columns plus ``text, para1, para2, natural`` and, in forced mode, the token
    ids ``part1_ids, n_break, para2_ids``) and a Counter of dropped answers by reason."""
    tok = model.tokenizer
    gen = dict(temperature=cfg.temperature, batch_size=cfg.batch_size)
    enc = [tok(p)["input_ids"] for p in attempts["prompt"]]
    dropped: Counter = Counter()
    rows = []
    if cfg.break_mode == "natural":
        answers = generate_ids(model, enc, 2 * cfg.para_tokens, seed=cfg.seed,  # a 2nd break: dropped anyway
                               stop=lambda t: len(re.findall(r"\n\s*\n", t.strip())) >= 2, **gen)
        for row, ans in zip(attempts.to_dict("records"), answers):
            parsed = parse_natural(ans, cfg.min_words)
            if isinstance(parsed, str):
                dropped[parsed] += 1
                continue
            rows.append({**row, "text": row["prompt"] + row["sep"] + parsed[0] + BREAK + parsed[1],
                         "para1": parsed[0], "para2": parsed[1], "natural": True})
        return pd.DataFrame(rows), +dropped
    firsts = generate_ids(model, enc, cfg.para_tokens, seed=cfg.seed, stop=_first_line_done, **gen)
    brk = break_ids_between_words(tok)
    keep, part1 = [], []
    for i, ans in enumerate(firsts):
        p1 = forced_paragraph1(ans, cfg.min_words)
        if p1 is None:
            dropped["paragraph 1 without whole sentences of min_words/2 words"] += 1
            continue
        keep.append((i, p1, natural_onset(ans, p1)))
        part1.append(tok(attempts["prompt"].iloc[i] + attempts["sep"].iloc[i] + p1)["input_ids"] + brk)
    seconds = generate_ids(model, part1, cfg.para_tokens, seed=cfg.seed + 1, stop=lambda t: "\n" in t.lstrip(), **gen)
    for (i, p1, natural), ids, ans in zip(keep, part1, seconds):
        p2 = forced_paragraph2(ans)
        if count_words(p2) < cfg.min_words // 2:
            dropped["paragraph 2 under min_words/2 words"] += 1
            continue
        row = attempts.iloc[i].to_dict()
        rows.append({**row, "text": row["prompt"] + row["sep"] + p1 + BREAK + p2, "para1": p1, "para2": p2,
                     "natural": natural, "part1_ids": ids, "n_break": len(brk),
                     "para2_ids": tok(p2, add_special_tokens=False)["input_ids"]})
    return pd.DataFrame(rows), +dropped


# ----------------------------------------------------------------------------- text sets (cached)
@dataclass
class TextSet:
    """Texts split at their break, grouped by prompt.

    ``texts``: one row per text (``text_id, prompt_id, copy, topic_a, topic_b, category_a, category_b,
    prompt, text, para1, para2, natural``), aligned with ``splits``; ``text_id`` stays with a text
    in subsets (:meth:`subset`, :meth:`first_copies`); ``candidates``: topic names
    for topic retrieval; ``dropped``: answers dropped, by reason, of ``n_attempted``.
    """

    texts: pd.DataFrame
    splits: list[Split]
    candidates: list[str]
    dropped: Counter = field(default_factory=Counter)
    n_attempted: int = 0
    n_valid: int = 0

    @property
    def topics_b(self) -> list[str]:
        return list(self.texts["topic_b"])

    @property
    def prompt_ids(self) -> np.ndarray:
        return self.texts["prompt_id"].to_numpy()

    @property
    def n_prompts(self) -> int:
        return int(self.texts["prompt_id"].nunique()) if len(self.texts) else 0

    def subset(self, rows: Sequence[int]) -> "TextSet":
        """The texts at ``rows`` (e.g. the first copies of each prompt)."""
        rows = list(rows)
        return TextSet(self.texts.iloc[rows].reset_index(drop=True), [self.splits[i] for i in rows], self.candidates,
                       self.dropped, self.n_attempted, self.n_valid)

    def first_copies(self, copies: int) -> "TextSet":
        """The first ``copies`` texts of every prompt."""
        return self.subset(np.flatnonzero(self.texts["copy"].to_numpy() < copies))

    def report(self) -> str:
        """One line: texts and prompts used, answers attempted and why the others were dropped."""
        why = "; ".join(f"{n} {reason}" for reason, n in self.dropped.most_common()) or "none"
        spare = self.n_valid - len(self.splits)
        extra = f" ({spare} more valid texts left unused)" if spare > 0 else ""
        return (f"{len(self.splits)} texts of {self.n_prompts} prompts used, from {self.n_attempted} answers{extra}; "
                f"dropped: {why}.")


def make_texts(model: HookedModel, cfg: TextConfig) -> TextSet:
    """Build (or load from the disk cache) ``cfg.n_prompts x cfg.copies`` split texts (see the module doc)."""
    if cfg.source == "wiki":
        texts, dropped = wiki_texts(cfg)
        n_attempted = len(texts) + sum(dropped.values())
        candidates = list(dict.fromkeys(texts["topic_b"])) if len(texts) else []
    else:
        prompts = make_prompts(model.tokenizer, cfg)
        attempts = prompts.loc[prompts.index.repeat(cfg.attempts)].reset_index(drop=True)
        params = dict(cfg=asdict(cfg), prompts=prompts.to_dict("list"))
        texts, dropped = cached("paragraph-texts", params, lambda: write_texts(model, attempts, cfg), model=model)
        n_attempted = len(attempts)
        candidates = list(dict.fromkeys(topic_list(cfg.topics)["topic"] if cfg.source == "chat" else prompts["topic_b"]))
    dropped = Counter(dropped)
    if len(texts) == 0:
        return TextSet(texts, [], candidates, dropped, n_attempted)
    splits, kept, more = split_texts(model.tokenizer, texts)
    dropped.update(more)
    kept = kept.assign(copy=kept.groupby("prompt_id").cumcount())
    need = 2 if cfg.copies >= 2 else 1
    per_prompt = kept.groupby("prompt_id")["copy"].transform("size")
    few = (per_prompt < need) & (kept["copy"] < cfg.copies)
    if few.any():
        dropped[f"texts of prompts with fewer than {need} valid texts"] += int(few.sum())
    rows = np.flatnonzero(((kept["copy"] < cfg.copies) & (per_prompt >= need)).to_numpy())
    out = TextSet(kept, splits, candidates, +dropped, n_attempted, n_valid=len(splits)).subset(rows)
    out.texts = out.texts.drop(columns=[c for c in ("part1_ids", "para2_ids", "n_break", "sep") if c in out.texts])
    out.texts.insert(0, "text_id", np.arange(len(out.texts)))  # stable ids: subsets keep them
    return out
