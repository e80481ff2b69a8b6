"""regnet: a deep-learning library in NumPy whose models are data.

Public API: ``Model``, ``load``/``save``, the component registries and their decorators, the
callbacks and the error hierarchy. Submodules, all available after ``import regnet``:
``datasets``, ``zoo``, ``metrics``, ``images`` (digits from a photo), ``plot`` (pictures of
training), ``testing`` (the conformance kit), ``io`` (the file format) and ``checkpoint`` (model
state to and from files); ``onnx`` (ONNX export and import) with the optional extra
``regnet[onnx]``, imported on first use of ``regnet.onnx``.
"""

import importlib
from typing import Any

from . import (  # registers the built-ins
    activations,
    checkpoint,
    datasets,
    images,
    initializers,
    io,
    layers,
    losses,
    metrics,
    optimizers,
    plot,
    testing,
    zoo,
)
from ._version import __version__
from .activations import Activation, activation
from .callbacks import Callback, History, LearningRateScheduler, ModelCheckpoint
from .errors import (
    ConfigError,
    DataError,
    DownloadError,
    FileFormatError,
    IntegrityError,
    MissingDependencyError,
    PluginError,
    RegnetError,
    ShapeError,
    TrainingDivergedError,
    UnknownComponentError,
    WeightsMismatchError,
)
from .initializers import Initializer, initializer
from .layers import Layer, layer
from .losses import Loss, loss
from .model import Model
from .optimizers import Optimizer, optimizer
from .registry import (
    REGISTRIES,
    register_activation,
    register_initializer,
    register_layer,
    register_loss,
    register_optimizer,
)


def load(path, compile=True):
    """Load a model saved with ``save``: spec, weights, epoch, history, RNG state and, with
    ``compile``, its loss, optimizer state and metrics (see ``regnet.checkpoint.load``)."""
    return Model.load(path, compile=compile)


def save(model, path, *, metadata=None):
    """Save a model, its weights, optimizer state and metadata to one HDF5 file, atomically."""
    return checkpoint.save(model, path, metadata=metadata)


__all__ = [
    "__version__",
    "Model",
    "load",
    "save",
    "Callback",
    "History",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "RegnetError",
    "ConfigError",
    "UnknownComponentError",
    "PluginError",
    "ShapeError",
    "WeightsMismatchError",
    "FileFormatError",
    "IntegrityError",
    "DataError",
    "MissingDependencyError",
    "DownloadError",
    "TrainingDivergedError",
    "REGISTRIES",
    "Layer",
    "layer",
    "Activation",
    "activation",
    "Loss",
    "loss",
    "Optimizer",
    "optimizer",
    "Initializer",
    "initializer",
    "register_layer",
    "register_activation",
    "register_loss",
    "register_optimizer",
    "register_initializer",
    "activations",
    "checkpoint",
    "datasets",
    "images",
    "initializers",
    "io",
    "layers",
    "losses",
    "metrics",
    "optimizers",
    "plot",
    "testing",
    "zoo",
]


def __getattr__(name: str) -> Any:
    """``regnet.onnx`` on first use: it needs the optional extra, which ``import regnet`` does not load."""
    if name == "onnx":
        return importlib.import_module(".onnx", __name__)
    raise AttributeError(f"module 'regnet' has no attribute {name!r}")
