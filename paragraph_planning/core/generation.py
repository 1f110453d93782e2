"""Batched text generation from token ids: one decoding loop for every caller.

:meth:`HookedModel.generate` (text prompts) and :func:`generate_ids` (token-id prompts, with a hook
list per batch) both end in :func:`_decode`, a plain greedy / temperature-sampling loop over a
left-padded batch with the KV cache. Sampling draws from a local :class:`torch.Generator` seeded
with ``seed``: the global random state is neither read nor changed, so the same seed gives the
same text whatever ran before. Hooks active around the call apply at every step; a hook sees
``hook.offset`` (the absolute position of the pass's first token) and ``hook.prompt_len`` (the
length of the padded prompt), so positional interventions land on the same tokens with and
without the cache.

Greedy decoding gives exactly the tokens of ``transformers``' ``generate`` (tested per
architecture). Sampling is ``softmax(logits / temperature)`` with no top-k/top-p truncation, as
in the paragraph-planning paper (T = 0.3).
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

if TYPE_CHECKING:
    from .hooks import HookedModel

StopFn = Callable[[str], bool]


def pad_rows(rows: Sequence[Sequence[int]], pad: int, device: torch.device | str = "cpu", side: str = "left",
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows of any lengths as ``input_ids`` and ``attention_mask`` ``[n_rows, max_len]``.

    ``side="left"`` pads before the tokens (generation: every row ends at the last position);
    ``"right"`` pads after them, so each token keeps its absolute position.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}.")
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("Every prompt needs at least one token (got an empty prompt or no prompts).")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        at = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, at] = torch.tensor(list(r), dtype=torch.long)
        mask[i, at] = 1
    return ids.to(device), mask.to(device)


def _eos_ids(model: "HookedModel") -> list[int]:
    eos = getattr(getattr(model.hf, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = model.tokenizer.eos_token_id
    return [] if eos is None else [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _cache_of(out: Any) -> Any:
    for key in ("cache", "past_key_values"):
        value = getattr(out, key, None)
        if value is not None:
            return value
    raise RuntimeError("The model returned no KV cache although use_cache=True.")


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's pad id (its eos id when it has none; 0 when it has neither)."""
    for t in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if t is not None:
            return int(t)
    return 0


@torch.no_grad()
def _decode(model: "HookedModel", ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, temperature: float,
            generator: torch.Generator | None, stop: StopFn | None, use_cache: bool) -> torch.Tensor:
    """New tokens ``[batch, <= max_new_tokens]`` for a left-padded batch (finished rows get pad tokens)."""
    tok = model.tokenizer
    pad = pad_id(tok)
    eos = torch.tensor(_eos_ids(model), dtype=torch.long, device=ids.device)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new: list[torch.Tensor] = []
    seq, att, cache = ids, mask, None
    cache_kw = "cache" if "cache" in inspect.signature(model.hf.forward).parameters else "past_key_values"
    with model.generating(ids.shape[1]):
        for _ in range(max_new_tokens):
            pos = att.cumsum(-1) - 1
            pos = pos.masked_fill(att == 0, 1)
            step_ids, step_pos = (seq, pos) if cache is None else (seq[:, -1:], pos[:, -1:])
            out = model.hf(input_ids=step_ids, attention_mask=att, position_ids=step_pos, use_cache=use_cache,
                           logits_to_keep=1, **{cache_kw: cache})
            cache = _cache_of(out) if use_cache else None
            logits = out.logits[:, -1].float()
            if temperature > 0:
                probs = torch.softmax(logits / temperature, -1)
                nxt = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(ids.device)
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            new.append(nxt)
            done = done | torch.isin(nxt, eos)
            if stop is not None:
                texts = tok.batch_decode(torch.stack(new, 1), skip_special_tokens=True)
                done = done | torch.tensor([stop(t) for t in texts], dtype=torch.bool, device=ids.device)
            seq = torch.cat([seq, nxt[:, None]], 1)
            att = torch.cat([att, torch.ones_like(att[:, :1])], 1)
            if bool(done.all()):
                break
    return torch.stack(new, 1) if new else ids[:, :0]


def generate_ids(
    model: "HookedModel",
    rows: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 0.3,
    seed: int | None = 0,
    batch_size: int = 64,
    hooks: Callable[[slice], list] | None = None,
    stop: StopFn | None = None,
    use_cache: bool = True,
) -> list[str]:
    """Generate from token-id prompts (left-padded batches); returns each row's new text.

    ``temperature=0`` is greedy. ``seed`` seeds one local generator for the whole call (None: a
    fresh unseeded one), so row ``i``'s text depends on the seed and the batch it falls in.
    ``hooks(rows_slice)`` returns the hook list for one batch (e.g. patches with that batch's
    values); ``stop(new_text)`` ends a row early.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> rows = [model.tokenizer("Bees")["input_ids"], model.tokenizer("Hi")["input_ids"]]
        >>> a = pp.generate_ids(model, rows, max_new_tokens=4, temperature=1.0, seed=3)
        >>> a == pp.generate_ids(model, rows, max_new_tokens=4, temperature=1.0, seed=3), len(a)  # same seed, same text
        (True, 2)
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
    if model.tokenizer is None:
        raise TypeError(f"{model.name} has no tokenizer: generation needs a language model.")
    gen = torch.Generator()
    if seed is not None:
        gen.manual_seed(int(seed))
    else:
        gen.seed()
    pad = pad_id(model.tokenizer)
    out: list[str] = []
    for start in range(0, len(rows), batch_size):
        chunk = slice(start, min(start + batch_size, len(rows)))
        ids, mask = pad_rows(rows[chunk], pad, model.device)
        with model.hooks(hooks(chunk) if hooks is not None else []):
            new = _decode(model, ids, mask, max_new_tokens, temperature, gen if temperature > 0 else None, stop,
                          use_cache)
        out += model.tokenizer.batch_decode(new, skip_special_tokens=True)
    return out
