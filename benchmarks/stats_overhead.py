"""Overhead of :func:`collect_stats` on SmolLM2-135M: plain forward vs forward with statistics.

Statistics and 100-bin histograms (plus a 1024-vector reservoir) at every attention pre-out and MLP
pre-out site of all 30 layers: 30 x (576 + 1536) = 63,360 neurons per token, every token.
Data: real text, the Python standard library's own ``.py`` files (always available offline),
concatenated in sorted path order and tokenised; ``--tokens`` tokens in ``[batch, seq]`` batches.

One run, interleaved batch by batch, so that a machine whose load drifts (a shared one) affects
both sides alike: :func:`collect_stats` runs over all batches once (pilot pass included), and just
before it receives each batch, a second copy of the model with no hooks runs the plain forward pass
of the same batch. Statistics time of a batch = time until :func:`collect_stats` asks for the next
one. Wall-clock and CPU-time (all threads) ratios are printed. Run it more than once.

    python benchmarks/stats_overhead.py [--tokens 16384] [--batch 8] [--seq 256] [--profile]
"""
from __future__ import annotations

import argparse
import statistics
import sysconfig
import time
from pathlib import Path
from typing import Iterator

import torch

from paragraph_planning import HookedModel, load_model
from paragraph_planning.core.statistics import collect_stats


def stdlib_batches(tokenizer, n_tokens: int, batch: int, seq: int) -> list[torch.Tensor]:
    """``[batch, seq]`` token-id batches covering at least ``n_tokens`` tokens of stdlib source."""
    per_batch = batch * seq
    n_batches = -(-n_tokens // per_batch)
    need, text = n_batches * per_batch, []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text.append(path.read_text(encoding="utf-8", errors="replace"))
        ids = tokenizer("".join(text), return_tensors="pt").input_ids[0]
        if len(ids) >= need:
            return list(ids[:need].view(n_batches, batch, seq))
    raise RuntimeError(f"The standard library has fewer than {need} tokens.")


def interleaved(model: HookedModel, twin: HookedModel, batches: list[torch.Tensor]) -> dict[str, list[float]]:
    """Per-batch wall and CPU seconds: ``twin``'s plain forward, then ``collect_stats`` on ``model``."""
    t: dict[str, list[float]] = {"plain": [], "stats": [], "plain_cpu": [], "stats_cpu": []}

    def feed() -> Iterator[torch.Tensor]:
        for b in batches:
            wall, cpu = time.perf_counter(), time.process_time()
            twin(b)
            t["plain"].append(time.perf_counter() - wall)
            t["plain_cpu"].append(time.process_time() - cpu)
            wall, cpu = time.perf_counter(), time.process_time()
            yield b  # collect_stats runs this batch before asking for the next
            t["stats"].append(time.perf_counter() - wall)
            t["stats_cpu"].append(time.process_time() - cpu)

    collect_stats(model, feed(), progress=False)
    return t


def main() -> None:
    """Run the interleaved measurement and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--profile", action="store_true", help="also profile collect_stats on two batches")
    args = ap.parse_args()

    model, twin = load_model("smollm2-135m"), load_model("smollm2-135m")
    batches = stdlib_batches(model.tokenizer, args.tokens, args.batch, args.seq)
    n_tok = sum(b.numel() for b in batches)
    neurons = sum(model.cfg.n_neurons(s) for s in ("attn.pre_out", "mlp.pre_out")) * model.cfg.n_layers
    print(f"{model}\n{len(batches)} batches of {args.batch}x{args.seq} = {n_tok} tokens of stdlib source; "
          f"{neurons} neurons per token; torch threads {torch.get_num_threads()}", flush=True)
    for m in (model, twin):
        m(batches[0][:1])  # warm-up, not timed

    t = interleaved(model, twin, batches)
    for i, (p, s) in enumerate(zip(t["plain"], t["stats"])):
        print(f"batch {i}: plain {p:6.2f} s  with statistics {s:6.2f} s  ratio {s / p:.3f}"
              + ("  (pilot)" if i == 0 else ""))
    plain, stats = sum(t["plain"]), sum(t["stats"])
    per_batch = statistics.median(s / p for p, s in zip(t["plain"], t["stats"]))
    print(f"total: plain {plain:.1f} s, with statistics {stats:.1f} s, ratio {stats / plain:.3f}x "
          f"(median per-batch ratio {per_batch:.3f}x; target <= 1.15x)")
    print(f"CPU time (all threads): plain {sum(t['plain_cpu']):.1f} s, with statistics "
          f"{sum(t['stats_cpu']):.1f} s, ratio {sum(t['stats_cpu']) / sum(t['plain_cpu']):.3f}x")

    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            collect_stats(model, batches[:2], progress=False)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
