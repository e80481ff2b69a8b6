"""A layer followed by ReLU, with the ReLU applied in place on the layer's fresh output.

``relu'(z)`` is read as ``z > 0``, which is the same on ``max(z, 0)``: the activation cache can
hold the one array as both input and output, and no second array of the output's size is made.
Only for layers whose ``forward`` returns a new array (Dense, Conv2D).
"""

import numpy as np

from ..activations import ReLU


def call(layer, x, training):
    """``layer(x, training)`` (forward and activation), fusing a ReLU activation in place."""
    if not isinstance(layer._act, ReLU):
        return None
    z = layer.forward(x, training)
    np.maximum(z, 0, out=z)
    layer._act_cache = (z, z)
    return z
