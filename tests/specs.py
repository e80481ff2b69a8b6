"""Model specs shared by the tests (import as ``from tests.specs import MLP``).

Each is a plain JSON-ready dict; tests that change one copy it first (``copy.deepcopy``).
"""

import numpy as np

from regnet import Model

#: 4 inputs -> Dense 8 relu ('hidden') -> Dense 3 softmax ('out'): the smallest classifier
MLP = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 8, "activation": "relu"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}

#: 6 inputs -> Dense 'h' relu -> Dropout 'drop' -> Dense 3 softmax ('out'): exercises the generator
MLP_DROPOUT = {
    "input_shape": [6],
    "layers": [
        {"type": "Dense", "name": "h", "units": 12, "activation": "relu"},
        {"type": "Dropout", "name": "drop", "rate": 0.25},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}

#: the MLP with BatchNorm and Dropout between its layers: parameters, buffers and randomness
MLP_BN_DROPOUT = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 8, "activation": "relu"},
        {"type": "BatchNorm", "name": "bn"},
        {"type": "Dropout", "name": "drop", "rate": 0.2},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}


def trained_sgd_file(spec, path):
    """``spec`` built (seed 1), compiled with SGD and momentum, fitted one epoch on 16 random
    samples of 4 features and saved to ``path``: a file with weights and optimizer slots."""
    model = Model.from_spec(spec, seed=1).compile(optimizer={"type": "SGD", "momentum": 0.9})
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    model.fit(x, np.arange(16) % 3, epochs=1, batch_size=8, verbose=0)
    model.save(path)
    return path
