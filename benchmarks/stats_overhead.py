"""Overhead of :func:`collect_stats` on SmolLM2-135M against the plain transformer body (the floor).

Statistics and 100-bin histograms (plus a 1024-vector reservoir) at every attention pre-out and MLP
pre-out site of all 30 layers: 30 x (576 + 1536) = 63,360 neurons per token, every token.
Data: real text, the Python standard library's own ``.py`` files (always available offline),
concatenated in sorted path order and tokenised; ``--tokens`` tokens in ``[batch, seq]`` batches.

Three things are timed per batch, interleaved batch by batch so that a machine whose load drifts (a
shared one) affects them alike. Just before :func:`collect_stats` receives a batch, a second copy of
the model with no hooks runs it twice: ``body``, the blocks only (:meth:`HookedModel.run_body`: no
final norm, no unembedding; what statistics need, so the floor), and ``logits``, the usual forward
pass with full-vocabulary logits at every position. ``stats`` is the time until :func:`collect_stats`
asks for the next batch. The first batch is the histogram pilot (its range is fixed from it, then it
is binned). Printed: per-batch times, the median per-batch ratio and the ratio of totals, against the
body (target <= 1.15x) and against the logits pass, in wall-clock time and in CPU time (all threads).
On a machine shared with other work only the CPU-time ratios mean anything, and only with
``--threads 1`` (two threads waiting for each other on a busy machine burn CPU time). Run it more
than once. ``--kernels unfused`` measures the path without the compiled kernel of
:mod:`paragraph_planning.core.fused` (the default uses it where it builds);
``--reduction-threads`` sets :data:`~paragraph_planning.core.statistics.REDUCTION_THREADS` (unfused path).
The kernel is built (or loaded from the cache folder) before the timed batches (printed separately).

    python benchmarks/stats_overhead.py [--tokens 16384] [--batch 8] [--seq 256] [--threads N]
                                        [--kernels fused|unfused] [--reduction-threads N] [--profile]
"""
from __future__ import annotations

import argparse
import statistics
import sysconfig
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from paragraph_planning import HookedModel, load_model
from paragraph_planning.core import fused
from paragraph_planning.core import statistics as stats_module
from paragraph_planning.core.statistics import collect_stats

SIDES = ("body", "logits", "stats")


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


def _timed(t: dict[str, list[float]], side: str, fn: Callable[[], object]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    t[side].append(time.perf_counter() - wall)
    t[side + "_cpu"].append(time.process_time() - cpu)


def interleaved(model: HookedModel, twin: HookedModel, batches: list[torch.Tensor]) -> dict[str, list[float]]:
    """Per-batch wall and CPU seconds of ``twin``'s body and logits passes and of ``collect_stats`` on ``model``."""
    t: dict[str, list[float]] = {k: [] for side in SIDES for k in (side, side + "_cpu")}

    def feed() -> Iterator[torch.Tensor]:
        for b in batches:
            _timed(t, "body", lambda: twin.run_body(b))
            _timed(t, "logits", lambda: twin(b))
            wall, cpu = time.perf_counter(), time.process_time()
            yield b  # collect_stats runs this batch before asking for the next
            t["stats"].append(time.perf_counter() - wall)
            t["stats_cpu"].append(time.process_time() - cpu)

    collect_stats(model, feed(), progress=False)
    return t


def report(t: dict[str, list[float]]) -> None:
    """Print per-batch times and the ratios of statistics to body and to logits."""
    for i, (b, lg, s) in enumerate(zip(t["body"], t["logits"], t["stats"])):
        print(f"batch {i}: body {b:6.2f} s  logits {lg:6.2f} s  statistics {s:6.2f} s  "
              f"ratio to body {s / b:.3f}  to logits {s / lg:.3f}" + ("  (pilot)" if i == 0 else ""))
    for clock, suffix in (("wall-clock", ""), ("CPU time (all threads)", "_cpu")):
        body, logits, stats = (t[side + suffix] for side in SIDES)
        print(f"{clock}: total body {sum(body):.1f} s, logits {sum(logits):.1f} s, statistics {sum(stats):.1f} s")
        for name, floor in (("body", body), ("logits", logits)):
            median = statistics.median(s / f for s, f in zip(stats, floor))
            print(f"  statistics / {name:6s}: total {sum(stats) / sum(floor):.3f}x, median per batch {median:.3f}x"
                  + ("  (target <= 1.15x)" if name == "body" else ""))


def profile_one_batch(model: HookedModel, batches: list[torch.Tensor], rows: int = 25) -> None:
    """torch.profiler tables of one post-pilot batch: the body alone, then with statistics."""
    from torch.profiler import profile

    with profile() as prof:
        model.run_body(batches[1])
    print("body only\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    prof = profile()

    def feed() -> Iterator[torch.Tensor]:
        yield batches[0]  # pilot, not profiled
        prof.start()
        yield batches[1]
        prof.stop()

    collect_stats(model, feed(), progress=False)
    print("collect_stats\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    """Run the interleaved measurement and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch threads (default: all); 1 gives CPU times that mean something on a loaded machine")
    ap.add_argument("--reduction-threads", type=int, default=stats_module.REDUCTION_THREADS,
                    help="threads that reduce the statistics on the unfused path (default: as many as --threads)")
    ap.add_argument("--kernels", choices=("fused", "unfused"), default="fused",
                    help="fused: the compiled C kernel (falls back, with a warning, where it cannot be built)")
    ap.add_argument("--profile", action="store_true", help="then profile one batch (body alone, with statistics)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    stats_module.REDUCTION_THREADS = args.reduction_threads
    fused.FUSED = None if args.kernels == "fused" else False

    model, twin = load_model("smollm2-135m"), load_model("smollm2-135m")
    batches = stdlib_batches(model.tokenizer, args.tokens, args.batch, args.seq)
    n_tok = sum(b.numel() for b in batches)
    neurons = sum(model.cfg.n_neurons(s) for s in ("attn.pre_out", "mlp.pre_out")) * model.cfg.n_layers
    print(f"{model}\n{len(batches)} batches of {args.batch}x{args.seq} = {n_tok} tokens of stdlib source; "
          f"{neurons} neurons per token; torch threads {torch.get_num_threads()}"
          + (f", reduction threads {args.reduction_threads or torch.get_num_threads()}"
             if args.kernels == "unfused" else ""), flush=True)
    for m in (model, twin):
        m(batches[0][:1])  # warm-up, not timed
    t0 = time.perf_counter()
    collect_stats(model, [batches[0][:2], batches[0][2:4]], progress=False)  # builds the kernel: not timed
    kernels = "fused (C, OpenMP)" if fused.active(torch.empty(0)) else "unfused"
    print(f"statistics kernels: {kernels}; warm-up (build or load) {time.perf_counter() - t0:.1f} s", flush=True)

    report(interleaved(model, twin, batches))
    if args.profile:
        profile_one_batch(model, batches)


if __name__ == "__main__":
    main()
