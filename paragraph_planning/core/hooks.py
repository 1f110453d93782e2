"""`HookedModel`: one hook vocabulary over any mapped transformers model, scoped hooks, recording.

A hook function has one signature, ``fn(act, *, hook) -> Tensor | None``: ``act`` is the site's
activation in the shape documented in :mod:`paragraph_planning.core.architectures` (attention pre-out is
``[batch, pos, head, d_head]``), ``hook`` a :class:`HookPoint`. Returning a tensor replaces the
activation; returning None leaves it alone.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..util import did_you_mean
from .architectures import (
    SITES,
    ArchSpec,
    ModelConfig,
    arch_spec,
    blocks,
    get_module,
    hook_name,
    model_config,
    parse_name,
    weights,
)

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


class _StopForward(Exception):
    """Raised by :meth:`HookedModel.run_body`'s hook to end a forward pass early; never escapes it."""


def _stop_forward(_mod: nn.Module, _args: tuple, _output: Any) -> None:
    raise _StopForward


class UnknownHookError(KeyError):
    """A hook name that the model does not have.

    Example:
        >>> pp.load_model("tiny-llama").hook_names("mlp")
        Traceback (most recent call last):
        paragraph_planning.core.hooks.UnknownHookError: Unknown site 'mlp'. Did you mean ...? Valid sites: ...
    """

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


@dataclass(frozen=True)
class HookPoint:
    """What a hook function is told about where it runs.

    ``offset`` is the absolute position of this forward pass's first token: 0 for a full
    forward pass, the number of cached tokens during KV-cached generation. ``prompt_len`` is the
    length of the prompt: the whole input of a plain forward pass, the padded prompt during
    generation (so negative positions count from the end of the prompt in every pass).

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> def show(act, *, hook):
        ...     print(hook.name, hook.layer, hook.site, hook.offset, hook.prompt_len, tuple(act.shape))
        >>> with model.hooks([("blocks.1.attn.pre_out", show)]):
        ...     _ = model("Hello")
        blocks.1.attn.pre_out 1 attn.pre_out 0 5 (1, 5, 4, 8)
    """

    name: str
    layer: int
    site: str
    offset: int = 0
    prompt_len: int = 0


class HookedModel:
    """A transformers model with named hook sites. Build one with :func:`paragraph_planning.load_model`.

    ``model.hf`` is the untouched transformers model; ``model.cfg`` its normalised shapes;
    ``model.tokenizer`` (language models) or ``model.processor`` (vision models, may be None).
    Forward passes that do not generate (``model(...)``, :meth:`record`, :meth:`run_with_cache`,
    and everything built on them) run without a KV cache.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> model("Bees make honey.").shape  # logits [batch, pos, vocab]
        torch.Size([1, 16, 260])
        >>> name = model.hook_names("mlp.pre_out", layers=[1])[0]
        >>> logits, cache = model.run_with_cache(["Bees make honey.", "Hi"], [name])
        >>> name, cache[name].shape
        ('blocks.1.mlp.pre_out', torch.Size([2, 16, 48]))
        >>> with model.hooks([(name, lambda act, hook: torch.zeros_like(act))]):  # zero-ablate layer 1's MLP
        ...     ablated = model("Bees make honey.")
        >>> torch.equal(ablated, model("Bees make honey."))  # ablated differs; after the block the hook is gone
        False
        >>> text = model.generate("Bees", max_new_tokens=5)  # a random tiny model writes noise
        >>> len(text)
        1
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
        self._prompt_len = 0
        self._generation_prompt: int | None = None  # set while generate() runs
        self.weight_files: tuple[Path, ...] = ()  # set by load_model; used by fingerprint()
        self.source: dict[str, Any] = {"name": self.name}
        self._fingerprint: dict[str, Any] | None = None

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

    def hook_names(self, sites: str | Sequence[str] | None = None, layers: Iterable[int] | None = None) -> list[str]:
        """Hook names ``blocks.{i}.{site}``, layer by layer (all sites and layers by default).

        ``sites``: one site (``"mlp.pre_out"``) or several; ``layers``: layer indices. Unknown sites
        or layers raise naming the valid ones.
        """
        chosen = SITES if sites is None else ((sites,) if isinstance(sites, str) else tuple(sites))
        for s in chosen:
            if s not in SITES:
                raise UnknownHookError(f"Unknown site {s!r}.{did_you_mean(s, SITES)} Valid sites: {', '.join(SITES)}.")
        ids = range(self.cfg.n_layers) if layers is None else [int(i) for i in layers]
        bad = [i for i in ids if not 0 <= i < self.cfg.n_layers]
        if bad:
            raise UnknownHookError(f"Layer(s) {bad} out of range: {self.name} has layers 0..{self.cfg.n_layers - 1}.")
        return [hook_name(i, s) for i in ids for s in chosen]

    def parse(self, name: str) -> tuple[int, str]:
        """``"blocks.3.mlp.pre_out"`` -> ``(3, "mlp.pre_out")``; unknown names raise with close matches."""
        parsed = parse_name(name)
        if parsed is not None and parsed[1] in _SITE_LOCATION and parsed[0] < self.cfg.n_layers:
            return parsed
        raise UnknownHookError(
            f"Unknown hook name {name!r}.{did_you_mean(name, self.hook_names(), cutoff=0.6)} Names are "
            f"'blocks.{{i}}.{{site}}' with i < {self.cfg.n_layers} and site one of: {', '.join(SITES)}."
        )

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this model's numbers in cache keys: name, dtype, device type and a weight hash.

        The hash is that of the weight files the model was loaded from (computed once per file and
        remembered, see :func:`paragraph_planning.util.file_sha256`), or of the weights in memory for
        models built in memory (tiny models, random-init twins). Weight edits made after loading
        (e.g. :func:`~paragraph_planning.core.pruning.delete_neurons`) are not seen: undo them first.
        """
        if self._fingerprint is None:
            import hashlib

            from ..util import file_sha256

            h = hashlib.sha256()
            if self.weight_files:
                for f in self.weight_files:
                    h.update(Path(f).name.encode() + file_sha256(f).encode())
            else:
                for key, t in sorted(self.hf.state_dict().items()):
                    h.update(key.encode())
                    h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = {"model": self.name, "dtype": str(self.dtype).removeprefix("torch."),
                                 "device": self.device.type, "weights": h.hexdigest()[:20]}
        return dict(self._fingerprint)

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

    def _inputs(self, inputs: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Model keyword arguments from text, token ids or pixels; empty inputs raise one ValueError."""
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and all(isinstance(t, str) for t in inputs)):
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            if not texts or any(t == "" for t in texts):
                raise ValueError("Empty text: a forward pass needs at least one token per text.")
            kwargs = {**self.to_tokens(texts), **kwargs}
        elif isinstance(inputs, torch.Tensor):
            key = "pixel_values" if self.cfg.kind == "image" else "input_ids"
            kwargs[key] = inputs.to(self.device)
        elif inputs is not None:
            raise TypeError(f"inputs must be text, a list of texts or a tensor, got {type(inputs).__name__}.")
        ids = kwargs.get("input_ids")
        if ids is not None and (ids.ndim != 2 or ids.numel() == 0):
            raise ValueError(f"input_ids must be [batch, pos] with at least one token, got shape {tuple(ids.shape)}.")
        if self.cfg.kind == "causal-lm":
            kwargs.setdefault("use_cache", False)  # a pass that does not generate needs no KV cache
        return kwargs

    @torch.no_grad()
    def __call__(self, inputs: Any = None, **kwargs: Any) -> torch.Tensor:
        """Forward pass returning logits (``[batch, pos, vocab]`` or ``[batch, classes]``).

        ``inputs`` may be text (str or list), token ids ``[batch, pos]``, or pixel values
        ``[batch, channels, h, w]``; extra keyword arguments go to the transformers model. Language
        models run without a KV cache unless ``use_cache=True`` is passed.
        """
        out = self.hf(**self._inputs(inputs, kwargs))
        if self.cfg.kind == "image" and not hasattr(out, "logits"):
            return out.last_hidden_state
        return out.logits

    @torch.no_grad()
    def run_body(self, inputs: Any = None, *, last_layer: int | None = None, **kwargs: Any) -> None:
        """Forward pass for its hooks only: blocks ``0..last_layer`` run, then the pass stops.

        Takes the same inputs as :meth:`__call__` and returns nothing: no final norm, no head, no logits
        (the unembedding is a large part of a small language model's forward pass), and no block after
        ``last_layer`` (default: the last block). Hooks at blocks ``<= last_layer`` see exactly what
        they see in a full forward pass; hooks at later blocks do not run. The pass is ended by an
        exception raised after every hook on block ``last_layer`` has run, caught here; the stopping
        hook is removed whatever happens, and the model is left as it was.
        """
        layer = self.cfg.n_layers - 1 if last_layer is None else int(last_layer)
        if not 0 <= layer < self.cfg.n_layers:
            raise UnknownHookError(f"Layer {layer} out of range: {self.name} has layers 0..{self.cfg.n_layers - 1}.")
        kwargs = self._inputs(inputs, kwargs)
        handle = self._blocks[layer].register_forward_hook(_stop_forward)  # added last: runs after the others
        try:
            self.hf(**kwargs)
        except _StopForward:
            return
        finally:
            handle.remove()
        raise RuntimeError(f"The forward pass of {self.name} ended without running block {layer}.")

    # ----------------------------------------------------------------- hooks
    def _track_offset(self) -> RemovableHandle:
        def pre(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            self._offset = int(cache.get_seq_length()) if hasattr(cache, "get_seq_length") else 0
            first = args[0] if args else next((kwargs[k] for k in _INPUT_KEYS if kwargs.get(k) is not None), None)
            self._batch = first.shape[0] if first is not None else 1
            seq = first.shape[1] if first is not None and first.dim() >= 2 else 1
            self._prompt_len = self._generation_prompt if self._generation_prompt is not None else self._offset + seq

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
            y = fn(view, hook=HookPoint(name, layer, site, self._offset, self._prompt_len))
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
    @contextmanager
    def generating(self, prompt_len: int) -> Iterator[None]:
        """Inside the block, hooks see ``hook.prompt_len = prompt_len`` in every pass (used by the decoder)."""
        before = self._generation_prompt
        self._generation_prompt = int(prompt_len)
        try:
            yield
        finally:
            self._generation_prompt = before

    def generate(
        self,
        prompts: str | Sequence[str],
        max_new_tokens: int = 50,
        temperature: float = 0.0,
        seed: int | None = 0,
        batch_size: int = 64,
        use_cache: bool = True,
    ) -> list[str]:
        """Batched generation (left padding); returns only the new text of each prompt.

        ``temperature=0`` is greedy; sampling uses a local generator seeded with ``seed`` (the
        global random state is untouched). Hooks active around the call apply to every step.
        See :mod:`paragraph_planning.core.generation`.
        """
        from .generation import generate_ids

        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts or any(t == "" for t in texts):
            raise ValueError("Empty prompt: generation needs at least one token per prompt.")
        if self.tokenizer is None:
            raise TypeError(f"{self.name} is a vision model: it cannot generate text.")
        rows = [self.tokenizer(t)["input_ids"] for t in texts]
        return generate_ids(self, rows, max_new_tokens, temperature, seed, batch_size, use_cache=use_cache)


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
    """``name -> tensor`` of the last forward pass; ``history[name]`` keeps every pass in order.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> with model.record(["blocks.0.resid_post"]) as cache:
        ...     _ = model("one pass")
        ...     _ = model("and another")
        >>> cache["blocks.0.resid_post"].shape, len(cache.history["blocks.0.resid_post"])
        (torch.Size([1, 11, 32]), 2)
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[torch.Tensor]] = {}

    def add(self, name: str, x: torch.Tensor) -> None:
        """Store one forward pass's activation."""
        self[name] = x
        self.history.setdefault(name, []).append(x)
