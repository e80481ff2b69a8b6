"""The models, data and training calls that the MPI worker and the tests share: the tests train
the same case on one process and compare."""

import numpy as np

import regnet

GLOBAL_BATCH = 32
SAMPLES = 200  # the last batch of an epoch holds 8 samples: shards of 4 (2 processes), 2 (4)
EPOCHS = 2

#: a small convolutional net with both layers whose training pass depends on the whole batch.
#: Smooth (tanh, average pooling): with ReLU or max pooling, a value that rounds differently
#: (BLAS sums a 16-row shard in another order than a 32-row batch) can land on the other side of
#: a kink and change a gradient by much more than the rounding; the tolerance is about rounding
SPEC = [
    {"type": "Conv2D", "name": "conv", "filters": 4, "kernel_size": 3, "activation": "tanh"},
    {"type": "BatchNorm", "name": "bn1", "momentum": 0.9},
    {"type": "AvgPool2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dropout", "name": "drop", "rate": 0.3},
    {"type": "Dense", "name": "hidden", "units": 16, "activation": "tanh"},
    {"type": "BatchNorm", "name": "bn2", "momentum": 0.9},
    {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
]

CASES = {
    "sgd": {"optimizer": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9}},
    "adam": {"optimizer": {"type": "adam", "learning_rate": 0.005}},
}


def data(n=SAMPLES, seed=0):
    """Images whose class is the quadrant holding the brightest blob, with noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, size=(n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=n)
    rows, cols = np.array([1, 1, 5]), np.array([1, 5, 3])
    for k in range(3):
        sel = y == k
        x[sel, 0, rows[k] : rows[k] + 2, cols[k] : cols[k] + 2] += 2.0
    return x, y


def model(case, seed=3):
    m = regnet.Model(SPEC, (1, 8, 8), seed=seed)
    m.compile("categorical_crossentropy", case["optimizer"], metrics=["accuracy"])
    return m


def fit(m, case, batch_size=GLOBAL_BATCH, **options):
    x, y = data()
    vx, vy = data(60, seed=1)
    return m.fit(x, y, batch_size=batch_size, epochs=EPOCHS, seed=11, validation_data=(vx, vy), verbose=0, **options)
