"""Two-paragraph texts for the paragraph-planning chapter: building, splitting at the break, generating.

A *text* is ``prompt + paragraph 1 + "\\n\\n" + paragraph 2``. Two sources:

* ``source="chat"``: an instruct model answers "write two short paragraphs, the first about A, the
  second about B" through its chat template. ``break_mode="natural"`` keeps only answers with
  exactly one paragraph break (the paper's filter); ``break_mode="forced"`` cuts the answer after
  its first sentences (at least ``min_words`` words), inserts the break and lets the model write
  paragraph 2 itself. Small models rarely write two paragraphs on request, hence the option.
* ``source="wiki"``: real text for base models: the lead of an English Wikipedia article, cut into
  two sentence groups (or its first two paragraphs when it has them). No generation.

The break is found by **text offsets** (:func:`find_break`), never by one token id: SmolLM2 writes
``"\\n\\n"`` between words as two ``"\\n"`` tokens but alone as one token, Gemma always as one,
the tiny character tokenizer as two. :func:`split_text` returns every position of the break.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..cache import cached
from ..core.generation import generate_ids
from ..core.hooks import HookedModel
from .corpora import load_corpus

BREAK = "\n\n"
"""The paragraph break."""

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

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


# ----------------------------------------------------------------------------- topics
def topic_list(topics: str | Sequence[str] = "builtin", n_topics: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Topics with a category: ``"builtin"`` (:data:`TOPICS`), ``"wiki-en"`` (short article titles,
    spread over the corpus's topics) or an explicit list. ``n_topics`` keeps a seeded subset."""
    if isinstance(topics, str) and topics == "builtin":
        df = pd.DataFrame([{"topic": t, "category": c} for c, ts in TOPICS.items() for t in ts])
    elif isinstance(topics, str) and topics.startswith("wiki"):
        docs = _wiki_docs(topics)
        rng = random.Random(seed)
        short = [d for d in docs if len(d["title"].split()) <= 2 and d["title"].isascii() and "(" not in d["title"]]
        rng.shuffle(short)
        by_cat: dict[str, list[str]] = {}
        for d in short:
            by_cat.setdefault(d["topic"], []).append(d["title"])
        want = n_topics or 40
        rows, i = [], 0
        while len(rows) < want and any(i < len(v) for v in by_cat.values()):
            rows += [{"topic": v[i], "category": c} for c, v in sorted(by_cat.items()) if i < len(v)]
            i += 1
        df = pd.DataFrame(rows[:want])
    else:
        df = pd.DataFrame({"topic": list(topics), "category": [f"c{i}" for i in range(len(topics))]})
    if n_topics is not None and n_topics < len(df):
        df = df.sample(n=n_topics, random_state=seed).sort_index()
    return df.reset_index(drop=True)


def topic_pairs(topics: pd.DataFrame, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` seeded (A, B) pairs of topics from different categories; no pair repeats until all are used."""
    rows = list(topics.itertuples(index=False))
    pairs = [(a.topic, b.topic) for a in rows for b in rows if a.category != b.category]
    if not pairs:
        raise ValueError("Topic pairs need topics from at least two categories.")
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        batch = pairs[:]
        rng.shuffle(batch)
        out += batch[: n - len(out)]
    return out


# ----------------------------------------------------------------------------- break finding
@dataclass(frozen=True)
class Split:
    """One text split after its first paragraph break (all positions index ``ids``).

    ``ids``: the whole text's tokens (special tokens included); ``break_pos``: every token of the
    break; ``part1 = ids[:break_pos[-1] + 1]`` (prompt, paragraph 1, break); ``para2_ids`` the rest.
    """

    ids: list[int]
    break_pos: list[int]
    para1: str
    para2: str
    prefix_ids: list[int] = field(default_factory=list)  # leading special tokens (BOS / chat start)

    @property
    def break_ids(self) -> tuple[int, ...]:
        return tuple(self.ids[p] for p in self.break_pos)

    @property
    def part1(self) -> list[int]:
        return self.ids[: self.break_pos[-1] + 1]

    @property
    def para2_ids(self) -> list[int]:
        return self.ids[self.break_pos[-1] + 1:]


class BreakError(ValueError):
    """A text with no paragraph break, or one that cannot be cut cleanly into tokens (``reason``)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def find_break(tokenizer: Any, text: str, start: int = 0, sep: str = BREAK) -> tuple[list[int], list[int], int]:
    """Locate the first ``sep`` at or after character ``start`` by text offsets.

    Returns ``(ids, positions, char)``: the text's token ids (special tokens added as the tokenizer
    does), the positions of every token inside the break, and the break's first character. Raises
    :class:`BreakError` when there is no break or a token straddles its edges (e.g. ``".\\n\\n"`` as
    one token), since then no set of whole tokens is exactly the break.
    """
    char = text.find(sep, start)
    if char < 0:
        raise BreakError(f"No {sep!r} after character {start}.", "no paragraph break")
    end = char + len(sep)
    enc = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    inside, straddle = [], False
    for i, (a, b) in enumerate(offsets):
        if b <= a:  # special tokens carry empty spans
            continue
        if a >= char and b <= end:
            inside.append(i)
        elif a < end and b > char:
            straddle = True
    covered = sum(offsets[i][1] - offsets[i][0] for i in inside)
    if not inside or straddle or covered != len(sep) or inside != list(range(inside[0], inside[-1] + 1)):
        raise BreakError(f"The break at character {char} is not a whole number of tokens.",
                         "break not a whole number of tokens")
    return ids, inside, char


def break_ids_between_words(tokenizer: Any, sep: str = BREAK) -> list[int]:
    """How ``sep`` is tokenised between two words (SmolLM2 ``[198, 198]``, Gemma ``[108]``)."""
    ids, pos, _ = find_break(tokenizer, f"The end.{sep}The start")
    return [ids[p] for p in pos]


def split_text(tokenizer: Any, text: str, start: int = 0, sep: str = BREAK) -> Split:
    """Split ``text`` after its first break at or after character ``start`` (see :class:`Split`)."""
    ids, pos, char = find_break(tokenizer, text, start, sep)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    n_prefix = 0
    while n_prefix < len(ids) and ids[n_prefix] in special:
        n_prefix += 1
    return Split(ids=ids, break_pos=pos, para1=text[start:char].strip(), para2=text[char + len(sep):].strip(),
                 prefix_ids=ids[:min(n_prefix, 1)])


def split_texts(tokenizer: Any, texts: pd.DataFrame, sep: str = BREAK) -> tuple[list[Split], pd.DataFrame, Counter]:
    """Split every row of ``texts`` (columns ``text``, ``prompt``); keep those whose break is
    tokenised like the most common break (so batches share one break). Returns the splits, the
    kept rows and a Counter of dropped texts by reason."""
    splits, keep, dropped = [], [], Counter()
    for i, row in enumerate(texts.itertuples(index=False)):
        try:
            splits.append(split_text(tokenizer, row.text, len(row.prompt), sep))
            keep.append(i)
        except BreakError as err:
            dropped[err.reason] += 1
    if splits:
        common = Counter(s.break_ids for s in splits).most_common(1)[0][0]
        ok = [j for j, s in enumerate(splits) if s.break_ids == common]
        dropped["break tokenised differently"] += len(splits) - len(ok)
        splits, keep = [splits[j] for j in ok], [keep[j] for j in ok]
    return splits, texts.iloc[keep].reset_index(drop=True), +dropped


def first_paragraph(text: str, min_chars: int = 100, sep: str = BREAK) -> str:
    """The paper's truncation: the first ``min_chars`` characters, then up to the next break."""
    t = text.lstrip()
    return t[:min_chars] + t[min_chars:].split(sep)[0]


# ----------------------------------------------------------------------------- sources
def _count_words(text: str) -> int:
    return len(text.split())


def cut_at_sentence(text: str, min_words: int, max_words: int | None = None) -> str | None:
    """The shortest run of whole sentences with at least ``min_words`` words (None if there is none);
    with ``max_words``, the longest run within it instead (still at least ``min_words``)."""
    text = text.strip()
    best = None
    for m in _SENTENCE_END.finditer(text):
        piece = text[: m.end()]
        n = _count_words(piece)
        if n >= min_words and max_words is None:
            return piece
        if max_words is not None and n > max_words:
            break
        if n >= min_words:
            best = piece
    return best


def parse_natural(answer: str, min_words: int) -> tuple[str, str] | str:
    """``(paragraph 1, paragraph 2)`` of an answer with exactly one break, else the drop reason."""
    ans = answer.strip()
    n_breaks = len(re.findall(r"\n\s*\n", ans))
    if n_breaks != 1:
        return f"{n_breaks} paragraph breaks" if n_breaks < 2 else "2 or more paragraph breaks"
    if BREAK not in ans:
        return "break with other whitespace"
    p1, p2 = (p.strip() for p in ans.split(BREAK, 1))
    if "\n" in p1 or "\n" in p2:
        return "line breaks inside a paragraph"
    if _count_words(p1) < min_words // 2 or _count_words(p2) < min_words // 2:
        return "a paragraph under min_words/2 words"
    return p1, p2


def strip_headers(answer: str) -> str:
    """The answer without leading empty lines and header lines ending in ``:`` ("The first paragraph is:")."""
    lines = answer.lstrip().split("\n")
    while len(lines) > 1 and (not lines[0].strip() or lines[0].rstrip().endswith(":")):
        lines.pop(0)
    return "\n".join(lines).lstrip()


def forced_paragraph1(answer: str, min_words: int) -> str | None:
    """Paragraph 1 in ``forced`` mode: the answer's first line (after any header lines) cut after
    whole sentences of at least ``min_words`` words; a shorter line (the model ended its paragraph
    early) counts if its whole sentences hold at least ``min_words // 2`` words. None if neither."""
    line = strip_headers(answer).split("\n")[0]
    return cut_at_sentence(line, min_words) or cut_at_sentence(line, min_words // 2, max_words=len(line))


def forced_paragraph2(answer: str) -> str:
    """Paragraph 2 in ``forced`` mode: the continuation up to its first line break."""
    return answer.lstrip().split("\n")[0].strip()


def _chat_prompts(model: HookedModel, pairs: Sequence[tuple[str, str]], template: str) -> list[str]:
    tok = model.tokenizer
    asks = [template.format(a=a, b=b) for a, b in pairs]
    if not getattr(tok, "chat_template", None):
        return [q + BREAK for q in asks]  # a model without a chat template: the request as plain text
    out = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
           for q in asks]
    bos = tok.bos_token
    adds_bos = bos is not None and tok("a")["input_ids"][:1] == [tok.bos_token_id]
    if adds_bos:  # the tokenizer adds BOS itself: a literal one in the text would make two (the paper's pitfall)
        out = [p[len(bos):] if p.startswith(bos) else p for p in out]
    return out


def chat_texts(
    model: HookedModel,
    pairs: Sequence[tuple[str, str]],
    break_mode: str = "forced",
    template: str = PROMPT,
    temperature: float = 0.3,
    seed: int = 0,
    min_words: int = 25,
    para_tokens: int = 90,
    batch_size: int = 64,
) -> tuple[pd.DataFrame, Counter]:
    """Texts written by the model for each (A, B) pair; returns the kept texts and drop reasons.

    ``natural``: one answer of up to ``2·para_tokens`` tokens, kept if it has exactly one break.
    ``forced``: paragraph 1 = the answer's first sentences (at least ``min_words`` words, up to any
    newline); the break is appended and the model writes paragraph 2 (up to ``para_tokens`` tokens,
    ending at a newline); kept if paragraph 2 has at least ``min_words // 2`` words.
    """
    if break_mode not in ("natural", "forced"):
        raise ValueError(f"break_mode must be 'natural' or 'forced', got {break_mode!r}")
    tok = model.tokenizer
    prompts = _chat_prompts(model, pairs, template)
    enc = [tok(p)["input_ids"] for p in prompts]
    dropped: Counter = Counter()
    rows = []
    if break_mode == "natural":
        answers = generate_ids(model, enc, 2 * para_tokens, temperature, seed, batch_size,  # a 2nd break: dropped anyway
                               stop=lambda t: len(re.findall(r"\n\s*\n", t.strip())) >= 2)
        for (a, b), p, ans in zip(pairs, prompts, answers):
            parsed = parse_natural(ans, min_words)
            if isinstance(parsed, str):
                dropped[parsed] += 1
                continue
            rows.append({"topic_a": a, "topic_b": b, "prompt": p, "text": p + parsed[0] + BREAK + parsed[1]})
        return pd.DataFrame(rows), +dropped

    def p1_done(t: str) -> bool:
        t = strip_headers(t)
        return "\n" in t or (_count_words(t) >= min_words and bool(_SENTENCE_END.search(t[-3:] + " ")))

    firsts = generate_ids(model, enc, 2 * para_tokens, temperature, seed, batch_size, stop=p1_done)
    part1, keep = [], []
    for i, ans in enumerate(firsts):
        p1 = forced_paragraph1(ans, min_words)
        if p1 is None:
            dropped["paragraph 1 without whole sentences of min_words/2 words"] += 1
            continue
        part1.append(prompts[i] + p1 + BREAK)
        keep.append(i)
    brk = break_ids_between_words(tok)
    ids = [tok(t[: -len(BREAK)])["input_ids"] + brk for t in part1]  # the break as between words
    seconds = generate_ids(model, ids, para_tokens, temperature, seed + 1, batch_size,
                           stop=lambda t: "\n" in t.lstrip())
    for i, t1, ans in zip(keep, part1, seconds):
        p2 = forced_paragraph2(ans)
        if _count_words(p2) < min_words // 2:
            dropped["paragraph 2 under min_words/2 words"] += 1
            continue
        a, b = pairs[i]
        rows.append({"topic_a": a, "topic_b": b, "prompt": prompts[i], "text": t1 + p2})
    return pd.DataFrame(rows), +dropped


def _wiki_docs(name: str = "wiki-en") -> list[dict[str, str]]:
    ds = load_corpus("wiki-en" if name == "wiki" else name, split="all")
    return [{"title": t, "text": x, "topic": c} for t, x, c in zip(ds["title"], ds["text"], ds["topic"])]


def wiki_texts(n: int, seed: int = 0, min_words: int = 25, max_words: int = 70, bos: str = "") -> tuple[pd.DataFrame, Counter]:
    """``n`` real two-paragraph texts from English Wikipedia leads (seeded choice of articles).

    Paragraph 1 is the lead's first paragraph when it has several, else its first sentences (at
    least ``min_words`` words); paragraph 2 the next paragraph or sentences, cut to at most
    ``max_words`` words at a sentence end. ``topic_b`` is the article title. ``bos`` is put in front
    as the prompt (empty: the tokenizer adds its own special tokens).
    """
    docs = _wiki_docs("wiki-en")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    rows, dropped = [], Counter()
    for i in order:
        if len(rows) >= n:
            break
        d = docs[i]
        paras = [p.strip() for p in d["text"].split("\n") if p.strip()]
        if len(paras) >= 2:
            p1, rest = cut_at_sentence(paras[0], min_words, 2 * max_words), paras[1]
        else:
            p1 = cut_at_sentence(paras[0], min_words)
            rest = paras[0][len(p1):] if p1 else ""
        p2 = cut_at_sentence(rest, min_words // 2, max_words) if p1 else None
        if not p1 or not p2:
            dropped["lead too short for two paragraphs"] += 1
            continue
        rows.append({"topic_a": d["title"], "topic_b": d["title"], "category": d["topic"], "prompt": bos,
                     "text": bos + p1 + BREAK + p2.strip()})
    return pd.DataFrame(rows), +dropped


# ----------------------------------------------------------------------------- text sets (cached)
@dataclass
class TextSet:
    """Texts split at their break. ``candidates``: topic names for retrieval; ``dropped``: counts by
    reason over ``n_generated`` attempts (generation and splitting)."""

    texts: pd.DataFrame
    splits: list[Split]
    candidates: list[str]
    dropped: Counter
    n_generated: int

    @property
    def topics_b(self) -> list[str]:
        return list(self.texts["topic_b"])

    n_valid: int = 0

    def report(self) -> str:
        """One line: kept, attempted and why the others were dropped."""
        why = "; ".join(f"{n} {reason}" for reason, n in self.dropped.most_common()) or "none"
        spare = self.n_valid - len(self.splits)
        extra = f" ({spare} more valid texts left unused)" if spare > 0 else ""
        return f"{len(self.splits)} texts used of {self.n_generated} attempted{extra}; dropped: {why}."


def make_texts(
    model: HookedModel,
    n_texts: int,
    source: str = "chat",
    topics: str | Sequence[str] = "builtin",
    n_topics: int | None = None,
    break_mode: str = "forced",
    template: str = PROMPT,
    temperature: float = 0.3,
    seed: int = 0,
    min_words: int = 25,
    para_tokens: int = 90,
    oversample: float = 1.5,
    batch_size: int = 64,
) -> TextSet:
    """Build (or load from the disk cache) up to ``n_texts`` split texts.

    ``source="chat"`` generates ``ceil(oversample·n_texts)`` answers (``natural`` mode needs a large
    ``oversample``: small models seldom write exactly two paragraphs) and keeps the first
    ``n_texts`` that split cleanly; ``source="wiki"`` takes real leads (no generation).
    """
    n_try = max(n_texts, int(np.ceil(oversample * n_texts)))
    if source == "chat":
        table = topic_list(topics, n_topics, seed)
        pairs = topic_pairs(table, n_try, seed)
        params = dict(pairs=pairs, break_mode=break_mode, template=template,
                      temperature=temperature, seed=seed, min_words=min_words, para_tokens=para_tokens)
        texts, dropped = cached("paragraph-texts", params, lambda: chat_texts(
            model, pairs, break_mode, template, temperature, seed, min_words, para_tokens, batch_size), model=model)
        candidates = list(table["topic"])
    elif source == "wiki":
        texts, dropped = wiki_texts(n_try, seed, min_words)
        candidates = list(texts["topic_b"]) if len(texts) else []
    else:
        raise ValueError(f"Unknown source {source!r}: use 'chat' (the model writes) or 'wiki' (real leads).")
    dropped = Counter(dropped)
    if len(texts) == 0:
        return TextSet(texts, [], candidates, dropped, n_try)
    splits, kept, more = split_texts(model.tokenizer, texts)
    dropped.update(more)
    return TextSet(kept.iloc[:n_texts].reset_index(drop=True), splits[:n_texts], candidates, dropped, n_try,
                   n_valid=len(splits))

