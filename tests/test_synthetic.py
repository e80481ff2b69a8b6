"""Synthetic 2-D sets: shapes, determinism, balance, and an MLP that separates them perfectly."""

import math

import numpy as np
import pytest

import regnet
from regnet.datasets import circles, moons, spirals
from regnet.errors import DataError

GENERATORS = {"moons": moons, "circles": circles, "spirals": spirals}


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("n, test_fraction", [(1000, 0.25), (401, 0.1)])
def test_shapes_and_dtypes(name, n, test_fraction):
    (x, y), (xt, yt) = GENERATORS[name](n=n, seed=3, test_fraction=test_fraction)
    n_test = int(round(n * test_fraction))
    assert x.shape == (n - n_test, 2) and xt.shape == (n_test, 2)
    assert y.shape == (n - n_test,) and yt.shape == (n_test,)
    assert x.dtype == xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert np.isfinite(x).all() and np.isfinite(xt).all()


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_deterministic_by_seed(name):
    gen = GENERATORS[name]
    a, b, c = gen(seed=7), gen(seed=7), gen(seed=8)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_train_and_test_are_disjoint():
    (x, _), (xt, _) = moons(seed=1)
    both = np.concatenate([x, xt])
    assert len(np.unique(both, axis=0)) == len(both)


@pytest.mark.parametrize("name, classes", [("moons", 2), ("spirals", 2), ("spirals", 3)])
def test_exact_class_balance(name, classes):
    kwargs = {"classes": classes} if name == "spirals" else {}
    (_, y), (_, yt) = GENERATORS[name](n=900, seed=0, **kwargs)
    counts = np.bincount(np.concatenate([y, yt]), minlength=classes)
    assert counts.tolist() == [900 // classes] * classes


def test_circles_balance_and_labels():
    """Label 1 exactly inside the circle holding half the square's area: about half of each."""
    (x, y), (xt, yt) = circles(n=4000, seed=0)
    xs, ys = np.concatenate([x, xt]), np.concatenate([y, yt])
    inside = ((xs - 0.5) ** 2).sum(axis=1) < 1 / (2 * math.pi)
    np.testing.assert_array_equal(ys, inside.astype(np.int64))
    assert 0.45 < ys.mean() < 0.55
    assert xs.min() >= 0 and xs.max() <= 1


def test_circles_margin_leaves_a_gap():
    (x, y), (xt, yt) = circles(seed=2, margin=0.02)
    assert len(x) + len(xt) == 1000
    r = np.sqrt(((np.concatenate([x, xt]) - 0.5) ** 2).sum(axis=1))
    assert np.abs(r - 1 / math.sqrt(2 * math.pi)).min() >= 0.02 - 1e-6
    np.testing.assert_array_equal(circles(seed=2, margin=0.02)[1][0], xt)
    with pytest.raises(DataError, match="margin"):
        circles(margin=0.5)


def test_spirals_have_the_requested_classes():
    (_, y), _ = spirals(n=300, classes=3, seed=0)
    assert set(np.unique(y)) == {0, 1, 2}


MLP = {
    "input_shape": [2],
    "layers": [
        {"type": "Dense", "units": 32, "activation": "relu"},
        {"type": "Dense", "units": 32, "activation": "relu"},
        {"type": "Dense", "units": 2, "activation": "softmax"},
    ],
}


def train_mlp(data, seed, epochs=60, batch_size=32, lr=0.01):
    (x, y), (xt, yt) = data
    steps = -(-len(x) // batch_size)
    cosine = {"type": "cosine", "initial": lr, "decay_steps": steps * epochs}
    model = regnet.Model.from_spec(MLP, seed=seed).compile(
        "categorical_crossentropy", {"type": "adam", "learning_rate": cosine}
    )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, seed=seed, verbose=0)
    return model.evaluate(xt, yt)["accuracy"]


# The default sets are not separable on their test splits (moons with noise 0.1 puts a test point
# across the ideal boundary; circles puts test points within 0.001 of the circle), so perfect
# accuracy is asked on the separable variants.
@pytest.mark.parametrize("data_seed, seed", [(0, 0), (1, 5)])
def test_mlp_separates_moons(data_seed, seed):
    assert train_mlp(moons(noise=0.05, seed=data_seed), seed) == 1.0


@pytest.mark.parametrize("data_seed, seed", [(0, 0), (1, 5)])
def test_mlp_separates_circles(data_seed, seed):
    assert train_mlp(circles(margin=0.02, seed=data_seed), seed) == 1.0
