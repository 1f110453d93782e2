"""Time one selective-pruning step (collect + score + select + evaluate) on the chapter's defaults.

    python benchmarks/pruning_step.py                       # SmolLM2, python-code vs wiki-en
    python benchmarks/pruning_step.py --model tiny-llama --collect-tokens 2048 --eval-tokens 2048

Prints the wall and CPU seconds of each part, tokens per second and CPU milliseconds per token, so
the chapter's budget (``collect_tokens``, ``eval_tokens``, ``n_steps``) can be chosen from measured numbers:
one iterative step costs about ``collect + score + select + evaluate``; one-shot steps after the
first cost only ``select + evaluate``. Nothing is cached.
"""
from __future__ import annotations

import argparse
import time

import torch

from paragraph_planning import load_model
from paragraph_planning.core.interventions import NeuronMasks
from paragraph_planning.core.pruning import DEFAULT_EPS, score_neurons, select_top
from paragraph_planning.papers import unlearning as U


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--forget", default="python-code")
    p.add_argument("--retain", default="wiki-en")
    p.add_argument("--collect-tokens", type=int, default=8192)
    p.add_argument("--eval-tokens", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--ff-frac", type=float, default=0.02)
    p.add_argument("--attn-frac", type=float, default=0.0)
    p.add_argument("--score", default="abs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model = load_model(args.model)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    pair = U.text_pair(model.tokenizer, args.forget, args.retain, args.collect_tokens, args.eval_tokens, args.seq_len)
    t_data = time.perf_counter() - t0
    sites = [s for s, f in (("mlp.pre_out", args.ff_frac), ("attn.pre_out", args.attn_frac)) if f > 0]
    names = [n for s in sites for n in model.hook_names(s)]
    collect = U.collect_fn(pair)

    parts: dict[str, tuple[float, float]] = {}  # part -> (wall s, CPU s of this process)

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        parts[name] = (time.perf_counter() - w, time.process_time() - c)
        return out

    forget, retain = timed("collect", lambda: (collect(model, "forget", names), collect(model, "retain", names)))
    scores = timed("score", lambda: score_neurons(forget, retain, args.score, DEFAULT_EPS))

    def select() -> dict:
        keep = {}
        for site, frac in (("mlp.pre_out", args.ff_frac), ("attn.pre_out", args.attn_frac)):
            if frac > 0:
                keep.update({n: ~m for n, m in select_top({n: scores[n] for n in model.hook_names(site)}, frac).items()})
        return keep

    keep = timed("select", select)
    with NeuronMasks(model) as masks:
        masks.update(keep)
        metrics = timed("evaluate", lambda: U.side_means(U.evaluate_units(model, pair)))

    n_collect = pair.forget_collect.numel() + pair.retain_collect.numel()
    n_eval = pair.forget_eval.numel() + pair.retain_eval.numel()
    print(f"model {args.model} ({torch.get_num_threads()} threads), {args.forget} vs {args.retain}, "
          f"sites {sites}; load {t_load:.1f} s, tokenise {t_data:.1f} s")
    rates = {"collect": n_collect, "evaluate": n_eval}
    for k, (wall, cpu) in parts.items():
        rate = (f"  ({rates[k] / wall:,.0f} tokens/s; {1000 * cpu / rates[k]:.2f} CPU ms/token over {rates[k]:,} tokens)"
                if k in rates else "")
        print(f"  {k:<9} {wall:8.2f} s wall {cpu:8.2f} s CPU{rate}")
    total = [sum(v[i] for v in parts.values()) for i in (0, 1)]
    one_shot = [parts["select"][i] + parts["evaluate"][i] for i in (0, 1)]
    print(f"  {'step':<9} {total[0]:8.2f} s wall {total[1]:8.2f} s CPU (iterative step); one-shot later steps "
          f"{one_shot[0]:.2f} s wall, {one_shot[1]:.2f} s CPU")
    print("  after one step:", {k: round(v, 4) for k, v in metrics.items()})


if __name__ == "__main__":
    main()
