"""Chapter 0 (getting started): the patch it demonstrates and the sentences that report what a run shows.

The tour's results depend on the model (a real one, or a tiny random one in the test profile), so
its text is chosen by them: :func:`norm_prose` and :func:`sweep_prose` return :class:`~paragraph_planning.prose.Prose`.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import torch

from ..core.architectures import hook_name
from ..core.interventions import patch_fn
from ..prose import Prose, listing


def patch_position(model: Any, base_prompt: str, source_prompt: str) -> int:
    """The first token position where the two prompts differ (they must have as many tokens)."""
    base = model.to_tokens(base_prompt)["input_ids"]
    source = model.to_tokens(source_prompt)["input_ids"]
    if base.shape != source.shape:
        raise ValueError(f"base_prompt and source_prompt must have as many tokens: {base.shape[-1]} and "
                         f"{source.shape[-1]} with this tokenizer.")
    differ = (base != source).nonzero()
    if len(differ) == 0:
        raise ValueError("base_prompt and source_prompt are the same text: nothing to patch.")
    return int(differ[0, 1])


def patch_sweep(model: Any, base_prompt: str, source: Mapping[str, torch.Tensor], pos: int,
                answers: Mapping[str, int]) -> pd.DataFrame:
    """Patch position ``pos`` of ``resid_pre`` with ``source`` (recorded activations), one layer at a time.

    Returns one row per layer and answer: ``layer``, ``answer`` (a key of ``answers``), ``token``
    and the ``probability`` of that answer's token at the last position of the patched run.
    """
    rows = []
    for layer in range(model.cfg.n_layers):
        name = hook_name(layer, "resid_pre")
        with model.hooks([(name, patch_fn(source[name][:, [pos]], [pos]))]):
            probs = model(base_prompt)[0, -1].float().softmax(-1)
        rows += [{"layer": layer, "answer": k, "token": model.tokenizer.decode([t]), "probability": float(probs[t])}
                 for k, t in answers.items()]
    return pd.DataFrame(rows)


def norm_prose(norms: torch.Tensor) -> Prose:
    """What the residual-norm heatmap shows: the first token's norm against the others' at the last layer.

    ``norms``: ``[layer, pos]``.
    """
    last = norms[-1].float()
    ratio = float(last[0] / last[1:].median()) if last.numel() > 1 else float("nan")
    if ratio >= 3:
        how = "far larger than those of the other positions, as in most language models"
    elif ratio >= 1.5:
        how = "larger than those of the other positions"
    elif ratio > 1 / 1.5:
        how = "about as large as those of the other positions (no outsized first token here)"
    else:
        how = "smaller than those of the other positions (no outsized first token here)"
    return Prose("After the last layer, the first token's residual norm is {ratio:.1f} times the median of the other "
                 "positions: {how}.", ratio=ratio, how=how)


def _runs(layers: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0 to 2 and 5"``."""
    spans: list[list[int]] = []
    for x in layers:
        if spans and x == spans[-1][-1] + 1:
            spans[-1].append(x)
        else:
            spans.append([x])
    return listing([item for s in spans for item in ([f"{s[0]} to {s[-1]}"] if len(s) > 2 else map(str, s))])


def sweep_prose(sweep: pd.DataFrame, pos: int) -> Prose:
    """Which layers' patch makes the source's answer win, read from :func:`patch_sweep`'s rows."""
    wide = sweep.pivot(index="layer", columns="answer", values="probability").sort_index()
    tokens = sweep.drop_duplicates("answer").set_index("answer")["token"]
    flipped = [int(layer) for layer in wide.index if wide.loc[layer, "source"] > wide.loc[layer, "base"]]
    n = len(wide)
    values = dict(pos=pos, base=tokens["base"], source=tokens["source"], n=n)
    if tokens["base"] == tokens["source"]:
        return Prose("This model gives both prompts the same answer ({base!r}), so patching position {pos} cannot "
                     "change which answer wins; the chart shows only how much the patch moves its probability.",
                     **values)
    if not flipped:
        return Prose("In this run, patching position {pos} at any single layer leaves the base answer {base!r} more "
                     "likely than the source's {source!r}: the patched token alone does not carry the answer at any of "
                     "the {n} layers.", **values)
    if len(flipped) == n:
        return Prose("In this run, patching position {pos} makes the source's answer {source!r} win at every one of "
                     "the {n} layers: the answer is still read from that position at the last layer.", **values)
    if flipped == list(range(flipped[-1] + 1)):
        return Prose("In this run, patching position {pos} makes the source's answer {source!r} win at layers "
                     "{layers} and no later: from layer {moved} on, the information has already left that position.",
                     layers=_runs(flipped), moved=flipped[-1] + 1, **values)
    return Prose("In this run, patching position {pos} makes the source's answer {source!r} win at layers {layers} "
                 "(of {n}), and the base answer {base!r} at the others: no single layer boundary separates them.",
                 layers=_runs(flipped), **values)
