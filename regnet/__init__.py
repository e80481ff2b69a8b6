"""regnet: a deep-learning library in NumPy whose models are data.

Public API: ``Model``, ``load``/``save``, the component registries and their decorators, the
callbacks and the error hierarchy. Submodules, all available after ``import regnet``:
``datasets``, ``zoo``, ``metrics``, ``schedules``, ``training`` (the loop behind ``fit``, its
callbacks, and ``training.data``: data in every form ``fit`` takes),
``images`` (digits from a photo), ``plot`` (pictures of training), ``testing`` (the conformance
kit), ``io`` (the file format), ``checkpoint`` (model state to and from files) and ``distributed``
(data-parallel training on MPI, which needs the optional extra ``regnet[mpi]`` once used);
``onnx`` (ONNX export and import) with the optional extra ``regnet[onnx]``, imported on first use
of ``regnet.onnx``.
"""

import importlib
from typing import Any

from . import (  # registers the built-ins
    activations,
    checkpoint,
    datasets,
    distributed,
    functional,
    images,
    initializers,
    io,
    layers,
    losses,
    metrics,
    optimizers,
    plot,
    schedules,
    testing,
    training,
    zoo,
)
from ._version import __version__
from .activations import Activation, activation
from .errors import (
    ConfigError,
    DataError,
    DistributedError,
    DownloadError,
    FileFormatError,
    IntegrityError,
    MissingDependencyError,
    PluginError,
    RegnetError,
    ReplicaDriftError,
    ShapeError,
    TrainingDivergedError,
    UnknownComponentError,
    WeightsMismatchError,
)
from .functional import Input
from .initializers import Initializer, initializer
from .layers import Layer, layer
from .layers.block import Block
from .layers.derived import DerivedLayer
from .losses import Loss, loss
from .metrics import Metric, metric
from .model import Model, Sequential
from .ops.tuning import tune
from .optimizers import Optimizer, optimizer
from .registry import REGISTRIES
from .schedules import Schedule, schedule
from .training.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from .training.data import Dataset


def load(path, compile=True, *, allow_non_finite=False):
    """Load a model saved with ``save``: spec, weights, epoch, history, RNG state and, with
    ``compile``, its loss, optimizer state and metrics (see ``regnet.checkpoint.load``). Weights
    holding NaN or infinities are refused unless ``allow_non_finite``."""
    return Model.load(path, compile=compile, allow_non_finite=allow_non_finite)


def save(model, path, *, metadata=None):
    """Save a model, its weights, optimizer state and metadata to one HDF5 file, atomically."""
    return checkpoint.save(model, path, metadata=metadata)


__all__ = [
    "__version__",
    "Model",
    "Sequential",
    "Input",
    "functional",
    "load",
    "save",
    "Callback",
    "History",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "EarlyStopping",
    "ReduceLROnPlateau",
    "CSVLogger",
    "TerminateOnNaN",
    "LambdaCallback",
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
    "DistributedError",
    "ReplicaDriftError",
    "REGISTRIES",
    "Layer",
    "layer",
    "Block",
    "DerivedLayer",
    "Activation",
    "activation",
    "Loss",
    "loss",
    "Optimizer",
    "optimizer",
    "Initializer",
    "initializer",
    "Schedule",
    "schedule",
    "Metric",
    "metric",
    "activations",
    "checkpoint",
    "training",
    "Dataset",
    "tune",
    "datasets",
    "distributed",
    "images",
    "initializers",
    "io",
    "layers",
    "losses",
    "metrics",
    "optimizers",
    "plot",
    "schedules",
    "testing",
    "zoo",
]


def __getattr__(name: str) -> Any:
    """``regnet.onnx`` on first use: it needs the optional extra, which ``import regnet`` does not load."""
    if name == "onnx":
        return importlib.import_module(".onnx", __name__)
    raise AttributeError(f"module 'regnet' has no attribute {name!r}")
