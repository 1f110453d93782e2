"""Interventions as hook functions, plus persistent neuron masks.

Every factory returns a function with the one hook signature ``fn(act, *, hook)``, to be used as
``with model.hooks([(name, fn)]):``. Zero, mean, peak and resample ablation and pruning are all
the same mask ``x·m + c·(1−m)`` with different ``c``; see :func:`mask_fn`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .hooks import HookedModel, HookFn, HookHandle, HookPoint


def _as_site(t: torch.Tensor | float, act: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-neuron tensor (flat ``[n]`` or site-shaped) to ``act``'s trailing shape."""
    t = torch.as_tensor(t, device=act.device, dtype=act.dtype)
    trailing = act.shape[2:]
    if t.dim() >= 1 and len(trailing) > 1 and t.shape[-1] == trailing.numel():
        t = t.view(*t.shape[:-1], *trailing)
    return t


def mask_fn(keep: torch.Tensor, values: torch.Tensor | float = 0.0) -> HookFn:
    """Replace neurons: ``x·m + c·(1−m)`` with ``m = keep`` (1 keeps, 0 replaces; soft values allowed).

    ``keep`` and ``values`` are per-neuron, shaped like the site per token (``[d_mlp]``,
    ``[head, d_head]``) or flat; ``values`` may also be ``[batch, pos, ...]`` (resampling: the value
    the neuron had at the same absolute position of another input).

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> keep = torch.ones(48)
        >>> keep[:10] = 0  # replace MLP neurons 0..9 of layer 1 ...
        >>> seen = {}
        >>> with model.hooks([("blocks.1.mlp.pre_out", pp.mask_fn(keep, values=0.5)),  # ... by 0.5
        ...                   ("blocks.1.mlp.pre_out", lambda act, hook: seen.update(x=act))]):
        ...     _ = model("Bees make honey.")
        >>> seen["x"][0, :, :10].unique().tolist(), bool((seen["x"][0, :, 10:] != 0.5).all())
        ([0.5], True)
    """
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def fn(act: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        key = (act.device, act.dtype)
        if key not in cache:
            m = _as_site(keep, act).to(act.dtype)
            cache[key] = (m, 1 - m)
        m, inv = cache[key]
        c = _as_site(values, act)
        if c.dim() == act.dim():  # per-position values (resampling): align with absolute positions
            c = c[: act.shape[0], hook.offset: hook.offset + act.shape[1]]
            if c.shape[:2] != act.shape[:2]:
                raise ValueError(f"{hook.name}: per-position values of shape {tuple(c.shape)} do not cover "
                                 f"activations of shape {tuple(act.shape)}.")
        return act * m + c * inv

    return fn


def _window(positions: torch.Tensor, hook: HookPoint, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``i`` into ``positions`` that fall in this forward pass, and their local positions."""
    local = positions - hook.offset
    inside = (local >= 0) & (local < seq)
    return inside.nonzero().flatten(), local[inside]


def _absolute(positions: torch.Tensor, hook: HookPoint) -> torch.Tensor:
    """Negative positions counted from the end of the prompt of this call (``hook.prompt_len``)."""
    return torch.where(positions < 0, positions + hook.prompt_len, positions)


def patch_fn(values: torch.Tensor, positions: Sequence[int], scale: float = 1.0) -> HookFn:
    """Set a site at absolute ``positions`` to ``values``: ``x + scale·(v − x)`` (scale 1 replaces).

    ``values``: ``[k, *site]`` (same for every row) or ``[batch, k, *site]``; ``positions``: ``k``
    ints, negative ones counted from the end of the prompt of each call (a plain forward pass's
    whole input; the padded prompt during generation), so one function can be reused across
    prompts of different lengths. Correct with and without the KV cache: each absolute position
    gets the patch in every pass that computes it.

    Example: activation patching, the residual stream of one prompt's last position into another's.

        >>> model = pp.load_model("tiny-llama")
        >>> name = "blocks.0.resid_post"
        >>> _, source = model.run_with_cache("Cats purr.", [name])
        >>> value = source[name][:, -1]  # [1, d_model]: the last position of the source run
        >>> with model.hooks([(name, pp.patch_fn(value, positions=[-1]))]):
        ...     patched = model.run_with_cache("Bees hum.", [name])[1][name]
        >>> torch.equal(patched[0, -1], value[0]), patched.shape
        (True, torch.Size([1, 9, 32]))
    """
    pos = torch.as_tensor(list(positions), dtype=torch.long)

    def fn(act: torch.Tensor, *, hook: HookPoint) -> torch.Tensor | None:
        idx, local = _window(_absolute(pos, hook), hook, act.shape[1])
        if idx.numel() == 0:
            return None
        v = values.to(act.device, act.dtype)
        v = v[:, idx] if v.dim() == act.dim() else v[idx].unsqueeze(0)
        out = act.clone()
        cur = out[:, local.to(act.device)]
        out[:, local.to(act.device)] = cur + scale * (v - cur)
        return out

    return fn


def add_fn(vector: torch.Tensor, positions: Sequence[int] | None = None, scale: float = 1.0) -> HookFn:
    """Add ``scale·vector`` (site-shaped per token) at ``positions`` (as in :func:`patch_fn`; None = all).

    Example: steering, adding a direction to the residual stream at the first two positions.

        >>> model = pp.load_model("tiny-llama")
        >>> name, direction = "blocks.0.resid_post", torch.ones(32)
        >>> clean = model.run_with_cache("Bees hum.", [name])[1][name]
        >>> with model.hooks([(name, pp.add_fn(direction, positions=[0, 1], scale=2.0))]):
        ...     steered = model.run_with_cache("Bees hum.", [name])[1][name]
        >>> [round(d, 4) for d in (steered - clean)[0, :3, 0].tolist()]
        [2.0, 2.0, 0.0]
    """
    pos = None if positions is None else torch.as_tensor(list(positions), dtype=torch.long)

    def fn(act: torch.Tensor, *, hook: HookPoint) -> torch.Tensor | None:
        v = scale * _as_site(vector, act)
        if pos is None:
            return act + v
        _, local = _window(_absolute(pos, hook), hook, act.shape[1])
        if local.numel() == 0:
            return None
        out = act.clone()
        out[:, local.to(act.device)] += v
        return out

    return fn


class NeuronMasks:
    """Persistent per-neuron masks on neuron sites (pruning): stays on until :meth:`remove`.

    ``masks.set("blocks.3.mlp.pre_out", keep, values)`` installs or replaces one site's mask;
    ``keep`` is boolean/float per neuron (flat or site-shaped). Also a context manager.
    :func:`paragraph_planning.prune` builds one from a selection.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> clean = model("Bees make honey.")
        >>> keep = torch.ones(4, 8, dtype=torch.bool)
        >>> keep[2] = False  # head 2 of layer 0
        >>> masks = pp.NeuronMasks(model).set("blocks.0.attn.pre_out", keep)
        >>> masks.n_masked(), torch.equal(model("Bees make honey."), clean)
        ({'blocks.0.attn.pre_out': 8}, False)
        >>> masks.remove()
        >>> torch.equal(model("Bees make honey."), clean)
        True
    """

    def __init__(self, model: HookedModel):
        self.model = model
        self.keep: dict[str, torch.Tensor] = {}
        self.values: dict[str, torch.Tensor | float] = {}
        self._handles: dict[str, HookHandle] = {}

    def set(self, name: str, keep: torch.Tensor, values: torch.Tensor | float = 0.0) -> "NeuronMasks":
        """Install (or replace) the mask of one site."""
        layer, site = self.model.parse(name)
        n = self.model.cfg.n_neurons(site)
        keep = torch.as_tensor(keep)
        if keep.numel() != n:
            raise ValueError(f"Mask for {name} has {keep.numel()} entries; the site has {n} neurons.")
        self.clear(name)
        self.keep[name], self.values[name] = keep.flatten(), values
        self._handles[name] = self.model.add_hook(name, mask_fn(keep.flatten(), _flat(values)))
        return self

    def update(self, masks: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor] | None = None) -> "NeuronMasks":
        """Set several sites at once (``values`` per site, default zero)."""
        for name, keep in masks.items():
            self.set(name, keep, (values or {}).get(name, 0.0))
        return self

    def clear(self, name: str) -> None:
        """Remove one site's mask (no-op if absent)."""
        if name in self._handles:
            self._handles.pop(name).remove()
            self.keep.pop(name), self.values.pop(name)

    def remove(self) -> None:
        """Remove every mask: the model is as before."""
        for name in list(self._handles):
            self.clear(name)

    def n_masked(self) -> dict[str, int]:
        """Number of replaced neurons per site (entries with keep < 1)."""
        return {name: int((k < 1).sum()) for name, k in self.keep.items()}

    def __enter__(self) -> "NeuronMasks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _flat(values: torch.Tensor | float) -> torch.Tensor | float:
    return values.flatten() if isinstance(values, torch.Tensor) and values.dim() > 1 else values
