"""The data layer: offline corpora and token batches, tasks, images, paragraph texts, and the
vision models built here. Imports :mod:`paragraph_planning.core`, never the papers or the book."""
from . import vision  # noqa: F401  (registers the vision models built here with load_model)
