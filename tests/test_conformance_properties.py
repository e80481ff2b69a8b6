"""Every property of the conformance kit, one by one: each can fail (a component broken in just
that way, table-driven), each runs when requested alone, each that cannot apply is reported as
skipped with a reason, and a name the kind does not know is a ConfigError."""

import numpy as np
import pytest

from regnet import (
    Activation,
    ConfigError,
    Initializer,
    Layer,
    Loss,
    Optimizer,
    activation,
    fields,
    initializer,
    layer,
    loss,
    optimizer,
    registry,
)
from regnet.errors import DataError
from regnet.losses import CategoricalCrossentropy
from regnet.optimizers import SGD
from regnet.testing import (
    KINDS,
    PROPERTIES,
    ConformanceError,
    check_activation,
    check_component,
    check_initializer,
    check_layer,
    check_loss,
    check_optimizer,
)

# -- correct components, and each one bent to break exactly one property -----------------------


@layer("KitScale", register=False)
class KitScale(Layer):
    """``y = x * w`` per feature."""

    def build(self, input_shape, rng):
        self.add_weight("w", input_shape, "glorot_uniform", rng)
        return tuple(input_shape)

    def forward(self, x, training=False):
        self.cache.x = x
        return x * self.params["w"]

    def backward(self, grad, *, need_input_grad=True):
        self.grads["w"][...] = (grad * self.cache.x).sum(axis=0)
        return grad * self.params["w"]


@layer("KitLossyConfig", register=False)
class KitLossyConfig(KitScale):
    factor: float = fields.number(1.0)

    def get_config(self):
        return {**super().get_config(), "factor": round(self.factor)}


@layer("KitWrongPromise", register=False)
class KitWrongPromise(KitScale):
    def build(self, input_shape, rng):
        super().build(input_shape, rng)
        return (input_shape[0] + 1,)


@layer("KitUpcast", register=False)
class KitUpcast(KitScale):
    def forward(self, x, training=False):
        return super().forward(x).astype(np.float64)


@layer("KitInPlace", register=False)
class KitInPlace(KitScale):
    def forward(self, x, training=False):
        x *= 1.0001
        return super().forward(x)


@layer("KitWrongInputGrad", register=False)
class KitWrongInputGrad(KitScale):
    def backward(self, grad, *, need_input_grad=True):
        return 2 * super().backward(grad)


@layer("KitBatchDependent", register=False)
class KitBatchDependent(KitScale):
    """Centres over the batch, with a correct backward."""

    def forward(self, x, training=False):
        return super().forward(x - x.mean(axis=0))

    def backward(self, grad, *, need_input_grad=True):
        g = super().backward(grad)
        return g - g.mean(axis=0)


@layer("KitGlobalRandom", register=False)
class KitGlobalRandom(KitScale):
    def build(self, input_shape, rng):
        shape = super().build(input_shape, rng)
        self.params["w"][...] = np.random.standard_normal(input_shape)
        return shape


@layer("KitHiddenState", register=False)
class KitHiddenState(KitScale):
    """Keeps an offset drawn at build outside its weights, so no file can carry it."""

    def build(self, input_shape, rng):
        self.offset = np.float32(rng.standard_normal())
        return super().build(input_shape, rng)

    def forward(self, x, training=False):
        return super().forward(x) + self.offset


@activation("kit_tanh", register=False)
class KitTanh(Activation):
    scale: float = fields.number(1.0)

    def forward(self, x):
        return np.tanh(x)

    def backward(self, grad, x, y):
        return grad * (1 - y * y)


@activation("kit_lossy_config", register=False)
class KitLossyActivation(KitTanh):
    def get_config(self):
        return {**super().get_config(), "scale": round(self.scale)}


@activation("kit_sum", register=False)
class KitSum(KitTanh):
    def forward(self, x):
        return np.tanh(x).sum(axis=-1)


@activation("kit_upcast", register=False)
class KitUpcastActivation(KitTanh):
    def forward(self, x):
        return np.tanh(x.astype(np.float64))


@activation("kit_in_place", register=False)
class KitInPlaceActivation(KitTanh):
    def forward(self, x):
        return np.tanh(x, out=x)


@activation("kit_wrong_derivative", register=False)
class KitWrongDerivative(KitTanh):
    def backward(self, grad, x, y):
        return grad * (1 - y)


@activation("kit_row_mix", register=False)
class KitRowMix(KitTanh):
    def forward(self, x):
        return np.tanh(x - x.mean(axis=0))

    def backward(self, grad, x, y):
        g = grad * (1 - y * y)
        return g - g.mean(axis=0)


@loss("kit_mse", register=False)
class KitMSE(Loss):
    weight: float = fields.number(1.0)

    def value_and_grad(self, pred, target):
        d = pred - target.reshape(pred.shape)
        return float(np.mean(d * d)), (2 * d / d.size).astype(pred.dtype)

    def check_target(self, target, pred_shape):
        if target.size != int(np.prod(pred_shape)):
            raise DataError(f"targets of size {target.size} do not fit predictions {list(pred_shape)}")


@loss("kit_lossy_config", register=False)
class KitLossyLoss(KitMSE):
    def get_config(self):
        return {**super().get_config(), "weight": round(self.weight)}


@loss("kit_refuses_all", register=False)
class KitRefusesAll(KitMSE):
    def check_target(self, target, pred_shape):
        raise DataError("no target is good enough")


@loss("kit_two_values", register=False)
class KitTwoValues(KitMSE):
    def value(self, pred, target):
        return self.value_and_grad(pred, target)[0] + 1.0


@loss("kit_upcast", register=False)
class KitUpcastLoss(KitMSE):
    def value_and_grad(self, pred, target):
        value, grad = super().value_and_grad(pred, target)
        return value, grad.astype(np.float64)


@loss("kit_in_place", register=False)
class KitInPlaceLoss(KitMSE):
    def value_and_grad(self, pred, target):
        pred -= 0.5
        return super().value_and_grad(pred + 0.5, target)


@loss("kit_half_gradient", register=False)
class KitHalfGradient(KitMSE):
    def value_and_grad(self, pred, target):
        value, grad = super().value_and_grad(pred, target)
        return value, grad / 2


@loss("kit_bad_fusion", register=False)
class KitBadFusion(CategoricalCrossentropy):
    """Claims its logits version is the mean squared error."""

    def fused_with(self, activation_name):
        return KitMSE() if activation_name == self.fuses and not self.from_logits else None


@optimizer("KitSGD", register=False)
class KitLossyOptimizer(SGD):
    def get_config(self):
        return {**super().get_config(), "learning_rate": round(self.learning_rate, 1)}


@optimizer("KitReplacing", register=False)
class KitReplacing(SGD):
    def step(self, params, grads):
        self.iterations += 1
        for key in params:
            params[key] = params[key] - self.learning_rate * grads[key]


@optimizer("KitAscent", register=False)
class KitAscent(Optimizer):
    def update(self, p, g, state):
        p += self.learning_rate * g


@optimizer("KitForgetful", register=False)
class KitForgetful(SGD):
    def state_dict(self):
        return {"iterations": np.asarray(self.iterations, dtype=np.int64)}


@optimizer("KitNoisy", register=False)
class KitNoisy(SGD):
    def update(self, p, g, state):
        p -= self.learning_rate * (g + np.random.standard_normal(p.shape).astype(np.float32) * 1e-3)


@initializer("kit_normal", register=False)
class KitNormal(Initializer):
    stddev: float = fields.number(0.01)

    def __call__(self, shape, rng, dtype=np.float32):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(self.stddev)


@initializer("kit_lossy_config", register=False)
class KitLossyInitializer(KitNormal):
    def get_config(self):
        return {**super().get_config(), "stddev": round(self.stddev)}


@initializer("kit_transposed", register=False)
class KitTransposed(KitNormal):
    def __call__(self, shape, rng, dtype=np.float32):
        return super().__call__(tuple(reversed(shape)), rng)


@initializer("kit_float64", register=False)
class KitFloat64(KitNormal):
    def __call__(self, shape, rng, dtype=np.float32):
        return super().__call__(shape, rng).astype(np.float64)


@initializer("kit_unseeded", register=False)
class KitUnseeded(KitNormal):
    def __call__(self, shape, rng, dtype=np.float32):
        return super().__call__(shape, np.random.default_rng())


@initializer("kit_global_draw", register=False)
class KitGlobalDraw(KitNormal):
    def __call__(self, shape, rng, dtype=np.float32):
        np.random.random()
        return super().__call__(shape, rng)


@initializer("kit_huge", register=False)
class KitHuge(KitNormal):
    def __call__(self, shape, rng, dtype=np.float32):
        return rng.standard_normal(shape, dtype=np.float32) * 3


@pytest.fixture
def registered_hidden_state():
    """KitHiddenState registered, so that a saved model can name it (the hdf5 property needs that)."""
    registry.layers.register(KitHiddenState, name="KitHiddenState")
    yield
    registry.layers.unregister("KitHiddenState")


LAYER_INPUT = {"input_shape": (5,)}
#: (kind, property, a component that breaks it, check options, a phrase of the failure message)
BROKEN = [
    ("layers", "config", KitLossyConfig(factor=0.3), LAYER_INPUT, "JSON round trip"),
    ("layers", "shape", KitWrongPromise(), LAYER_INPUT, "build promised"),
    ("layers", "dtype", KitUpcast(), LAYER_INPUT, "float32 input gave float64 output"),
    ("layers", "inputs_unchanged", KitInPlace(), LAYER_INPUT, "modified input 0"),
    ("layers", "gradient", KitWrongInputGrad(), LAYER_INPUT, "input gradient"),
    ("layers", "batch_independence", KitBatchDependent(), LAYER_INPUT, "sample 0 changed"),
    ("layers", "determinism", KitGlobalRandom(), LAYER_INPUT, "different 'w'"),
    ("layers", "hdf5", {"type": "KitHiddenState"}, LAYER_INPUT, "changed the outputs"),
    ("activations", "config", KitLossyActivation(scale=0.4), {}, "JSON round trip"),
    ("activations", "shape", KitSum(), {}, "forward turned input"),
    ("activations", "dtype", KitUpcastActivation(), {}, "float64 output"),
    ("activations", "inputs_unchanged", KitInPlaceActivation(), {}, "modified its input"),
    ("activations", "gradient", KitWrongDerivative(), {}, "central differences"),
    ("activations", "batch_independence", KitRowMix(), {}, "sample 0 changed"),
    ("losses", "config", KitLossyLoss(weight=0.3), {}, "JSON round trip"),
    ("losses", "targets", KitRefusesAll(), {}, "refuses every standard kind"),
    ("losses", "value", KitTwoValues(), {}, "value() ="),
    ("losses", "dtype", KitUpcastLoss(), {}, "float64 gradient"),
    ("losses", "inputs_unchanged", KitInPlaceLoss(), {}, "modified its predictions"),
    ("losses", "gradient", KitHalfGradient(), {}, "w.r.t. predictions"),
    ("losses", "fusion", KitBadFusion(), {}, "fused loss on z"),
    ("optimizers", "config", KitLossyOptimizer(learning_rate=0.0123), {}, "JSON round trip"),
    ("optimizers", "dtype", KitReplacing(), {}, "instead of updating it in place"),
    ("optimizers", "descent", KitAscent(), {}, "convex quadratic"),
    ("optimizers", "state", KitForgetful(momentum=0.9), {}, "restored from state_dict()"),
    ("optimizers", "determinism", KitNoisy(), {}, "two identical runs"),
    ("initializers", "config", KitLossyInitializer(stddev=0.3), {}, "JSON round trip"),
    ("initializers", "shape", KitTransposed(), {}, "asked for shape"),
    ("initializers", "dtype", KitFloat64(), {}, "expected float32"),
    ("initializers", "determinism", KitUnseeded(), {}, "the same seed gave different values"),
    ("initializers", "global_state", KitGlobalDraw(), {}, "global random state"),
    ("initializers", "variance", KitHuge(), {}, "times fan_in"),
]


def test_every_property_of_every_kind_has_a_broken_component():
    assert {(kind, prop) for kind, prop, *_ in BROKEN} == {(k, p) for k in KINDS for p in PROPERTIES[k]}


@pytest.mark.usefixtures("registered_hidden_state")
@pytest.mark.parametrize(
    ("kind", "prop", "component", "options", "phrase"), BROKEN, ids=[f"{k}-{p}" for k, p, *_ in BROKEN]
)
def test_each_property_can_fail(kind, prop, component, options, phrase):
    with pytest.raises(ConformanceError) as info:
        check_component(kind, component, checks=[prop], **options)
    err = info.value
    assert err.properties == [prop], str(err)
    assert phrase in str(err)
    assert err.report.failed == [prop] and err.report.passed == [] and err.report.ran == [prop]
    with pytest.raises(ConformanceError) as info:  # a full run names it too
        check_component(kind, component, **options)
    assert prop in info.value.properties


@pytest.mark.parametrize(
    ("check", "component", "options"),
    [
        (check_layer, KitScale(), LAYER_INPUT),
        (check_activation, KitTanh(), {}),
        (check_loss, KitMSE(), {}),
        (check_optimizer, SGD(momentum=0.9), {}),
        (check_initializer, KitNormal(), {}),
    ],
    ids=KINDS,
)
def test_the_unbroken_components_pass(check, component, options):
    check(component, **options)


# -- requesting one property runs exactly that one ---------------------------------------------

#: for each kind, a component and options on which every property applies
APPLIES = {
    "layers": ({"type": "Dense", "units": 3}, {"input_shape": (4,)}),
    "activations": ("tanh", {}),
    "losses": ({"type": "categorical_crossentropy", "from_logits": False}, {}),
    "optimizers": ({"type": "SGD", "momentum": 0.9}, {}),
    "initializers": ("glorot_uniform", {"shapes": [(64, 32), (8, 4, 3, 3)]}),
}


@pytest.mark.parametrize(("kind", "prop"), [(k, p) for k in KINDS for p in PROPERTIES[k]])
def test_each_property_runs_when_requested_alone(kind, prop):
    spec, options = APPLIES[kind]
    report = check_component(kind, spec, checks=[prop], **options)
    assert report.requested == [prop]
    assert report.passed == [prop] and report.ran == [prop] and report.skipped == {}, report


def test_a_full_report_lists_every_property_as_run_or_skipped():
    for kind in KINDS:
        spec, options = APPLIES[kind]
        report = check_component(kind, spec, **options)
        assert report.requested == list(PROPERTIES[kind])
        assert report.ran == list(PROPERTIES[kind]), kind


def test_loss_report_names_the_targets_property():
    assert "targets" in check_loss("mean_squared_error").passed


def test_a_failing_report_keeps_what_passed_and_was_skipped():
    with pytest.raises(ConformanceError) as info:
        check_layer(KitBatchDependent(), (5,))
    report = info.value.report
    assert report.failed == ["batch_independence"]
    assert "gradient" in report.passed and "batch_independence" not in report.passed
    assert "hdf5" in report.skipped  # not registered
    assert set(report.ran) | set(report.skipped) == set(PROPERTIES["layers"])


# -- properties that cannot apply are skipped, with the reason ---------------------------------


@pytest.mark.parametrize(
    ("run", "prop", "reason"),
    [
        (lambda: check_initializer("glorot_uniform", shapes=[(128,)], checks=["variance"]), "variance", "rank < 2"),
        (lambda: check_loss("mean_squared_error", checks=["fusion"]), "fusion", "absorbs no output activation"),
        (
            lambda: check_loss({"type": "categorical_crossentropy", "from_logits": True}, checks=["fusion"]),
            "fusion",
            "already works on logits",
        ),
        (lambda: check_loss(KitRefusesAll(), checks=["gradient"]), "gradient", "accepts none of the target kinds"),
        (lambda: check_layer(KitScale(), (5,), checks=["hdf5"]), "hdf5", "not registered"),
        (lambda: check_layer({"type": "Concatenate"}, [(2,), (3,)], checks=["hdf5"]), "hdf5", "differ"),
        (
            lambda: check_layer({"type": "Dense", "units": 3}, (4,), batch_size=1, checks=["batch_independence"]),
            "batch_independence",
            "2",
        ),
        (
            lambda: check_optimizer({"type": "SGD", "learning_rate": 0.0}, checks=["descent"]),
            "descent",
            "learning_rate",
        ),
        (lambda: check_activation("tanh", shapes=(), checks=["gradient"]), "gradient", "no input shapes"),
        (lambda: check_initializer("glorot_uniform", shapes=(), checks=["dtype"]), "dtype", "no shapes"),
    ],
    ids=[
        "variance-rank1",
        "fusion-none",
        "fusion-logits",
        "targets-refused",
        "hdf5-unregistered",
        "hdf5-shapes",
        "batch-of-1",
        "lr-zero",
        "no-shapes",
        "no-init-shapes",
    ],
)
def test_a_property_that_cannot_apply_is_skipped_with_the_reason(run, prop, reason):
    report = run()
    assert report.ran == [] and list(report.skipped) == [prop]
    assert reason in report.skipped[prop]


def test_properties_after_a_failed_build_are_skipped_with_the_reason():
    with pytest.raises(ConformanceError) as info:
        check_layer({"type": "Conv2D", "filters": 2, "kernel_size": 3}, (4,), checks=["shape", "gradient"])
    err = info.value
    assert err.properties == ["build"]
    assert set(err.report.skipped) == {"shape", "gradient"}
    assert "does not build" in err.report.skipped["gradient"]


# -- property names -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_property_is_a_config_error_listing_the_valid_ones(kind):
    spec, options = APPLIES[kind]
    with pytest.raises(ConfigError) as info:
        check_component(kind, spec, checks=["config", "sturdiness"], **options)
    assert info.value.field == "checks"
    message = str(info.value)
    assert "'sturdiness'" in message
    assert all(p in message for p in PROPERTIES[kind])


def test_a_property_of_another_kind_is_unknown_to_this_one():
    with pytest.raises(ConfigError, match="'gradient' for optimizers"):
        check_optimizer("SGD", checks=["gradient"])


def test_one_property_may_be_named_as_a_string():
    assert check_initializer("he_normal", checks="dtype").passed == ["dtype"]


def test_an_unknown_target_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="'labels'.*integer_labels"):
        check_loss("mean_squared_error", targets=["labels"])
