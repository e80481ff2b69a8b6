"""Model specs shared by the tests (import as ``from tests.specs import MLP``).

Each is a plain JSON-ready dict; tests that change one copy it first (``copy.deepcopy``).
"""

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
