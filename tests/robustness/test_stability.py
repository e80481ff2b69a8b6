"""Numerical stability in float32: softmax, sigmoid and the cross-entropies (from logits, fused with
the output activation, and from probabilities) give finite losses and gradients, in float32, for
logits of magnitude 1e4, where a naive ``exp`` overflows and a naive ``log`` of a probability
underflows.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from regnet import Model, activations, losses

BIG = np.float32(1e4)
LOGITS = np.array(
    [[BIG, -BIG, 0], [-BIG, -BIG, BIG], [0, 0, 0], [BIG, BIG, BIG], [-BIG, -BIG, -BIG], [BIG, BIG - 1, -BIG]],
    np.float32,
)
LABELS = np.array([1, 0, 2, 0, 1, 1])
ONE_HOT = np.eye(3, dtype=np.float32)[LABELS]


@pytest.fixture(autouse=True)
def no_floating_point_warnings():
    """An overflow, a division by zero or an invalid operation anywhere is a failure."""
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error", RuntimeWarning)
        yield


def finite32(*arrays):
    for a in arrays:
        assert a.dtype == np.float32, a.dtype
        assert np.isfinite(a).all()


def exact_ce(logits, labels):
    """Cross-entropy per row in float64 (log-sum-exp written out)."""
    z = logits.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return lse - z[np.arange(len(z)), labels]


# -- activations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax", "sigmoid", "tanh", "relu", "elu", "selu", "gelu", "leaky_relu"])
def test_activations_stay_finite_and_float32(name):
    act = activations.get(name)
    y = act.forward(LOGITS)
    g = act.backward(np.ones_like(LOGITS), LOGITS, y)
    finite32(y, g)


def test_softmax_saturates_to_exact_probabilities():
    p = activations.softmax(LOGITS)
    finite32(p)
    assert np.allclose(p.sum(axis=1), 1, atol=1e-6)
    assert p[0, 0] == 1 and p[0, 1] == 0 and p[4, 0] == pytest.approx(1 / 3)
    assert p[5, 0] == pytest.approx(1 / (1 + math.exp(-1)), rel=1e-6)


def test_sigmoid_saturates_without_overflow():
    s = activations.sigmoid(LOGITS)
    finite32(s)
    assert s[0, 0] == 1 and s[0, 1] == 0 and s[2, 0] == 0.5


# -- losses --------------------------------------------------------------------------------------


def test_cross_entropy_from_logits():
    ce = losses.get({"type": "categorical_crossentropy", "from_logits": True})
    for target in (LABELS, ONE_HOT):
        value, grad = ce.value_and_grad(LOGITS, target)
        finite32(grad)
        assert value == pytest.approx(exact_ce(LOGITS, LABELS).mean(), rel=1e-6)
        expected = (activations.softmax(LOGITS) - ONE_HOT) / len(LOGITS)
        assert np.allclose(grad, expected, atol=1e-7)
    assert ce.value(LOGITS, LABELS) == pytest.approx(exact_ce(LOGITS, LABELS).mean(), rel=1e-6)


def test_cross_entropy_from_saturated_probabilities():
    ce = losses.get("categorical_crossentropy")
    p = activations.softmax(LOGITS)  # holds exact 0s and 1s
    for target in (LABELS, ONE_HOT):
        value, grad = ce.value_and_grad(p, target)
        finite32(grad)
        assert math.isfinite(value) and value <= -math.log(ce.EPS) + 1e-3


@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_cross_entropy(from_logits):
    bce = losses.get({"type": "binary_crossentropy", "from_logits": from_logits})
    z = LOGITS.reshape(-1, 1)
    t = np.tile([0.0, 1.0, 0.5], len(z))[: len(z)].reshape(-1, 1).astype(np.float32)
    pred = z if from_logits else activations.sigmoid(z)
    value, grad = bce.value_and_grad(pred, t)
    finite32(grad)
    assert math.isfinite(value)
    if from_logits:
        zz = z.astype(np.float64)
        exact = np.maximum(zz, 0) - zz * t + np.log1p(np.exp(-np.abs(zz)))
        assert value == pytest.approx(exact.mean(), rel=1e-6)


@pytest.mark.parametrize(
    "output, loss, target",
    [
        ("softmax", "categorical_crossentropy", LABELS),
        ("softmax", "categorical_crossentropy", ONE_HOT),
        ("sigmoid", "binary_crossentropy", (LABELS % 2).astype(np.float32)),
        ("linear", {"type": "categorical_crossentropy", "from_logits": True}, LABELS),
    ],
    ids=["softmax-labels", "softmax-one-hot", "sigmoid", "explicit-logits"],
)
def test_fused_loss_in_a_model_with_huge_logits(output, loss, target):
    units = 1 if output == "sigmoid" else 3
    model = Model.from_spec(
        {
            "input_shape": [3],
            "layers": [
                {"type": "Dense", "name": "out", "units": units, "activation": output, "use_bias": False},
            ],
        },
        seed=0,
    ).compile(loss, {"type": "sgd", "learning_rate": 1e-9}, metrics=["accuracy"])
    kernel = model.get_layer("out").params["kernel"]
    kernel[...] = np.eye(3, units, dtype=np.float32)
    x = LOGITS  # with an identity kernel the logits are the inputs: up to 1e4 in magnitude
    if output != "linear":
        assert model.training_loss.from_logits  # fused with the output activation
    history = model.fit(x, target, epochs=1, batch_size=len(x), verbose=0, shuffle=False)
    assert math.isfinite(history.history["loss"][0])
    finite32(*model.state_dict().values(), *model.grads.values())
    ev = model.evaluate(x, target)
    assert all(math.isfinite(v) for v in ev.values())
    out = model.predict(x)
    finite32(out)
    if output == "softmax":
        assert np.allclose(out.sum(axis=1), 1, atol=1e-6)


@settings(max_examples=150, deadline=None, database=None)
@given(
    z=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements=st.floats(-1e4, 1e4, width=32),
    ),
    data=st.data(),
)
def test_cross_entropies_are_finite_for_any_logits_up_to_1e4(z, data):
    k = z.shape[1]
    labels = np.asarray(data.draw(st.lists(st.integers(0, k - 1), min_size=len(z), max_size=len(z))))
    for ce, pred in (
        (losses.get({"type": "categorical_crossentropy", "from_logits": True}), z),
        (losses.get("categorical_crossentropy"), activations.softmax(z)),
    ):
        value, grad = ce.value_and_grad(pred, labels)
        finite32(grad)
        assert math.isfinite(value) and value >= 0
    for bce, pred in (
        (losses.get({"type": "binary_crossentropy", "from_logits": True}), z),
        (losses.get("binary_crossentropy"), activations.sigmoid(z)),
    ):
        value, grad = bce.value_and_grad(pred, (z > 0).astype(np.float32))
        finite32(grad)
        assert math.isfinite(value) and value >= 0
    y = activations.Softmax().forward(z)
    finite32(y, activations.Softmax().backward(np.ones_like(z), z, y))
