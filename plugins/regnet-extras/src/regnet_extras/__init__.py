"""Extra regnet components, registered through entry points (see pyproject.toml).

Nothing here registers itself on import: regnet loads each class when a model first names it.
"""

from .activations import Mish, Swish
from .balanced_accuracy import BalancedAccuracy
from .huber import Huber
from .initializers import Orthogonal, TruncatedNormal
from .inverse_sqrt import InverseSqrt
from .lion import Lion
from .rms_norm import RMSNorm

__version__ = "0.1.0"

__all__ = [
    "RMSNorm",
    "Swish",
    "Mish",
    "Huber",
    "Lion",
    "Orthogonal",
    "TruncatedNormal",
    "InverseSqrt",
    "BalancedAccuracy",
]
