"""paragraph_planning: re-running four interpretability papers on real offline models.

The public API, importable as ``import paragraph_planning as pp``; every name in ``__all__`` is
documented with an example that runs on a tiny random model (the examples assume
``import paragraph_planning as pp``, ``import torch``, ``import pandas as pd`` and ``import numpy as np``).
The layers underneath: :mod:`~paragraph_planning.core` (models, hooks, statistics, pruning,
inference), :mod:`~paragraph_planning.data` (corpora, tasks, images, texts),
:mod:`~paragraph_planning.papers` (one module per paper) and :mod:`~paragraph_planning.book`
(the chapter runner).

Quick start: selective pruning on SmolLM2 (code is the forget set, Wikipedia the retain set)::

    import paragraph_planning as pp

    model = pp.load_model("smollm2-135m")
    tok = model.tokenizer
    # statistics of every MLP neuron on training text of each corpus
    forget = pp.collect_stats(model, pp.token_batches("python-code", tok, n_tokens=8_192), "mlp.pre_out")
    retain = pp.collect_stats(model, pp.token_batches("wiki-en", tok, n_tokens=8_192), "mlp.pre_out")
    # score = mean |activation| on forget / on retain; the top 2 % as a table (site, layer, neuron, score)
    scores = pp.score_neurons(forget, retain, score="abs")
    selection = pp.selection_table(scores, pp.select_top(scores, frac=0.02))
    print(selection.head())
    # next-token loss and accuracy on held-out text, before and while the neurons are pruned
    test = {c: pp.token_batches(c, tok, n_tokens=4_096, split="test") for c in ("python-code", "wiki-en")}
    before = pp.evaluate_many(model, test)
    with pp.prune(model, selection):
        after = pp.evaluate_many(model, test)
    print(before[["loss", "top1"]].join(after[["loss", "top1"]], rsuffix="_pruned"))
"""
from .cache import cached
from .core.architectures import NEURON_SITES, SITES, ModelConfig, hook_name, parse_name
from .core.evaluation import classification_metrics, evaluate_lm, evaluate_many
from .core.generation import generate_ids
from .core.hooks import ActivationCache, HookedModel, HookPoint, UnknownHookError
from .core.inference import (
    Finding,
    Interval,
    assess,
    bootstrap_mean,
    findings_table,
    group_summary,
    mde,
    mde_paired,
    n_for_mde,
    paired_bootstrap,
    permutation_test,
    power_paired,
    t_interval,
    verdict,
    wilson,
)
from .core.interventions import NeuronMasks, add_fn, mask_fn, patch_fn
from .core.models import ModelNotAvailableError, load_model, offline_names
from .core.pruning import delete_neurons, prune, score_neurons, select_top, selection_masks, selection_table
from .core.statistics import NeuronStats, collect_stats, load_stats, save_stats, stats_frame
from .data import vision as _vision  # noqa: F401  (registers the vision models with load_model)
from .data.corpora import list_corpora, load_corpus, token_batches
from .data.tasks import Task

__all__ = [
    # models and hooks
    "load_model", "offline_names", "ModelNotAvailableError", "HookedModel", "HookPoint", "ActivationCache",
    "UnknownHookError", "ModelConfig", "SITES", "NEURON_SITES", "hook_name", "parse_name",
    # interventions and patching
    "mask_fn", "patch_fn", "add_fn", "NeuronMasks",
    # generation
    "generate_ids",
    # statistics
    "collect_stats", "NeuronStats", "stats_frame", "save_stats", "load_stats",
    # selective pruning
    "score_neurons", "select_top", "selection_table", "selection_masks", "prune", "delete_neurons",
    # evaluation
    "evaluate_lm", "evaluate_many", "classification_metrics",
    # data
    "list_corpora", "load_corpus", "token_batches", "Task",
    # inference
    "Interval", "bootstrap_mean", "paired_bootstrap", "permutation_test", "wilson", "t_interval", "mde",
    "mde_paired", "power_paired", "n_for_mde", "verdict", "assess", "Finding", "findings_table", "group_summary",
    # caching
    "cached",
]
