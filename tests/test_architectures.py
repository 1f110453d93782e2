"""Every architecture map entry, checked on a tiny random-config model against hand computations."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from paragraph_planning import load_model
from paragraph_planning.core.architectures import (
    ARCHITECTURES,
    SITES,
    UnsupportedArchitectureError,
    get_module,
    model_config,
)
from paragraph_planning.core.interventions import mask_fn
from paragraph_planning.core.models import TINY_MODELS


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


# Per architecture, written from the papers/model definitions: the MLP nonlinearity, the norm that
# feeds the MLP, whether attention and MLP read the same residual (parallel), and what scales or
# normalises each output before it is added to the residual stream.
HAND = {
    "LlamaForCausalLM": dict(act=F.silu, mlp_norm="post_attention_layernorm"),
    "MistralForCausalLM": dict(act=F.silu, mlp_norm="post_attention_layernorm"),
    "Qwen2ForCausalLM": dict(act=F.silu, mlp_norm="post_attention_layernorm"),
    "GemmaForCausalLM": dict(act=gelu_tanh, mlp_norm="post_attention_layernorm"),
    "Gemma2ForCausalLM": dict(act=gelu_tanh, mlp_norm="pre_feedforward_layernorm",
                              post=("post_attention_layernorm", "post_feedforward_layernorm")),
    "Gemma3ForCausalLM": dict(act=gelu_tanh, mlp_norm="pre_feedforward_layernorm",
                              post=("post_attention_layernorm", "post_feedforward_layernorm")),
    "GPT2LMHeadModel": dict(act=gelu_tanh, mlp_norm="ln_2"),
    "GPTNeoXForCausalLM": dict(act=F.gelu, mlp_norm="post_attention_layernorm", parallel=True),
    "OPTForCausalLM": dict(act=F.relu, mlp_norm="final_layer_norm"),
    "ViTForImageClassification": dict(act=F.gelu, mlp_norm="layernorm_after"),
    "Dinov2Model": dict(act=F.gelu, mlp_norm="norm2", scale=("layer_scale1", "layer_scale2")),
    "Dinov2ForImageClassification": dict(act=F.gelu, mlp_norm="norm2", scale=("layer_scale1", "layer_scale2")),
}
NAMES = {arch: name for name, arch in TINY_MODELS.items()}


def test_every_architecture_has_a_hand_reference_and_a_tiny_model():
    assert set(HAND) == set(ARCHITECTURES) == set(NAMES)


def _inputs(model):
    if model.cfg.kind == "image":
        c = model.hf.config
        torch.manual_seed(1)
        return torch.randn(2, c.num_channels, c.image_size, c.image_size)
    return model.to_tokens(["The cat sat.\n\nThen it", "A dog\n\nran off now"])["input_ids"]


def _bias(block, path):
    b = get_module(block, path).bias
    return 0 if b is None else b


def _contribution(block, hand, which, x):
    if "post" in hand:
        return get_module(block, hand["post"][which])(x)
    if "scale" in hand:
        return get_module(block, hand["scale"][which])(x)
    return x


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_sites_equal_hand_computation(arch):
    model = load_model(NAMES[arch])
    hand, spec, cfg = HAND[arch], model.spec, model.cfg
    x = _inputs(model)
    with model.record(model.hook_names()) as cache:
        model(x)
    for i in range(cfg.n_layers):
        block = get_module(model.hf, spec.layers)[i]
        a = {s: cache[f"blocks.{i}.{s}"].double() for s in SITES}
        w = {k: v.double() for k, v in model.weights(i).items()}
        assert a["attn.pre_out"].shape[-2:] == (cfg.n_heads, cfg.d_head)
        assert a["mlp.pre_out"].shape[-1] == cfg.d_mlp
        # attention output = sum over heads of pre_out[head] @ W_O[head] (+ bias)
        attn_out = torch.einsum("bphd,hdm->bpm", a["attn.pre_out"], w["W_O"]) + _bias(block, spec.attn_out)
        torch.testing.assert_close(a["attn.out"], attn_out, rtol=1e-5, atol=1e-5)
        resid_mid = a["resid_pre"] + _contribution(block, hand, 0, a["attn.out"].float()).double()
        mlp_in = get_module(block, hand["mlp_norm"])(
            (a["resid_pre"] if hand.get("parallel") else resid_mid).float()).double()
        pre = mlp_in @ w["W_in"].T + _bias(block, spec.mlp_in)
        if "W_gate" in w:
            pre = hand["act"](mlp_in @ w["W_gate"].T) * pre
        else:
            pre = hand["act"](pre)
        torch.testing.assert_close(a["mlp.pre_out"], pre, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a["mlp.out"], a["mlp.pre_out"] @ w["W_out"] + _bias(block, spec.mlp_out),
                                   rtol=1e-5, atol=1e-5)
        after_attn = a["resid_pre"] if hand.get("parallel") else resid_mid
        post = after_attn + _contribution(block, hand, 1, a["mlp.out"].float()).double()
        if hand.get("parallel"):
            post = post + _contribution(block, hand, 0, a["attn.out"].float()).double()
        torch.testing.assert_close(a["resid_post"], post, rtol=1e-5, atol=1e-5)
        if i + 1 < cfg.n_layers:
            torch.testing.assert_close(cache[f"blocks.{i + 1}.resid_pre"], cache[f"blocks.{i}.resid_post"])


@pytest.mark.parametrize("arch", ["GPT2LMHeadModel", "ViTForImageClassification"])
def test_attention_heads_equal_hand_attention(arch):
    """Per-head attention outputs from q, k, v by hand (architectures without rotary embeddings)."""
    model = load_model(NAMES[arch])
    cfg, x = model.cfg, _inputs(model)
    block = get_module(model.hf, model.spec.layers)[0]
    with model.record(["blocks.0.resid_pre", "blocks.0.attn.pre_out"]) as cache:
        model(x)
    if arch == "GPT2LMHeadModel":
        h = block.ln_1(cache["blocks.0.resid_pre"])
        q, k, v = (h @ block.attn.c_attn.weight + block.attn.c_attn.bias).split(cfg.d_model, dim=-1)
        causal = True
    else:
        h = block.layernorm_before(cache["blocks.0.resid_pre"])
        att = block.attention
        q, k, v = att.q_proj(h), att.k_proj(h), att.v_proj(h)
        causal = False
    b, p, _ = q.shape
    q, k, v = (t.view(b, p, cfg.n_heads, cfg.d_head).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)
    if causal:
        scores = scores.masked_fill(torch.ones(p, p, dtype=torch.bool).triu(1), float("-inf"))
    heads = (scores.softmax(-1) @ v).transpose(1, 2)  # [b, p, head, d_head]
    torch.testing.assert_close(cache["blocks.0.attn.pre_out"], heads, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_ablating_a_site_changes_the_output(arch):
    model = load_model(NAMES[arch])
    x = _inputs(model)
    clean = model(x)
    for site in ("attn.pre_out", "mlp.pre_out"):
        n = model.cfg.n_neurons(site)
        with model.hooks([(f"blocks.0.{site}", mask_fn(torch.zeros(n)))]):
            ablated = model(x)
        assert not torch.allclose(clean, ablated), site
    torch.testing.assert_close(model(x), clean, rtol=0, atol=0)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_weight_views_round_trip(arch):
    """Editing the returned weight views edits the model; writing the original back restores it."""
    model = load_model(NAMES[arch])
    x = _inputs(model)
    clean = model(x)
    w = model.weights(1)
    saved = {k: v.detach().clone() for k, v in w.items()}
    with torch.no_grad():
        w["W_out"][3].zero_()  # neuron 3 of layer 1 no longer writes to the residual
        w["W_O"][1].zero_()  # nor does head 1
    edited = model.weights(1)
    assert edited["W_out"][3].abs().sum() == 0 and edited["W_O"][1].abs().sum() == 0
    assert not torch.allclose(model(x), clean)
    with torch.no_grad():
        for k in ("W_out", "W_O"):
            edited[k].copy_(saved[k])
    torch.testing.assert_close(model(x), clean, rtol=0, atol=0)


def test_config_normalisation_reads_head_dim_when_it_differs():
    cfg = load_model("tiny-gemma3").cfg
    assert (cfg.n_heads, cfg.d_head, cfg.d_model, cfg.n_kv_heads) == (4, 16, 32, 2)
    assert cfg.site_shape("attn.pre_out") == (4, 16) and cfg.n_neurons("attn.pre_out") == 64


def test_unsupported_architecture_names_the_supported_ones():
    with pytest.raises(UnsupportedArchitectureError, match="LlamaForCausalLM"):
        model_config(torch.nn.Linear(2, 2))
