"""Cost of the paragraph-planning patch in batched generation: plain vs patched, same prompts.

Prompts: the neutral prompts of the chapter (sink token + a paragraph break) for ``--texts`` real
two-paragraph texts from Wikipedia leads (no generation needed to build them). *Plain* generates
from them with no hooks; *patched* generates from the same prompts with the break's residual stream
patched in at every layer (``resid_post`` of all 30 layers of SmolLM2-135M, through
:func:`~paragraph_planning.core.interventions.patch_fn`, which stays correct under the KV cache).
Rows stop only at the end-of-text token, so the work is nearly the same (the new tokens are counted).

One run measures A-B-A (plain, patched, plain) and prints patched time over the mean of the two
plain times, in wall-clock and in process CPU time (CPU time is steadier on a shared machine).
Target: at most 1.1x.

    python benchmarks/patched_generation.py [--model smollm2-135m] [--texts 16] [--tokens 32] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from paragraph_planning import load_model
from paragraph_planning.core.generation import generate_ids
from paragraph_planning.data.paragraph_texts import TextConfig, make_texts
from paragraph_planning.papers import planning as patching


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--texts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    ts = make_texts(model, TextConfig(source="wiki", n_prompts=max(2, args.texts // 4), copies=4))
    cfg = patching.PlanningConfig()
    values = patching.break_activations(model, ts.splits, patching.site_names(model, "resid"))
    prompts = patching.neutral_rows(ts.splits, "auto", model.tokenizer)
    kw = dict(max_new_tokens=args.tokens, temperature=cfg.temperature, seed=0)

    def plain() -> None:
        generate_ids(model, prompts, **kw)

    def patched() -> None:
        generate_ids(model, prompts, hooks=patching.patch_hooks(values), **kw)

    plain()  # warm-up (allocations, first-call overheads)
    a1, b, a2 = timed(plain), timed(patched), timed(plain)
    print(f"{args.model}: {len(prompts)} prompts x {args.tokens} new tokens, {len(values)} patched sites, "
          f"{torch.get_num_threads()} threads")
    for i, what in enumerate(("wall", "cpu")):
        base = (a1[i] + a2[i]) / 2
        print(f"{what:>4}: plain {a1[i]:.2f} s / {a2[i]:.2f} s, patched {b[i]:.2f} s -> ratio {b[i] / base:.3f}x")


if __name__ == "__main__":
    main()
