"""Paragraph planning (paper 1): what the activations at the paragraph break know about paragraph 2.

For each two-paragraph text (:mod:`paragraph_planning.data.paragraphs`) the activations at every token
of the break are recorded at every layer, then written into a *neutral prompt* that holds only a
break (tokenised like the original break, after an optional sink token such as BOS), and the model
writes a paragraph from there. Conditions, all with the same sampling settings:

=================  ===========================================================================
``full``           regenerate paragraph 2 from the real part 1 (prompt, paragraph 1, break)
``transferred``    neutral prompt + the break's activations patched in at every chosen layer
``neutral``        neutral prompt, nothing patched
``neutral+K``      neutral prompt + the first K true tokens of paragraph 2 (given text is kept
                   in the output), nothing patched: "how many tokens is the patch worth?"
``shuffled``       as ``transferred``, but with the break activations of a *different* text
=================  ===========================================================================

Metric: cosine distance between sentence embeddings of each output's first paragraph (the paper's
truncation, :func:`~paragraph_planning.data.paragraphs.first_paragraph`) and the original paragraph 2,
and topic retrieval (is the original's topic B the nearest of all topic names?).

``patch_site``: ``"resid"`` (= ``"resid_post"``) or ``"resid_pre"`` patch the residual stream of
each chosen layer; ``"attn+mlp"`` patches ``attn.out`` and ``mlp.out`` (the paper's choice; with
every layer patched, the break positions' residual stream equals the original at every layer).
"""
from __future__ import annotations

import contextlib
import hashlib
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from ..cache import cached
from ..core import embedding
from ..core.generation import generate_ids, pad_rows
from ..core.hooks import HookedModel, HookPoint
from ..core.interventions import patch_fn
from ..data import paragraphs
from ..data.paragraphs import Split, first_paragraph

PATCH_SITES: dict[str, tuple[str, ...]] = {
    "resid": ("resid_post",), "resid_post": ("resid_post",), "resid_pre": ("resid_pre",),
    "attn+mlp": ("attn.out", "mlp.out"),
}
"""``patch_site`` values -> the hook sites patched in each chosen layer."""

ORDER = ["full", "transferred", "shuffled", "neutral"]


@dataclass
class PlanningConfig:
    """Sampling and patching settings shared by every condition (``asdict`` keys the disk cache)."""

    max_new_tokens: int = 48
    temperature: float = 0.3
    seed: int = 0
    patch_site: str = "resid"
    layers: list[int] | None = None  # None: every layer
    scale: float = 1.0
    k_values: list[int] = field(default_factory=lambda: [1, 2, 5, 10])
    neutral_prefix: str = "auto"  # "auto": the texts' leading special token (BOS / chat start); "": none
    batch_size: int = 64
    min_chars: int = 100  # truncation: first min_chars characters, then up to the next break


def texts_key(splits: Sequence[Split]) -> str:
    """A short hash of the texts' token ids (identifies a text set in cache keys)."""
    h = hashlib.sha256()
    for s in splits:
        h.update(np.asarray(s.ids, dtype=np.int64).tobytes() + b"|")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- activations at the break
def site_names(model: HookedModel, patch_site: str = "resid", layers: Sequence[int] | None = None) -> list[str]:
    """Hook names patched for ``patch_site`` at ``layers`` (None: all)."""
    if patch_site not in PATCH_SITES:
        raise ValueError(f"Unknown patch_site {patch_site!r}; use one of {', '.join(PATCH_SITES)}.")
    return model.hook_names(PATCH_SITES[patch_site], layers)


@torch.no_grad()
def break_activations(model: HookedModel, splits: Sequence[Split], names: Sequence[str],
                      batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Activations ``[n_texts, n_break_tokens, *site]`` at every break token, for each hook name.

    Runs part 1 of each text (right-padded, so positions are absolute); the break is its end.
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
            model.hf(input_ids=ids, attention_mask=mask)
    return {n: torch.cat(v) for n, v in out.items()}


def neutral_rows(splits: Sequence[Split], prefix: str = "auto", tokenizer: Any = None, k: int = 0) -> list[list[int]]:
    """Neutral prompts: sink prefix + the text's break tokens + its first ``k`` paragraph-2 tokens.

    ``prefix="auto"``: the texts' leading special token (Gemma's BOS, SmolLM2's chat start; none for
    tokenizers that add none); ``""``: nothing; any other string is tokenised without special tokens.
    """
    if prefix == "auto":
        return [list(s.prefix_ids) + list(s.break_ids) + s.para2_ids[:k] for s in splits]
    pre = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    return [pre + list(s.break_ids) + s.para2_ids[:k] for s in splits]


def patch_hooks(values: dict[str, torch.Tensor], scale: float = 1.0,
                order: Sequence[int] | None = None) -> Callable[[slice], list]:
    """Hook factory for :func:`~paragraph_planning.data.paragraphs.generate_ids`: each batch gets
    :func:`~paragraph_planning.core.interventions.patch_fn` at the last ``k`` prompt positions with its rows'
    values (``order``: row ``i`` takes text ``order[i]``'s values, for the shuffled control)."""
    k = next(iter(values.values())).shape[1]
    positions = list(range(-k, 0))

    def make(chunk: slice) -> list:
        idx = list(range(chunk.start, chunk.stop))
        if order is not None:
            idx = [order[i] for i in idx]
        return [(name, patch_fn(v[idx], positions, scale)) for name, v in values.items()]

    return make


def derangement(n: int, seed: int = 0) -> list[int]:
    """A seeded permutation with no fixed point (every text gets another text's break)."""
    if n < 2:
        raise ValueError("The shuffled control needs at least two texts.")
    rng = random.Random(seed)
    while True:
        p = list(range(n))
        rng.shuffle(p)
        if all(i != j for i, j in enumerate(p)):
            return p


# ----------------------------------------------------------------------------- conditions
def generate_conditions(model: HookedModel, splits: Sequence[Split], cfg: PlanningConfig,
                        conditions: Sequence[str] | None = None) -> pd.DataFrame:
    """Generate paragraph 2 under every condition; tidy rows ``text, condition, k, output``."""
    conditions = list(conditions or [*ORDER, *(f"neutral+{k}" for k in cfg.k_values)])
    gen = dict(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed,
               batch_size=cfg.batch_size)
    values = None
    if {"transferred", "shuffled"} & set(conditions):
        names = site_names(model, cfg.patch_site, cfg.layers)
        values = break_activations(model, splits, names)
    neutral = neutral_rows(splits, cfg.neutral_prefix, model.tokenizer)
    rows = []
    for cond in conditions:
        k = 0
        if cond == "full":
            outs = generate_ids(model, [s.part1 for s in splits], **gen)
        elif cond == "transferred":
            outs = generate_ids(model, neutral, hooks=patch_hooks(values, cfg.scale), **gen)
        elif cond == "shuffled":
            order = derangement(len(splits), cfg.seed)
            outs = generate_ids(model, neutral, hooks=patch_hooks(values, cfg.scale, order), **gen)
        elif cond == "neutral":
            outs = generate_ids(model, neutral, **gen)
        elif cond.startswith("neutral+"):
            k = int(cond.split("+")[1])
            prompts = neutral_rows(splits, cfg.neutral_prefix, model.tokenizer, k)
            given = [model.tokenizer.decode(s.para2_ids[:k], skip_special_tokens=True) for s in splits]
            outs = [g + o for g, o in zip(given, generate_ids(model, prompts, **gen))]
        else:
            raise ValueError(f"Unknown condition {cond!r}; use {', '.join(ORDER)} or 'neutral+K'.")
        rows += [{"text": i, "condition": cond, "k": k, "output": o} for i, o in enumerate(outs)]
    return pd.DataFrame(rows)


def run_conditions(model: HookedModel, ts: paragraphs.TextSet, cfg: PlanningConfig,
                   conditions: Sequence[str] | None = None, embedder: str = "all-MiniLM-L6-v2",
                   device: str = "cpu") -> pd.DataFrame:
    """:func:`generate_conditions` (disk-cached by model, texts and settings), then :func:`score`."""
    params = dict(texts=texts_key(ts.splits), cfg=asdict(cfg), conditions=conditions)
    raw = cached("paragraph-conditions", params, lambda: generate_conditions(model, ts.splits, cfg, conditions),
                 model=model)
    return score(raw, ts.splits, ts.topics_b, ts.candidates, embedder, device, cfg.min_chars)


def score(results: pd.DataFrame, splits: Sequence[Split], topics_b: Sequence[str], candidates: Sequence[str],
          embedder: str = "all-MiniLM-L6-v2", device: str = "cpu", min_chars: int = 100) -> pd.DataFrame:
    """Add ``paragraph`` (truncated output), ``distance`` (1 − cos to the original paragraph 2) and
    ``topic_hit`` (topic B is the nearest of ``candidates``) to condition results."""
    out = results.copy()
    out["paragraph"] = [first_paragraph(t, min_chars) for t in out["output"]]
    ref = embedding.embed([s.para2 for s in splits], embedder, device)
    emb = embedding.embed(list(out["paragraph"]), embedder, device)
    out["distance"] = embedding.cosine_distance(emb, ref[out["text"].to_numpy()])
    cand = list(dict.fromkeys(candidates))
    target = np.array([cand.index(t) for t in topics_b])
    near = embedding.nearest(emb, embedding.embed(cand, embedder, device))
    out["topic_hit"] = (near == target[out["text"].to_numpy()]).astype(float)
    return out


def reference_topic_hits(splits: Sequence[Split], topics_b: Sequence[str], candidates: Sequence[str],
                         embedder: str = "all-MiniLM-L6-v2", device: str = "cpu") -> np.ndarray:
    """Topic retrieval on the original paragraphs 2 themselves (the ceiling of the topic metric)."""
    cand = list(dict.fromkeys(candidates))
    near = embedding.nearest(embedding.embed([s.para2 for s in splits], embedder, device),
                             embedding.embed(cand, embedder, device))
    return (near == np.array([cand.index(t) for t in topics_b])).astype(float)


def _condition_order(conds: Sequence[str]) -> list[str]:
    ks = sorted((c for c in conds if c.startswith("neutral+")), key=lambda c: int(c.split("+")[1]))
    return [c for c in ORDER if c in conds] + ks + [c for c in conds if c not in ORDER and c not in ks]


def summarise(scored: pd.DataFrame, by: str = "condition") -> pd.DataFrame:
    """Mean ± standard error of distance and topic accuracy per condition (in reading order)."""
    g = scored.groupby(by, sort=False)
    out = pd.DataFrame({
        "n": g["distance"].count(),
        "distance": g["distance"].mean(), "distance_se": g["distance"].sem(),
        "topic_acc": g["topic_hit"].mean(), "topic_acc_se": g["topic_hit"].sem(),
    })
    return out.loc[_condition_order(list(out.index))] if by == "condition" else out


def paired_difference(scored: pd.DataFrame, a: str, b: str) -> dict[str, float]:
    """Mean, standard error and z of ``distance[a] − distance[b]`` over the same texts."""
    wide = scored.pivot_table(index="text", columns="condition", values="distance")
    d = (wide[a] - wide[b]).dropna()
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    mean = float(d.mean())
    return {"mean": mean, "se": se, "z": mean / se if se and se > 0 else float("nan"), "n": int(len(d))}


def claim(scored: pd.DataFrame, threshold: float = 3.0) -> tuple[bool, pd.DataFrame, str]:
    """The paper's claim: ``transferred`` is closer to the original than ``neutral`` by more than
    ``threshold`` standard errors (paired over texts) and the ``shuffled`` control is not."""
    rows = {f"neutral − {c}": paired_difference(scored, "neutral", c) for c in ("transferred", "shuffled")}
    rows["shuffled − transferred"] = paired_difference(scored, "shuffled", "transferred")
    table = pd.DataFrame(rows).T
    z_t, z_s = table.loc["neutral − transferred", "z"], table.loc["neutral − shuffled", "z"]
    holds = bool(z_t > threshold and not z_s > threshold)
    z_x = table.loc["shuffled − transferred", "z"]
    specific = (f"(more than {threshold:g}: the transplant carries something specific to the text)."
                if z_x > threshold else
                f"(not more than {threshold:g}: no decisive evidence of content specific to the text beyond "
                "what any break's activations give).")
    own = f"The text's own break beats another text's break by {z_x:.1f} s.e. {specific}"
    text = (f"transferred is closer than neutral by {z_t:.1f} s.e. (needs > {threshold:g}); "
            f"shuffled is closer than neutral by {z_s:.1f} s.e. (needs ≤ {threshold:g}): "
            f"the claim {'HOLDS' if holds else 'DOES NOT HOLD'} here. {own}")
    return holds, table, text


# ----------------------------------------------------------------------------- layer sweep
def layer_sweep(model: HookedModel, splits: Sequence[Split], cfg: PlanningConfig, points: Sequence[int],
                modes: Sequence[str] = ("up to L", "only L")) -> pd.DataFrame:
    """Transferred generation with the patch at layers ``0..L`` (``"up to L"``) or at ``L`` alone
    (``"only L"``) for each ``L`` in ``points``; tidy rows ``mode, layer, text, output``."""
    names = site_names(model, cfg.patch_site)
    values = break_activations(model, splits, names)
    neutral = neutral_rows(splits, cfg.neutral_prefix, model.tokenizer)
    sites = PATCH_SITES[cfg.patch_site]
    rows = []
    for mode in modes:
        for L in points:
            layers = range(L + 1) if mode == "up to L" else [L]
            keep = {n: values[n] for n in model.hook_names(sites, layers)}
            outs = generate_ids(model, neutral, cfg.max_new_tokens, cfg.temperature, cfg.seed, cfg.batch_size,
                                hooks=patch_hooks(keep, cfg.scale))
            rows += [{"mode": mode, "layer": L, "text": i, "output": o} for i, o in enumerate(outs)]
    return pd.DataFrame(rows)


def run_layer_sweep(model: HookedModel, ts: paragraphs.TextSet, cfg: PlanningConfig, points: Sequence[int] | None = None,
                    n_texts: int | None = None, embedder: str = "all-MiniLM-L6-v2", device: str = "cpu") -> pd.DataFrame:
    """:func:`layer_sweep` on the first ``n_texts`` texts (cached), scored; ``points`` default: about
    seven layers from the first to the last."""
    if points is None:
        points = sorted(set(np.linspace(0, model.cfg.n_layers - 1, 7).round().astype(int).tolist()))
    splits = ts.splits[:n_texts]
    params = dict(texts=texts_key(splits), cfg=asdict(cfg), points=list(points))
    raw = cached("paragraph-sweep", params, lambda: layer_sweep(model, splits, cfg, points), model=model)
    raw["condition"] = raw["mode"]
    return score(raw, splits, ts.topics_b[: len(splits)], ts.candidates, embedder, device, cfg.min_chars)


def sweep_summary(scored: pd.DataFrame) -> pd.DataFrame:
    """Mean distance ± s.e. per (mode, layer), with ``lo``/``hi`` = mean ∓ s.e."""
    g = scored.groupby(["mode", "layer"], sort=True)["distance"]
    out = g.agg(distance="mean", se="sem", n="count").reset_index()
    out["lo"], out["hi"] = out["distance"] - out["se"], out["distance"] + out["se"]
    return out


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
    """Attention around the break, averaged over texts, layers and heads.

    Returns ``(grid, to_break)``: ``grid`` has ``query_offset, key_offset, attention`` for offsets in
    ``[-window, window]`` relative to the last break token; ``to_break`` has, per query offset
    ``1..window`` after the break and per layer (and ``"mean"``), the attention paid to all break
    tokens together and, as a baseline, the mean attention that any query pays to the same number
    of consecutive tokens at the same distance.
    """
    w = window
    size = 2 * w + 1
    grid_sum, grid_n = np.zeros((size, size)), np.zeros((size, size))
    L = model.cfg.n_layers
    brk_sum, brk_n = np.zeros((L, w)), np.zeros((L, w))
    base_sum, base_n = np.zeros((L, w)), np.zeros((L, w))
    pad = model.tokenizer.pad_token_id or 0
    with eager_attention(model):
        for start in range(0, len(splits), batch_size):
            chunk = splits[start:start + batch_size]
            ids, mask = pad_rows([s.ids for s in chunk], pad, model.device, side="right")
            att = model.hf(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
            per_layer = torch.stack([a.float().mean(1) for a in att], 1).cpu().numpy()  # [b, L, q, k]
            for i, s in enumerate(chunk):
                n, p, k = len(s.ids), s.break_pos[-1], len(s.break_pos)
                a = per_layer[i, :, :n, :n]
                mean = a.mean(0)
                for qo in range(-w, w + 1):
                    q = p + qo
                    if not 0 <= q < n:
                        continue
                    ks = np.arange(max(p - w, 0), min(p + w, q) + 1)
                    grid_sum[qo + w, ks - p + w] += mean[q, ks]
                    grid_n[qo + w, ks - p + w] += 1
                for d in range(1, w + 1):
                    q = p + d
                    if q >= n:
                        break
                    brk_sum[:, d - 1] += a[:, q, s.break_pos].sum(-1)
                    brk_n[:, d - 1] += 1
                    qs = np.arange(d + k - 1, n)  # same number of consecutive keys, same distance
                    base_sum[:, d - 1] += sum(a[:, qs, qs - d - j] for j in range(k)).mean(-1)
                    base_n[:, d - 1] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        g = grid_sum / grid_n
        tb, bl = brk_sum / brk_n, base_sum / base_n
    offs = np.arange(-w, w + 1)
    grid = pd.DataFrame([{"query_offset": int(qo), "key_offset": int(ko), "attention": float(g[i, j])}
                         for i, qo in enumerate(offs) for j, ko in enumerate(offs) if np.isfinite(g[i, j])])
    rows = []
    for layer in [*range(L), "mean"]:
        t = tb.mean(0) if layer == "mean" else tb[layer]
        b = bl.mean(0) if layer == "mean" else bl[layer]
        rows += [{"layer": str(layer), "query_offset": d + 1, "to_break": float(t[d]), "baseline": float(b[d])}
                 for d in range(w) if np.isfinite(t[d])]
    return grid, pd.DataFrame(rows)


# ----------------------------------------------------------------------------- examples and charts
def examples(scored: pd.DataFrame, splits: Sequence[Split], texts: pd.DataFrame, which: Sequence[int],
             conditions: Sequence[str] = ("transferred", "neutral", "shuffled", "full")) -> str:
    """Markdown, one table per text: paragraph 1, the original paragraph 2 and each condition's output."""
    def cell(t: str) -> str:  # model text, shown literally: no HTML, emphasis, links or line breaks
        t = t.strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for ch in "\\|*_`[]#$":
            t = t.replace(ch, "\\" + ch)
        return t.replace("\n", " ⏎ ")

    blocks = []
    for i in which:
        row = texts.iloc[i]
        head = f"**Text {i}**" + (f": A = *{row.topic_a}*, B = *{row.topic_b}*" if "topic_a" in texts else "")
        lines = [head, "", "| | text | distance |", "|---|---|---|",
                 f"| paragraph 1 | {cell(splits[i].para1)} | |",
                 f"| **original paragraph 2** | {cell(splits[i].para2)} | 0 |"]
        for c in conditions:
            r = scored[(scored.text == i) & (scored.condition == c)]
            if len(r):
                lines.append(f"| {c} | {cell(r.iloc[0].paragraph)} | {r.iloc[0].distance:.2f} |")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def distance_chart(scored: pd.DataFrame, title: str = "") -> Any:
    """Per-condition violin of distances with every text as a point (tooltip: the output)."""
    import altair as alt

    df = scored[["text", "condition", "distance", "paragraph"]].copy()
    df["paragraph"] = df["paragraph"].str.slice(0, 160).str.replace(r"[\x00-\x08\x0b-\x1f\x7f]", "", regex=True)
    order = _condition_order(list(df.condition.unique()))
    violin = alt.Chart(df).transform_density(
        "distance", as_=["distance", "density"], groupby=["condition"], extent=[0, 1.2]
    ).mark_area(orient="horizontal", opacity=0.35).encode(
        y=alt.Y("distance:Q", title="cosine distance to the original paragraph 2"),
        x=alt.X("density:Q", stack="center", axis=None, title=None),
        color=alt.Color("condition:N", sort=order, legend=None),
    )
    points = alt.Chart(df).mark_circle(size=22, opacity=0.7).encode(
        y="distance:Q", x=alt.X("jitter:Q", axis=None, title=None),
        color=alt.Color("condition:N", sort=order, legend=None),
        tooltip=["condition:N", "text:Q", alt.Tooltip("distance:Q", format=".3f"), "paragraph:N"],
    ).transform_calculate(jitter="(random() - 0.5) * 0.6")
    return alt.layer(violin, points, data=df).properties(width=90, height=300).facet(
        column=alt.Column("condition:N", sort=order, title=title or None)
    ).resolve_scale(x="independent")


def sweep_chart(summary: pd.DataFrame, refs: dict[str, float] | None = None, title: str = "") -> Any:
    """Distance (± s.e. band) against the patched layer, one line per mode; dashed reference levels."""
    import altair as alt

    base = alt.Chart(summary)
    enc = dict(x=alt.X("layer:Q", title="layer L", axis=alt.Axis(format="d", tickMinStep=1)),
               color=alt.Color("mode:N", title="patched layers"))
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("lo:Q", title="cosine distance to the original"), y2="hi:Q", **enc)
    line = base.mark_line(point=True).encode(
        y="distance:Q", tooltip=["mode:N", "layer:Q", alt.Tooltip("distance:Q", format=".3f"),
                                 alt.Tooltip("se:Q", format=".3f"), "n:Q"], **enc)
    layers = [band, line]
    if refs:
        r = pd.DataFrame({"reference": list(refs), "distance": list(refs.values())})
        layers.append(alt.Chart(r).mark_rule(strokeDash=[5, 3], color="#555").encode(
            y="distance:Q", tooltip=["reference:N", alt.Tooltip("distance:Q", format=".3f")]))
        layers.append(alt.Chart(r).mark_text(align="left", dx=3, dy=-6, color="#555").encode(
            x=alt.value(2), y="distance:Q", text="reference:N"))
    return alt.layer(*layers).properties(title=title, width=520, height=280)


def attention_charts(grid: pd.DataFrame, to_break: pd.DataFrame, title: str = "") -> Any:
    """Left: mean attention map around the break (query × key offset). Right: attention that tokens
    after the break pay to it vs. the mean attention to as many consecutive tokens at the same distance."""
    import altair as alt

    heat = alt.Chart(grid).mark_rect().encode(
        x=alt.X("key_offset:O", title="key offset from the break"),
        y=alt.Y("query_offset:O", title="query offset from the break", sort="ascending"),
        color=alt.Color("attention:Q", scale=alt.Scale(type="sqrt", scheme="viridis"), title="attention"),
        tooltip=["query_offset:O", "key_offset:O", alt.Tooltip("attention:Q", format=".4f")],
    ).properties(width=300, height=300, title="mean attention (layers, heads, texts)")
    mean = to_break[to_break.layer == "mean"].melt(["layer", "query_offset"], ["to_break", "baseline"],
                                                   var_name="key", value_name="attention")
    mean["key"] = mean["key"].map({"to_break": "the break token(s)", "baseline": "as many tokens at that distance"})
    line = alt.Chart(mean).mark_line(point=True).encode(
        x=alt.X("query_offset:Q", title="tokens after the break"),
        y=alt.Y("attention:Q", title="attention (mean over layers, heads)", scale=alt.Scale(type="log")),
        color=alt.Color("key:N", title="attention to"),
        tooltip=["key:N", "query_offset:Q", alt.Tooltip("attention:Q", format=".4f")],
    ).properties(width=300, height=300, title="attention to the break from later tokens")
    return alt.hconcat(heat, line).properties(title=title)


def attention_by_layer(to_break: pd.DataFrame) -> pd.DataFrame:
    """Per layer: mean attention to the break (over the window's queries) and its ratio to the baseline."""
    d = to_break[to_break.layer != "mean"].copy()
    g = d.groupby("layer", sort=False)[["to_break", "baseline"]].mean()
    g["ratio"] = g["to_break"] / g["baseline"]
    g.index = g.index.astype(int)
    return g.sort_index()
