"""The workshop exercises: one :class:`Exercise` per task, in :data:`EXERCISES` (keyed by id, e.g. ``"02.2"``).

An exercise is the task in a few sentences, a hint, what the learner should see, a reference
solution (a function of :mod:`.solutions`, whose signature and docstring make the stub) and a check
(``check_<name>(fn)``, in the ``checks_*`` modules). :mod:`.notebooks` turns one into notebook cells.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from . import checks_ablation as ab
from . import checks_basics as ba
from . import checks_pruning as pr
from . import solutions as so

CHAPTERS: dict[str, str] = {"00": "00_getting_started", "01": "01_paragraph_planning", "02": "02_ablation",
                            "03": "03_modularity", "04": "04_unlearning"}
"""Chapter number -> notebook stem."""


@dataclass(frozen=True)
class Exercise:
    """One exercise. ``difficulty`` and ``importance`` run from 1 to 3; ``minutes`` is a class estimate.

    ``task``, ``hint`` and ``expected`` are Markdown; ``where`` says where in the chapter it belongs.
    """

    id: str
    title: str
    difficulty: int
    importance: int
    minutes: int
    task: str
    hint: str
    expected: str
    solution: Callable
    check: Callable
    where: str = ""
    imports: str = "import torch"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"\d\d\.\d+", self.id) or self.id[:2] not in CHAPTERS:
            raise ValueError(f"Exercise id {self.id!r}: use 'NN.k' with NN one of {', '.join(CHAPTERS)}.")
        for field in ("difficulty", "importance"):
            if getattr(self, field) not in (1, 2, 3):
                raise ValueError(f"Exercise {self.id}: {field} must be 1, 2 or 3, got {getattr(self, field)!r}.")
        if not 1 <= self.minutes <= 60:
            raise ValueError(f"Exercise {self.id}: minutes must be in 1..60, got {self.minutes!r}.")

    @property
    def chapter(self) -> str:
        """The chapter's notebook stem, e.g. ``"02_ablation"``."""
        return CHAPTERS[self.id[:2]]

    @property
    def name(self) -> str:
        """The function the learner writes (the solution's name)."""
        return self.solution.__name__

    @property
    def label(self) -> str:
        """The Sphinx label of the exercise, e.g. ``ex-02-2``."""
        return "ex-" + self.id.replace(".", "-")

    @property
    def check_name(self) -> str:
        """The check's name, e.g. ``check_peak_ablation``."""
        return self.check.__name__

    def header(self) -> str:
        """Difficulty, importance and time in one line (filled dots out of three)."""
        dots = lambda k: "●" * k + "○" * (3 - k)  # noqa: E731
        return (f"**Difficulty** {dots(self.difficulty)} · **Importance** {dots(self.importance)} · "
                f"**About {self.minutes} minutes**")

    def stub(self) -> str:
        """The stub the learner fills in: imports, signature and docstring, ``raise NotImplementedError``."""
        src = inspect.getsource(self.solution)
        head = src[: src.index('"""', src.index('"""') + 3) + 3]  # up to the end of the docstring
        return f"{self._imports()}{head}\n    # your code here\n    raise NotImplementedError\n"

    def solution_code(self) -> str:
        """The reference solution's source, as shown in the solution dropdown."""
        return f"{self._imports()}{textwrap.dedent(inspect.getsource(self.solution)).rstrip()}\n"

    def _imports(self) -> str:
        return f"{self.imports}\n\n\n" if self.imports else ""

    def check_code(self) -> str:
        """The check cell: import the check and run it on the learner's function."""
        return f"from paragraph_planning.workshop import {self.check_name}\n\n{self.check_name}({self.name})"


def _ex(*args: object, **kwargs: object) -> tuple[str, Exercise]:
    ex = Exercise(*args, **kwargs)  # type: ignore[arg-type]
    return ex.id, ex


EXERCISES: dict[str, Exercise] = dict([
    # ------------------------------------------------------------------ 00 getting started
    _ex("00.1", "Record the residual stream at one site", 1, 3, 5,
        "Write `record_resid(model, text, layer)`: run the model on `text` and return the residual stream "
        "**entering** block `layer` (site `resid_pre`) at every position, as a `[pos, d_model]` tensor.",
        "Build the hook name with `model.hook_names(\"resid_pre\", [layer])[0]`, wrap the forward pass in "
        "`with model.record([name]) as cache:` and read `cache[name]`, which has a batch dimension.",
        "All checks pass: your tensors equal the hidden states that transformers itself returns "
        "(`output_hidden_states=True`); entering block *i* is transformers' `hidden_states[i]`.",
        so.record_resid, ba.check_record_resid, where="after the section that records the residual stream"),
    _ex("00.2", "Zero-ablate neurons with a hook", 1, 3, 10,
        "Write `zero_ablation_hook(neurons)`, which returns a hook function `fn(act, *, hook)` that sets the "
        "given neurons (indices into the **last** dimension of `act`, shaped `[batch, pos, d_mlp]` at "
        "`mlp.pre_out`) to zero at every position. The check runs it with `model.hooks([(name, fn)])`.",
        "Returning a tensor from a hook replaces the activation. Index the last dimension with `act[..., neurons]`; "
        "work on `act.clone()` so the recorded input is left alone.",
        "Every check passes, including the one with an empty neuron list (the model must be unchanged). "
        "The package's version is `pp.mask_fn(keep)` with `keep` 0 for the ablated neurons.",
        so.zero_ablation_hook, ba.check_zero_ablation, where="before the section on patching"),
    _ex("00.3", "Patch one position (activation patching)", 2, 3, 15,
        "Write `patch_position(model, base, source, layer, pos)`: record the residual stream entering block "
        "`layer` on `source`, then run `base` with the value at position `pos` replaced by the source's, and "
        "return the logits `[vocab]` at the last position. `base` and `source` have the same number of tokens.",
        "Two forward passes: one `model.record` on the source, then `model.hooks` with a hook that writes "
        "`source_value` into `act[:, pos]` of the base run. Return `logits[0, -1]`.",
        "All checks pass. Try it on the chapter's prompts: patching the country's position at an early layer "
        "moves the answer towards the source's capital; at a late layer it no longer does.",
        so.patch_position, ba.check_patch_position, where="after the section that patches one position"),
    # ------------------------------------------------------------------ 01 paragraph planning
    _ex("01.1", "Find the paragraph-break tokens by text offsets", 2, 3, 10,
        "Write `break_positions(tokenizer, text)`: the positions of the tokens that make up the first "
        "`\"\\n\\n\"` of `text`. One token id is not enough: SmolLM2 writes a break between words as two "
        "`\"\\n\"` tokens, Gemma as one token, and tokenizers may add a BOS token in front.",
        "`tokenizer(text, return_offsets_mapping=True)[\"offset_mapping\"]` gives each token's character span "
        "`(a, b)`; special tokens have empty spans (`b == a`). Keep the tokens whose span lies inside the break.",
        "All checks pass on a character tokenizer (the break is two tokens) and a word tokenizer with a BOS "
        "token (one token, one position later than you might expect).",
        so.break_positions, ba.check_break_positions, where="after the texts are split at their break", imports=""),
    _ex("01.2", "Transplant the break activations into a neutral prompt", 3, 3, 20,
        "Write `transplant_break(model, donor_ids, break_pos, neutral_ids, layer)`: record the residual stream "
        "leaving block `layer` (`resid_post`) at the donor's break tokens, write those vectors into the **last** "
        "`len(break_pos)` positions of the neutral prompt (a sink token plus the same break tokens), and return "
        "the neutral prompt's next-token logits `[vocab]`. The chapter does this at every layer at once.",
        "Record with `model.record([name])` on `torch.tensor([donor_ids])`, take `cache[name][0, break_pos]` "
        "(`[k, d_model]`), and in the hook assign it to `act[0, -k:]`.",
        "All checks pass. Negative positions count from the end of the prompt, so the same hook works for "
        "neutral prompts of any length (that is how `pp.patch_fn` treats negative positions).",
        so.transplant_break, ba.check_transplant, where="after the conditions are described"),
    _ex("01.3", "Cosine distance of embeddings", 1, 2, 5,
        "Write `cosine_distances(a, b)`: for two arrays `[n, dim]`, the distance `1 − cos(a_i, b_i)` of each "
        "pair of rows. The chapter compares each generated paragraph's sentence embedding with the "
        "original paragraph 2's this way (0: same direction, 1: unrelated, 2: opposite).",
        "`cos = (a * b).sum(-1) / (‖a‖ ‖b‖)`, with the norms from `np.linalg.norm(..., axis=-1)`.",
        "All checks pass, including rows of very different lengths (the distance ignores length) and "
        "identical rows (distance 0) and opposite rows (distance 2).",
        so.cosine_distances, ba.check_cosine_distance, where="after the metric is defined",
        imports="import numpy as np"),
    _ex("01.4", "A paired bootstrap interval", 2, 3, 15,
        "Write `paired_bootstrap_ci(a, b, n_boot, seed, level)`: a percentile bootstrap interval `(lo, hi)` of "
        "`mean(a − b)`, where `a[i]` and `b[i]` are two conditions measured on the same text `i`. Resample texts "
        "(pairs), not the two conditions separately: the pairing removes the large differences between texts.",
        "`d = a - b`; `rng = np.random.default_rng(seed)`; `idx = rng.integers(0, n, size=(n_boot, n))`; the "
        "bootstrap means are `d[idx].mean(axis=1)`; the interval is their 2.5 % and 97.5 % quantiles.",
        "All checks pass: your interval agrees with `pp.paired_bootstrap` to within a tenth of its width. On the "
        "first case an unpaired bootstrap would be several times wider and could not see the difference.",
        so.paired_bootstrap_ci, ba.check_paired_bootstrap, where="before the verdict", imports="import numpy as np"),
    # ------------------------------------------------------------------ 02 ablation
    _ex("02.1", "The peak (mode) from a histogram", 1, 3, 10,
        "Write `peak_from_histogram(counts, edges)`: for each neuron, the centre of its fullest histogram bin "
        "(the first one on ties). `counts` is `[n_neurons, bins]`, `edges` `[n_neurons, bins + 1]`, as "
        "`NeuronStats.hist` and `NeuronStats.bin_edges` give them. This is the paper's peak.",
        "`counts.argmax(dim=1)` gives the fullest bin (the first one on ties); its centre is the mean of its two "
        "edges, `edges[i, top]` and `edges[i, top + 1]` (`edges.gather(1, ...)` does it for all neurons).",
        "All checks pass. For skewed neurons the peak lies far from the mean: compare `stats.peak` with "
        "`stats.mean` for the neurons of the chapter's neuron explorer.",
        so.peak_from_histogram, ab.check_peak_from_histogram, where="after the neuron histograms"),
    _ex("02.2", "Implement peak ablation", 2, 3, 10,
        "Write `peak_ablation_hook(stats, neurons)`: a hook function that replaces the given neurons of a site "
        "by their peak value `stats.peak` (one value per neuron) at every position, and leaves the other "
        "neurons alone. Mean ablation would use `stats.mean`, zero ablation 0.",
        "Start from your zero-ablation hook (exercise 00.2): assign `stats.peak[neurons]` instead of 0. "
        "`stats.peak` is float64; convert it to `act.dtype`.",
        "All checks pass: the logits equal those of `pp.mask_fn(keep, stats.peak)`. If the check says your "
        "logits match **mean** ablation, you used `stats.mean`.",
        so.peak_ablation_hook, ab.check_peak_ablation, where="after the methods are defined"),
    _ex("02.3", "Resample ablation at aligned positions", 2, 2, 15,
        "Write `resample_ablation_hook(neurons, source)`: replace the given neurons by the values they had on "
        "**another** input, `source` `[batch, pos, n_neurons]` (recorded at the same site), at the same row and "
        "the same position. Averaging over positions would turn it into a kind of mean ablation.",
        "`act[..., neurons] = source[:, :act.shape[1]][..., neurons]`: rows and positions line up by index.",
        "All checks pass; the check names the mistake if you used position 0, a mean over positions or a shifted "
        "position.",
        so.resample_ablation_hook, ab.check_resample_ablation, where="after the methods are defined"),
    _ex("02.4", "A t interval for a few seeds", 1, 2, 10,
        "Write `t_interval_ci(x, level)`: the mean of `x` (e.g. one damage value per seed) with its Student-t "
        "interval `(lo, hi)`: `mean ± t · s / √n` with the t quantile of `n − 1` degrees of freedom and the "
        "sample standard deviation `s` (ddof 1).",
        "`scipy.stats.t.ppf((1 + level) / 2, df=n - 1)`; `x.std(ddof=1)`.",
        "All checks pass. With 3 seeds the t quantile is 4.30, more than twice the normal 1.96: bands over a "
        "few seeds are wide, and that is honest.",
        so.t_interval_ci, ab.check_t_interval, where="before the ranking of methods", imports="import numpy as np"),
    _ex("02.5", "A verdict from an interval", 1, 3, 5,
        "Write `interval_verdict(lo, hi, null, direction)` for the claim \"the effect is `direction` (\"greater\" or "
        "\"less\") than `null`\": `\"holds\"` when the whole interval lies beyond the null in that direction, "
        "`\"does not hold\"` when it lies entirely on the other side, `\"undetermined at this sample\"` otherwise.",
        "Three cases per direction. An interval that touches or contains the null decides nothing.",
        "All checks pass. Every verdict in this book is read this way (`pp.verdict`), never from a point "
        "estimate crossing a threshold.",
        so.interval_verdict, ab.check_verdict, where="next to the chapter's verdict", imports=""),
    # ------------------------------------------------------------------ 03 modularity
    _ex("03.1", "Global top-k selection", 2, 3, 10,
        "Write `global_top_k(scores, frac)`: `scores` maps hook names to per-neuron scores; return boolean masks "
        "(same keys and shapes) of the `int(frac · N)` highest scores over **all** sites together, where `N` "
        "counts every neuron. Layers with larger scores get more of the selection, as in the papers.",
        "Concatenate with `torch.cat`, take `topk(k).indices`, set those entries of a boolean vector to True, "
        "then `split` it back into the sites' sizes.",
        "All checks pass; the check's scores differ in scale by layer, so a per-layer top-k would differ.",
        so.global_top_k, pr.check_global_top_k, where="after the scores are defined"),
    _ex("03.2", "The overlap |A∩B|/k and its chance level", 1, 3, 10,
        "Write `overlap_and_chance(a, b)`: for two boolean neuron sets of the same size `k` out of `N`, return "
        "the overlap `|A ∩ B| / k` and the overlap two **random** sets of size `k` have on average.",
        "A random set contains each neuron of A with probability k/N.",
        "All checks pass. The chapter compares each overlap with this chance level, and with the same overlap in "
        "a random-init twin of the model, which shares any structure that makes every pair of tasks overlap.",
        so.overlap_and_chance, pr.check_overlap, where="before the overlap matrix"),
    _ex("03.3", "Mean |activation| over real tokens", 1, 2, 10,
        "Write `mean_abs_unpadded(acts, mask)`: the mean of `|x|` per neuron over the real tokens of a padded "
        "batch. `acts` is `[batch, pos, n]`, `mask` the batch's `attention_mask` `[batch, pos]` (0 = padding). "
        "This is the `abs` importance of the selective-pruning score.",
        "Boolean indexing `acts[mask.bool()]` keeps the real tokens as `[tokens, n]`.",
        "All checks pass: your means equal `pp.collect_stats(...)[name].mean_abs` on the same padded batch.",
        so.mean_abs_unpadded, pr.check_mean_abs, where="after the scores are defined"),
    _ex("03.4", "The smallest fraction by binary search", 2, 2, 15,
        "Write `search_smallest_fraction(metric_at, target, lo, hi, tol)`: the smallest pruning fraction whose metric "
        "(e.g. a task's top-1 relative to the unpruned model) is at most `target`, by bisection to within "
        "`tol`. The metric falls as the fraction grows; return `hi` if even `hi` does not reach the target.",
        "Keep `metric_at(hi) <= target` true as you halve `[lo, hi]`; return `hi` at the end.",
        "All checks pass, including a step-shaped metric and one that never reaches the target.",
        so.search_smallest_fraction, pr.check_smallest_fraction, where="before the cross-evaluation", imports=""),
    # ------------------------------------------------------------------ 04 unlearning
    _ex("04.1", "The forget/retain score", 1, 3, 5,
        "Write `forget_retain_score(forget, retain, eps)`: the selective-pruning score `forget / (retain + eps)` "
        "of each neuron, from its mean `|x|` on the forget set and on the retain set.",
        "Why `eps`? A neuron that never fires on the retain set would otherwise divide by zero.",
        "All checks pass, including a neuron with retain 0 (its score is large but finite).",
        so.forget_retain_score, pr.check_forget_retain_score, where="after the score is defined"),
    _ex("04.2", "One step of iterative pruning", 2, 3, 15,
        "Write `prune_step(scores, pruned, frac)`: the neurons to prune in this step, as boolean masks: the "
        "`int(frac · N)` best scores over all sites (`N`: all neurons, pruned or not) among the neurons that are "
        "not pruned yet. Iterative pruning calls it after re-scoring the pruned model.",
        "Set the scores of already pruned neurons to `-inf` with `masked_fill` before `topk`.",
        "All checks pass over three steps; the check says so if you re-select pruned neurons or return the "
        "cumulative masks.",
        so.prune_step, pr.check_prune_step, where="after the pruning loop is described"),
    _ex("04.3", "Delete neurons by editing weights", 2, 2, 10,
        "Write `delete_by_weights(model, layer, neurons)`: remove MLP neurons of block `layer` for good, by zeroing "
        "their output weights in place (no hook). The model's outputs must equal those of the zero mask.",
        "`model.weights(layer)[\"W_out\"]` is a `[d_mlp, d_model]` view of the down projection: neuron i writes "
        "through row i. Edit it inside `with torch.no_grad():`.",
        "All checks pass: after your edit the logits equal those with `pp.mask_fn` zeroing the same neurons.",
        so.delete_by_weights, pr.check_delete_neurons, where="after pruning is applied"),
    _ex("04.4", "Next-token loss and top-1 accuracy", 1, 3, 10,
        "Write `next_token_metrics(logits, ids)`: the mean cross-entropy (nats) and top-1 accuracy of next-token "
        "prediction, where the logits at position `t` predict token `t + 1`. The chapter measures forget and "
        "retain accuracy this way.",
        "Compare `logits[:, :-1]` with `ids[:, 1:]`; `torch.nn.functional.cross_entropy` takes `[N, vocab]` "
        "logits and `[N]` targets.",
        "All checks pass: your numbers equal `pp.evaluate_lm`'s `loss` and `top1` on the same tokens.",
        so.next_token_metrics, pr.check_next_token_metrics, where="after the evaluation is described"),
])
"""Every exercise, by id, in chapter order."""


def exercises(chapter: str | None = None) -> list[Exercise]:
    """The exercises of one chapter (number ``"02"`` or stem ``"02_ablation"``), or all of them."""
    if chapter is None:
        return list(EXERCISES.values())
    key = chapter[:2]
    if key not in CHAPTERS or (len(chapter) > 2 and chapter != CHAPTERS[key]):
        raise ValueError(f"Unknown chapter {chapter!r}. Valid: {', '.join([*CHAPTERS, *CHAPTERS.values()])}.")
    return [e for e in EXERCISES.values() if e.id[:2] == key]


def exercise_table() -> pd.DataFrame:
    """One row per exercise: id, chapter, title, difficulty, importance, minutes, function and check names."""
    return pd.DataFrame([{"id": e.id, "chapter": e.chapter, "title": e.title, "difficulty": e.difficulty,
                          "importance": e.importance, "minutes": e.minutes, "function": e.name, "check": e.check_name}
                         for e in EXERCISES.values()])
