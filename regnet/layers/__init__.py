"""Built-in layers (each module registers its classes on import)."""

from .attention import MultiHeadAttention
from .base import Layer, create, layer
from .conv import Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .conv1d import AveragePooling1D, Conv1D, GlobalAveragePooling1D, GlobalMaxPooling1D, MaxPooling1D
from .core import Activation, Dense, Dropout, Flatten, Reshape
from .elementwise import PReLU, Rescaling, SpatialDropout2D
from .embedding import ClassToken, Embedding, PositionEmbedding
from .merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from .normalization import BatchNorm, GroupNormalization, LayerNormalization
from .pooling import AvgPool2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPool2D
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from .reshaping import Permute, SliceChannels
from .spatial import Cropping2D, UpSampling2D, ZeroPadding2D
from .tensor import Cast, CausalMask, Gather, MatMul, ReplaceNaN, Slice, Softmax, Where

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
    "DepthwiseConv2D",
    "SeparableConv2D",
    "Conv2DTranspose",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "UpSampling2D",
    "ZeroPadding2D",
    "Cropping2D",
    "BatchNorm",
    "Add",
    "Concatenate",
    "Embedding",
    "PositionEmbedding",
    "ClassToken",
    "Conv1D",
    "MaxPooling1D",
    "AveragePooling1D",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
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
    "SimpleRNN",
    "LSTM",
    "GRU",
    "Bidirectional",
    "MultiHeadAttention",
    "MatMul",
    "Softmax",
    "Gather",
    "Slice",
    "Cast",
    "Where",
    "CausalMask",
    "ReplaceNaN",
]
