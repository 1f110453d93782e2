"""Paragraph texts split at their break: finding the break by text offsets, splitting, and parsing answers.

A *text* is ``prompt + paragraph 1 + "\\n\\n" + paragraph 2`` (how texts are made:
:mod:`paragraph_planning.data.paragraph_texts`). The break is found by **text offsets**
(:func:`find_break`), never by one token id: SmolLM2 writes ``"\\n\\n"`` between words as two
``"\\n"`` tokens but alone as one token, Gemma always as one, Qwen merges ``".\\n\\n"`` into one
token (such a break cannot be cut cleanly and is dropped), the tiny character tokenizer writes two.
:func:`split_text` returns every position of the break.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

BREAK = "\n\n"
"""The paragraph break."""

SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


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

    @classmethod
    def from_parts(cls, part1: list[int], n_break: int, para2_ids: list[int], para1: str, para2: str,
                   prefix_ids: list[int]) -> "Split":
        """A split from the token ids the model actually saw: ``part1`` ends with the ``n_break`` break tokens."""
        if not 0 < n_break <= len(part1):
            raise ValueError(f"part1 ({len(part1)} tokens) cannot end with {n_break} break tokens.")
        start = len(part1) - n_break
        return cls(list(part1) + list(para2_ids), list(range(start, len(part1))), para1, para2, list(prefix_ids))


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
    """How ``sep`` is tokenised between two words (SmolLM2 ``[198, 198]``, Gemma ``[108]``, Qwen ``[271]``).

    The words carry no punctuation: Qwen merges ``".\\n\\n"`` into one token."""
    ids, pos, _ = find_break(tokenizer, f"The end{sep}The start")
    return [ids[p] for p in pos]


def sink_ids(tokenizer: Any, ids: list[int]) -> list[int]:
    """The text's first token if it is a special token (BOS, a chat start), else nothing: the sink
    that precedes the neutral break."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return list(ids[:1]) if ids and ids[0] in special else []


def split_text(tokenizer: Any, text: str, start: int = 0, sep: str = BREAK) -> Split:
    """Split ``text`` after its first break at or after character ``start`` (see :class:`Split`)."""
    ids, pos, char = find_break(tokenizer, text, start, sep)
    return Split(ids=ids, break_pos=pos, para1=text[start:char].strip(), para2=text[char + len(sep):].strip(),
                 prefix_ids=sink_ids(tokenizer, ids))


def split_texts(tokenizer: Any, texts: pd.DataFrame, sep: str = BREAK) -> tuple[list[Split], pd.DataFrame, Counter]:
    """Split every row of ``texts`` (columns ``text``, ``prompt``; with columns ``part1_ids`` and
    ``para2_ids``, the token ids the model saw are used as they are, the break being the last
    ``n_break`` tokens of ``part1_ids``); keep those whose break is tokenised like the most common
    break (so batches share one break). Returns the splits, the kept rows and a Counter of dropped
    texts by reason."""
    splits, keep, dropped = [], [], Counter()
    given = "part1_ids" in texts.columns
    for i, row in enumerate(texts.itertuples(index=False)):
        if given:
            p1 = list(row.part1_ids)
            splits.append(Split.from_parts(p1, int(row.n_break), list(row.para2_ids), row.para1, row.para2,
                                           sink_ids(tokenizer, p1)))
            keep.append(i)
            continue
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
# ----------------------------------------------------------------------------- parsing answers
def count_words(text: str) -> int:
    return len(text.split())


def cut_at_sentence(text: str, min_words: int, max_words: int | None = None) -> str | None:
    """The shortest run of whole sentences with at least ``min_words`` words (None if there is none);
    with ``max_words``, the longest run within it instead (still at least ``min_words``)."""
    text = text.strip()
    best = None
    for m in SENTENCE_END.finditer(text):
        piece = text[: m.end()]
        n = count_words(piece)
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
    if "```" in ans:
        return "code block"
    n_breaks = len(re.findall(r"\n\s*\n", ans))
    if n_breaks != 1:
        return f"{n_breaks} paragraph breaks" if n_breaks < 2 else "2 or more paragraph breaks"
    if BREAK not in ans:
        return "break with other whitespace"
    p1, p2 = (p.strip() for p in ans.split(BREAK, 1))
    if "\n" in p1 or "\n" in p2:
        return "line breaks inside a paragraph"
    if count_words(p1) < min_words // 2 or count_words(p2) < min_words // 2:
        return "a paragraph under min_words/2 words"
    return p1, p2


def strip_headers(answer: str) -> str:
    """The answer without leading empty lines and header lines ending in ``:`` ("The first paragraph is:")."""
    lines = answer.lstrip().split("\n")
    while len(lines) > 1 and (not lines[0].strip() or lines[0].rstrip().endswith(":")):
        lines.pop(0)
    return "\n".join(lines).lstrip()


def forced_paragraph1(answer: str, min_words: int) -> str | None:
    """Paragraph 1 in ``forced`` mode, from the answer's first line (after any header lines).

    When the model ended that line itself (a line break follows) after whole sentences of at least
    ``min_words`` words, the whole line: the break goes where the model put its own (a natural
    onset, see :func:`natural_onset`). Otherwise the line is cut after its first whole sentences of
    at least ``min_words`` words; a shorter line the model ended itself counts if its whole
    sentences hold at least ``min_words // 2`` words. None if neither.
    """
    body = strip_headers(answer)
    line, newline, _ = body.partition("\n")
    whole = line.strip()
    if newline and count_words(whole) >= min_words and cut_at_sentence(whole, min_words, count_words(whole)) == whole:
        return whole
    return cut_at_sentence(line, min_words) or cut_at_sentence(line, min_words // 2, max_words=len(line))


def natural_onset(answer: str, paragraph1: str) -> bool:
    """Whether the model ended paragraph 1 itself where the forced break goes: its first line (after
    any header lines) is exactly ``paragraph1`` and a line break follows it (the model's own onset)."""
    body = strip_headers(answer)
    line, newline, _ = body.partition("\n")
    return bool(newline) and line.strip() == paragraph1.strip()


def forced_paragraph2(answer: str) -> str:
    """Paragraph 2 in ``forced`` mode: the continuation up to its first line break."""
    return answer.lstrip().split("\n")[0].strip()
