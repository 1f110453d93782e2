"""Checks of the exercises of chapters 00 (hooks, recording, patching) and 01 (paragraph planning).

Each ``check_<name>(fn)`` runs the learner's function on the tiny random Llama (or small arrays)
and compares it with the package's own implementation; see :mod:`.checking`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..core.interventions import mask_fn, patch_fn
from .checking import TEXTS, Checker, as_array, check, logits_with, site_with, tiny_lm


# ============================================================================ 00 getting started
@check("00.1")
def check_record_resid(c: Checker, fn: Any) -> None:
    """``fn(model, text, layer)`` equals transformers' own hidden state entering block ``layer``."""
    model = tiny_lm()
    for text in TEXTS:
        ids = model.to_tokens(text)
        hidden = model.hf(**ids, output_hidden_states=True).hidden_states  # [n_layers + 1] of [1, pos, d]
        for layer in range(model.cfg.n_layers):
            got = c.call(f"record_resid(model, text, layer={layer})", fn, model, text, layer)
            mistakes = {f"the stream of layer {layer + 1}: you recorded the stream leaving block {layer} "
                        "(resid_post) instead of entering it (resid_pre)": hidden[layer + 1][0]}
            c.close(f"layer {layer} on {text[:16]!r}...: [pos, d_model] matches transformers' hidden state",
                    hidden[layer][0], got, dims=("position", "dimension"), mistakes=mistakes)


def _zero_positions(positions: list[int]) -> Any:
    def fn(act: torch.Tensor, *, hook: Any) -> torch.Tensor:
        act = act.clone()
        act[:, [p for p in positions if p < act.shape[1]]] = 0.0
        return act

    return fn


@check("00.2")
def check_zero_ablation(c: Checker, fn: Any) -> None:
    """The site's activation with ``fn(neurons)`` on ``mlp.pre_out`` equals the package's zero mask's."""
    model = tiny_lm()
    n = model.cfg.d_mlp
    for layer, neurons in ((1, [0, 5, 7]), (0, list(range(0, n, 3))), (1, [])):
        name = model.hook_names("mlp.pre_out", [layer])[0]
        keep = torch.ones(n)
        keep[neurons] = 0
        hook = c.call(f"zero_ablation_hook({len(neurons)} neurons)", fn, neurons)
        if not callable(hook):
            c.fail("zero_ablation_hook should return a hook function", f"it returned a {type(hook).__name__}.")
        got = c.call(f"the model with your hook on {name}", site_with, model, TEXTS[0], name, hook)
        others = torch.zeros(n)
        others[neurons] = 1
        mistakes = {"ablating every neuron except the given ones": site_with(model, TEXTS[0], name, mask_fn(others)),
                    "zeroing POSITIONS, not neurons: index the last dimension (act[..., neurons])":
                    site_with(model, TEXTS[0], name, _zero_positions(neurons))}
        if neurons:
            mistakes["the clean model: nothing was ablated (return the changed activation)"] = site_with(model, TEXTS[0], name)
        c.close(f"{len(neurons)} of {n} neurons of layer {layer} set to zero: the site matches the package's zero mask",
                site_with(model, TEXTS[0], name, mask_fn(keep)), got, dims=("row", "position", "neuron"),
                mistakes=mistakes)


@check("00.3")
def check_patch_position(c: Checker, fn: Any) -> None:
    """``fn(model, base, source, layer, pos)`` equals the package's ``patch_fn`` at one position."""
    model = tiny_lm()
    base, source = "The cat sat on the mat", "The dog sat on the rug"
    names = model.hook_names("resid_pre")
    with model.record(names) as rec:
        model(source)
    for layer, pos in ((0, 4), (1, 5), (1, 19)):
        name = names[layer]

        def patched(p: int, site: str = name) -> torch.Tensor:
            return logits_with(model, base, [(site, patch_fn(rec[site][:, [p]], [p]))])[0, -1]

        got = c.call(f"patch_position(model, base, source, layer={layer}, pos={pos})", fn, model, base, source, layer, pos)
        mistakes = {"patching position " + str(p) + ", not " + str(pos): patched(p) for p in (pos - 1, pos + 1)}
        mistakes["patching every position: replace only position pos"] = \
            logits_with(model, base, [(name, patch_fn(rec[name][0], range(rec[name].shape[1])))])[0, -1]
        mistakes["the unpatched base prompt: the patch had no effect"] = model(base)[0, -1]
        c.close(f"layer {layer}, position {pos} ({base[pos]!r} <- {source[pos]!r}): last-position logits match",
                patched(pos), got, dims=("token",), mistakes=mistakes,
                hint="Expected logits of shape [vocab]: the last position of the only row.")


# ============================================================================ 01 paragraph planning
def toy_word_tokenizer() -> Any:
    """A word-level tokenizer that adds a BOS token and writes ``"\\n\\n"`` as one token (like SmolLM2 alone)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ("The end . We begin again A new start Cats sleep a lot They dream ; bees buzz all day "
             "Honey is sweet").split()
    vocab = {"<pad>": 0, "<bos>": 1, "<unk>": 2, " ": 3, "\n": 4, "\n\n": 5,
             **{w: 6 + i for i, w in enumerate(dict.fromkeys(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n\n|\n|\w+|[^\w\s]| "), "isolated")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", unk_token="<unk>")


BREAK_TEXTS = ("The end.\n\nWe begin again.", "Cats sleep a lot.\n\nThey dream.\n\nThe end.",
               "A new start; bees buzz.\n\n Honey is sweet.", "The end.\nWe begin.\n\nA new start.")


@check("01.1")
def check_break_positions(c: Checker, fn: Any) -> None:
    """``fn(tokenizer, text)`` equals :func:`~paragraph_planning.data.paragraphs.find_break`'s positions."""
    from ..data.paragraphs import find_break

    tokenizers = {"the tiny model's character tokenizer ('\\n\\n' is two tokens)": tiny_lm().tokenizer,
                  "a word tokenizer with a BOS token ('\\n\\n' is one token)": toy_word_tokenizer()}
    for what, tok in tokenizers.items():
        for text in BREAK_TEXTS:
            _, expected, _ = find_break(tok, text)
            got = c.call(f"break_positions on {text!r}", fn, tok, text)
            got = [int(p) for p in as_array(got).reshape(-1)] if got is not None else None
            last = text.rfind("\n\n")
            mistakes = {"the positions of the LAST break, not the first": find_break(tok, text, last)[1]}
            mistakes["shifted by one: positions count the special tokens (BOS) too"] = [p - 1 for p in expected]
            c.equal(f"{what}, {text!r}: positions {expected}", expected, got, mistakes=mistakes,
                    hint="Match tokens by their character offsets (return_offsets_mapping=True), not by a token id.")


@check("01.2")
def check_transplant(c: Checker, fn: Any) -> None:
    """``fn(model, donor_ids, break_pos, neutral_ids, layer)`` equals ``patch_fn`` at the last k positions."""
    model = tiny_lm()
    tok = model.tokenizer
    donor = TEXTS[1]
    ids = tok(donor)["input_ids"]
    start = donor.index("\n\n")
    break_pos = [start, start + 1]  # one token per character
    neutral = [2, *[ids[p] for p in break_pos]]  # BOS + the break
    for layer in range(model.cfg.n_layers):
        name = model.hook_names("resid_post", [layer])[0]
        with model.record([name]) as rec:
            model(torch.tensor([ids]))
        values = rec[name][0, break_pos]

        def run(v: torch.Tensor, positions: list[int], site: str = name) -> torch.Tensor:
            return logits_with(model, torch.tensor([neutral]), [(site, patch_fn(v, positions))])[0, -1]

        got = c.call(f"transplant_break(..., layer={layer})", fn, model, ids, break_pos, neutral, layer)
        mistakes = {"patching the FIRST positions of the neutral prompt, not the last": run(values, [0, 1]),
                    "patching only the last break token": run(values[-1:], [-1]),
                    "the unpatched neutral prompt": model(torch.tensor([neutral]))[0, -1]}
        pre = model.hook_names("resid_pre", [layer])[0]
        with model.record([pre]) as rec_pre:
            model(torch.tensor([ids]))
        mistakes["recording and patching resid_pre instead of resid_post"] = logits_with(
            model, torch.tensor([neutral]), [(pre, patch_fn(rec_pre[pre][0, break_pos], [-2, -1]))])[0, -1]
        c.close(f"layer {layer}: the donor's 2 break tokens into the last 2 of 3 neutral positions: logits match",
                run(values, [-2, -1]), got, dims=("token",), mistakes=mistakes)


@check("01.3")
def check_cosine_distance(c: Checker, fn: Any) -> None:
    """``fn(a, b)`` equals :func:`~paragraph_planning.core.embedding.cosine_distance` row by row."""
    from ..core.embedding import cosine_distance

    rng = np.random.default_rng(0)
    unit = rng.normal(size=(4, 8))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    cases = {"unit vectors": (unit, unit[::-1].copy()),
             "vectors of different lengths": (rng.normal(size=(5, 8)) * [[1], [3], [0.2], [10], [1]], rng.normal(size=(5, 8))),
             "identical and opposite rows": (np.array([[1.0, 2.0], [1.0, 2.0]]), np.array([[2.0, 4.0], [-1.0, -2.0]]))}
    for what, (a, b) in cases.items():
        got = c.call(f"cosine_distances on {what}", fn, a, b)
        dot = (a * b).sum(-1)
        cos = 1 - cosine_distance(a, b)
        mistakes = {"1 − a·b: divide by the lengths of both vectors first": 1 - dot,
                    "the cosine SIMILARITY: the distance is 1 − similarity": cos,
                    "the Euclidean distance": np.linalg.norm(a - b, axis=-1)}
        c.close(f"{what}: {len(a)} distances", cosine_distance(a, b), got, dims=("row",), mistakes=mistakes)


@check("01.4")
def check_paired_bootstrap(c: Checker, fn: Any) -> None:
    """``fn(a, b, n_boot, seed)`` agrees with :func:`~paragraph_planning.core.inference.paired_bootstrap`."""
    from ..core.inference import paired_bootstrap

    rng = np.random.default_rng(1)
    base = rng.normal(0.8, 0.2, size=40)  # per-text distances: texts differ a lot, pairs are close
    cases = {"40 texts, a small paired difference": (base - 0.03 + rng.normal(0, 0.03, 40), base),
             "12 skewed values": (rng.exponential(1.0, 12), np.zeros(12))}
    for what, (a, b) in cases.items():
        ref = paired_bootstrap(a, b, n_boot=4000, seed=3)
        got = c.call(f"paired_bootstrap_ci on {what}", fn, a, b, 4000, 3)
        try:
            lo, hi = (float(v) for v in got)
        except (TypeError, ValueError):
            c.fail(f"{what}: expected a pair (lo, hi)", f"got {got!r}")
        width = ref.hi - ref.lo
        tol = 0.1 * width
        if abs(lo - ref.lo) <= tol and abs(hi - ref.hi) <= tol:
            c.ok(f"{what}: ({lo:.4f}, {hi:.4f}) agrees with the package's ({ref.lo:.4f}, {ref.hi:.4f})")
            continue
        ratio = (hi - lo) / width if width > 0 else float("nan")
        why = []
        if ratio > 2:
            why.append(f"Your interval is {ratio:.1f} times as wide as the paired one: resample the PAIRS (the same "
                       "random indices for a and b, or resample the differences a − b), not a and b separately.")
        if lo > hi:
            why.append("Your lo is above your hi.")
        c.fail(f"{what}: expected about ({ref.lo:.4f}, {ref.hi:.4f}), got ({lo:.4f}, {hi:.4f})", *why,
               "Draw with rng = np.random.default_rng(seed); idx = rng.integers(0, n, size=(n_boot, n)).")
