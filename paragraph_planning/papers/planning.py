"""Paragraph planning (paper 1): what the activations at the paragraph break know about paragraph 2.

For each two-paragraph text (:mod:`paragraph_planning.data.paragraph_texts`: several texts per
prompt) the activations at every token of the break are recorded at every layer, then written into
a *neutral prompt* that holds only a break (tokenised like the texts' break, after the texts'
leading special token, the sink), and the model writes a paragraph from there. Conditions, all
with the same sampling settings (:data:`CONDITIONS`):

=================  ===========================================================================
``full``           regenerate paragraph 2 from the real part 1 (prompt, paragraph 1, break)
``transferred``    neutral prompt + the text's own break activations patched in
``same-prompt``    neutral prompt + the break of *another text of the same prompt* (same topics)
``shuffled``       neutral prompt + the break of a text of *another topic category*
``neutral``        neutral prompt, nothing patched
``neutral+K``      neutral prompt + the first K true tokens of paragraph 2 (kept in the output)
=================  ===========================================================================

The differences between them separate what the break carries (:mod:`.planning_metrics`): a
*format* state (any break written mid-answer: neutral vs shuffled), the *topic* (shuffled vs
same-prompt) and a plan for *this* paragraph (same-prompt vs transferred).

``run_planning(model, texts, cfg)`` returns the generations as a tidy table in the public format
of :func:`~paragraph_planning.papers.planning_metrics.score_generations` (cached on disk).
``patch_site``: ``"resid"`` (= ``"resid_post"``) or ``"resid_pre"`` patch the residual stream of
each chosen layer; ``"attn+mlp"`` patches ``attn.out`` and ``mlp.out`` (the paper's choice; with
every layer patched, the break positions' residual stream equals the original at every layer).
"""
from __future__ import annotations

import contextlib
import hashlib
import random
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterator, Literal, Sequence, get_args

import numpy as np
import pandas as pd
import torch

from ..cache import cached
from ..core.generation import generate_ids, pad_rows
from ..core.hooks import HookedModel, HookPoint
from ..core.interventions import patch_fn
from ..data.paragraph_texts import TextSet
from ..data.paragraphs import Split
from ..util import unknown

PATCH_SITES: dict[str, tuple[str, ...]] = {
    "resid": ("resid_post",), "resid_post": ("resid_post",), "resid_pre": ("resid_pre",),
    "attn+mlp": ("attn.out", "mlp.out"),
}
"""``patch_site`` values -> the hook sites patched in each chosen layer."""
PatchSite = Literal["resid", "resid_post", "resid_pre", "attn+mlp"]

CONDITIONS = ("full", "transferred", "same-prompt", "shuffled", "neutral")
"""The conditions of the decomposition (``neutral+K`` come from ``k_values``)."""
PATCHED = ("transferred", "same-prompt", "shuffled")
"""Conditions that patch a break into the neutral prompt (whose break: the text's own, another
copy of the same prompt, a text of another topic category)."""


@dataclass(frozen=True)
class PlanningConfig:
    """Sampling and patching settings shared by every condition (all fields key the disk cache).

    ``conditions``: any of :data:`CONDITIONS`; ``k_values``: the ``neutral+K`` conditions (empty:
    none); ``layers``: patched layers (None: all); ``scale``: the patch ``x + scale·(v − x)``;
    ``neutral_prefix``: ``"auto"`` (the texts' leading special token), ``""`` (none) or a string.
    """

    max_new_tokens: int = 48
    temperature: float = 0.3
    seed: int = 0
    patch_site: PatchSite = "resid"
    layers: tuple[int, ...] | None = None
    scale: float = 1.0
    conditions: tuple[str, ...] = CONDITIONS
    k_values: tuple[int, ...] = (1, 2, 5, 10)
    neutral_prefix: str = "auto"
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("layers", "conditions", "k_values"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if self.patch_site not in get_args(PatchSite):
            raise ValueError(unknown("patch_site", self.patch_site, get_args(PatchSite)))
        for c in self.conditions:
            if c not in CONDITIONS:
                raise ValueError(unknown("condition", c, CONDITIONS, " Use k_values for neutral+K."))
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {self.max_new_tokens}, {self.batch_size}.")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}.")
        if any(k < 1 for k in self.k_values):
            raise ValueError(f"k_values must be >= 1, got {list(self.k_values)}.")
        if self.layers is not None and (not self.layers or min(self.layers) < 0):
            raise ValueError(f"layers must be None (all) or non-negative layer indices, got {self.layers}.")

    @property
    def all_conditions(self) -> list[str]:
        return [*self.conditions, *(f"neutral+{k}" for k in self.k_values)]


def texts_key(splits: Sequence[Split]) -> str:
    """A short hash of the texts' token ids (identifies a text set in cache keys)."""
    h = hashlib.sha256()
    for s in splits:
        h.update(np.asarray(s.ids, dtype=np.int64).tobytes() + b"|" + bytes(str(s.break_pos), "ascii"))
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- activations at the break
def site_names(model: HookedModel, patch_site: str = "resid", layers: Sequence[int] | None = None) -> list[str]:
    """Hook names patched for ``patch_site`` at ``layers`` (None: all)."""
    if patch_site not in PATCH_SITES:
        raise ValueError(unknown("patch_site", patch_site, PATCH_SITES))
    return model.hook_names(PATCH_SITES[patch_site], layers)


@torch.no_grad()
def break_activations(model: HookedModel, splits: Sequence[Split], names: Sequence[str],
                      batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Activations ``[n_texts, n_break_tokens, *site]`` at every break token, for each hook name.

    Runs part 1 of each text (right-padded, so positions are absolute; no KV cache); the break is its end.
    """
    if len({len(s.break_pos) for s in splits}) != 1:
        raise ValueError("All texts must have breaks of the same number of tokens (see split_texts).")
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    pad = model.tokenizer.pad_token_id or 0
    for start in range(0, len(splits), batch_size):
        chunk = splits[start:start + batch_size]
        ids, mask = pad_rows([s.part1 for s in chunk], pad, model.device, side="right")
        pos = torch.tensor([s.break_pos for s in chunk])  # [b, k]
        rows = torch.arange(len(chunk))[:, None]

        def grab(name: str) -> Callable:
            def fn(act: torch.Tensor, *, hook: HookPoint) -> None:
                out[name].append(act[rows, pos].detach().float().cpu())
            return fn

        with model.hooks([(n, grab(n)) for n in names]):
            model.hf(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1)
    return {n: torch.cat(v) for n, v in out.items()}


def neutral_rows(splits: Sequence[Split], prefix: str = "auto", tokenizer: object = None, k: int = 0) -> list[list[int]]:
    """Neutral prompts: sink prefix + the text's break tokens + its first ``k`` paragraph-2 tokens.

    ``prefix="auto"``: the texts' leading special token (Gemma's BOS, the chat start of SmolLM2 and
    Qwen; none for tokenizers that add none); ``""``: nothing; any other string is tokenised
    without special tokens.
    """
    if prefix == "auto":
        return [list(s.prefix_ids) + list(s.break_ids) + s.para2_ids[:k] for s in splits]
    pre = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    return [pre + list(s.break_ids) + s.para2_ids[:k] for s in splits]


def patch_hooks(values: dict[str, torch.Tensor], scale: float = 1.0,
                order: Sequence[int] | None = None) -> Callable[[slice], list]:
    """Hook factory for :func:`~paragraph_planning.core.generation.generate_ids`: each batch gets
    :func:`~paragraph_planning.core.interventions.patch_fn` at the last ``k`` prompt positions with its
    rows' values (``order``: row ``i`` takes text ``order[i]``'s values, e.g. another text's break)."""
    k = next(iter(values.values())).shape[1]
    positions = list(range(-k, 0))

    def make(chunk: slice) -> list:
        idx = list(range(chunk.start, chunk.stop))
        if order is not None:
            idx = [order[i] for i in idx]
        return [(name, patch_fn(v[idx], positions, scale)) for name, v in values.items()]

    return make


def derangement(n: int, seed: int = 0) -> list[int]:
    """A seeded permutation with no fixed point (every item gets another item)."""
    if n < 2:
        raise ValueError("A derangement needs at least two items.")
    rng = random.Random(seed)
    while True:
        p = list(range(n))
        rng.shuffle(p)
        if all(i != j for i, j in enumerate(p)):
            return p


def donors(texts: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Whose break each text receives in the controls (row indices of ``texts``).

    ``same-prompt``: another copy of the same prompt (a seeded derangement within each prompt, so
    every copy donates once); ``shuffled``: a text of a prompt that shares no topic category with
    the recipient's (columns ``category_a``, ``category_b``; without them, any other prompt),
    drawn uniformly. A text whose prompt has one copy gets -1 for ``same-prompt``.
    """
    rng = random.Random(seed)
    prompt = texts["prompt_id"].to_numpy()
    same = np.full(len(texts), -1)
    for p in dict.fromkeys(prompt.tolist()):
        members = np.flatnonzero(prompt == p)
        if len(members) >= 2:
            same[members] = members[derangement(len(members), rng.randrange(2**31))]
    if {"category_a", "category_b"} <= set(texts.columns):
        cats = [{a, b} for a, b in zip(texts["category_a"], texts["category_b"])]
    else:
        cats = [{p} for p in prompt]
    shuffled = np.empty(len(texts), dtype=int)
    for i in range(len(texts)):
        pool = [j for j in range(len(texts)) if prompt[j] != prompt[i] and not (cats[j] & cats[i])]
        if not pool:
            raise ValueError(f"Text {i} (prompt {prompt[i]}, categories {sorted(cats[i])}) has no text of another "
                             f"topic category to take a break from: the shuffled control needs, for every prompt, "
                             f"another prompt that shares none of its categories, and the {len(set(prompt.tolist()))} "
                             f"prompts left after the texts were made have none. Use more prompts (n_prompts) or "
                             f"another seed.")
        shuffled[i] = rng.choice(pool)
    return pd.DataFrame({"transferred": np.arange(len(texts)), "same-prompt": same, "shuffled": shuffled})


# ----------------------------------------------------------------------------- conditions
def generate_conditions(model: HookedModel, ts: TextSet, cfg: PlanningConfig) -> pd.DataFrame:
    """Generate paragraph 2 under every condition of ``cfg``; rows ``text, condition, k, donor, output``.

    The patched conditions share one generation call (their prompts are the same neutral prompt,
    only the patched values differ), so batches are full.
    """
    splits = ts.splits
    gen = dict(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, batch_size=cfg.batch_size)
    neutral = neutral_rows(splits, cfg.neutral_prefix, model.tokenizer)
    n = len(splits)
    rows: list[dict] = []

    def add(cond: str, outs: Sequence[str], donor: Sequence[int], k: int = 0) -> None:
        rows.extend({"text": i, "condition": cond, "k": k, "donor": int(d), "output": o}
                    for i, (o, d) in enumerate(zip(outs, donor)))

    for s, cond in enumerate(cfg.conditions):
        seed = cfg.seed + 1000 * s
        if cond == "full":
            add(cond, generate_ids(model, [s_.part1 for s_ in splits], seed=seed, **gen), range(n))
        elif cond == "neutral":
            add(cond, generate_ids(model, neutral, seed=seed, **gen), [-1] * n)
    patched = [c for c in cfg.conditions if c in PATCHED]
    if patched:
        who = donors(ts.texts, cfg.seed)
        if "same-prompt" in patched and (who["same-prompt"] < 0).any():
            raise ValueError("The same-prompt control needs at least two texts of every prompt (copies >= 2).")
        values = break_activations(model, splits, site_names(model, cfg.patch_site, cfg.layers))
        order = np.concatenate([who[c].to_numpy() for c in patched]).tolist()
        outs = generate_ids(model, neutral * len(patched), seed=cfg.seed + 1, hooks=patch_hooks(values, cfg.scale, order),
                            **gen)
        for j, c in enumerate(patched):
            add(c, outs[j * n:(j + 1) * n], order[j * n:(j + 1) * n])
    for k in cfg.k_values:
        prompts = neutral_rows(splits, cfg.neutral_prefix, model.tokenizer, k)
        given = [model.tokenizer.decode(s.para2_ids[:k], skip_special_tokens=True) for s in splits]
        outs = generate_ids(model, prompts, seed=cfg.seed + 2 + k, **gen)
        add(f"neutral+{k}", [g + o for g, o in zip(given, outs)], [-1] * n, k)
    return pd.DataFrame(rows)


def as_generations(raw: pd.DataFrame, ts: TextSet) -> pd.DataFrame:
    """Condition rows in the public format of :func:`~.planning_metrics.score_generations`: ``prompt,
    text, copy, condition, k, donor, original, topic, donor_topic, natural, output`` (``text`` and
    ``donor`` are the texts' ``text_id``, so subsets of a text set pair with the whole set)."""
    t = ts.texts
    ids = t["text_id"].to_numpy() if "text_id" in t else np.arange(len(t))
    out = pd.DataFrame({
        "prompt": t["prompt_id"].to_numpy()[raw["text"]], "text": ids[raw["text"]],
        "copy": t["copy"].to_numpy()[raw["text"]], "condition": raw["condition"].to_numpy(), "k": raw["k"].to_numpy(),
        "donor": [int(ids[d]) if d >= 0 else -1 for d in raw["donor"]], "original": [ts.splits[i].para2 for i in raw["text"]],
        "topic": t["topic_b"].to_numpy()[raw["text"]],
        "donor_topic": [t["topic_b"].iloc[d] if d >= 0 else None for d in raw["donor"]],
        "natural": t["natural"].to_numpy()[raw["text"]].astype(bool), "output": raw["output"].to_numpy(),
    })
    for col in ("mode", "layer"):
        if col in raw:
            out[col] = raw[col].to_numpy()
    return out


def run_planning(model: HookedModel, texts: TextSet, cfg: PlanningConfig) -> pd.DataFrame:
    """Every condition of ``cfg`` on ``texts``: the generations table (one row per text and condition;
    see :func:`as_generations`), cached on disk by the model, the texts and ``cfg``."""
    if not texts.splits:
        raise ValueError("No texts to run (the text set is empty: see its report()).")
    params = dict(texts=texts_key(texts.splits), prompts=texts.prompt_ids.tolist(),
                  categories=[sorted({a, b}) for a, b in zip(texts.texts["category_a"], texts.texts["category_b"])],
                  cfg=asdict(cfg))
    raw = cached("paragraph-conditions", params, lambda: generate_conditions(model, texts, cfg), model=model)
    return as_generations(raw, texts)


# ----------------------------------------------------------------------------- layer sweep
def sweep_points(n_layers: int, n_points: int = 7) -> list[int]:
    """About ``n_points`` layers spread from the first to the last."""
    return sorted(set(np.linspace(0, n_layers - 1, n_points).round().astype(int).tolist()))


def layer_sweep(model: HookedModel, ts: TextSet, cfg: PlanningConfig, points: Sequence[int],
                modes: Sequence[str] = ("up to L", "only L")) -> pd.DataFrame:
    """The transferred condition with the patch at layers ``0..L`` (``"up to L"``) or at ``L`` alone
    (``"only L"``) for each ``L`` in ``points``; rows ``text, condition, k, donor, output, mode, layer``
    (``condition`` is ``"<mode> <L>"``). All points share one generation call."""
    values = break_activations(model, ts.splits, site_names(model, cfg.patch_site))
    neutral = neutral_rows(ts.splits, cfg.neutral_prefix, model.tokenizer)
    n, k = len(ts.splits), len(ts.splits[0].break_pos)
    combos = [(mode, L) for mode in modes for L in points]
    layer_of = {name: model.parse(name)[0] for name in values}
    if set(modes) - {"up to L", "only L"}:
        raise ValueError(unknown("sweep mode", sorted(set(modes) - {"up to L", "only L"})[0], ["up to L", "only L"]))

    def hooks(chunk: slice) -> list:  # a row patches the layers of its combination, the others not at all
        idx = range(chunk.start, chunk.stop)
        texts, combo = [i % n for i in idx], [combos[i // n] for i in idx]
        out = []
        for name, v in values.items():
            mask = torch.tensor([float(layer_of[name] <= L if m == "up to L" else layer_of[name] == L) for m, L in combo])
            if bool(mask.any()):
                out.append((name, _masked_patch(v[texts], mask, cfg.scale, k)))
        return out

    outs = generate_ids(model, neutral * len(combos), cfg.max_new_tokens, cfg.temperature, cfg.seed + 7, cfg.batch_size,
                        hooks=hooks)
    return pd.DataFrame([{"text": i % n, "condition": f"{combos[i // n][0][:-1]}{combos[i // n][1]}", "k": 0,
                          "donor": i % n, "output": o, "mode": combos[i // n][0], "layer": combos[i // n][1]}
                         for i, o in enumerate(outs)])


def _masked_patch(values: torch.Tensor, mask: torch.Tensor, scale: float, k: int) -> Callable:
    """:func:`patch_fn` for rows whose ``mask`` is 1; rows with mask 0 are left as they are."""
    inner = patch_fn(values, list(range(-k, 0)), scale)

    def fn(act: torch.Tensor, *, hook: HookPoint) -> torch.Tensor | None:
        new = inner(act, hook=hook)
        if new is None:
            return None
        keep = mask.to(act.device, act.dtype).view(-1, *[1] * (act.dim() - 1))
        return new * keep + act * (1 - keep)

    return fn


def run_layer_sweep(model: HookedModel, texts: TextSet, cfg: PlanningConfig,
                    points: Sequence[int] | None = None) -> pd.DataFrame:
    """:func:`layer_sweep` (cached) as a generations table (see :func:`as_generations`); ``points``
    default: :func:`sweep_points`. The sweep uses ``cfg``'s sampling settings, so it pairs with the
    ``neutral`` rows of :func:`run_planning` on the same texts and settings."""
    points = list(points) if points is not None else sweep_points(model.cfg.n_layers)
    if not points or min(points) < 0 or max(points) >= model.cfg.n_layers:
        raise ValueError(f"Sweep layers must lie in 0..{model.cfg.n_layers - 1}, got {points}.")
    cfg = replace(cfg, conditions=("transferred",), k_values=(), layers=None)
    params = dict(texts=texts_key(texts.splits), cfg=asdict(cfg), points=points)
    raw = cached("paragraph-sweep", params, lambda: layer_sweep(model, texts, cfg, points), model=model)
    return as_generations(raw, texts)


# ----------------------------------------------------------------------------- attention to the break
@contextlib.contextmanager
def eager_attention(model: HookedModel) -> Iterator[None]:
    """Switch to the eager attention implementation (the only one that returns weights), then back."""
    before = getattr(model.hf.config, "_attn_implementation", None) or "sdpa"
    model.hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.hf.set_attn_implementation(before)


@torch.no_grad()
def attention_window(model: HookedModel, splits: Sequence[Split], window: int = 30,
                     batch_size: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attention around the break, from a forward pass over each whole text (no KV cache).

    Returns ``(grid, per_text)``: ``grid`` has ``query_offset, key_offset, attention`` (mean over
    texts, layers and heads) for offsets in ``[-window, window]`` relative to the last break token;
    ``per_text`` has, per text and layer, ``to_break``: the attention that the first ``window``
    tokens after the break pay to all break tokens together (mean over those queries and the
    heads), and ``baseline``: the mean attention that any query pays to as many consecutive tokens
    at the same distance (same averaging), so ``to_break / baseline`` is free of the distance decay.
    """
    w, size = window, 2 * window + 1
    grid_sum, grid_n = np.zeros((size, size)), np.zeros((size, size))
    rows = []
    pad = model.tokenizer.pad_token_id or 0
    with eager_attention(model):
        for start in range(0, len(splits), batch_size):
            chunk = splits[start:start + batch_size]
            ids, mask = pad_rows([s.ids for s in chunk], pad, model.device, side="right")
            att = model.hf(input_ids=ids, attention_mask=mask, output_attentions=True, use_cache=False,
                           logits_to_keep=1).attentions
            per_layer = torch.stack([a.float().mean(1) for a in att], 1).cpu().numpy()  # [b, L, q, k]
            for i, s in enumerate(chunk):
                n, p, k = len(s.ids), s.break_pos[-1], len(s.break_pos)
                a = per_layer[i, :, :n, :n]
                mean = a.mean(0)
                for qo in range(-w, w + 1):
                    q = p + qo
                    if 0 <= q < n:
                        ks = np.arange(max(p - w, 0), min(p + w, q) + 1)
                        grid_sum[qo + w, ks - p + w] += mean[q, ks]
                        grid_n[qo + w, ks - p + w] += 1
                qs = np.arange(p + 1, min(p + w, n - 1) + 1)
                if len(qs) == 0:
                    continue
                to_break = a[:, qs][:, :, s.break_pos].sum(-1).mean(-1)  # [L]
                base = np.zeros(a.shape[0])
                for q in qs:  # same distance d = q - p, as many keys: every query q' >= d + k - 1
                    d = q - p
                    qq = np.arange(d + k - 1, n)
                    base += sum(a[:, qq, qq - d - j] for j in range(k)).mean(-1)
                base /= len(qs)
                rows += [{"text": start + i, "layer": layer, "to_break": float(to_break[layer]),
                          "baseline": float(base[layer])} for layer in range(a.shape[0])]
    with np.errstate(invalid="ignore", divide="ignore"):
        g = grid_sum / grid_n
    offs = np.arange(-w, w + 1)
    grid = pd.DataFrame([{"query_offset": int(qo), "key_offset": int(ko), "attention": float(g[i, j])}
                         for i, qo in enumerate(offs) for j, ko in enumerate(offs) if np.isfinite(g[i, j])])
    return grid, pd.DataFrame(rows)
