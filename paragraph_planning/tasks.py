"""Tasks for the modularity chapter (paper 3): forget sets of text and images, and their documents.

A *task* is one wiki topic, one BBC category, Python code, Shakespeare, recipes or French (text),
or one Fashion-MNIST class or group of classes (images). Documents are split three ways so that no
text is used twice: the test split (by document id, :func:`paragraph_planning.data.split_of`) is
for evaluation; the train split is halved by another hash (:func:`pool_of`) into a forget pool
(task statistics) and a retain pool (the retain mix, :func:`retain_texts`). Long documents are cut
into pieces of whole lines (:data:`CHUNK_CHARS`), so a sample of a few thousand tokens comes from
many documents.
"""
from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

from .data import line_pieces

RETAIN_CORPORA: tuple[str, ...] = ("wiki-en", "bbc")
"""Default retain mix: every English wiki topic and every BBC category (retain pool only)."""
SKIP_TOPICS: tuple[str, ...] = ("Uncategorized",)
CHUNK_CHARS = 2000
"""Documents are cut into pieces of whole lines of at most about this many characters."""


@dataclass(frozen=True)
class Task:
    """A forget set. Text: ``corpus`` plus label ``filters``; image: Fashion-MNIST ``classes``.

    ``family`` groups related tasks (wiki topics, BBC categories, clothing groups): the chapter
    checks whether tasks of one family share more neurons than tasks of different families.
    """

    name: str
    corpus: str
    family: str
    filters: tuple[tuple[str, str], ...] = ()
    classes: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "image" if self.classes else "text"


def _select(tasks: list[Task], names: Sequence[str] | None) -> list[Task]:
    if names is None:
        return tasks
    by_name = {t.name: t for t in tasks}
    out = []
    for n in names:
        if n not in by_name:
            close = difflib.get_close_matches(n, list(by_name), n=3, cutoff=0.4)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"Unknown task {n!r}.{hint} Tasks: {', '.join(by_name)}.")
        out.append(by_name[n])
    if len({t.name for t in out}) != len(out):
        raise ValueError(f"Duplicate task names in {list(names)}.")
    return out


def text_tasks(names: Sequence[str] | None = None) -> list[Task]:
    """The text tasks: each English wiki topic, each BBC category, Python, Shakespeare, recipes, French.

    ``names`` keeps (and orders) a subset, e.g. ``["wiki/Mathematics", "python"]``.
    """
    from .data import corpus_labels

    tasks = [Task(f"wiki/{t}", "wiki-en", "wiki-en", (("topic", t),))
             for t in corpus_labels("wiki-en") if t not in SKIP_TOPICS]
    tasks += [Task(f"bbc/{c}", "bbc", "bbc", (("category", c),)) for c in corpus_labels("bbc")]
    tasks += [Task("python", "python-code", "code"), Task("shakespeare", "shakespeare", "shakespeare"),
              Task("recipes", "recipes", "recipes"), Task("french", "wiki-fr", "french")]
    return _select(tasks, names)


def image_tasks(names: Sequence[str] | None = None) -> list[Task]:
    """Each Fashion-MNIST class, and each group of several classes (tops, footwear).

    The groups bottoms, dresses and bags hold one class each (Trouser, Dress, Bag): as tasks they
    would duplicate those classes, so they are left out.
    """
    from .images import FASHION_CLASS_GROUP, FASHION_CLASSES, FASHION_GROUPS

    tasks = [Task(c, "fashion-mnist", FASHION_CLASS_GROUP[c], classes=(c,)) for c in FASHION_CLASSES]
    for g in FASHION_GROUPS:
        members = tuple(c for c in FASHION_CLASSES if FASHION_CLASS_GROUP[c] == g)
        if len(members) > 1:
            tasks.append(Task(f"group/{g}", "fashion-mnist", g, classes=members))
    return _select(tasks, names)


def nested(a: Task, b: Task) -> bool:
    """Whether one task's data contains the other's (a class and its group)."""
    return bool(a.classes and b.classes) and (set(a.classes) <= set(b.classes) or set(b.classes) <= set(a.classes))


def pool_of(doc_id: str) -> str:
    """``"forget"`` or ``"retain"``: a stable half split of the training documents (by id hash)."""
    h = hashlib.sha256(b"modularity-pool:" + doc_id.encode("utf-8")).digest()
    return "retain" if h[0] & 1 else "forget"


def _chunked(ids: Sequence[str], texts: Sequence[str], max_chars: int) -> Any:
    from datasets import Dataset

    rows = [(f"{i}#{k}", p) for i, t in zip(ids, texts) for k, p in enumerate(line_pieces(t, max_chars))]
    return Dataset.from_dict({"id": [r[0] for r in rows], "text": [r[1] for r in rows]})


def task_texts(task: Task, role: str, max_chars: int = CHUNK_CHARS) -> Any:
    """A task's documents (cut into pieces) as a ``Dataset``: ``role`` ``"forget"`` (train, forget pool) or ``"eval"`` (test)."""
    from .data import load_corpus

    if role not in ("forget", "eval"):
        raise ValueError(f"role must be 'forget' or 'eval', got {role!r}.")
    ds = load_corpus(task.corpus, "test" if role == "eval" else "train", **dict(task.filters))
    ids, texts = ds["id"], ds["text"]
    keep = [j for j, i in enumerate(ids) if role == "eval" or pool_of(i) == "forget"]
    return _chunked([ids[j] for j in keep], [texts[j] for j in keep], max_chars)


def retain_texts(corpora: Sequence[str] = RETAIN_CORPORA, max_chars: int = CHUNK_CHARS) -> Any:
    """The retain mix: training documents of ``corpora`` in the retain pool, cut into pieces."""
    from .data import load_corpus

    ids, texts = [], []
    for c in corpora:
        ds = load_corpus(c, "train")
        for i, t in zip(ds["id"], ds["text"]):
            if pool_of(i) == "retain":
                ids.append(i)
                texts.append(t)
    return _chunked(ids, texts, max_chars)


def doc_ids(ds: Any) -> set[str]:
    """The source document ids of a chunked ``Dataset`` (piece suffix ``#k`` removed)."""
    return {i.rsplit("#", 1)[0] for i in ds["id"]}
