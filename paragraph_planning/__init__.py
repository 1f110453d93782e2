"""paragraph_planning: re-running four interpretability papers on real offline models.

The public API, importable as ``import paragraph_planning as pp``. The layers underneath:
:mod:`~paragraph_planning.core` (models, hooks, statistics, pruning, inference),
:mod:`~paragraph_planning.data` (corpora, tasks, images, texts), :mod:`~paragraph_planning.papers`
(one module per paper) and :mod:`~paragraph_planning.book` (the chapter runner).
"""
from .cache import cached
from .core.architectures import NEURON_SITES, SITES, ModelConfig, hook_name, parse_name
from .core.evaluation import evaluate_lm
from .core.generation import generate_ids
from .core.hooks import ActivationCache, HookedModel, HookPoint, UnknownHookError
from .core.inference import (
                             Interval,
                             bootstrap_mean,
                             mde,
                             mde_paired,
                             paired_bootstrap,
                             permutation_test,
                             t_interval,
                             verdict,
                             wilson,
)
from .core.interventions import NeuronMasks, add_fn, mask_fn, patch_fn
from .core.models import ModelNotAvailableError, load_model, offline_names
from .core.pruning import delete_neurons, score_neurons, select_top
from .core.statistics import NeuronStats, collect_stats, load_stats, save_stats, stats_frame
from .data import vision as _vision  # noqa: F401  (registers the vision models with load_model)
from .data.corpora import list_corpora, load_corpus, token_batches

__all__ = [
    "NEURON_SITES", "SITES", "ModelConfig", "hook_name", "parse_name",
    "ActivationCache", "HookedModel", "HookPoint", "UnknownHookError",
    "ModelNotAvailableError", "load_model", "offline_names",
    "mask_fn", "patch_fn", "add_fn", "NeuronMasks",
    "generate_ids",
    "NeuronStats", "collect_stats", "save_stats", "load_stats", "stats_frame",
    "evaluate_lm",
    "score_neurons", "select_top", "delete_neurons",
    "Interval", "bootstrap_mean", "paired_bootstrap", "permutation_test", "wilson", "t_interval", "mde",
    "mde_paired", "verdict",
    "list_corpora", "load_corpus", "token_batches",
    "cached",
]
