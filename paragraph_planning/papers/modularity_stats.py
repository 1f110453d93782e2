"""Task statistics for paper 3: mean ``|x|`` of every FF neuron, per block of whole documents (or images).

A task's neuron set is built from the mean absolute activation of every FF neuron
(``mlp.pre_out``) on the task and on a retain reference. To put intervals on anything built from
those means (bootstrap over documents), and to have a null and a ceiling for overlaps, the
statistics are kept per **block**: a block is a fixed group of whole documents (text) or images,
so resampling blocks resamples documents. Sources:

* **text task**: ``docs_per_task`` training documents of the task's forget pool, one row of at
  most ``doc_tokens`` tokens each (a random piece of a long document, from its start), split
  into two **halves** of different documents (the split-half ceiling compares them), each cut
  into ``n_blocks`` blocks;
* **retain reference**: ``retain_docs`` documents of the retain pool (the retain mix), in
  ``n_blocks`` blocks: every text task and every pseudo-task is scored against it;
* **pseudo-tasks** (the null): ``null_tasks`` further groups of retain-pool documents, disjoint
  from the reference and from each other, each as large as a task half;
* **image class**: ``images_per_class`` training images of one Fashion-MNIST class in two halves;
  image pseudo-tasks take the same number of images of every class from images no class uses.

Each source is ``{"sums": float32 [halves, n_blocks, n_layers, d_mlp], "counts": [halves, n_blocks],
"docs": [halves, n_blocks]}`` (``sums`` of ``|x|`` over the block's tokens or class-token positions).
Statistics come from :func:`~paragraph_planning.core.statistics.collect_stats` and are cached per
source (adding a task collects only that task). This module imports little, so its cache keys
survive edits to the analyses.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch

from ..cache import cached
from ..core.hooks import HookedModel
from ..data.tasks import RETAIN_CORPORA, Task, retain_texts

SITE = "mlp.pre_out"
IMAGE_BATCH = 250
Positions = Literal["cls", "all"]
POSITION_POLICIES: tuple[str, ...] = ("cls", "all")


def _check(name: str, value: Any, low: float, kind: type = int) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'} >= {low}, got {value!r}.")


@dataclass(frozen=True)
class SampleConfig:
    """What the task statistics are collected on (text and images); validated on creation.

    ``docs_per_task`` documents per text task (both halves together; fewer if the task's forget
    pool holds fewer), ``doc_tokens`` tokens per document, ``retain_docs`` documents in the retain
    reference, ``null_tasks`` pseudo-tasks (each as large as a task half), ``n_blocks`` blocks per
    half (the bootstrap resamples blocks), ``images_per_class`` training images per class (both
    halves), ``positions``: where a ViT's statistics are taken (:func:`~paragraph_planning.data.images.image_positions`:
    ``"cls"``, the class token, as in chapter 04, or ``"all"``), ``retain``: the corpora of the
    retain mix.
    """

    docs_per_task: int = 128
    doc_tokens: int = 64
    retain_docs: int = 256
    null_tasks: int = 4
    n_blocks: int = 8
    batch_size: int = 32
    images_per_class: int = 400
    positions: Positions = "cls"
    retain: tuple[str, ...] = RETAIN_CORPORA
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("n_blocks", 1), ("docs_per_task", 2 * self.n_blocks), ("doc_tokens", 2),
                          ("retain_docs", self.n_blocks), ("null_tasks", 2), ("batch_size", 1),
                          ("images_per_class", 2 * self.n_blocks), ("seed", 0)):
            _check(name, getattr(self, name), low)
        if self.positions not in POSITION_POLICIES:
            raise ValueError(f"positions must be one of {', '.join(POSITION_POLICIES)}; got {self.positions!r}.")
        if isinstance(self.retain, str) or not self.retain:
            raise ValueError(f"retain must be a non-empty list of corpus names, got {self.retain!r}.")
        object.__setattr__(self, "retain", tuple(self.retain))

    @property
    def half_docs(self) -> int:
        """Documents in one half of a task (and in one pseudo-task)."""
        return self.docs_per_task // 2

    def text_params(self) -> dict[str, Any]:
        """The fields text statistics depend on (cache parameters)."""
        return {k: v for k, v in asdict(self).items() if k not in ("images_per_class", "positions", "batch_size")}

    def image_params(self) -> dict[str, Any]:
        """The fields image statistics depend on (cache parameters)."""
        return {k: getattr(self, k) for k in ("images_per_class", "null_tasks", "n_blocks", "positions", "seed")}


@dataclass
class ModelRef:
    """A model named by what identifies it (for cache keys), loaded on first :meth:`get` only."""

    name: str
    random_init: bool = False
    seed: int = 0
    device: str | None = None
    _model: HookedModel | None = field(default=None, init=False, repr=False, compare=False)

    def fingerprint(self) -> dict[str, Any]:
        """The loaded model's fingerprint (what cache keys hold; loading takes seconds from the cache folder)."""
        return self.get().fingerprint()

    @property
    def label(self) -> str:
        return "random init" if self.random_init else "trained"

    def get(self) -> HookedModel:
        if self._model is None:
            from ..core.models import load_model

            self._model = load_model(self.name, random_init=self.random_init, seed=self.seed, device=self.device)
        return self._model


# ============================================================================ documents and rows
def _documents(pieces: Any) -> dict[str, list[str]]:
    """``{document id: [piece texts]}`` of a chunked dataset (ids ``doc#k``), in order of first appearance."""
    docs: dict[str, list[str]] = {}
    for i, text in zip(pieces["id"], pieces["text"]):
        if text and text.strip():
            docs.setdefault(i.rsplit("#", 1)[0], []).append(text)
    return docs


def document_rows(pieces: Any, tokenizer: Any, n_docs: int, doc_tokens: int, seed: int = 0,
                  skip: int = 0) -> list[list[int]]:
    """Token rows, one per document: ``n_docs`` documents in a seeded order (after the first ``skip``).

    Each row is the start of one randomly chosen piece of the document, at most ``doc_tokens``
    tokens, with the tokenizer's own special tokens (bos for Gemma, none for SmolLM2). Fewer rows
    come back when the dataset holds fewer documents.
    """
    docs = _documents(pieces)
    ids = sorted(docs)
    rng = random.Random(seed)
    rng.shuffle(ids)
    chosen = ids[skip:skip + n_docs]
    texts = [docs[d][rng.randrange(len(docs[d]))] for d in chosen]
    if not texts:
        return []
    enc = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=doc_tokens, verbose=False)
    return [list(r) for r in enc["input_ids"] if len(r) > 1]


def _padded(rows: Sequence[Sequence[int]], pad: int) -> dict[str, Any]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def split_blocks(n: int, n_halves: int, n_blocks: int) -> np.ndarray:
    """``[n]`` flat block index ``half * n_blocks + block`` of ``n`` units taken in order (halves alternate)."""
    i = np.arange(n)
    return (i % n_halves) * n_blocks + (i // n_halves) % n_blocks


# ============================================================================ block statistics
@torch.no_grad()
def block_sums(model: HookedModel, batches: Sequence[tuple[dict[str, Any] | torch.Tensor, torch.Tensor]], n_blocks: int,
               positions: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of ``|x|`` at ``mlp.pre_out`` per block ``[n_blocks, n_layers, d_mlp]`` (float64) and tokens per block.

    ``batches``: ``(inputs, block)`` pairs, ``inputs`` a dict of model inputs (its ``attention_mask``
    marks the tokens that count) or a pixel tensor, ``block`` ``[batch]`` the block of each row.
    ``positions``: only these positions count (e.g. ``[0]``, a ViT's class token). One pass over
    the data however many blocks: each row's sum is added to its block. The per-block form of
    :func:`~paragraph_planning.core.statistics.collect_stats`'s ``mean_abs``, which pools every row.
    """
    names = model.hook_names(SITE)
    sums = torch.zeros(n_blocks, len(names), model.cfg.n_neurons(SITE), dtype=torch.float64)
    counts = torch.zeros(n_blocks, dtype=torch.float64)
    now: dict[str, Any] = {}

    def hook_for(i: int) -> Any:
        def fn(act: torch.Tensor, *, hook: Any) -> None:
            a = act.detach() if positions is None else act.detach()[:, list(positions)]
            mask = now["mask"]
            if mask is None:  # images: every position of this call counts
                mask = torch.ones(a.shape[:2], device=a.device)
            elif positions is not None:
                mask = mask[:, list(positions)]
            per_row = torch.einsum("bp,bpn->bn", mask.to(a.dtype), a.abs())
            sums[:, i].index_add_(0, now["block"], per_row.double().cpu())
            if i == 0:
                counts.index_add_(0, now["block"], mask.sum(1).double().cpu())

        return fn

    with model.hooks([(n, hook_for(i)) for i, n in enumerate(names)]):
        for inputs, block in batches:
            now["block"] = block
            if isinstance(inputs, torch.Tensor):
                now["mask"] = None
                model.run_body(inputs.to(model.device))  # blocks only: the sums need no logits
            else:
                now["mask"] = inputs["attention_mask"].to(model.device)
                model.run_body(**{k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
    return sums, counts


def _pack(sums: torch.Tensor, counts: torch.Tensor, docs: np.ndarray, n_halves: int, n_blocks: int) -> dict[str, torch.Tensor]:
    return {"sums": sums.float().view(n_halves, n_blocks, *sums.shape[1:]), "counts": counts.view(n_halves, n_blocks),
            "docs": torch.from_numpy(np.bincount(docs, minlength=n_halves * n_blocks)).view(n_halves, n_blocks)}


def text_block_stats(model: HookedModel, rows: Sequence[Sequence[int]], n_halves: int, n_blocks: int,
                     batch_size: int) -> dict[str, torch.Tensor]:
    """Block statistics of token rows (one per document), halves alternating, blocks in order (:func:`split_blocks`)."""
    if len(rows) < n_halves * n_blocks:
        raise ValueError(f"{len(rows)} documents cannot fill {n_halves} x {n_blocks} blocks; use fewer blocks "
                         "or a task with more documents.")
    block = torch.from_numpy(split_blocks(len(rows), n_halves, n_blocks))
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    batches = [(_padded(rows[i:i + batch_size], pad), block[i:i + batch_size])
               for i in range(0, len(rows), batch_size)]
    sums, counts = block_sums(model, batches, n_halves * n_blocks)
    return _pack(sums, counts, block.numpy(), n_halves, n_blocks)


def image_block_stats(model: HookedModel, images: np.ndarray, n_halves: int, n_blocks: int, batch_size: int,
                      positions: Sequence[int] | None) -> dict[str, torch.Tensor]:
    """Block statistics of ``uint8`` images ``[n, 28, 28]``, halves alternating, blocks in order."""
    from ..data.images import pixel_processor

    if len(images) < n_halves * n_blocks:
        raise ValueError(f"{len(images)} images cannot fill {n_halves} x {n_blocks} blocks.")
    proc = pixel_processor(model)
    block = torch.from_numpy(split_blocks(len(images), n_halves, n_blocks))
    batches = [(proc(images[i:i + batch_size]), block[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    sums, counts = block_sums(model, batches, n_halves * n_blocks, positions)
    return _pack(sums, counts, block.numpy(), n_halves, n_blocks)


# ============================================================================ cached sources
def text_task_stats(ref: Any, task: Task, cfg: SampleConfig) -> dict[str, torch.Tensor]:
    """Block statistics ``[2 halves, n_blocks, ...]`` of one text task's forget-pool documents (cached)."""
    def compute() -> dict[str, torch.Tensor]:
        model = ref.get()
        rows = document_rows(task.pieces("train", "forget"), model.tokenizer, cfg.docs_per_task, cfg.doc_tokens,
                             seed=cfg.seed)
        rows = rows[:len(rows) - len(rows) % 2]  # equal halves
        return text_block_stats(model, rows, 2, cfg.n_blocks, cfg.batch_size)

    return cached("modularity-block-stats", {"task": asdict(task), **cfg.text_params()}, compute, model=ref)


def text_reference_stats(ref: Any, cfg: SampleConfig) -> dict[str, dict[str, torch.Tensor]]:
    """The retain reference ``[1, n_blocks, ...]`` and the pseudo-tasks ``[null_tasks, n_blocks, ...]`` (cached).

    Both come from the retain pool of ``cfg.retain``: the reference takes the first
    ``retain_docs`` documents of a seeded order, pseudo-task ``j`` the next ``half_docs``
    documents after the previous one, so all are disjoint.
    """
    def compute() -> dict[str, dict[str, torch.Tensor]]:
        model = ref.get()
        pool = retain_texts(cfg.retain)
        rows = document_rows(pool, model.tokenizer, cfg.retain_docs + cfg.null_tasks * cfg.half_docs,
                             cfg.doc_tokens, seed=cfg.seed)
        need = cfg.retain_docs + cfg.null_tasks * cfg.half_docs
        if len(rows) < need:
            raise ValueError(f"The retain pool holds {len(rows)} usable documents, fewer than the {need} needed "
                             f"(retain_docs + null_tasks x docs_per_task / 2).")
        reference = text_block_stats(model, rows[:cfg.retain_docs], 1, cfg.n_blocks, cfg.batch_size)
        nulls = [text_block_stats(model, rows[cfg.retain_docs + j * cfg.half_docs:
                                              cfg.retain_docs + (j + 1) * cfg.half_docs], 1, cfg.n_blocks,
                                  cfg.batch_size) for j in range(cfg.null_tasks)]
        return {"reference": reference, "null": {k: torch.cat([n[k] for n in nulls]) for k in nulls[0]}}

    return cached("modularity-block-stats", {"reference": True, **cfg.text_params()}, compute, model=ref)


def class_images(split: str, per_class: int, seed: int = 0, skip: int = 0) -> dict[str, np.ndarray]:
    """``{class: uint8 [n, 28, 28]}``: ``per_class`` Fashion-MNIST images per class of a seeded order, after ``skip``."""
    from ..data.images import FASHION_CLASSES, images_array, labels_array, load_fashion_mnist

    ds = load_fashion_mnist(split)
    images, labels = images_array(ds), labels_array(ds)
    rng = np.random.default_rng(seed)
    return {c: images[rng.permutation(np.flatnonzero(labels == i))[skip:skip + per_class]]
            for i, c in enumerate(FASHION_CLASSES)}


def image_class_stats(ref: Any, cfg: SampleConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Block statistics per Fashion-MNIST class ``[2, n_blocks, ...]`` and of the image pseudo-tasks (cached).

    Pseudo-task ``j`` holds ``images_per_class / 20`` further images of every class (as many as a
    class half in all), from images no class source uses.
    """
    from ..data.images import image_positions

    positions = image_positions(cfg.positions)

    def compute() -> dict[str, dict[str, torch.Tensor]]:
        model = ref.get()
        per_class = class_images("train", cfg.images_per_class, cfg.seed)
        out = {c: image_block_stats(model, imgs, 2, cfg.n_blocks, IMAGE_BATCH, positions) for c, imgs in per_class.items()}
        share = max(cfg.n_blocks, cfg.images_per_class // (2 * len(per_class)))
        extra = class_images("train", share * cfg.null_tasks, cfg.seed, skip=cfg.images_per_class)
        nulls = []
        for j in range(cfg.null_tasks):
            imgs = np.concatenate([v[j * share:(j + 1) * share] for v in extra.values()])
            imgs = imgs[np.random.default_rng(cfg.seed + j).permutation(len(imgs))]
            nulls.append(image_block_stats(model, imgs, 1, cfg.n_blocks, IMAGE_BATCH, positions))
        return {"classes": out, "null": {k: torch.cat([n[k] for n in nulls]) for k in nulls[0]}}

    return cached("modularity-block-stats", {"images": True, **cfg.image_params()}, compute, model=ref)
