"""The data of an unlearning experiment: a forget task and a retain task, for statistics and evaluation.

A *pair* holds one forget/retain split:

* :func:`text_pair`: two text tasks for a language model, tokenised into collection batches (train
  split) and evaluation rows (test split). A task is a corpus name with an optional label filter:
  ``"python-code"``, ``"wiki-en:Mathematics"`` (one wiki topic), ``"wiki-en:!Mathematics"`` (every
  other topic), ``"bbc:sport,tech"`` (see :class:`~paragraph_planning.data.tasks.Task`). Forget and
  retain documents must not overlap.
* :func:`image_pair`: one image class to forget, the other classes to retain (Fashion-MNIST).

Evaluation *units* are what intervals resample: a row of ``seq_len`` tokens for text, an image for
images. ``pair.params`` holds everything that defines the pair (it joins every cache key).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..core.hooks import HookedModel
from ..data.corpora import line_pieces
from ..data.images import image_positions


@dataclass
class TextPair:
    """Token batches ``[n_batches, batch, seq]`` of a forget and a retain text task.

    ``*_collect`` come from the train split (statistics), ``*_eval`` from the test split; ``*_skip``
    are the 50 most common targets of each evaluation set (left out by the ``skip50`` metrics).
    """

    forget: str
    retain: str
    forget_collect: torch.Tensor
    retain_collect: torch.Tensor
    forget_eval: torch.Tensor
    retain_eval: torch.Tensor
    forget_skip: torch.Tensor
    retain_skip: torch.Tensor
    params: dict[str, Any] = field(default_factory=dict)

    def units(self, side: str) -> int:
        """Evaluation rows of one side."""
        return int(getattr(self, f"{side}_eval").reshape(-1, self.params["seq_len"]).shape[0])


def pieces(texts: Sequence[str], max_chars: int) -> list[str]:
    """Every text cut at line ends into pieces of at most about ``max_chars`` characters (:func:`~.data.line_pieces`)."""
    return [p for t in texts for p in line_pieces(t, max_chars)]


def text_pair(
    tokenizer: Any, forget: str, retain: str, collect_tokens: int = 16_384, eval_tokens: int = 8_192,
    seq_len: int = 256, batch_size: int = 8, seed: int = 0, piece_chars: int | None = 1000,
) -> TextPair:
    """Collection (train split) and evaluation (test split) batches of two disjoint text tasks.

    ``piece_chars``: documents are cut into pieces of about this many characters (see :func:`pieces`),
    which are shuffled with ``seed`` and joined with the eos token; None uses whole documents.
    """
    from datasets import Dataset

    from ..core.evaluation import most_common_tokens
    from ..data.corpora import token_batches
    from ..data.tasks import Task, check_disjoint

    tasks = {"forget": Task.parse(forget), "retain": Task.parse(retain)}
    check_disjoint(tasks["forget"], tasks["retain"])
    out: dict[str, torch.Tensor] = {}
    for side, task in tasks.items():
        for part, split, n in (("collect", "train", collect_tokens), ("eval", "test", eval_tokens)):
            docs = task.documents(split)
            if piece_chars:
                docs = Dataset.from_dict({"text": pieces(docs["text"], piece_chars)})
            out[f"{side}_{part}"] = token_batches(docs, tokenizer, n, seq_len, min(batch_size, -(-n // seq_len)),
                                                  seed=seed)
        out[f"{side}_skip"] = most_common_tokens(out[f"{side}_eval"])
    params = dict(forget=forget, retain=retain, collect_tokens=collect_tokens, eval_tokens=eval_tokens,
                  seq_len=seq_len, batch_size=batch_size, seed=seed, piece_chars=piece_chars)
    return TextPair(forget, retain, **out, params=params)


@dataclass
class ImagePair:
    """Pixel batches of one class to forget and the others to retain, plus the evaluation images.

    ``classes``: the classes the model predicts (a prefix of the data set's classes);
    ``forget_collect``/``retain_collect``: lists of ``[batch, channels, h, w]`` from the train split;
    ``eval_pixels``/``eval_labels``: the test images of ``classes`` ``[n, channels, h, w]`` and their labels;
    ``positions``: where statistics are collected, ``"cls"`` (the class token, position 0) or ``"all"``.
    """

    forget: str
    classes: tuple[str, ...]
    forget_collect: list[torch.Tensor]
    retain_collect: list[torch.Tensor]
    eval_pixels: torch.Tensor
    eval_labels: torch.Tensor
    positions: str = "cls"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def retain(self) -> str:
        """Label of the retain side: every other class."""
        return f"all but {self.forget}"

    def units(self, side: str) -> int:
        """Evaluation images of one side."""
        is_forget = self.eval_labels == self.classes.index(self.forget)
        return int((is_forget if side == "forget" else ~is_forget).sum())


def image_pair(
    model: HookedModel, forget_class: str = "Bag", dataset: str = "fashion-mnist", collect_images: int = 1000,
    eval_per_class: int | None = None, batch_size: int = 250, seed: int = 0, positions: str = "cls",
) -> ImagePair:
    """Forget one class of an image classifier: train images for statistics, test images to evaluate.

    The retain side draws ``collect_images`` train images from the other classes. A model with
    fewer outputs than the data set has classes (a tiny test model) keeps the first classes only.
    ``eval_per_class``: test images per class (None: all). ``positions="cls"`` collects the neuron
    statistics at the class token only, the one position a ViT classifier reads its decision from;
    ``"all"`` uses every token (CLS and patches), as for language models.
    """
    image_positions(positions)  # raises on an unknown policy, naming the valid ones
    from ..data.corpora import load_corpus
    from ..data.images import images_array, labels_array, pixel_processor

    train, test = load_corpus(dataset, "train"), load_corpus(dataset, "test")
    names = tuple(train.features["label"].names)
    n_out = int(getattr(model.hf.config, "num_labels", len(names)))
    classes = names[:min(n_out, len(names))]
    if forget_class not in classes:
        raise ValueError(f"Unknown forget_class {forget_class!r} for this model. Classes: {', '.join(classes)}.")
    target = classes.index(forget_class)
    processor = pixel_processor(model)
    gen = torch.Generator().manual_seed(seed)
    y = labels_array(train)
    images = images_array(train)
    sides = {}
    for side, keep in (("forget", y == target), ("retain", (y != target) & (y < len(classes)))):
        idx = np.flatnonzero(keep)
        idx = idx[torch.randperm(len(idx), generator=gen).numpy()[:collect_images]]
        pixels = processor(images[np.sort(idx)])
        sides[f"{side}_collect"] = list(pixels.split(batch_size))
    y_test = labels_array(test)
    keep_test = np.flatnonzero(y_test < len(classes))
    if eval_per_class is not None:
        keep_test = np.sort(np.concatenate([np.flatnonzero(y_test == c)[:eval_per_class] for c in range(len(classes))]))
    params = dict(dataset=dataset, forget_class=forget_class, classes=list(classes), collect_images=collect_images,
                  eval_per_class=eval_per_class, batch_size=batch_size, seed=seed, processor=repr(processor),
                  positions=positions)
    return ImagePair(forget_class, classes, eval_pixels=processor(images_array(test)[keep_test]),
                     eval_labels=torch.as_tensor(y_test[keep_test]).long(), positions=positions, params=params,
                     **sides)
