"""Gradients by central differences in float64: every registered layer, activation and loss
(built-ins, their further configurations, installed plugins), the kit's own numerical helpers,
and a whole graph model end to end."""

import copy

import attrs
import numpy as np
import pytest

from regnet import Model
from regnet.layers.base import Layer
from regnet.layers.core import Dense
from regnet.testing import (
    ConformanceError,
    check_layer,
    gradient_error,
    numerical_gradient,
    parametrize_components,
)

# every test here runs on both computation paths: NumPy and the compiled accelerator (regnet.accel)
pytestmark = pytest.mark.usefixtures("accel_path")


@parametrize_components(kinds=("layers", "activations", "losses"), extra=True)
def test_gradient(case):
    report = case.check(checks=["gradient"])
    assert report.passed == ["gradient"]


# -- the numerical helpers ------------------------------------------------------------------------


def test_numerical_gradient_of_a_cubic():
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.1, -0.3]])
    g = numerical_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-8)
    assert np.array_equal(x, [[0.5, -1.0, 2.0], [1.5, 0.1, -0.3]])  # restored


def test_numerical_gradient_on_chosen_entries():
    x = np.arange(6, dtype=np.float64)
    g = numerical_gradient(lambda: float(np.sum(np.sin(x))), x, indices=[1, 4])
    np.testing.assert_allclose(g, np.cos([1.0, 4.0]), rtol=1e-8)


def test_numerical_gradient_refuses_a_copy_it_cannot_perturb():
    with pytest.raises(TypeError):
        numerical_gradient(lambda: 0.0, np.ones((3, 4))[:, ::2])


def test_gradient_error_reports_worst_entry_with_numbers():
    assert gradient_error([1.0, 2.0], [1.0, 2.0 + 1e-9]) is None
    msg = gradient_error(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.5, 4.0]), shape=(2, 2))
    assert "max abs error 0.5" in msg and "index (1, 0)" in msg and "analytic 3 vs numeric 3.5" in msg


# -- the gradient check itself ------------------------------------------------------------------------


@attrs.define(slots=False, eq=False)
class SlightlyWrongBias(Dense):
    registered_name = "SlightlyWrongBias"

    def backward(self, grad):
        out = super().backward(grad)
        if self.use_bias:
            self.grads["bias"] *= 1.001
        return out


def test_gradient_check_catches_a_tenth_of_a_percent_error_in_one_parameter():
    with pytest.raises(ConformanceError) as info:
        check_layer(SlightlyWrongBias(units=3), (4,), checks=["gradient"])
    msg = str(info.value)
    assert "parameter 'bias'" in msg and "parameter 'kernel'" not in msg and "input gradient" not in msg


@attrs.define(slots=False, eq=False)
class DtypeSpy(Layer):
    """Records the dtypes it computes with; a buffer takes part in the output."""

    seen = []

    def build(self, input_shape, rng):
        self.add_weight("w", input_shape, "ones", rng)
        self.add_weight("shift", input_shape, "zeros", rng, trainable=False)
        return tuple(input_shape)

    def forward(self, x, training=False):
        DtypeSpy.seen.append((x.dtype, self.params["w"].dtype, self.grads["w"].dtype, self.buffers["shift"].dtype))
        self._x = x
        return x * self.params["w"] + self.buffers["shift"]

    def backward(self, grad):
        self.grads["w"][...] = (grad * self._x).sum(axis=0)
        return grad * self.params["w"]


def test_gradient_check_runs_in_float64_throughout():
    DtypeSpy.seen.clear()
    check_layer(DtypeSpy(), (3,), checks=["gradient"])
    assert DtypeSpy.seen and set(DtypeSpy.seen) == {(np.dtype(np.float64),) * 4}


@attrs.define(slots=False, eq=False)
class Float32Inside(Dense):
    registered_name = "Float32Inside"

    def forward(self, x, training=False):
        return super().forward(x).astype(np.float32)


def test_gradient_check_explains_a_layer_that_forces_float32():
    with pytest.raises(ConformanceError) as info:
        check_layer(Float32Inside(units=3), (4,), checks=["gradient"])
    assert "returned float32 for float64 input" in str(info.value)


# -- a whole graph model, end to end, in float64 ---------------------------------------------------

SPEC = {
    "input_shape": [2, 6, 6],
    "layers": [
        {"type": "Conv2D", "name": "conv", "filters": 3, "kernel_size": 3, "padding": "same"},
        {"type": "BatchNorm", "name": "bn", "activation": "relu"},
        {"type": "Conv2D", "name": "side", "filters": 2, "kernel_size": 1, "strides": 1, "inputs": ["input"]},
        {"type": "Concatenate", "name": "cat", "inputs": ["bn", "side"]},
        {"type": "MaxPool2D", "name": "pool", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "Flatten", "name": "flat"},
        {"type": "Dropout", "name": "drop", "rate": 0.25},
        {"type": "Dense", "name": "hidden", "units": 6, "activation": "tanh"},
        {"type": "Dense", "name": "skip", "units": 6, "inputs": ["flat"]},
        {"type": "Add", "name": "sum", "inputs": ["hidden", "skip"]},
        {"type": "Dense", "name": "out", "units": 4, "activation": "softmax"},
    ],
}


def test_graph_model_gradients_match_central_differences():
    model = Model.from_spec(copy.deepcopy(SPEC), seed=3)
    model.compile(loss="categorical_crossentropy", optimizer="sgd", metrics=[])
    for layer in model.layers:
        for store in (layer.params, layer.grads, layer.buffers):
            for k in store:
                store[k] = store[k].astype(np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 6, 6))
    y = np.array([0, 3, 1, 2])
    loss = model.training_loss
    state = copy.deepcopy(model.rng.bit_generator.state)

    def f():
        model.rng.bit_generator.state = state  # the same dropout mask on every pass
        return loss.value(model.forward(x, training=True, logits=True), y)

    model.rng.bit_generator.state = state
    _, g = loss.value_and_grad(model.forward(x, training=True, logits=True), y)
    dx = model.backward(g)
    analytic = {k: v.copy() for k, v in model.grads.items()}
    idx = rng.choice(x.size, 30, replace=False)
    assert gradient_error(dx.reshape(-1)[idx], numerical_gradient(f, x, indices=idx), atol=1e-7, rtol=1e-5) is None
    params = model.params
    for key in ("conv/kernel", "bn/gamma", "side/bias", "hidden/kernel", "skip/kernel", "out/bias"):
        p = params[key]
        idx = rng.choice(p.size, min(p.size, 12), replace=False)
        err = gradient_error(
            analytic[key].reshape(-1)[idx], numerical_gradient(f, p, indices=idx), atol=1e-7, rtol=1e-5
        )
        assert err is None, f"{key}: {err}"


@attrs.define(slots=False, eq=False)
class SkipsTooMuch(Dense):
    """Skips the kernel gradient too when a model says the input gradient is not needed."""

    registered_name = "SkipsTooMuch"

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            self.grads["kernel"][...] = 0
            return None
        return super().backward(grad)


def test_gradient_check_covers_layers_that_skip_the_input_gradient():
    with pytest.raises(ConformanceError) as info:
        check_layer(SkipsTooMuch(units=2), (3,), checks=["gradient"])
    assert "need_input_grad=False the gradient of parameter 'kernel'" in str(info.value)
