"""One Task type for papers 3 and 4: the "corpus:label" parser, documents, splits and pools."""
from __future__ import annotations

import pytest

from paragraph_planning.data.corpora import corpus_labels
from paragraph_planning.data.tasks import Task, check_disjoint, image_tasks, text_tasks


def test_parse_filters_and_complement():
    assert Task.parse("python-code") == Task("python-code", "python-code", (), "python-code")
    assert Task.parse("bbc:sport,tech").filters == (("category", ("sport", "tech")),)
    assert Task.parse("shakespeare:title:Hamlet").filters == (("title", ("Hamlet",)),)
    rest = dict(Task.parse("wiki-en:!Mathematics").filters)["topic"]
    assert "Mathematics" not in rest and sorted([*rest, "Mathematics"]) == corpus_labels("wiki-en", "topic")
    with pytest.raises(ValueError, match="Did you mean 'Mathematics'"):
        Task.parse("wiki-en:!Mathmatics")
    with pytest.raises(ValueError, match="no labels"):
        Task.parse("recipes:Soup")
    with pytest.raises(ValueError, match="Unknown corpus 'wiki-xx'"):
        Task.parse("wiki-xx:Arts")


def test_image_tasks_parse_class_names():
    bag = Task.parse("fashion-mnist:Bag")
    assert bag.kind == "image" and bag.classes == ("Bag",)
    others = Task.parse("fashion-mnist:!Bag").classes
    assert len(others) == 9 and "Bag" not in others
    assert image_tasks(["Bag"])[0].classes == bag.classes
    with pytest.raises(ValueError, match="Valid values"):
        Task.parse("fashion-mnist:Bags")
    with pytest.raises(TypeError, match="image task"):
        bag.documents()


def test_documents_splits_pools_and_pieces():
    t = Task.parse("wiki-en:Mathematics")
    train, test = t.ids("train"), t.ids("test")
    assert train and test and not train & test
    forget, retain = (set(t.documents("train", pool)["id"]) for pool in ("forget", "retain"))
    assert forget | retain == train and not forget & retain
    pieces = t.pieces("test")
    assert {i.rsplit("#", 1)[0] for i in pieces["id"]} == test
    with pytest.raises(ValueError, match="Valid splits"):
        t.documents("validation")
    with pytest.raises(ValueError, match="Valid pools"):
        t.documents("train", "other")


def test_disjointness_check():
    with pytest.raises(ValueError, match="share"):
        check_disjoint(Task.parse("wiki-en"), Task.parse("wiki-en:History"))
    check_disjoint(Task.parse("wiki-en:History"), Task.parse("wiki-en:!History"))
    check_disjoint(Task.parse("python-code"), Task.parse("wiki-en"))  # different corpora never overlap


def test_paper3_task_lists_use_the_same_type():
    assert all(isinstance(t, Task) for t in text_tasks() + image_tasks())
    assert text_tasks(["python"])[0].kind == "text" and image_tasks(["group/tops"])[0].kind == "image"
