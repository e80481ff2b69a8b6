"""The conformance kit over the whole registry, on extra configurations, and against broken
components it must reject; optimizer update rules against hand-computed values."""

import attrs
import numpy as np
import pytest

from regnet import fields, registry
from regnet.activations import Activation
from regnet.initializers import Initializer
from regnet.layers.base import Layer
from regnet.losses import Loss
from regnet.optimizers import SGD, AdaGrad, Adam, AdamW, Optimizer, RMSprop
from regnet.testing import (
    KINDS,
    PROPERTIES,
    ConformanceError,
    check_activation,
    check_initializer,
    check_layer,
    check_loss,
    check_optimizer,
    component_cases,
    parametrize_components,
)

# every test here runs on both computation paths: NumPy and the compiled accelerator (regnet.accel)
pytestmark = pytest.mark.usefixtures("accel_path")

# -- every registered component (built-in and installed plugins), plus further configurations -----
# of the built-ins (BUILTIN_EXTRA_CASES: Conv2D stride 2 / same / int padding, pools with same
# padding and stride != size, BatchNorm on dense and conv input, Dense without bias, Dropout,
# Concatenate on the channel axis, softmax and leaky_relu options, cross-entropies on integer
# labels and one-hot rows with and without logits, optimizer variants ...)


@parametrize_components(extra=True)
def test_registered_component_conforms(case):
    """Every property but the gradient (tests/test_gradients.py runs that one)."""
    report = case.check(checks=[p for p in PROPERTIES[case.kind] if p != "gradient"])
    assert "config" in report.passed
    assert set(report.ran) | set(report.skipped) == set(PROPERTIES[case.kind]) - {"gradient"}


def test_registry_cases_cover_every_registered_name():
    cases = component_cases()
    for kind in KINDS:
        reg = registry.REGISTRIES[kind]
        names = {c.name for c in cases if c.kind == kind}
        assert set(reg.list()) <= names, kind


def test_extra_cases_cover_the_options_that_change_code_paths():
    ids = {c.id for c in component_cases("regnet", extra=True)}
    for wanted in (
        "layers/Conv2D[filters=2,kernel_size=3,strides=2,input_shape=2x7x7]",
        "layers/Conv2D[filters=2,kernel_size=3,padding=same,input_shape=2x5x5]",
        "layers/MaxPool2D[pool_size=3,strides=2,padding=same,input_shape=2x5x5]",
        "layers/BatchNorm[input_shape=3x4x4]",
        "layers/Dense[units=3,use_bias=False,input_shape=4]",
        "losses/categorical_crossentropy[from_logits=True,targets=integer_labels]",
        "losses/categorical_crossentropy[from_logits=False,targets=one_hot]",
    ):
        assert wanted in ids


def test_hdf5_round_trip_runs_for_single_input_layers():
    report = check_layer({"type": "BatchNorm"}, (3, 4, 4), checks=["hdf5"])
    assert report.passed == ["hdf5"], report.skipped


def test_hdf5_round_trip_runs_for_merge_layers_with_equal_inputs():
    report = check_layer({"type": "Add"}, [(3,), (3,)], checks=["hdf5"])
    assert report.passed == ["hdf5"], report.skipped


def test_batch_independence_is_skipped_only_for_batchnorm_in_training():
    report = check_layer({"type": "BatchNorm"}, (4,), checks=["batch_independence"])
    assert "batch_independence" in report.passed  # inference
    assert "batch_independent=False" in report.skipped["batch_independence"]
    report = check_layer({"type": "Dropout", "rate": 0.5}, (4,), checks=["batch_independence"])
    assert report.skipped == {}


def test_loss_check_fails_when_a_requested_target_kind_is_refused():
    with pytest.raises(ConformanceError) as info:
        check_loss("mean_squared_error", targets=["integer_labels"])
    assert info.value.properties == ["targets"]


# -- the kit rejects broken components, naming the property and the numbers ------------------------


@attrs.define(slots=False, eq=False)
class ScaleBase(Layer):
    """``y = x * w`` per feature: a correct layer the broken ones below bend."""

    def build(self, input_shape, rng):
        self.add_weight("w", input_shape, "glorot_uniform", rng)
        return tuple(input_shape)

    def forward(self, x, training=False):
        self._x = x
        return x * self.params["w"]

    def backward(self, grad):
        self.grads["w"][...] = (grad * self._x).sum(axis=0)
        return grad * self.params["w"]


@attrs.define(slots=False, eq=False)
class WrongInputGrad(ScaleBase):
    def backward(self, grad):
        super().backward(grad)
        return 2 * grad * self.params["w"]


@attrs.define(slots=False, eq=False)
class WrongParamGrad(ScaleBase):
    def backward(self, grad):
        out = super().backward(grad)
        self.grads["w"][...] = grad.sum(axis=0)
        return out


@attrs.define(slots=False, eq=False)
class Upcasting(ScaleBase):
    def forward(self, x, training=False):
        return super().forward(x).astype(np.float64)


@attrs.define(slots=False, eq=False)
class WrongPromise(ScaleBase):
    def build(self, input_shape, rng):
        super().build(input_shape, rng)
        return (input_shape[0] + 1,)


@attrs.define(slots=False, eq=False)
class BatchDependent(ScaleBase):
    """Centres over the batch (with a correct backward): only batch independence is broken."""

    def forward(self, x, training=False):
        return super().forward(x - x.mean(axis=0))

    def backward(self, grad):
        g = super().backward(grad)
        return g - g.mean(axis=0)


@attrs.define(slots=False, eq=False)
class InPlace(ScaleBase):
    def forward(self, x, training=False):
        x *= 1.0001
        return super().forward(x)


@attrs.define(slots=False, eq=False)
class GlobalRandom(ScaleBase):
    def build(self, input_shape, rng):
        self.params["w"] = np.random.standard_normal(input_shape).astype(np.float32)
        self.grads["w"] = np.zeros_like(self.params["w"])
        return tuple(input_shape)


@attrs.define(slots=False, eq=False)
class LossyConfig(ScaleBase):
    factor: float = fields.number(1.0)

    def get_config(self):
        cfg = super().get_config()
        cfg["factor"] = round(cfg["factor"])
        return cfg


BROKEN_LAYERS = [  # (layer, the property it breaks, a phrase of the message, only that property?)
    (WrongInputGrad(), "gradient", "input gradient", True),
    (WrongParamGrad(), "gradient", "parameter 'w' gradient", True),
    (Upcasting(), "dtype", "float32 input gave float64 output", True),
    (WrongPromise(), "shape", "build promised", True),
    (BatchDependent(), "batch_independence", "sample 0 changed", True),
    (InPlace(), "inputs_unchanged", "modified input 0", False),  # also garbles the other checks
    (GlobalRandom(), "determinism", "different 'w'", True),
    (LossyConfig(factor=0.3), "config", "JSON round trip", True),
]


@pytest.mark.parametrize(
    ("layer", "prop", "phrase", "alone"), BROKEN_LAYERS, ids=[type(b[0]).__name__ for b in BROKEN_LAYERS]
)
def test_kit_rejects_broken_layer(layer, prop, phrase, alone):
    with pytest.raises(ConformanceError) as info:
        check_layer(layer, (5,))
    err = info.value
    assert prop in err.properties, str(err)
    if alone:
        assert err.properties == [prop], str(err)
    message = "\n".join(m for p, m in err.failures if p == prop)
    assert phrase in message
    assert type(layer).__name__ in str(err)


def test_correct_base_of_the_broken_layers_passes():
    report = check_layer(ScaleBase(), (5,))
    assert "gradient" in report.passed


def test_gradient_failure_reports_the_numbers():
    with pytest.raises(ConformanceError) as info:
        check_layer(WrongInputGrad(), (5,), checks=["gradient"])
    msg = str(info.value)
    assert "max abs error" in msg and "max rel error" in msg and "analytic" in msg and "numeric" in msg
    assert "inference" in msg and "training" in msg
    assert "parameter 'w'" not in msg  # the parameter gradient is right


@attrs.define
class WrongDerivative(Activation):
    def forward(self, x):
        return np.tanh(x)

    def backward(self, grad, x, y):
        return grad * (1 - y)


@attrs.define
class UpcastActivation(Activation):
    def forward(self, x):
        return x * np.float64(2.0)

    def backward(self, grad, x, y):
        return grad * 2.0


@attrs.define
class RowMix(Activation):
    def forward(self, x):
        return x - x.mean(axis=0)

    def backward(self, grad, x, y):
        return grad - grad.mean(axis=0)


@pytest.mark.parametrize(
    ("act", "prop"),
    [(WrongDerivative(), "gradient"), (UpcastActivation(), "dtype"), (RowMix(), "batch_independence")],
    ids=["WrongDerivative", "UpcastActivation", "RowMix"],
)
def test_kit_rejects_broken_activation(act, prop):
    with pytest.raises(ConformanceError) as info:
        check_activation(act)
    assert info.value.properties == [prop], str(info.value)


@attrs.define
class HalfGradientMSE(Loss):
    def value_and_grad(self, pred, target):
        d = pred - target.reshape(pred.shape)
        return float(np.mean(d * d)), d / d.size  # should be 2 d / n

    def check_target(self, target, pred_shape):
        if target.size != int(np.prod(pred_shape)):
            from regnet.errors import DataError

            raise DataError("size mismatch")


def test_kit_rejects_broken_loss():
    with pytest.raises(ConformanceError) as info:
        check_loss(HalfGradientMSE())
    assert info.value.properties == ["gradient"]
    assert "w.r.t. predictions" in str(info.value)


@attrs.define(slots=False)
class Ascent(Optimizer):
    def update(self, p, g, state):
        p += self.learning_rate * g


@attrs.define(slots=False)
class Forgetful(SGD):
    """Momentum whose state_dict() loses the velocity."""

    registered_name = "Forgetful"  # not SGD's name: a subclass must not save itself as its parent

    def state_dict(self):
        return {"iterations": np.asarray(self.iterations, dtype=np.int64)}


def test_kit_rejects_optimizer_that_climbs():
    with pytest.raises(ConformanceError) as info:
        check_optimizer(Ascent())
    assert "descent" in info.value.properties
    assert "convex quadratic" in str(info.value)


def test_kit_rejects_optimizer_that_cannot_resume():
    with pytest.raises(ConformanceError) as info:
        check_optimizer(Forgetful(momentum=0.9))
    assert info.value.properties == ["state"]


@attrs.define
class GlobalNormal(Initializer):
    def __call__(self, shape, rng, dtype=np.float32):
        return np.random.standard_normal(shape).astype(dtype) * 0.01


@attrs.define
class Float64Init(Initializer):
    def __call__(self, shape, rng, dtype=np.float32):
        return rng.standard_normal(shape) * 0.01


@attrs.define
class HugeInit(Initializer):
    def __call__(self, shape, rng, dtype=np.float32):
        return rng.standard_normal(shape, dtype=np.float32) * 3


@pytest.mark.parametrize(
    ("init", "props"),
    [
        (GlobalNormal(), {"determinism", "global_state"}),
        (Float64Init(), {"dtype"}),
        (HugeInit(), {"variance"}),
    ],
    ids=["GlobalNormal", "Float64Init", "HugeInit"],
)
def test_kit_rejects_broken_initializer(init, props):
    with pytest.raises(ConformanceError) as info:
        check_initializer(init)
    assert set(info.value.properties) == props, str(info.value)


def test_unknown_component_is_a_conformance_error_naming_it():
    with pytest.raises(ConformanceError) as info:
        check_layer({"type": "Dnse", "units": 3}, (4,))
    assert info.value.properties == ["construct"]
    assert "Dense" in str(info.value)  # the close match


# -- optimizer update rules against values worked out by hand --------------------------------------
# p0 = [1, -2]; gradients g1 = [1, -2], g2 = [0.5, 1], g3 = [-1, 0.5] (fixed, not from a loss).
# The expected numbers below follow the formulas documented in regnet/optimizers.py, step by step.

GRADS = [[1.0, -2.0], [0.5, 1.0], [-1.0, 0.5]]

HAND = [
    # SGD, lr 0.1: p -= 0.1 g
    ("SGD", {"learning_rate": 0.1}, [[0.9, -1.8], [0.85, -1.9], [0.95, -1.95]]),
    # momentum 0.9: v = 0.9 v + g -> [1,-2], [1.4,-0.8], [0.26,-0.22]; p -= 0.1 v
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}, [[0.9, -1.8], [0.76, -1.72], [0.734, -1.698]]),
    # nesterov: step = g + 0.9 v -> [1.9,-3.8], [1.76,0.28], [-0.766,0.302]; p -= 0.1 step
    (
        "SGD",
        {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
        [[0.81, -1.62], [0.634, -1.648], [0.7106, -1.6782]],
    ),
    # weight decay 0.1: g' = g + 0.1 p -> [1.1,-2.2], [0.589,0.822], [-0.91689,0.31378]; p -= 0.1 g'
    ("SGD", {"learning_rate": 0.1, "weight_decay": 0.1}, [[0.89, -1.78], [0.8311, -1.8622], [0.922789, -1.893578]]),
    # AdaGrad, lr 0.1: acc = [1,4], [1.25,5], [2.25,5.25]; p -= 0.1 g / sqrt(acc)
    # step 2: 0.1*0.5/sqrt(1.25) = 0.1*1/sqrt(5) = 0.0447213595; step 3: -0.1/1.5, 0.05/sqrt(5.25) = 0.0218217890
    (
        "AdaGrad",
        {"learning_rate": 0.1, "epsilon": 0.0},
        [[0.9, -1.9], [0.8552786405, -1.9447213595], [0.9219453071, -1.9665431486]],
    ),
    # RMSprop, lr 0.01, rho 0.9: ms = [0.1,0.4], [0.115,0.46]; g/sqrt(ms) = +-sqrt(10) = 3.16227766,
    # then 0.5/sqrt(0.115) = 1/sqrt(0.46) = 1.4744195615
    (
        "RMSprop",
        {"learning_rate": 0.01, "rho": 0.9, "epsilon": 0.0},
        [[0.9683772234, -1.9683772234], [0.9536330278, -1.9831214190]],
    ),
    # Adam, lr 0.1: m = [0.1,-0.2], [0.14,-0.08]; v = [0.001,0.004], [0.001249,0.004996];
    # step 1: m_hat/sqrt(v_hat) = [1,-1]; step 2: lr/(1-0.81) = 0.5263157895,
    # v_hat = v/0.001999 = [0.6248124062, 2.4992496248], update = [0.0932179639, -0.0266337040]
    ("Adam", {"learning_rate": 0.1, "epsilon": 0.0}, [[0.9, -1.9], [0.8067820361, -1.8733662960]]),
    # AdamW, weight decay 0.1: p *= 1 - 0.1*0.1 before each Adam update (same updates as above)
    # step 1: [0.99,-1.98] - [0.1,-0.1]; step 2: [0.8811,-1.8612] - [0.0932179639,-0.0266337040]
    (
        "AdamW",
        {"learning_rate": 0.1, "epsilon": 0.0, "weight_decay": 0.1},
        [[0.89, -1.88], [0.7878820361, -1.8345662960]],
    ),
]


@pytest.mark.parametrize(
    ("name", "config", "expected"),
    HAND,
    ids=["sgd", "momentum", "nesterov", "weight_decay", "adagrad", "rmsprop", "adam", "adamw"],
)
def test_optimizer_first_steps_match_hand_computation(name, config, expected):
    opt = registry.optimizers.create({"type": name, **config})
    p = np.array([1.0, -2.0], dtype=np.float32)
    params = {"layer/w": p}
    for step, want in enumerate(expected):
        opt.step(params, {"layer/w": np.array(GRADS[step], dtype=np.float32)})
        assert params["layer/w"] is p and p.dtype == np.float32
        np.testing.assert_allclose(p, want, rtol=2e-6, atol=1e-6, err_msg=f"{name} step {step + 1}")
    assert opt.iterations == len(expected)


def test_hand_values_distinguish_the_rules():
    """The cases above are not interchangeable: each pair of rules differs at some step."""
    finals = {i: tuple(np.round(e[-1], 4)) for i, (_, _, e) in enumerate(HAND)}
    assert len(set(finals.values())) == len(HAND)


def test_optimizer_classes_are_the_registered_ones():
    for cls in (SGD, AdaGrad, RMSprop, Adam, AdamW):
        assert registry.optimizers.get(cls.registered_name) is cls
