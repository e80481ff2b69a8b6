"""Built-in layers (each module registers its classes on import)."""

from .base import Layer, create, layer
from .conv import Conv2D
from .core import Activation, Dense, Dropout, Flatten, Reshape
from .elementwise import PReLU, Rescaling, SpatialDropout2D
from .merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from .normalization import BatchNorm, GroupNormalization, LayerNormalization
from .pooling import AvgPool2D, GlobalAveragePooling2D, MaxPool2D
from .reshaping import Permute, SliceChannels

__all__ = [
    "Layer",
    "layer",
    "create",
    "Dense",
    "Flatten",
    "Reshape",
    "Activation",
    "Dropout",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAveragePooling2D",
    "BatchNorm",
    "Add",
    "Concatenate",
    "LayerNormalization",
    "GroupNormalization",
    "PReLU",
    "Rescaling",
    "SpatialDropout2D",
    "Permute",
    "SliceChannels",
    "Subtract",
    "Multiply",
    "Maximum",
    "Minimum",
    "Average",
]
