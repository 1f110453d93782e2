"""Tasks: named subsets of a corpus or image data set (forget sets, retain sets), one type for papers 3 and 4.

A :class:`Task` is a corpus plus label filters, written as a string with :meth:`Task.parse`:

=================================  =========================================================
``"python-code"``                  every document of a corpus
``"wiki-en:Mathematics"``          documents whose main label (wiki ``topic``) is Mathematics
``"bbc:sport,tech"``               either of two values
``"wiki-en:!Mathematics"``         every other value (the complement)
``"shakespeare:title:Hamlet"``     another label column
``"fashion-mnist:Bag"``            one image class (``"fashion-mnist:!Bag"``: the other classes)
=================================  =========================================================

No ``=`` sign, so papermill reads a task as a plain string parameter.

One vocabulary for data: a corpus has the **splits** ``"train"`` and ``"test"`` (by a stable hash
of the document id, :func:`~paragraph_planning.data.corpora.split_of`). Statistics are collected on
train, metrics evaluated on test. Paper 3 further halves the training documents into two
**pools** (:func:`pool_of`): ``"forget"`` (task statistics) and ``"retain"`` (the retain mix), so
no document serves twice. Long documents are cut into pieces of whole lines (:data:`CHUNK_CHARS`),
so a few thousand tokens come from many documents.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

from ..util import did_you_mean
from .corpora import CORPORA, IMAGE_CORPORA, corpus_labels, line_pieces, load_corpus

RETAIN_CORPORA: tuple[str, ...] = ("wiki-en", "bbc")
"""Default retain mix of paper 3: every English wiki topic and every BBC category (retain pool only)."""
SKIP_TOPICS: tuple[str, ...] = ("Uncategorized",)
CHUNK_CHARS = 2000
"""Documents are cut into pieces of whole lines of at most about this many characters."""
SPLITS: tuple[str, ...] = ("train", "test")
POOLS: tuple[str, ...] = ("forget", "retain")


def _image_classes(corpus: str) -> list[str]:
    from .images import FASHION_CLASSES

    if corpus != "fashion-mnist":
        raise ValueError(f"Image tasks are defined on fashion-mnist only, got {corpus!r}.")
    return list(FASHION_CLASSES)


@dataclass(frozen=True)
class Task:
    """A named subset of a corpus: ``filters`` is ``((column, (value, ...)), ...)``.

    ``family`` groups related tasks (wiki topics, BBC categories, clothing groups) for paper 3's
    within- versus between-family comparison. Image tasks filter the column ``"label"`` by class name.

    Example:
        >>> task = pp.Task.parse("wiki-en:!Mathematics")  # every English wiki topic but Mathematics
        >>> task.kind, "Mathematics" in dict(task.filters)["topic"]
        ('text', False)
        >>> docs = task.documents("train", pool="forget")  # a datasets.Dataset
        >>> "Mathematics" in set(docs["topic"])
        False
        >>> tok = pp.load_model("tiny-llama").tokenizer
        >>> pp.token_batches(docs, tok, n_tokens=512, seq_len=64).shape
        torch.Size([1, 8, 64])
        >>> pp.Task.parse("fashion-mnist:Bag,Sneaker").classes
        ('Sneaker', 'Bag')
    """

    name: str
    corpus: str
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    family: str = ""

    @property
    def kind(self) -> str:
        """``"image"`` or ``"text"``."""
        return "image" if self.corpus in IMAGE_CORPORA else "text"

    @property
    def classes(self) -> tuple[str, ...]:
        """Image tasks: the class names kept (every class when unfiltered); text tasks: ``()``."""
        if self.kind != "image":
            return ()
        f = dict(self.filters)
        return tuple(f.get("label", _image_classes(self.corpus)))

    @property
    def spec(self) -> str:
        """The task as a :meth:`parse` string (the complement is spelled out)."""
        if not self.filters:
            return self.corpus
        return ";".join(f"{self.corpus}:{col}:{','.join(vals)}" for col, vals in self.filters)

    @classmethod
    def parse(cls, spec: str, name: str | None = None, family: str = "") -> "Task":
        """``"wiki-en:!History"`` -> a Task of every topic but History (see the module docstring)."""
        corpus, _, rest = str(spec).strip().partition(":")
        if corpus not in CORPORA and corpus not in IMAGE_CORPORA:
            raise ValueError(f"Unknown corpus {corpus!r} in task {spec!r}.{did_you_mean(corpus, [*CORPORA, *IMAGE_CORPORA])}"
                             f" Corpora: {', '.join([*CORPORA, *IMAGE_CORPORA])}.")
        if not rest:
            return cls(name or spec, corpus, (), family or corpus)
        if corpus in IMAGE_CORPORA:
            labels, valid_of = ("label",), (lambda col: _image_classes(corpus))
        else:
            labels, valid_of = CORPORA[corpus].labels, (lambda col: corpus_labels(corpus, col))
        if not labels:
            raise ValueError(f"Corpus {corpus!r} has no labels to filter on; use {corpus!r} alone.")
        column, _, values = rest.partition(":")
        if not values or column not in labels:
            column, values = labels[0], rest
        negate = values.startswith("!")
        wanted = [v.strip() for v in values.removeprefix("!").split(",") if v.strip()]
        valid = valid_of(column)
        bad = [v for v in wanted if v not in valid]
        if bad or not wanted:
            hint = did_you_mean(bad[0], valid) if bad else ""
            raise ValueError(f"Unknown {column} {bad or values!r} in task {spec!r}.{hint} Valid values: {', '.join(valid)}.")
        kept = tuple(v for v in valid if (v in wanted) != negate)
        return cls(name or spec, corpus, ((column, kept),), family or corpus)

    # ------------------------------------------------------------------ documents
    def documents(self, split: str = "train", pool: str | None = None) -> Any:
        """The task's documents as a ``datasets.Dataset`` (text tasks), optionally one pool of them."""
        if self.kind != "text":
            raise TypeError(f"Task {self.name!r} is an image task: use its classes with the image helpers.")
        if split not in (*SPLITS, "all"):
            raise ValueError(f"Unknown split {split!r}. Valid splits: {', '.join(SPLITS)} (or 'all').")
        if pool is not None and pool not in POOLS:
            raise ValueError(f"Unknown pool {pool!r}. Valid pools: {', '.join(POOLS)}.")
        ds = load_corpus(self.corpus, split, **{c: list(v) for c, v in self.filters})
        if pool is None:
            return ds
        return ds.select([i for i, d in enumerate(ds["id"]) if pool_of(d) == pool])

    def ids(self, split: str = "all") -> set[str]:
        """Document ids of the task in one split (``"all"``: both)."""
        return set(self.documents(split)["id"])

    def pieces(self, split: str = "train", pool: str | None = None, max_chars: int = CHUNK_CHARS) -> Any:
        """The documents cut into pieces of whole lines (a ``Dataset`` with ``id`` = ``doc#k`` and ``text``)."""
        ds = self.documents(split, pool)
        return chunked(ds["id"], ds["text"], max_chars)


def check_disjoint(a: Task, b: Task) -> None:
    """Raise ValueError if two text tasks share documents (only possible within one corpus)."""
    if a.corpus != b.corpus or a.kind != "text":
        return
    shared = a.ids() & b.ids()
    if shared:
        raise ValueError(f"Tasks {a.spec!r} and {b.spec!r} share {len(shared)} documents (e.g. {sorted(shared)[:3]}); "
                         "use disjoint filters such as 'wiki-en:X' and 'wiki-en:!X'.")


def _select(tasks: list[Task], names: Sequence[str] | None) -> list[Task]:
    if names is None:
        return tasks
    by_name = {t.name: t for t in tasks}
    out = []
    for n in names:
        if n not in by_name:
            raise ValueError(f"Unknown task {n!r}.{did_you_mean(n, by_name, cutoff=0.4)} Tasks: {', '.join(by_name)}.")
        out.append(by_name[n])
    if len({t.name for t in out}) != len(out):
        raise ValueError(f"Duplicate task names in {list(names)}.")
    return out


def text_tasks(names: Sequence[str] | None = None) -> list[Task]:
    """Paper 3's text tasks: each English wiki topic, each BBC category, Python, Shakespeare, recipes, French.

    ``names`` keeps (and orders) a subset, e.g. ``["wiki/Mathematics", "python"]``.
    """
    tasks = [Task(f"wiki/{t}", "wiki-en", (("topic", (t,)),), "wiki-en")
             for t in corpus_labels("wiki-en") if t not in SKIP_TOPICS]
    tasks += [Task(f"bbc/{c}", "bbc", (("category", (c,)),), "bbc") for c in corpus_labels("bbc")]
    tasks += [Task("python", "python-code", family="code"), Task("shakespeare", "shakespeare", family="shakespeare"),
              Task("recipes", "recipes", family="recipes"), Task("french", "wiki-fr", family="french")]
    return _select(tasks, names)


def image_tasks(names: Sequence[str] | None = None) -> list[Task]:
    """Each Fashion-MNIST class, and each group of several classes (tops, footwear).

    The groups bottoms, dresses and bags hold one class each (Trouser, Dress, Bag): as tasks they
    would duplicate those classes, so they are left out.
    """
    from .images import FASHION_CLASS_GROUP, FASHION_CLASSES, FASHION_GROUPS

    tasks = [Task(c, "fashion-mnist", (("label", (c,)),), FASHION_CLASS_GROUP[c]) for c in FASHION_CLASSES]
    for g in FASHION_GROUPS:
        members = tuple(c for c in FASHION_CLASSES if FASHION_CLASS_GROUP[c] == g)
        if len(members) > 1:
            tasks.append(Task(f"group/{g}", "fashion-mnist", (("label", members),), g))
    return _select(tasks, names)


def nested(a: Task, b: Task) -> bool:
    """Whether one image task's classes contain the other's (a class and its group)."""
    return bool(a.classes and b.classes) and (set(a.classes) <= set(b.classes) or set(b.classes) <= set(a.classes))


def pool_of(doc_id: str) -> str:
    """``"forget"`` or ``"retain"``: a stable half split of the training documents (by id hash)."""
    h = hashlib.sha256(b"modularity-pool:" + doc_id.encode("utf-8")).digest()
    return "retain" if h[0] & 1 else "forget"


def chunked(ids: Sequence[str], texts: Sequence[str], max_chars: int = CHUNK_CHARS) -> Any:
    """Documents cut into pieces of whole lines: a ``Dataset`` with ``id`` (``doc#k``) and ``text``."""
    from datasets import Dataset

    rows = [(f"{i}#{k}", p) for i, t in zip(ids, texts) for k, p in enumerate(line_pieces(t, max_chars))]
    return Dataset.from_dict({"id": [r[0] for r in rows], "text": [r[1] for r in rows]})


def retain_texts(corpora: Sequence[str] = RETAIN_CORPORA, max_chars: int = CHUNK_CHARS) -> Any:
    """Paper 3's retain mix: training documents of ``corpora`` in the retain pool, cut into pieces."""
    ids, texts = [], []
    for c in corpora:
        ds = Task.parse(c).documents("train", pool="retain")
        ids += ds["id"]
        texts += ds["text"]
    return chunked(ids, texts, max_chars)


def doc_ids(ds: Any) -> set[str]:
    """The source document ids of a chunked ``Dataset`` (piece suffix ``#k`` removed)."""
    return {i.rsplit("#", 1)[0] for i in ds["id"]}
