"""Extra regnet components, registered through entry points (see pyproject.toml).

Nothing here registers itself on import: regnet loads each class when a model first names it.
"""

from .balanced_accuracy import BalancedAccuracy
from .initializers import Orthogonal, TruncatedNormal
from .inverse_sqrt import InverseSqrt
from .pinball import Pinball
from .rms_norm import RMSNorm
from .sign_sgd import SignSGD
from .squareplus import Squareplus

__version__ = "0.1.0"

__all__ = [
    "RMSNorm",
    "Squareplus",
    "Pinball",
    "SignSGD",
    "Orthogonal",
    "TruncatedNormal",
    "InverseSqrt",
    "BalancedAccuracy",
]
