"""Architecture maps: where each hook site lives inside a transformers model, as data.

One entry per transformers model class. Every entry is checked in ``tests/test_architectures.py``
on a tiny random-config model against a hand computation, so a wrong path cannot hide.

Sites (the same vocabulary for every architecture; shapes are what hook functions see):

============================  ==========================  ==========================================
site                          shape                       meaning
============================  ==========================  ==========================================
``blocks.{i}.resid_pre``      ``[batch, pos, d_model]``   residual stream entering block ``i``
``blocks.{i}.attn.pre_out``   ``[batch, pos, head, d_head]`` attention heads' outputs before ``W_O``
``blocks.{i}.attn.out``       ``[batch, pos, d_model]``   output of ``W_O`` (before any post-norm
                                                          or layer scale)
``blocks.{i}.mlp.pre_out``    ``[batch, pos, d_mlp]``     MLP neurons: input of the down projection
                                                          (after activation and gating)
``blocks.{i}.mlp.out``        ``[batch, pos, d_model]``   output of the down projection
``blocks.{i}.resid_post``     ``[batch, pos, d_model]``   residual stream leaving block ``i``
============================  ==========================  ==========================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

SITES: tuple[str, ...] = ("resid_pre", "attn.pre_out", "attn.out", "mlp.pre_out", "mlp.out", "resid_post")
"""Per-block site names, in the order they are computed.

Example:
    >>> pp.SITES
    ('resid_pre', 'attn.pre_out', 'attn.out', 'mlp.pre_out', 'mlp.out', 'resid_post')
    >>> pp.load_model("tiny-llama").hook_names(pp.SITES, layers=[0])[:2]
    ['blocks.0.resid_pre', 'blocks.0.attn.pre_out']
"""

NEURON_SITES: tuple[str, ...] = ("attn.pre_out", "mlp.pre_out")
"""Sites whose entries are "neurons" in the papers' sense (what pruning and ablation act on).

Example:
    >>> model = pp.load_model("tiny-llama")
    >>> {site: model.cfg.n_neurons(site) for site in pp.NEURON_SITES}  # 4 heads x 8, d_mlp
    {'attn.pre_out': 32, 'mlp.pre_out': 48}
"""

_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


def hook_name(layer: int, site: str) -> str:
    """The hook name of ``site`` in block ``layer``: ``hook_name(3, "mlp.pre_out") == "blocks.3.mlp.pre_out"``.

    The one place names are built; :func:`parse_name` is the one place they are read.

    Example:
        >>> pp.hook_name(3, "mlp.pre_out")
        'blocks.3.mlp.pre_out'
        >>> pp.hook_name(3, "mlp")
        Traceback (most recent call last):
        ValueError: Unknown site 'mlp'. Valid sites: resid_pre, attn.pre_out, attn.out, mlp.pre_out, mlp.out, resid_post.
    """
    if site not in SITES:
        raise ValueError(f"Unknown site {site!r}. Valid sites: {', '.join(SITES)}.")
    return f"blocks.{int(layer)}.{site}"


def parse_name(name: str) -> tuple[int, str] | None:
    """``"blocks.3.mlp.pre_out"`` -> ``(3, "mlp.pre_out")``; None for anything that is not a hook name.

    Only the form is checked (a known site after ``blocks.{i}.``), not whether a model has that
    layer: :meth:`~paragraph_planning.core.hooks.HookedModel.parse` adds that and "did you mean".

    Example:
        >>> pp.parse_name("blocks.3.mlp.pre_out")
        (3, 'mlp.pre_out')
        >>> pp.parse_name("model.layers.3.mlp") is None
        True
    """
    m = _NAME.match(name) if isinstance(name, str) else None
    if m is None or m.group(2) not in SITES:
        return None
    return int(m.group(1)), m.group(2)


def layer_of(name: str) -> int:
    """The layer of a hook name (raises ValueError for anything else)."""
    parsed = parse_name(name)
    if parsed is None:
        raise ValueError(f"Not a hook name: {name!r} (expected 'blocks.{{i}}.{{site}}', site in {', '.join(SITES)}).")
    return parsed[0]


def site_of(name: str) -> str:
    """The site of a hook name (raises ValueError for anything else)."""
    parsed = parse_name(name)
    if parsed is None:
        raise ValueError(f"Not a hook name: {name!r} (expected 'blocks.{{i}}.{{site}}', site in {', '.join(SITES)}).")
    return parsed[1]


@dataclass(frozen=True)
class ArchSpec:
    """Where things live in one transformers model class (paths are dotted attribute paths).

    ``layers`` is relative to the top model; all other paths are relative to one block.
    ``cfg`` maps our config names to the transformers config attribute that holds them; a value
    may be an int (a constant) or a ``"4*d_model"``-style default used when the attribute is None.
    """

    kind: str  # "causal-lm" or "image"
    layers: str
    attn_out: str
    mlp_out: str
    mlp_in: str
    mlp_gate: str | None = None
    conv1d: bool = False  # GPT-2's Conv1D stores weights as [in, out]
    flat_mlp: bool = False  # OPT runs its MLP on [batch*pos, d]; hooks still see [batch, pos, d]
    cfg: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] = field(default_factory=dict)  # config kwargs of the tiny random model
    config_class: str = ""  # transformers config class for the tiny model


_LM_CFG = {
    "n_layers": "num_hidden_layers",
    "d_model": "hidden_size",
    "n_heads": "num_attention_heads",
    "n_kv_heads": "num_key_value_heads",
    "d_head": "head_dim",
    "d_mlp": "intermediate_size",
}
_TINY_LM = dict(
    vocab_size=260, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=128, pad_token_id=0, eos_token_id=1, bos_token_id=2,
)


def _llama_like(config_class: str, **tiny: Any) -> ArchSpec:
    return ArchSpec(
        kind="causal-lm", layers="model.layers", attn_out="self_attn.o_proj", mlp_out="mlp.down_proj",
        mlp_in="mlp.up_proj", mlp_gate="mlp.gate_proj", cfg=_LM_CFG,
        tiny={**_TINY_LM, "num_key_value_heads": 2, **tiny}, config_class=config_class,
    )


ARCHITECTURES: dict[str, ArchSpec] = {
    "LlamaForCausalLM": _llama_like("LlamaConfig"),
    "MistralForCausalLM": _llama_like("MistralConfig"),
    "Qwen2ForCausalLM": _llama_like("Qwen2Config"),
    "GemmaForCausalLM": _llama_like("GemmaConfig", head_dim=8),
    "Gemma2ForCausalLM": _llama_like("Gemma2Config", head_dim=8),
    # head_dim 16 != hidden/heads = 8: the map must not assume d_head = d_model / n_heads.
    "Gemma3ForCausalLM": _llama_like("Gemma3TextConfig", head_dim=16, sliding_window=4),
    "GPT2LMHeadModel": ArchSpec(
        kind="causal-lm", layers="transformer.h", attn_out="attn.c_proj", mlp_out="mlp.c_proj",
        mlp_in="mlp.c_fc", conv1d=True,
        cfg={"n_layers": "n_layer", "d_model": "n_embd", "n_heads": "n_head", "n_kv_heads": "n_head",
             "d_head": None, "d_mlp": ("n_inner", "4*d_model")},
        tiny=dict(vocab_size=260, n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=2, eos_token_id=1),
        config_class="GPT2Config",
    ),
    "GPTNeoXForCausalLM": ArchSpec(
        kind="causal-lm", layers="gpt_neox.layers", attn_out="attention.dense",
        mlp_out="mlp.dense_4h_to_h", mlp_in="mlp.dense_h_to_4h",
        cfg={**_LM_CFG, "n_kv_heads": "num_attention_heads", "d_head": None},
        tiny={**_TINY_LM}, config_class="GPTNeoXConfig",
    ),
    "OPTForCausalLM": ArchSpec(
        kind="causal-lm", layers="model.decoder.layers", attn_out="self_attn.out_proj", mlp_out="fc2",
        mlp_in="fc1", flat_mlp=True,
        cfg={**_LM_CFG, "n_kv_heads": "num_attention_heads", "d_head": None, "d_mlp": "ffn_dim"},
        tiny=dict(vocab_size=260, hidden_size=32, ffn_dim=48, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=128, word_embed_proj_dim=32, pad_token_id=0,
                  eos_token_id=1, bos_token_id=2),
        config_class="OPTConfig",
    ),
    "ViTForImageClassification": ArchSpec(
        kind="image", layers="vit.layers", attn_out="attention.o_proj", mlp_out="mlp.fc2", mlp_in="mlp.fc1",
        cfg={**_LM_CFG, "n_kv_heads": "num_attention_heads", "d_head": None},
        tiny=dict(image_size=8, patch_size=4, num_channels=1, hidden_size=32, intermediate_size=48,
                  num_hidden_layers=2, num_attention_heads=4, num_labels=3),
        config_class="ViTConfig",
    ),
    "Dinov2Model": ArchSpec(
        kind="image", layers="encoder.layer", attn_out="attention.o_proj", mlp_out="mlp.fc2", mlp_in="mlp.fc1",
        cfg={**_LM_CFG, "n_kv_heads": "num_attention_heads", "d_head": None, "d_mlp": None},
        tiny=dict(image_size=8, patch_size=4, num_channels=3, hidden_size=32, mlp_ratio=2,
                  num_hidden_layers=2, num_attention_heads=4),
        config_class="Dinov2Config",
    ),
    "Dinov2ForImageClassification": ArchSpec(
        kind="image", layers="dinov2.encoder.layer", attn_out="attention.o_proj", mlp_out="mlp.fc2",
        mlp_in="mlp.fc1",
        cfg={**_LM_CFG, "n_kv_heads": "num_attention_heads", "d_head": None, "d_mlp": None},
        tiny=dict(image_size=8, patch_size=4, num_channels=3, hidden_size=32, mlp_ratio=2,
                  num_hidden_layers=2, num_attention_heads=4, num_labels=3),
        config_class="Dinov2Config",
    ),
}


class UnsupportedArchitectureError(ValueError):
    """The model class has no architecture map."""


@dataclass(frozen=True)
class ModelConfig:
    """Normalised shape facts of a model (the same names for every architecture).

    Example:
        >>> cfg = pp.load_model("tiny-llama").cfg
        >>> cfg.arch, cfg.kind, cfg.n_layers, cfg.d_model, cfg.d_mlp
        ('LlamaForCausalLM', 'causal-lm', 2, 32, 48)
        >>> cfg.site_shape("attn.pre_out"), cfg.n_neurons("attn.pre_out")
        ((4, 8), 32)
    """

    arch: str
    kind: str
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    n_kv_heads: int
    d_mlp: int
    gated: bool

    def site_shape(self, site: str) -> tuple[int, ...]:
        """Per-token shape of a site, e.g. ``(n_heads, d_head)`` for ``attn.pre_out``."""
        return {"attn.pre_out": (self.n_heads, self.d_head), "mlp.pre_out": (self.d_mlp,)}.get(
            site, (self.d_model,)
        )

    def n_neurons(self, site: str) -> int:
        """Number of scalar entries per token at a site."""
        n = 1
        for s in self.site_shape(site):
            n *= s
        return n


def arch_spec(model: nn.Module) -> ArchSpec:
    """The map entry for a transformers model; raises naming the supported classes."""
    name = type(model).__name__
    if name not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"No architecture map for {name!r}. Supported: {', '.join(sorted(ARCHITECTURES))}."
        )
    return ARCHITECTURES[name]


def _read_cfg(config: Any, key: Any, resolved: dict[str, int]) -> int | None:
    if key is None:
        return None
    default = None
    if isinstance(key, tuple):
        key, default = key
    value = getattr(config, key, None)
    if value is None and default is not None:
        factor, ref = default.split("*")
        value = int(factor) * resolved[ref]
    return value


def model_config(model: nn.Module) -> ModelConfig:
    """Normalised :class:`ModelConfig` read from a transformers model through its map."""
    spec = arch_spec(model)
    config = model.config
    vals: dict[str, int] = {}
    for ours in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_mlp", "d_head"):
        vals[ours] = _read_cfg(config, spec.cfg.get(ours), vals)  # type: ignore[assignment]
    if vals["d_head"] is None:
        vals["d_head"] = vals["d_model"] // vals["n_heads"]
    if vals["n_kv_heads"] is None:
        vals["n_kv_heads"] = vals["n_heads"]
    if vals["d_mlp"] is None:  # e.g. Dinov2 stores mlp_ratio
        vals["d_mlp"] = int(config.hidden_size * config.mlp_ratio)
    return ModelConfig(arch=type(model).__name__, kind=spec.kind, gated=spec.mlp_gate is not None, **vals)


def get_module(root: nn.Module, path: str) -> nn.Module:
    """Follow a dotted path (``"model.layers"``) from ``root``."""
    mod = root
    for part in path.split("."):
        mod = getattr(mod, part)
    return mod


def blocks(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a transformers model."""
    return get_module(model, arch_spec(model).layers)  # type: ignore[return-value]


def linear_weight(module: nn.Module, conv1d: bool) -> torch.Tensor:
    """Weight of a projection as ``[out, in]`` whatever the layer type (GPT-2 Conv1D is ``[in, out]``)."""
    return module.weight.T if conv1d else module.weight


def weights(model: nn.Module, layer: int) -> dict[str, torch.Tensor]:
    """Read access to one block's weights in one layout for all architectures.

    Returns ``W_O`` ``[n_heads, d_head, d_model]``, ``W_in`` ``[d_mlp, d_model]``,
    ``W_gate`` ``[d_mlp, d_model]`` (gated MLPs only) and ``W_out`` ``[d_mlp, d_model]``.
    These are views of the parameters: detach/clone before editing.
    """
    spec, cfg = arch_spec(model), model_config(model)
    block = blocks(model)[layer]
    w_o = linear_weight(get_module(block, spec.attn_out), spec.conv1d)  # [d_model, H*dh]
    out = {
        "W_O": w_o.T.reshape(cfg.n_heads, cfg.d_head, cfg.d_model),
        "W_in": linear_weight(get_module(block, spec.mlp_in), spec.conv1d),
        "W_out": linear_weight(get_module(block, spec.mlp_out), spec.conv1d).T,
    }
    if spec.mlp_gate:
        out["W_gate"] = linear_weight(get_module(block, spec.mlp_gate), spec.conv1d)
    return out
