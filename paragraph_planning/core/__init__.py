"""The model-generic layer: architecture maps, hooks, interventions, generation, statistics,
evaluation, pruning, inference. Nothing here knows about corpora, papers or the book."""
