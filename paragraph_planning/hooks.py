"""`HookedModel`: one hook vocabulary over any mapped transformers model, scoped hooks, recording.

A hook function has one signature, ``fn(act, *, hook) -> Tensor | None``: ``act`` is the site's
activation in the shape documented in :mod:`paragraph_planning.architectures` (attention pre-out is
``[batch, pos, head, d_head]``), ``hook`` a :class:`HookPoint`. Returning a tensor replaces the
activation; returning None leaves it alone.
"""
from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .architectures import SITES, ArchSpec, ModelConfig, arch_spec, blocks, get_module, model_config, weights

HookFn = Callable[..., "torch.Tensor | None"]

# Where each site lives: (ArchSpec attribute holding the module path or None for the block, "in"/"out").
_SITE_LOCATION: dict[str, tuple[str | None, str]] = {
    "resid_pre": (None, "in"),
    "attn.pre_out": ("attn_out", "in"),
    "attn.out": ("attn_out", "out"),
    "mlp.pre_out": ("mlp_out", "in"),
    "mlp.out": ("mlp_out", "out"),
    "resid_post": (None, "out"),
}
_INPUT_KEYS = ("input_ids", "inputs_embeds", "pixel_values")
_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


class UnknownHookError(KeyError):
    """A hook name that the model does not have."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


@dataclass(frozen=True)
class HookPoint:
    """What a hook function is told about where it runs.

    ``offset`` is the absolute position of this forward pass's first token: 0 for a full
    forward pass, the number of cached tokens during KV-cached generation.
    """

    name: str
    layer: int
    site: str
    offset: int = 0


class HookedModel:
    """A transformers model with named hook sites. Build one with :func:`paragraph_planning.load_model`.

    ``model.hf`` is the untouched transformers model; ``model.cfg`` its normalised shapes;
    ``model.tokenizer`` (language models) or ``model.processor`` (vision models, may be None).
    """

    def __init__(self, hf_model: nn.Module, tokenizer: Any = None, processor: Any = None, name: str = ""):
        self.hf = hf_model
        self.spec: ArchSpec = arch_spec(hf_model)
        self.cfg: ModelConfig = model_config(hf_model)
        self.tokenizer = tokenizer
        if tokenizer is not None and tokenizer.pad_token is None:  # batching needs one; never a real target
            tokenizer.pad_token = tokenizer.eos_token
        self.processor = processor
        self.name = name or type(hf_model).__name__
        self._blocks = blocks(hf_model)
        self._offset = 0  # set by _track_offset at each forward pass
        self._batch = 1

    def __repr__(self) -> str:
        c = self.cfg
        return (f"HookedModel({self.name!r}, {c.arch}, layers={c.n_layers}, d_model={c.d_model}, "
                f"heads={c.n_heads}x{c.d_head}, d_mlp={c.d_mlp}, device={self.device}, dtype={self.dtype})")

    # ----------------------------------------------------------------- basics
    @property
    def device(self) -> torch.device:
        """Device of the first parameter (the input device under ``device_map``)."""
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype."""
        return next(self.hf.parameters()).dtype

    def hook_names(self, site: str | None = None) -> list[str]:
        """All hook names, layer by layer; ``site="mlp.pre_out"`` keeps one site."""
        if site is not None and site not in SITES:
            raise UnknownHookError(f"Unknown site {site!r}. Valid sites: {', '.join(SITES)}.")
        sites = SITES if site is None else (site,)
        return [f"blocks.{i}.{s}" for i in range(self.cfg.n_layers) for s in sites]

    def parse(self, name: str) -> tuple[int, str]:
        """``"blocks.3.mlp.pre_out"`` -> ``(3, "mlp.pre_out")``; unknown names raise with close matches."""
        m = _NAME.match(name)
        if m and m.group(2) in _SITE_LOCATION and int(m.group(1)) < self.cfg.n_layers:
            return int(m.group(1)), m.group(2)
        close = difflib.get_close_matches(name, self.hook_names(), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownHookError(
            f"Unknown hook name {name!r}.{hint} Names are 'blocks.{{i}}.{{site}}' with i < "
            f"{self.cfg.n_layers} and site one of: {', '.join(SITES)}."
        )

    def weights(self, layer: int) -> dict[str, torch.Tensor]:
        """``W_O`` ``[head, d_head, d_model]``, ``W_in``/``W_gate``/``W_out`` ``[d_mlp, d_model]`` of a block."""
        return weights(self.hf, layer)

    # ----------------------------------------------------------------- inputs and forward
    def to_tokens(self, texts: str | Sequence[str], padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Tokenise text(s) into ``input_ids``/``attention_mask`` ``[batch, pos]`` on the model's device."""
        if self.tokenizer is None:
            raise TypeError(f"{self.name} is a vision model: it takes pixel_values, not text.")
        texts = [texts] if isinstance(texts, str) else list(texts)
        self.tokenizer.padding_side = padding_side
        enc = self.tokenizer(texts, return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    @torch.no_grad()
    def __call__(self, inputs: Any = None, **kwargs: Any) -> torch.Tensor:
        """Forward pass returning logits (``[batch, pos, vocab]`` or ``[batch, classes]``).

        ``inputs`` may be text (str or list), token ids ``[batch, pos]``, or pixel values
        ``[batch, channels, h, w]``; extra keyword arguments go to the transformers model.
        """
        if isinstance(inputs, (str, list, tuple)):
            kwargs = {**self.to_tokens(inputs), **kwargs}
        elif isinstance(inputs, torch.Tensor):
            key = "pixel_values" if self.cfg.kind == "image" else "input_ids"
            kwargs[key] = inputs.to(self.device)
        out = self.hf(**kwargs)
        if self.cfg.kind == "image" and not hasattr(out, "logits"):
            return out.last_hidden_state
        return out.logits

    # ----------------------------------------------------------------- hooks
    def _track_offset(self) -> RemovableHandle:
        def pre(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
            cache = kwargs.get("past_key_values")
            self._offset = int(cache.get_seq_length()) if hasattr(cache, "get_seq_length") else 0
            first = args[0] if args else next((kwargs[k] for k in _INPUT_KEYS if kwargs.get(k) is not None), None)
            self._batch = first.shape[0] if first is not None else 1

        return self.hf.register_forward_pre_hook(pre, with_kwargs=True)

    def _register(self, name: str, fn: HookFn) -> RemovableHandle:
        layer, site = self.parse(name)
        attr, where = _SITE_LOCATION[site]
        block = self._blocks[layer]
        module = block if attr is None else get_module(block, getattr(self.spec, attr))
        heads = (self.cfg.n_heads, self.cfg.d_head) if site == "attn.pre_out" else None
        flat = self.spec.flat_mlp and site.startswith("mlp.")

        def call(x: torch.Tensor) -> torch.Tensor | None:
            view = x.view(self._batch, -1, x.shape[-1]) if flat else x
            view = view.view(*view.shape[:-1], *heads) if heads else view
            y = fn(view, hook=HookPoint(name, layer, site, self._offset))
            if y is None:
                return None
            if y.shape != view.shape:
                raise ValueError(f"Hook on {name} returned shape {tuple(y.shape)}, expected {tuple(view.shape)}.")
            return y.reshape(x.shape)

        if where == "in":
            def pre_hook(_mod: nn.Module, args: tuple, kwargs: dict) -> Any:
                if args:
                    y = call(args[0])
                    return None if y is None else ((y, *args[1:]), kwargs)
                y = call(kwargs["hidden_states"])
                return None if y is None else (args, {**kwargs, "hidden_states": y})

            return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

        def post_hook(_mod: nn.Module, _args: tuple, output: Any) -> Any:
            if isinstance(output, tuple):
                y = call(output[0])
                return None if y is None else (y, *output[1:])
            return call(output)

        return module.register_forward_hook(post_hook)

    @contextmanager
    def hooks(self, fwd: Iterable[tuple[str, HookFn]]) -> Iterator["HookedModel"]:
        """Run hooks ``[(name, fn), ...]`` inside a ``with`` block; always removed, even on error."""
        fwd = list(fwd)
        for name, _ in fwd:  # validate every name before touching the model
            self.parse(name)
        handles: list[RemovableHandle] = []
        try:
            handles.append(self._track_offset())
            handles.extend(self._register(name, fn) for name, fn in fwd)
            yield self
        finally:
            for h in handles:
                h.remove()

    def add_hook(self, name: str, fn: HookFn) -> "HookHandle":
        """Register a persistent hook; returns a handle whose ``remove()`` takes it off."""
        self.parse(name)
        return HookHandle([self._track_offset(), self._register(name, fn)])

    @contextmanager
    def record(
        self,
        names: Iterable[str],
        positions: Sequence[int] | torch.Tensor | None = None,
        device: str | torch.device | None = "cpu",
        dtype: torch.dtype | None = None,
    ) -> Iterator["ActivationCache"]:
        """Record activations at ``names`` during the ``with`` block (detached copies, never destructive).

        ``positions`` selects positions of each forward pass (ints, negatives from the end).
        ``cache[name]`` is the last forward pass's activation; ``cache.history[name]`` all of them.
        """
        cache = ActivationCache()
        pos = None if positions is None else torch.as_tensor(positions, dtype=torch.long)

        def make(name: str) -> HookFn:
            def fn(act: torch.Tensor, *, hook: HookPoint) -> None:
                x = act.detach()
                if pos is not None:
                    x = x[:, pos.to(x.device)]
                cache.add(name, x.to(device=device or x.device, dtype=dtype or x.dtype, copy=True))

            return fn

        with self.hooks([(n, make(n)) for n in names]):
            yield cache

    def run_with_cache(self, inputs: Any, names: Iterable[str], **kwargs: Any) -> tuple[torch.Tensor, "ActivationCache"]:
        """Forward pass returning ``(logits, cache)`` with the activations at ``names``."""
        with self.record(names) as cache:
            logits = self(inputs, **kwargs)
        return logits, cache

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        prompts: str | Sequence[str],
        max_new_tokens: int = 50,
        temperature: float = 0.0,
        seed: int | None = 0,
        **kwargs: Any,
    ) -> list[str]:
        """Batched generation with left padding; returns only the new text of each prompt.

        ``temperature=0`` is greedy. Hooks active around the call apply to every step; positional
        interventions see absolute positions through ``hook.offset``.
        """
        enc = self.to_tokens(prompts, padding_side="left")
        if seed is not None:
            torch.manual_seed(seed)
        sample = temperature > 0
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        out = self.hf.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=sample, pad_token_id=pad,
            **({"temperature": temperature, "top_k": 0, "top_p": 1.0} if sample else {}), **kwargs,
        )
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


class HookHandle:
    """Handle of persistent hooks; ``remove()`` takes them all off (safe to call twice)."""

    def __init__(self, handles: list[RemovableHandle]):
        self._handles = handles

    def remove(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []


class ActivationCache(dict):
    """``name -> tensor`` of the last forward pass; ``history[name]`` keeps every pass in order."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[torch.Tensor]] = {}

    def add(self, name: str, x: torch.Tensor) -> None:
        """Store one forward pass's activation."""
        self[name] = x
        self.history.setdefault(name, []).append(x)
