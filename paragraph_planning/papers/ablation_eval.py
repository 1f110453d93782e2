"""Evaluating ablations unit by unit (paper 2): evaluation units, resample sources, per-unit subsets, scores.

A **unit** is one evaluation row of token ids (language models) or one image (classifiers). Each
unit gets its *own* random neuron order (and, for resampling, its own random source input), so
units are independent replicates of (text or image, neuron subset, resample source): an interval
over units covers the evaluation noise and the subset/source ("seed") noise at once, with as many
degrees of freedom as there are units. Within a unit every method and fraction uses the same
order and source, so comparisons between methods are paired, and subsets grow cumulatively.

Per chunk of units the work that does not depend on the condition is done once: the clean forward
pass (the reference score of each unit) and the clean activations of the resample sources; then
every (method, fraction, layer) condition is one batched forward pass with per-unit masks.

Example::

    task = lm_task(rows)                                   # rows [units, seq]
    ranks = unit_ranks({name: 576 for name in names}, task.n_units, seed=0)
    df = evaluate_units(model, task, values, ranks, [("zero", 0.5, -1)], sources=None, batch_size=8)
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.architectures import layer_of
from ..core.evaluation import classification_metrics
from ..core.hooks import HookedModel
from ..core.interventions import mask_fn
from ..data import corpora, images

RESAMPLE_SOURCES: tuple[str, ...] = ("corpus", "tokens", "images", "pixels")
"""Where resampled activations come from: other text, random token ids, other images, random pixels."""
ALL_LAYERS = -1
"""The ``layer`` of a condition that ablates every layer at once."""


def tensor_digest(*tensors: torch.Tensor | None) -> str:
    """A short content hash of tensors (shape, dtype and values): identifies data in cache keys."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none|")
            continue
        a = t.detach().cpu().contiguous()
        h.update(f"{tuple(a.shape)}{a.dtype}|".encode())
        h.update(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()[:16]


# ============================================================================ units
@dataclass(frozen=True)
class EvalTask:
    """Evaluation units and how to score them.

    ``kind="lm"``: ``inputs`` are token ids ``[units, seq]``; a unit's metrics are its mean
    next-token ``loss`` (nats), ``top1`` and ``top10`` over its ``seq − 1`` targets.
    ``kind="image"``: ``inputs`` are pixels ``[units, c, h, w]`` with ``labels`` ``[units]``; metrics
    ``loss`` (cross-entropy), ``top1`` and ``top5`` of each image.
    """

    kind: str
    inputs: torch.Tensor
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("lm", "image"):
            raise ValueError(f"Unknown task kind {self.kind!r}. Valid: lm, image.")
        if self.kind == "image" and (self.labels is None or len(self.labels) != len(self.inputs)):
            raise ValueError("An image task needs one label per image.")
        if self.kind == "lm" and (self.inputs.dim() != 2 or self.inputs.shape[1] < 2):
            raise ValueError(f"LM inputs must be token ids [units, seq >= 2], got {tuple(self.inputs.shape)}.")

    @property
    def n_units(self) -> int:
        """Number of units (rows or images)."""
        return int(self.inputs.shape[0])

    @property
    def unit_size(self) -> int:
        """Scored items per unit: next-token targets per row, or 1 per image."""
        return int(self.inputs.shape[1] - 1) if self.kind == "lm" else 1

    def key(self) -> str:
        """A content hash (cache keys)."""
        return f"{self.kind}-{tensor_digest(self.inputs, self.labels)}"


def lm_task(rows: torch.Tensor) -> EvalTask:
    """An LM task from token ids ``[units, seq]`` (or ``[n_batches, batch, seq]``, flattened to rows)."""
    return EvalTask("lm", rows.reshape(-1, rows.shape[-1]).long())


def image_task(pixels: torch.Tensor, labels: torch.Tensor) -> EvalTask:
    """An image-classification task from pixels ``[units, c, h, w]`` and labels ``[units]``."""
    return EvalTask("image", pixels, torch.as_tensor(labels).long())


def text_inputs(model: HookedModel, ref_corpus: str, eval_corpus: str, stat_tokens: int, eval_tokens: int,
                seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids for an ablation run: ``reference`` batches ``[n, 8, seq]`` (train split, for the
    statistics), ``eval`` rows ``[ceil(eval_tokens / seq), seq]`` (test split) and a ``pool`` of
    reference rows (train split, another draw) for the ``"corpus"`` resample source."""
    tok = model.tokenizer
    ref = corpora.token_batches(ref_corpus, tok, stat_tokens, seq_len=seq_len, split="train", seed=seed)
    rows = corpora.token_batches(eval_corpus, tok, eval_tokens, seq_len=seq_len, batch_size=1, split="test", seed=seed)
    pool = corpora.token_batches(ref_corpus, tok, eval_tokens, seq_len=seq_len, batch_size=1, split="train", seed=seed + 1)
    return {"reference": ref, "eval": rows.reshape(-1, seq_len), "pool": pool.reshape(-1, seq_len)}


def image_inputs(model: HookedModel, source: str, n: int, split: str, seed: int = 0,
                 raw: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (the first ``n`` of Fashion-MNIST's ``split``, or random images and labels for
    ``source="random"``) through the model's pixel processor, with labels. ``raw``: uint8 ``[n, 28, 28]``."""
    if source not in ("fashion-mnist", "random"):
        raise ValueError(f"Unknown image source {source!r}. Valid: fashion-mnist, random.")
    if source == "random":
        g = torch.Generator().manual_seed(seed + (0 if split == "train" else 1))
        grey = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, int(model.hf.config.num_labels), (n,), generator=g)
    else:
        ds = images.load_fashion_mnist(split).select(range(n))
        grey, labels = torch.tensor(images.images_array(ds)), torch.tensor(images.labels_array(ds))
    return (grey if raw else images.pixel_processor(model)(grey)), labels.long()


# ============================================================================ neuron orders
def _site_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


def unit_ranks(sizes: Mapping[str, int], n_units: int, seed: int) -> dict[str, torch.Tensor]:
    """Each unit's random order of each site's neurons, as ranks ``{name: [n_units, n_neurons]}``.

    Neuron ``j`` of unit ``u`` is ablated at fraction ``f`` when ``ranks[name][u, j] <
    n_ablated(n, f)``: the subsets grow cumulatively without replacement. Site ``name``'s orders come
    from a generator seeded by ``seed`` and the name, one row of uniforms per unit, so a unit's order
    depends neither on the other sites nor on how many units follow it.
    """
    out = {}
    for name, n in sizes.items():
        u = torch.rand(n_units, n, generator=torch.Generator().manual_seed(_site_seed(seed, name)))
        out[name] = u.argsort(1).argsort(1).to(torch.int32)
    return out


def n_ablated(n: int, frac: float) -> int:
    """Neurons ablated at fraction ``frac`` of ``n``: ``round(frac·n)`` (halves up), within ``[0, n]``."""
    if not 0 <= frac <= 1 + 1e-9:
        raise ValueError(f"frac must lie in [0, 1], got {frac}.")
    return min(n, int(np.floor(frac * n + 0.5)))


def unit_keep(ranks: torch.Tensor, frac: float) -> torch.Tensor:
    """Keep-masks ``[units, 1, n]`` (1 keeps, 0 ablates) for ``ranks`` ``[units, n]`` at ``frac``:
    shaped to broadcast over positions in :func:`~paragraph_planning.core.interventions.mask_fn`."""
    return (ranks >= n_ablated(ranks.shape[1], frac)).float()[:, None, :]


# ============================================================================ resampling
@dataclass(frozen=True)
class Resampler:
    """Builds each unit's source input, whose clean activations replace the ablated ones.

    ``source``: ``"corpus"``/``"images"`` draw rows of ``pool`` (token ids ``[R, seq]`` or pixels
    ``[N, c, h, w]``) at random; ``"tokens"`` draws ids uniformly from ``[0, vocab_size)`` (a row
    that starts with ``bos_id`` keeps it, so position 0 stays the attention sink); ``"pixels"``
    draws uniform grey levels 0–255 on 28×28 and passes them through ``processor``.
    """

    source: str
    pool: torch.Tensor | None = None
    vocab_size: int | None = None
    bos_id: int | None = None
    processor: Callable[[Any], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.source not in RESAMPLE_SOURCES:
            raise ValueError(f"Unknown resample source {self.source!r}. Valid: {', '.join(RESAMPLE_SOURCES)}.")
        need = {"corpus": "pool", "images": "pool", "tokens": "vocab_size", "pixels": "processor"}[self.source]
        if getattr(self, need) is None:
            raise ValueError(f"Resample source {self.source!r} needs {need}.")

    def key(self) -> str:
        """What the sources depend on (cache keys)."""
        proc = repr(self.processor) if self.source == "pixels" else ""
        return f"{self.source}-{tensor_digest(self.pool)}-{self.vocab_size}-{self.bos_id}-{proc}"

    def sources(self, task: EvalTask, seed: int) -> torch.Tensor:
        """One source input per unit of ``task`` (shaped like its inputs), drawn with ``seed``;
        unit ``u``'s source does not depend on how many units follow it."""
        like = task.inputs
        g = torch.Generator().manual_seed(int(seed) * 100_003 + 17)
        if self.source in ("corpus", "images"):
            pool = self.pool
            if pool.shape[1:] != like.shape[1:]:  # type: ignore[union-attr]
                raise ValueError(f"Resample pool rows {tuple(pool.shape[1:])} differ from inputs {tuple(like.shape[1:])}.")  # type: ignore[union-attr]
            return pool[torch.randint(len(pool), (len(like),), generator=g)]  # type: ignore[arg-type, index]
        if self.source == "tokens":
            ids = torch.randint(int(self.vocab_size), tuple(like.shape), generator=g)  # type: ignore[arg-type]
            if self.bos_id is not None:
                ids[:, 0] = torch.where(like[:, 0] == self.bos_id, like[:, 0], ids[:, 0])
            return ids
        grey = torch.randint(0, 256, (len(like), 28, 28), generator=g, dtype=torch.uint8)
        return self.processor(grey)  # type: ignore[misc]


# ============================================================================ scoring
@torch.no_grad()
def score_units(model: HookedModel, task: EvalTask, x: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
    """Per-unit metrics of one forward pass on ``x`` (hooks active around the call apply)."""
    logits = model(x)
    if task.kind == "image":
        m = classification_metrics(logits, labels)  # type: ignore[arg-type]
        k = next(key for key in m if key not in ("top1", "loss"))
        return {"loss": m["loss"].double().numpy(), "top1": m["top1"].double().numpy(), "top5": m[k].double().numpy()}
    lg = logits[:, :-1].float()
    target = x[:, 1:].to(lg.device)
    target_logit = lg.gather(-1, target[..., None])
    loss = torch.logsumexp(lg, -1) - target_logit[..., 0]
    rank = (lg > target_logit).sum(-1)
    return {"loss": loss.double().mean(1).cpu().numpy(), "top1": (rank < 1).double().mean(1).cpu().numpy(),
            "top10": (rank < 10).double().mean(1).cpu().numpy()}


Condition = tuple[str, float, int]
"""``(method, frac, layer)``: ablate ``frac`` of each site of ``layer`` (:data:`ALL_LAYERS`: every layer)."""


@torch.no_grad()
def evaluate_units(model: HookedModel, task: EvalTask, values: Mapping[str, Mapping[str, torch.Tensor]],
                   ranks: Mapping[str, torch.Tensor], conditions: Sequence[Condition], sources: torch.Tensor | None,
                   batch_size: int = 8, progress: bool = False) -> pd.DataFrame:
    """Score every unit of ``task`` under every condition; one row per (condition, unit).

    ``values[method][name]``: the constant replacement of each neuron (constant methods);
    ``sources``: each unit's resample source input (needed when a condition's method is
    ``"resample"``); ``ranks``: :func:`unit_ranks` of the ablated sites. Columns: ``method, frac,
    layer, unit``, the unit's metrics and its clean metrics (``clean_loss``, ``clean_top1``, ...);
    rows in the order of ``conditions``, then units (whatever the batch size).
    """
    names = list(ranks)
    by_layer: dict[int, list[str]] = {}
    for n in names:
        by_layer.setdefault(layer_of(n), []).append(n)
    if any(c[0] == "resample" for c in conditions) and sources is None:
        raise ValueError("A resample condition needs the units' source inputs.")
    from tqdm.auto import tqdm

    parts: list[pd.DataFrame] = []
    bar = tqdm(total=task.n_units * len(conditions), disable=not progress, desc=f"ablation {model.name}")
    for start in range(0, task.n_units, batch_size):
        idx = slice(start, min(task.n_units, start + batch_size))
        x = task.inputs[idx]
        labels = None if task.labels is None else task.labels[idx]
        clean = score_units(model, task, x, labels)
        src: dict[str, torch.Tensor] = {}
        if sources is not None and any(c[0] == "resample" for c in conditions):
            with model.record(names) as rec:
                model(sources[idx])
            src = {n: rec[n] for n in names}
        units = np.arange(idx.start, idx.stop)
        for i, (method, frac, layer) in enumerate(conditions):
            hooks = []
            for name in (names if layer == ALL_LAYERS else by_layer[layer]):
                keep = unit_keep(ranks[name][idx], frac)
                if bool((keep < 1).any()):
                    hooks.append((name, mask_fn(keep, src[name] if method == "resample" else values[method][name])))
            with model.hooks(hooks):
                r = score_units(model, task, x, labels)
            parts.append(pd.DataFrame({"condition": i, "method": method, "frac": float(frac), "layer": int(layer),
                                       "unit": units, **r, **{f"clean_{k}": v for k, v in clean.items()}}))
            bar.update(len(units))
    bar.close()
    out = pd.concat(parts, ignore_index=True).sort_values(["condition", "unit"], kind="stable")
    return out.drop(columns="condition").reset_index(drop=True)
