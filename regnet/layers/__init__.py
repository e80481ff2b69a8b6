"""Built-in layers (each module registers its classes on import)."""

from .attention import MultiHeadAttention
from .base import Layer, create, layer
from .conv import Conv2D
from .core import Activation, Dense, Dropout, Flatten, Reshape
from .merge import Add, Concatenate
from .normalization import BatchNorm
from .pooling import AvgPool2D, GlobalAveragePooling2D, MaxPool2D
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN

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
    "SimpleRNN",
    "LSTM",
    "GRU",
    "Bidirectional",
    "MultiHeadAttention",
]
