"""regnet: a deep-learning library in NumPy whose models are data.

Public API: ``Model``, ``load``/``save``, the component registries and the error hierarchy.
"""

from . import activations, datasets, initializers, layers, losses, optimizers  # registers the built-ins
from .errors import (
    ConfigError, DataError, DownloadError, FileFormatError, IntegrityError, PluginError, RegnetError,
    ShapeError, TrainingDivergedError, UnknownComponentError, WeightsMismatchError,
)
from .model import Model
from .registry import (
    REGISTRIES, register_activation, register_initializer, register_layer, register_loss,
    register_optimizer,
)
from .runtime import Callback, History, LearningRateScheduler
from .callbacks import ModelCheckpoint

__version__ = "0.1.0"


def load(path, compile=True):
    """Load a model saved with ``save`` (see ``regnet.io.load``)."""
    from .io import load as _load

    return _load(path, compile=compile)


def save(model, path, **kwargs):
    """Save a model, its weights, optimizer state and metadata to one HDF5 file."""
    from .io import save as _save

    return _save(model, path, **kwargs)


__all__ = [
    "Model", "load", "save", "Callback", "History", "LearningRateScheduler", "ModelCheckpoint",
    "RegnetError", "ConfigError", "UnknownComponentError", "PluginError", "ShapeError",
    "WeightsMismatchError", "FileFormatError", "IntegrityError", "DataError", "DownloadError",
    "TrainingDivergedError", "REGISTRIES", "register_layer", "register_activation",
    "register_loss", "register_optimizer", "register_initializer",
    "activations", "initializers", "layers", "losses", "optimizers",
]
