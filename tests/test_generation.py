"""The one decoding loop: greedy equals transformers' generate on every architecture, sampling is local."""
from __future__ import annotations

import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core.architectures import ARCHITECTURES
from paragraph_planning.core.generation import generate_ids, pad_rows
from paragraph_planning.core.interventions import add_fn, patch_fn
from paragraph_planning.core.models import TINY_MODELS

LMS = [n for n, a in TINY_MODELS.items() if ARCHITECTURES[a].kind == "causal-lm"]
PROMPTS = ["The cat sat", "A much longer prompt here"]


@pytest.mark.parametrize("name", LMS)
def test_greedy_equals_transformers_generate(name):
    m = load_model(name)
    rows = [m.tokenizer(p)["input_ids"] for p in PROMPTS]
    ours = generate_ids(m, rows, 12, temperature=0.0)
    ids, mask = pad_rows(rows, m.tokenizer.pad_token_id, side="left")
    ref = m.hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                        pad_token_id=m.tokenizer.pad_token_id)
    assert ours == m.tokenizer.batch_decode(ref[:, ids.shape[1]:], skip_special_tokens=True)
    assert m.generate(PROMPTS, max_new_tokens=12) == ours
    assert m.generate(PROMPTS, max_new_tokens=12, use_cache=False) == ours


def test_sampling_uses_a_local_generator():
    m = load_model("tiny-llama")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = m.generate(PROMPTS, max_new_tokens=10, temperature=1.0, seed=7)
    assert torch.equal(torch.get_rng_state(), state), "generation changed the global random state"
    torch.manual_seed(999)  # whatever ran before, the same seed gives the same text
    assert m.generate(PROMPTS, max_new_tokens=10, temperature=1.0, seed=7) == a
    assert m.generate(PROMPTS, max_new_tokens=10, temperature=1.0, seed=8) != a


def test_stop_function_ends_a_row_early():
    m = load_model("tiny-llama")
    rows = [m.tokenizer(p)["input_ids"] for p in PROMPTS]
    full = generate_ids(m, rows, 10, temperature=0.0)
    short = generate_ids(m, rows, 10, temperature=0.0, stop=lambda t: len(t) >= 3)
    assert [s for s in short] == [f[:len(s)] for f, s in zip(full, short)]
    assert all(len(s) <= 4 for s in short)


def test_empty_prompts_raise_one_clear_error():
    m = load_model("tiny-llama")
    with pytest.raises(ValueError, match="Empty prompt"):
        m.generate("")
    with pytest.raises(ValueError, match="at least one token"):
        generate_ids(m, [[]], 4)
    with pytest.raises(ValueError, match="Empty text"):
        m("")
    with pytest.raises(ValueError, match="at least one token"):
        m(torch.zeros(1, 0, dtype=torch.long))


@pytest.mark.parametrize("factory", [lambda v: patch_fn(v, [-1]), lambda v: add_fn(v[0], [-1])])
def test_negative_positions_are_resolved_per_call(factory):
    """One intervention reused on prompts of different lengths acts on each prompt's own last token."""
    m = load_model("tiny-llama")
    name = "blocks.0.resid_post"
    v = 5 * torch.randn(1, m.cfg.d_model)
    fn = factory(v)
    with m.hooks([(name, fn)]), m.record([name]) as rec:
        m("ab")
        m("abcdef")
    first, second = rec.history[name]
    clean_first, clean_second = (m.run_with_cache(t, [name])[1][name] for t in ("ab", "abcdef"))
    for got, clean in ((first, clean_first), (second, clean_second)):
        torch.testing.assert_close(got[:, :-1], clean[:, :-1])  # only the last position changed
        assert not torch.allclose(got[:, -1], clean[:, -1])


def test_a_patch_at_position_zero_is_applied_once():
    """transformers 5 passes the KV cache as ``cache=``: the offset must come from it, or a patch at
    position 0 would be written again onto every generated token (a bug the old hook tracking had)."""
    m = load_model("tiny-llama")
    name = "blocks.0.resid_post"
    v = 30 * torch.randn(1, m.cfg.d_model)
    seen: list[tuple[int, int]] = []

    def spy(act, *, hook):
        seen.append((hook.offset, act.shape[1]))

    runs = []
    for use_cache in (True, False):
        with m.hooks([(name, patch_fn(v, [0])), ("blocks.1.resid_post", spy)]):
            runs.append(m.generate(["ab"], max_new_tokens=6, use_cache=use_cache))
    assert runs[0] == runs[1]
    cached = seen[:6]
    assert [o for o, _ in cached] == [0, 2, 3, 4, 5, 6] and [n for _, n in cached[1:]] == [1] * 5
