"""paragraph_planning: re-running four interpretability papers on real offline models."""
from .architectures import NEURON_SITES, SITES, ModelConfig
from .hooks import ActivationCache, HookedModel, HookPoint
from .models import ModelNotAvailableError, load_model, offline_names

__all__ = [
    "NEURON_SITES", "SITES", "ModelConfig", "ActivationCache", "HookedModel", "HookPoint",
    "ModelNotAvailableError", "load_model", "offline_names",
]
