"""The workshop edition: exercises with checks and reference solutions, the student notebooks, live explorers.

``from paragraph_planning.workshop import check_peak_ablation`` and ``check_peak_ablation(my_function)``
checks a learner's function against the package's own implementation on a tiny model and prints what
passed and the first mismatch. :data:`EXERCISES` lists every exercise; :mod:`.notebooks` turns them
into notebook cells and makes student notebooks; :mod:`.widgets` holds the explorers.
"""
from .checking import CheckResult
from .checks_ablation import (
    check_peak_ablation,
    check_peak_from_histogram,
    check_resample_ablation,
    check_t_interval,
    check_verdict,
)
from .checks_basics import (
    check_break_positions,
    check_cosine_distance,
    check_paired_bootstrap,
    check_patch_position,
    check_record_resid,
    check_transplant,
    check_zero_ablation,
)
from .checks_pruning import (
    check_delete_neurons,
    check_forget_retain_score,
    check_global_top_k,
    check_mean_abs,
    check_next_token_metrics,
    check_overlap,
    check_prune_step,
    check_smallest_fraction,
)
from .notebooks import exercise_cells, insert_exercises, student_copy, student_notebook
from .registry import CHAPTERS, EXERCISES, Exercise, exercise_table, exercises
from .widgets import explore_ablation, explore_neurons, explore_texts

__all__ = [
    "CheckResult", "EXERCISES", "Exercise", "CHAPTERS", "exercises", "exercise_table",
    "exercise_cells", "insert_exercises", "student_notebook", "student_copy",
    "explore_neurons", "explore_ablation", "explore_texts",
    "check_record_resid", "check_zero_ablation", "check_patch_position",
    "check_break_positions", "check_transplant", "check_cosine_distance", "check_paired_bootstrap",
    "check_peak_from_histogram", "check_peak_ablation", "check_resample_ablation", "check_t_interval", "check_verdict",
    "check_global_top_k", "check_overlap", "check_mean_abs", "check_smallest_fraction",
    "check_forget_retain_score", "check_prune_step", "check_delete_neurons", "check_next_token_metrics",
]
