"""Bad data and arguments to fit / evaluate / predict.

Each case raises a ``DataError`` or ``ConfigError`` that names the argument, before any work:
the weights, the optimizer state, the epoch counter, the history and the generator are exactly
as they were, and no layer code ran (no NumPy error from deep inside a layer). A generated
section throws random arrays of random shapes and dtypes at ``fit`` with the same contract.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from regnet import ConfigError, DataError, Model, TrainingDivergedError

SPEC = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 6, "activation": "relu"},
        {"type": "BatchNorm", "name": "bn"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}
N = 10
RNG = np.random.default_rng(0)
X = RNG.standard_normal((N, 4)).astype(np.float32)
Y = RNG.integers(0, 3, N)


def model(loss="categorical_crossentropy", units=3, activation="softmax", compiled=True):
    spec = {**SPEC, "layers": [*SPEC["layers"][:2], {**SPEC["layers"][2], "units": units, "activation": activation}]}
    m = Model.from_spec(spec, seed=0)
    return m.compile(loss, {"type": "adam", "learning_rate": 0.1}) if compiled else m


def state(m):
    opt = m.optimizer.state_dict() if m.optimizer is not None else {}
    return (
        {k: v.copy() for k, v in m.state_dict().items()},
        {k: np.array(v) for k, v in opt.items()},
        m.epoch,
        list(m.history),
        m.rng.bit_generator.state,
    )


def assert_same_state(before, after):
    (w0, o0, e0, h0, r0), (w1, o1, e1, h1, r1) = before, after
    assert w0.keys() == w1.keys() and all(np.array_equal(w0[k], w1[k]) for k in w0)
    assert o0.keys() == o1.keys() and all(np.array_equal(o0[k], o1[k]) for k in o0)
    assert (e0, h0, r0) == (e1, h1, r1)


def refused(m, call, error, words):
    before = state(m)
    with pytest.raises(error) as info:
        call(m)
    assert_same_state(before, state(m))
    layer_frames = [e for e in info.traceback if "regnet/layers" in str(e.path).replace("\\", "/")]
    assert not layer_frames, "the error was raised inside layer code"
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    return info.value


def fit(x=X, y=Y, **kw):
    return lambda m: m.fit(x, y, verbose=0, **kw)


ONE_HOT = np.eye(3, dtype=np.float32)[Y]

FIT_CASES = [
    # -- shapes ----------------------------------------------------------------------------------
    ("wrong width", fit(x=X[:, :3]), DataError, ["x has shape (10, 3)", "(N, 4)"]),
    ("rank too high", fit(x=X[:, :, None]), DataError, ["x has shape (10, 4, 1)", "(N, 4)"]),
    ("rank too low", fit(x=X.ravel()), DataError, ["x has shape (40,)"]),
    ("single sample without batch axis", fit(x=X[0], y=Y[:1]), DataError, ["single sample", "add the batch axis"]),
    ("scalar x", fit(x=np.float32(1.0)), DataError, ["x has shape ()"]),
    ("transposed x", fit(x=X.T), DataError, ["x has shape (4, 10)"]),
    ("ragged list", fit(x=[[1.0, 2.0, 3.0, 4.0], [1.0]]), DataError, ["ragged"]),
    ("empty x", fit(x=X[:0], y=Y[:0]), DataError, ["empty"]),
    # -- dtypes ----------------------------------------------------------------------------------
    ("strings", fit(x=X.astype(str)), DataError, ["x must be numeric", "<U"]),
    ("objects", fit(x=X.astype(object)), DataError, ["x must be numeric", "object"]),
    ("list of strings", fit(x=[["1", "2", "3", "4"]] * N), DataError, ["x must be numeric"]),
    ("bytes dtype", fit(x=X.astype("S8")), DataError, ["x must be numeric", "S8"]),
    ("complex", fit(x=X.astype(np.complex64)), DataError, ["x must be real", "complex64"]),
    ("datetimes", fit(x=np.zeros((N, 4), "datetime64[s]")), DataError, ["x must be numeric", "datetime64"]),
    ("timedeltas", fit(x=np.zeros((N, 4), "timedelta64[s]")), DataError, ["x must be numeric", "timedelta64"]),
    ("structured", fit(x=np.zeros((N, 4), [("a", "f4")])), DataError, ["x must be numeric"]),
    ("dict", fit(x={"x": X}), DataError, ["x must be a NumPy array", "dict"]),
    ("None", fit(x=None), DataError, ["x must be a NumPy array", "NoneType"]),
    # -- values ----------------------------------------------------------------------------------
    (
        "NaN in x",
        fit(x=np.where(np.arange(40).reshape(N, 4) == 13, np.nan, X)),
        DataError,
        ["x contains 1 NaN or infinite value(s)", "index 3"],
    ),
    (
        "inf in x",
        fit(x=np.where(np.arange(40).reshape(N, 4) == 0, -np.inf, X)),
        DataError,
        ["x contains 1 NaN", "index 0"],
    ),
    ("float64 beyond float32", fit(x=np.full((N, 4), 1e300)), DataError, ["x contains 40 NaN or infinite"]),
    # -- labels ----------------------------------------------------------------------------------
    ("label too large", fit(y=np.where(Y == 0, 3, Y)), DataError, ["y:", "labels must be in [0, 2]", "3]"]),
    ("negative label", fit(y=np.where(Y == 0, -1, Y)), DataError, ["labels must be in [0, 2]", "[-1,"]),
    ("huge unsigned label", fit(y=np.full(N, 2**63, np.uint64)), DataError, ["labels must be in [0, 2]"]),
    ("fractional labels", fit(y=Y + 0.5), DataError, ["integer class labels expected", ".5 at index 0"]),
    ("NaN label", fit(y=np.where(Y == 0, np.nan, Y)), DataError, ["y contains", "NaN"]),
    ("too few labels", fit(y=Y[:7]), DataError, ["y holds 7 samples", "x holds 10"]),
    ("too many labels", fit(y=np.concatenate([Y, Y])), DataError, ["y holds 20 samples"]),
    ("one-hot too wide", fit(y=np.eye(4)[Y]), DataError, ["targets of shape (10, 4)", "(N, 3)"]),
    ("one-hot too narrow", fit(y=np.eye(2)[Y % 2]), DataError, ["targets of shape (10, 2)"]),
    ("one-hot with negatives", fit(y=-ONE_HOT), DataError, ["must lie in [0, 1]", "-1.0"]),
    ("labels as a column", fit(y=Y[:, None]), DataError, ["targets of shape (10, 1)", "integer labels (N,)"]),
    ("labels of rank 3", fit(y=ONE_HOT[:, :, None]), DataError, ["targets of shape (10, 3, 1)"]),
    ("string labels", fit(y=Y.astype(str)), DataError, ["y must be numeric"]),
    ("object labels", fit(y=Y.astype(object)), DataError, ["y must be numeric", "object"]),
    ("complex labels", fit(y=Y.astype(complex)), DataError, ["y must be real"]),
    ("scalar y", fit(y=2), DataError, ["y is a single value", "10 samples"]),
    ("None y", fit(y=None), DataError, ["y is missing", "targets must be given as y"]),
    ("ragged y", fit(y=[[0, 1], [1]] + [[0, 1]] * 8), DataError, ["ragged"]),
    # -- batch size and epochs -------------------------------------------------------------------
    ("batch_size 0", fit(batch_size=0), DataError, ["batch_size must be a positive integer", "got 0"]),
    ("batch_size negative", fit(batch_size=-5), DataError, ["batch_size", "-5"]),
    ("batch_size fractional", fit(batch_size=2.5), DataError, ["batch_size", "2.5"]),
    ("batch_size integral float", fit(batch_size=8.0), DataError, ["batch_size", "8.0"]),
    ("batch_size string", fit(batch_size="8"), DataError, ["batch_size", "'8'"]),
    ("batch_size bool", fit(batch_size=True), DataError, ["batch_size", "True"]),
    ("batch_size None", fit(batch_size=None), DataError, ["batch_size", "None"]),
    ("epochs negative", fit(epochs=-1), DataError, ["epochs must be a non-negative integer", "-1"]),
    ("epochs fractional", fit(epochs=1.5), DataError, ["epochs", "1.5"]),
    ("epochs string", fit(epochs="2"), DataError, ["epochs", "'2'"]),
    ("epochs huge int", fit(epochs=-(10**5000)), DataError, ["epochs", "<int of"]),
    # -- validation data -------------------------------------------------------------------------
    (
        "validation_data not a pair",
        fit(validation_data=X),
        DataError,
        ["validation_data must be a pair", "ndarray of shape (10, 4)"],
    ),
    ("validation_data of length 4", fit(validation_data=(X, Y, Y, Y)), DataError, ["a tuple of length 4"]),
    (
        "validation weights negative",
        fit(validation_data=(X, Y, -np.ones(N))),
        DataError,
        ["sample_weight must be finite and >= 0", "index 0"],
    ),
    ("validation_data dict", fit(validation_data={"x": X, "y": Y}), DataError, ["validation_data must be a pair"]),
    ("validation x wrong shape", fit(validation_data=(X[:, :2], Y)), DataError, ["validation x has shape (10, 2)"]),
    ("validation y wrong count", fit(validation_data=(X, Y[:3])), DataError, ["validation y holds 3 samples"]),
    ("validation labels out of range", fit(validation_data=(X, Y + 3)), DataError, ["validation y:", "[0, 2]"]),
    ("validation x with NaN", fit(validation_data=(X * np.nan, Y)), DataError, ["validation x contains 40 NaN"]),
    ("validation None inside", fit(validation_data=(None, Y)), DataError, ["validation x must be a NumPy array"]),
    # -- other arguments -------------------------------------------------------------------------
    ("seed string", fit(seed="7"), ConfigError, ["seed", "'7'"]),
    ("seed negative", fit(seed=-1), ConfigError, ["seed", "-1"]),
    ("seed float", fit(seed=1.5), ConfigError, ["seed", "1.5"]),
    ("shuffle string", fit(shuffle="no"), ConfigError, ["shuffle", "'no'"]),
    ("verbose negative", lambda m: m.fit(X, Y, verbose=-1), ConfigError, ["verbose", "-1"]),
    ("verbose string", lambda m: m.fit(X, Y, verbose="loud"), ConfigError, ["verbose", "'loud'"]),
    ("callbacks not a list", fit(callbacks=3), ConfigError, ["callbacks", "3"]),
    ("callback without hooks", fit(callbacks=[object()]), ConfigError, ["callback #0", "on_train_begin"]),
]


@pytest.mark.parametrize("call, error, words", [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES])
def test_fit_refuses_bad_data_before_any_work(call, error, words):
    refused(model(), call, error, words)


EVAL_PREDICT_CASES = [
    ("evaluate wrong shape", lambda m: m.evaluate(X[:, :2], Y), DataError, ["x has shape (10, 2)"]),
    ("evaluate labels out of range", lambda m: m.evaluate(X, Y + 5), DataError, ["labels must be in [0, 2]"]),
    ("evaluate too few labels", lambda m: m.evaluate(X, Y[:4]), DataError, ["y holds 4 samples"]),
    ("evaluate batch_size 0", lambda m: m.evaluate(X, Y, batch_size=0), DataError, ["batch_size", "0"]),
    ("evaluate NaN", lambda m: m.evaluate(X * np.inf, Y), DataError, ["NaN or infinite"]),
    ("evaluate single sample", lambda m: m.evaluate(X[0], Y[:1]), DataError, ["single sample", "add the batch axis"]),
    ("predict strings", lambda m: m.predict(X.astype(str)), DataError, ["x must be numeric"]),
    ("predict empty", lambda m: m.predict(X[:0]), DataError, ["empty"]),
    ("predict batch_size -1", lambda m: m.predict(X, batch_size=-1), DataError, ["batch_size", "-1"]),
    ("predict batch_size float", lambda m: m.predict(X, batch_size=1.0), DataError, ["batch_size"]),
]


@pytest.mark.parametrize(
    "call, error, words", [c[1:] for c in EVAL_PREDICT_CASES], ids=[c[0] for c in EVAL_PREDICT_CASES]
)
def test_evaluate_and_predict_refuse_bad_data(call, error, words):
    refused(model(), call, error, words)


@pytest.mark.parametrize("call", [fit(), lambda m: m.evaluate(X, Y)], ids=["fit", "evaluate"])
def test_training_before_compile_is_a_config_error(call):
    e = refused(model(compiled=False), call, ConfigError, ["not compiled", "compile("])
    assert e.layer is None


def test_predict_needs_no_compile():
    out = model(compiled=False).predict(X)
    assert out.shape == (N, 3) and out.dtype == np.float32


@pytest.mark.parametrize(
    "loss, units, activation, y, words",
    [
        ("binary_crossentropy", 1, "sigmoid", np.full(N, 2.0), ["binary targets must lie in [0, 1]", "2.0"]),
        ("binary_crossentropy", 1, "sigmoid", np.zeros((N, 2)), ["targets of shape (10, 2)", "(N, 1)"]),
        ("binary_crossentropy", 1, "sigmoid", -np.ones(N), ["[0, 1]", "-1.0"]),
        ("mean_squared_error", 3, "linear", np.zeros(N), ["targets of shape (10,)", "(N, 3)"]),
        ("mean_squared_error", 3, "linear", np.zeros((N, 6)), ["targets of shape (10, 6)"]),
        ("mean_squared_error", 3, "linear", np.zeros((N, 3, 2)), ["targets of shape (10, 3, 2)"]),
    ],
)
def test_targets_must_fit_the_loss(loss, units, activation, y, words):
    refused(model(loss, units, activation), fit(y=y), DataError, ["y:", *words])


@pytest.mark.parametrize(
    "loss, units, activation, y",
    [
        ("categorical_crossentropy", 3, "softmax", Y.astype(np.float64)),  # integral floats are labels
        ("categorical_crossentropy", 3, "softmax", np.full((N, 3), 1 / 3, np.float32)),  # soft labels
        ("categorical_crossentropy", 3, "softmax", list(Y)),
        ("binary_crossentropy", 1, "sigmoid", Y % 2 == 0),  # booleans
        ("binary_crossentropy", 1, "sigmoid", (Y % 2)[:, None]),  # (N, 1) for (N, 1) outputs
        ("mean_squared_error", 3, "linear", ONE_HOT.astype(np.float16)),
    ],
)
def test_good_targets_in_other_forms_train(loss, units, activation, y):
    m = model(loss, units, activation)
    history = m.fit(X.astype(np.float64), y, epochs=1, batch_size=4, verbose=0)
    assert m.epoch == 1 and np.isfinite(history.history["loss"][0])


def test_large_batch_size_and_zero_epochs_are_fine():
    m = model()
    before = state(m)
    m.fit(X, Y, epochs=0, verbose=0)
    assert_same_state(before, state(m))
    m.fit(X, Y, batch_size=10**9, verbose=0)
    assert m.epoch == 1


# -- generated arrays ----------------------------------------------------------------------------

DTYPES = st.sampled_from(
    [
        "float32",
        "float64",
        "float16",
        "int8",
        "int64",
        "uint64",
        "bool",
        "complex64",
        "U3",
        "S2",
        "O",
        "datetime64[s]",
        "timedelta64[ms]",
    ]
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)


@st.composite
def arrays(draw, shape=None):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(SHAPES) if shape is None else shape
    if dtype.kind in "fiub":
        elements = None
        if dtype.kind == "f":
            elements = st.floats(allow_nan=True, allow_infinity=True, width=min(dtype.itemsize * 8, 64))
        return draw(hnp.arrays(dtype, shape, elements=elements))
    if dtype.kind == "O":
        return np.full(shape, draw(st.sampled_from([None, 1, "a", 1.5])), dtype=object)
    return np.zeros(shape, dtype)


def test_random_arrays_train_or_are_refused(fuzz_cases):
    @settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        x=st.one_of(st.just(X), arrays(shape=(N, 4)), arrays()),
        y=st.one_of(st.just(Y), arrays(shape=(N,)), arrays()),
        batch_size=st.sampled_from([1, 3, 32, 0, -1, 2.0]),
    )
    def random_data(x, y, batch_size):
        fuzz_cases("random_data")
        m = model()
        before = state(m)
        try:
            m.fit(x, y, batch_size=batch_size, verbose=0)
        except (DataError, ConfigError):
            assert_same_state(before, state(m))
            fuzz_cases("random_data, refused")
            return
        except TrainingDivergedError:  # finite but huge inputs (1e38) can overflow a layer
            assert all(np.isfinite(v).all() for v in m.state_dict().values())
            fuzz_cases("random_data, diverged")
            return
        fuzz_cases("random_data, trained")
        weights = m.state_dict()
        assert all(np.isfinite(v).all() for v in weights.values())

    random_data()
