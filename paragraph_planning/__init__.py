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

from importlib import import_module as _import_module

_EXPORTS = {  # public name -> the module that defines it, imported on first use (see __getattr__)
    # models and hooks
    "load_model": "core.models",
    "offline_names": "core.models",
    "ModelNotAvailableError": "core.models",
    "HookedModel": "core.hooks",
    "HookPoint": "core.hooks",
    "ActivationCache": "core.hooks",
    "UnknownHookError": "core.hooks",
    "ModelConfig": "core.architectures",
    "SITES": "core.architectures",
    "NEURON_SITES": "core.architectures",
    "hook_name": "core.architectures",
    "parse_name": "core.architectures",
    # interventions and patching
    "mask_fn": "core.interventions",
    "patch_fn": "core.interventions",
    "add_fn": "core.interventions",
    "NeuronMasks": "core.interventions",
    # generation
    "generate_ids": "core.generation",
    # statistics
    "collect_stats": "core.statistics",
    "NeuronStats": "core.statistics",
    "stats_frame": "core.statistics",
    "save_stats": "core.statistics",
    "load_stats": "core.statistics",
    # selective pruning
    "score_neurons": "core.pruning",
    "select_top": "core.pruning",
    "selection_table": "core.pruning",
    "selection_masks": "core.pruning",
    "prune": "core.pruning",
    "delete_neurons": "core.pruning",
    # evaluation
    "evaluate_lm": "core.evaluation",
    "evaluate_many": "core.evaluation",
    "classification_metrics": "core.evaluation",
    # data
    "list_corpora": "data.corpora",
    "load_corpus": "data.corpora",
    "token_batches": "data.corpora",
    "Task": "data.tasks",
    # inference
    "Interval": "core.inference",
    "bootstrap_mean": "core.inference",
    "paired_bootstrap": "core.inference",
    "permutation_test": "core.inference",
    "wilson": "core.inference",
    "t_interval": "core.inference",
    "mde": "core.inference",
    "mde_paired": "core.inference",
    "power_paired": "core.inference",
    "n_for_mde": "core.inference",
    "verdict": "core.inference",
    "assess": "core.inference",
    "Finding": "core.inference",
    "findings_table": "core.inference",
    "group_summary": "core.inference",
    # caching
    "cached": "cache",
}


def __getattr__(name: str):
    """Import a public name's module on first use, so that ``python -m paragraph_planning`` starts fast.

    The first use also imports :mod:`paragraph_planning.data`, which registers the vision models
    built here with :func:`load_model`.
    """
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'paragraph_planning' has no attribute {name!r}")
    _import_module(".data", __name__)
    value = getattr(_import_module("." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = list(_EXPORTS)
