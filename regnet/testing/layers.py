"""The layer check: output shapes as promised, float32 throughout, inputs left alone, gradients
against central differences, batch independence, determinism and an HDF5 round trip."""

import copy
import os
import tempfile
from typing import Any

import numpy as np

from .. import checkpoint, registry
from ..model import Model
from .gradients import gradient_error, numerical_gradient, sample_indices
from .report import ConformanceError, Fail, Report, Run, Skip, max_diff, requested_properties
from .subjects import Subject, config_round_trips, resolve

#: what ``check_layer`` checks, in the order it runs
PROPERTIES = ("config", "shape", "dtype", "inputs_unchanged", "gradient", "batch_independence", "determinism", "hdf5")

#: test input shapes of the built-in layers (batch axis excluded; a list for merge layers)
BUILTIN_INPUT_SHAPES = {
    "Dense": (4,),
    "Flatten": (2, 3, 3),
    "Reshape": (2, 3, 2),
    "Activation": (5,),
    "Dropout": (6,),
    "Conv2D": (2, 5, 5),
    "MaxPool2D": (2, 4, 4),
    "AvgPool2D": (2, 4, 4),
    "BatchNorm": (3,),
    "Add": [(2, 3), (2, 3)],
    "Concatenate": [(2, 3, 3), (3, 3, 3)],
}
#: shapes tried, in order, for a layer that declares none
FALLBACK_INPUT_SHAPES = [(4,), (2, 5, 5)]


def default_input_shape(subject_or_spec: Any) -> Any:
    """A test input shape for a layer: declared, built-in table, or the first fallback that builds."""
    subject = subject_or_spec if isinstance(subject_or_spec, Subject) else resolve("layers", subject_or_spec)
    declared = getattr(subject.cls, "test_input_shape", None)
    if declared is not None:
        return normalize_shape(declared)
    name = getattr(subject.cls, "registered_name", None)
    if name in BUILTIN_INPUT_SHAPES and registry.layers.provider(name).builtin:
        return normalize_shape(BUILTIN_INPUT_SHAPES[name])
    for shape in FALLBACK_INPUT_SHAPES:
        candidate = [shape, shape] if subject.cls.n_inputs is None else shape
        if _builds(subject, candidate):
            return candidate
    raise ConformanceError(
        subject.label,
        [
            (
                "input_shape",
                f"none of the shapes {FALLBACK_INPUT_SHAPES} builds this layer; pass input_shape= or declare "
                f"a class attribute test_input_shape",
            )
        ],
    )


def _builds(subject, shape):
    try:
        subject.make().setup(shape, np.random.default_rng(0))
    except Exception:  # any error means: not this shape
        return False
    return True


def normalize_shape(shape: Any) -> Any:
    """A tuple for one input, a list of tuples for several (from tuples, lists or JSON data)."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return [tuple(int(d) for d in s) for s in shape]
    return tuple(int(d) for d in shape)


def shape_text(shape: Any) -> str:
    """An input shape with its batch axis, for messages: ``[N, 2, 5, 5]``."""
    if isinstance(shape, list):
        return "[" + ", ".join(shape_text(s) for s in shape) + "]"
    return str(["N", *shape]).replace("'", "")


def mode(training: bool) -> str:
    """The name of a forward mode, for messages."""
    return "training" if training else "inference"


class LayerUnderTest:
    """A layer under test: fresh builds from its config, and random batches of its input shape."""

    def __init__(self, subject: Subject, input_shape: Any, seed: int, batch_size: int) -> None:
        self.subject = subject
        self.shape = input_shape
        self.seed = seed
        self.batch = batch_size
        self.merge = isinstance(input_shape, list)
        # a layer that reads integers (token ids) declares them: test_input_dtype, test_input_range
        declared = getattr(subject.cls, "test_input_dtype", None)
        self.int_dtype = np.dtype(declared) if declared is not None else None
        if self.int_dtype is not None and self.int_dtype.kind not in "iu":
            raise ConformanceError(subject.label, [("test_input_dtype", f"{declared!r} is not an integer dtype")])
        self.int_range = tuple(getattr(subject.cls, "test_input_range", None) or (0, 2))

    def build(self, dtype: Any = np.float32, seed: int | None = None) -> Any:
        """A fresh layer set up on the input shape, its tensors converted to ``dtype``."""
        layer = self.subject.make()
        layer.setup(self.shape, np.random.default_rng(self.seed if seed is None else seed))
        if dtype != np.float32:
            for store in (layer.params, layer.grads, layer.buffers):
                for k in store:
                    store[k] = store[k].astype(dtype)
        return layer

    def inputs(self, rng: np.random.Generator, dtype: Any = np.float32) -> list[np.ndarray]:
        """One random batch per input (integers in ``test_input_range`` where the layer declares a
        ``test_input_dtype``, whatever ``dtype``)."""
        shapes = self.shape if self.merge else [self.shape]
        return [self.random((self.batch, *s), rng, dtype) for s in shapes]

    def random(self, shape: tuple, rng: np.random.Generator, dtype: Any = np.float32) -> np.ndarray:
        """Random input values of ``shape``: standard normal, or the declared integers."""
        if self.int_dtype is not None:
            return rng.integers(*self.int_range, size=shape).astype(self.int_dtype)
        return np.ascontiguousarray(rng.standard_normal(shape), dtype=dtype)

    def arg(self, xs: list) -> Any:
        """What the layer is called with: the list for a merge layer, else its one input."""
        return xs if self.merge else xs[0]

    def grads_in(self, g: Any) -> list:
        """Input gradients as a list, whatever the layer's arity."""
        return list(g) if self.merge else [g]


class FrozenState:
    """Snapshot of a layer's buffers and random generators, restored before every pass."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.buffers = {k: v.copy() for k, v in layer.buffers.items()}
        gens = {id(v): v for v in vars(layer).values() if isinstance(v, np.random.Generator)}
        self.gens = [(g, copy.deepcopy(g.bit_generator.state)) for g in gens.values()]

    def restore(self) -> None:
        """Put the buffers and generators back as they were at the snapshot."""
        for k, v in self.buffers.items():
            self.layer.buffers[k][...] = v
        for g, state in self.gens:
            g.bit_generator.state = state


# -- shape ---------------------------------------------------------------------------------------


def _shapes_match_build(t, training):
    layer = t.build()
    rng = np.random.default_rng(t.seed + 1)
    xs = t.inputs(rng)
    y = layer(t.arg(xs), training)
    want = (t.batch, *layer.output_shape)
    if not isinstance(y, np.ndarray) or y.shape != want:
        got = list(y.shape) if isinstance(y, np.ndarray) else type(y).__name__
        raise Fail(
            f"{mode(training)}: forward gave output shape {got} for input {shape_text(t.shape)} "
            f"(batch {t.batch}), but build promised {shape_text(layer.output_shape)}"
        )
    gin = t.grads_in(layer.call_backward(rng.standard_normal(y.shape).astype(np.float32)))
    _input_grads_fit(gin, xs, training)
    _param_grads_fit(layer)


def _input_grads_fit(gin, xs, training):
    if len(gin) != len(xs):
        raise Fail(f"{mode(training)}: backward returned {len(gin)} input gradients for {len(xs)} inputs")
    for i, (g, x) in enumerate(zip(gin, xs)):
        if np.shape(g) != x.shape:
            raise Fail(f"{mode(training)}: input gradient {i} has shape {list(np.shape(g))}, input has {list(x.shape)}")


def _param_grads_fit(layer):
    if set(layer.grads) != set(layer.params):
        raise Fail(f"grads keys {sorted(layer.grads)} differ from params keys {sorted(layer.params)}")
    for k, p in layer.params.items():
        if layer.grads[k].shape != p.shape:
            raise Fail(f"grads['{k}'] has shape {list(layer.grads[k].shape)}, the parameter {list(p.shape)}")


# -- dtype ---------------------------------------------------------------------------------------


def _stays_float32(t, training):
    layer = t.build()
    bad = [f"{k} is {v.dtype}" for k, v in layer.weights.items() if v.dtype != np.float32]
    if bad:
        raise Fail(f"after build: weights must be float32, but {', '.join(bad)}")
    rng = np.random.default_rng(t.seed + 2)
    y = layer(t.arg(t.inputs(rng)), training)
    if y.dtype != np.float32:
        raise Fail(f"{mode(training)}: float32 input gave {y.dtype} output (silent upcast)")
    gin = t.grads_in(layer.call_backward(rng.standard_normal(y.shape).astype(np.float32)))
    for i, g in enumerate(gin):
        if np.asarray(g).dtype != np.float32:
            raise Fail(f"{mode(training)}: float32 backward gave a {np.asarray(g).dtype} gradient for input {i}")
    bad = [f"grads['{k}'] is {v.dtype}" for k, v in layer.grads.items() if v.dtype != np.float32]
    bad += [f"{k} is {v.dtype}" for k, v in layer.weights.items() if v.dtype != np.float32]
    if bad:
        raise Fail(f"{mode(training)}: after forward and backward {', '.join(bad)} (expected float32)")


# -- inputs_unchanged ----------------------------------------------------------------------------


def _leaves_inputs_unchanged(t, training):
    layer = t.build()
    rng = np.random.default_rng(t.seed + 3)
    xs = t.inputs(rng)
    saved = [x.copy() for x in xs]
    y = layer(t.arg(xs), training)
    g = rng.standard_normal(y.shape).astype(np.float32)
    g_saved = g.copy()
    layer.call_backward(g)
    for i, (x, s) in enumerate(zip(xs, saved)):
        if not np.array_equal(x, s):
            raise Fail(f"{mode(training)}: forward or backward modified input {i} in place ({max_diff(x, s)})")
    if not np.array_equal(g, g_saved):
        raise Fail(f"{mode(training)}: backward modified the incoming gradient in place ({max_diff(g, g_saved)})")


# -- gradient ------------------------------------------------------------------------------------


def _gradients_match_central_differences(t, training, atol, rtol, max_entries, eps):
    """Input and parameter gradients of ``sum(layer(x) * r)`` in float64, on sampled entries,
    with the same buffers and random state on every pass."""
    layer = t.build(np.float64)
    frozen = FrozenState(layer)
    rng = np.random.default_rng(t.seed + 4)
    xs = t.inputs(rng, np.float64)
    arg = t.arg(xs)
    frozen.restore()
    y = layer(arg, training)
    r = rng.standard_normal(y.shape)
    gin = t.grads_in(layer.call_backward(r.copy()))
    analytic = {k: np.array(g, dtype=np.float64) for k, g in layer.grads.items()}

    def f():
        frozen.restore()
        return float(np.sum(layer(arg, training) * r))

    tensors: list[tuple[str, Any, Any]] = [
        (f"input {i}" if t.merge else "input", x, np.asarray(g))
        for i, (x, g) in enumerate(zip(xs, gin))
        if x.dtype.kind == "f"  # integer inputs (token ids) have no gradient to check
    ]
    tensors += [(f"parameter '{k}'", p, analytic.get(k)) for k, p in layer.params.items()]
    tolerance = {"atol": atol, "rtol": rtol, "max_entries": max_entries, "eps": eps}
    problems = [_gradient_problem(f, what, value, grad, rng, **tolerance) for what, value, grad in tensors]
    problems = [p for p in problems if p]
    if problems:
        note = ""
        if y.dtype != np.float64:
            note = f" (the layer returned {y.dtype} for float64 input, which limits the precision)"
        raise Fail(
            f"{mode(training)}: backward disagrees with central differences (float64){note}: " + "; ".join(problems)
        )
    _param_grads_ignore_need_input_grad(layer, frozen, arg, r, training, analytic)


def _gradient_problem(f, what, value, grad, rng, *, atol, rtol, max_entries, eps):
    if grad is None:
        return f"{what}: no gradient in grads"
    idx = sample_indices(value.size, max_entries, rng)
    numeric = numerical_gradient(f, value, eps=eps, indices=idx)
    err = gradient_error(grad.reshape(-1)[idx], numeric, atol=atol, rtol=rtol, shape=value.shape, indices=idx)
    return f"{what} gradient {list(value.shape)}: {err}" if err else None


def _param_grads_ignore_need_input_grad(layer, frozen, arg, r, training, analytic):
    """A model calls the layer reading its input with ``need_input_grad=False``: parameter
    gradients must not change when the layer skips the input gradient."""
    if not analytic:
        return
    frozen.restore()
    layer(arg, training)
    layer.call_backward(r.copy(), need_input_grad=False)
    for k, g in analytic.items():
        if not np.allclose(layer.grads[k], g, rtol=1e-12, atol=0):
            raise Fail(
                f"{mode(training)}: with need_input_grad=False the gradient of parameter '{k}' changes "
                f"({max_diff(layer.grads[k], g)})"
            )


# -- batch_independence --------------------------------------------------------------------------


def _samples_are_independent(t, training):
    layer = t.build()
    if training and not getattr(layer, "batch_independent", True):
        raise Skip("the layer declares batch_independent=False (its training output depends on the batch)")
    if t.batch < 2:
        raise Skip("needs a batch of at least 2")
    frozen = FrozenState(layer)
    rng = np.random.default_rng(t.seed + 5)
    xs = t.inputs(rng)
    others = [x.copy() for x in xs]
    for x in others:
        x[1:] = t.random(x[1:].shape, rng) * (3 if t.int_dtype is None else 1)
    frozen.restore()
    y1 = layer(t.arg(xs), training)
    frozen.restore()
    y2 = layer(t.arg(others), training)
    a, b = np.asarray(y1[0], np.float64), np.asarray(y2[0], np.float64)
    if not np.allclose(a, b, rtol=1e-5, atol=1e-6):
        raise Fail(
            f"{mode(training)}: the output for sample 0 changed when the other samples of the batch changed "
            f"({max_diff(a, b)}); declare batch_independent = False if that is intended"
        )


# -- determinism ---------------------------------------------------------------------------------


def _same_seed_same_layer(t):
    a, b = t.build(), t.build()
    if set(a.weights) != set(b.weights):
        raise Fail(f"two builds with seed {t.seed} have different weights {sorted(a.weights)} vs {sorted(b.weights)}")
    for k in a.weights:
        if not np.array_equal(a.weights[k], b.weights[k]):
            raise Fail(f"two builds with seed {t.seed} give different '{k}' ({max_diff(a.weights[k], b.weights[k])})")
    xs = t.inputs(np.random.default_rng(t.seed + 6))
    for training in (True, False):
        ya, yb = a(t.arg(xs), training), b(t.arg(xs), training)
        if not np.array_equal(ya, yb):
            raise Fail(
                f"{mode(training)}: two layers built with seed {t.seed} give different outputs ({max_diff(ya, yb)})"
            )
    y1, y2 = a(t.arg(xs), False), a(t.arg(xs), False)
    if not np.array_equal(y1, y2):
        raise Fail(f"inference: two calls on the same input give different outputs ({max_diff(y1, y2)})")


# -- hdf5 ----------------------------------------------------------------------------------------


def _survives_hdf5_round_trip(t):
    """save/load and save_weights/load_weights give identical weights and outputs."""
    entries, input_shape = _one_layer_model(t)
    model = Model(copy.deepcopy(entries), input_shape, seed=t.seed)
    rng = np.random.default_rng(t.seed + 7)
    for p in model.params.values():
        p[...] = p * (1 + 0.1 * rng.uniform(-1, 1, p.shape)) + 0.01 * rng.standard_normal(p.shape)
    x = t.random((t.batch, *input_shape), rng)
    model.forward(x, training=True)  # moves buffers such as running statistics away from their init
    y = model.forward(x, training=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.h5")
        checkpoint.save(model, path)
        loaded = checkpoint.load(Model, path, compile=False)
        _same_weights(model, loaded, "regnet.load")
        y2 = loaded.forward(x, training=False)
        if y2.dtype != y.dtype or not np.array_equal(y, y2):
            raise Fail(f"regnet.save/load changed the outputs: {y.dtype} vs {y2.dtype}, {max_diff(y, y2)}")
        path = os.path.join(tmp, "weights.h5")
        checkpoint.save_weights(model, path)
        other = Model(copy.deepcopy(entries), input_shape, seed=t.seed + 1)
        checkpoint.load_weights(other, path)
        _same_weights(model, other, "load_weights")
        y3 = other.forward(x, training=False)
        if not np.array_equal(y, y3):
            raise Fail(f"save_weights/load_weights changed the outputs: {max_diff(y, y3)}")


def _one_layer_model(t):
    """Spec entries of a model around the layer (a merge layer reads identity branches of one
    input), and the model's input shape."""
    if not t.subject.registered:
        raise Skip(f"{t.subject.cls.__name__} is not registered, so a saved model cannot name it")
    shapes = t.shape if t.merge else [t.shape]
    if len(set(shapes)) != 1:
        raise Skip(f"input shapes {shape_text(t.shape)} differ; the round trip uses one model input")
    config = {**t.subject.config, "name": t.subject.config.get("name") or "under_test"}
    if not t.merge:
        return [config], shapes[0]
    branches = [
        {"type": "Activation", "activation": "linear", "name": f"branch_{i}", "inputs": ["input"]}
        for i in range(len(shapes))
    ]
    return [*branches, {**config, "inputs": [b["name"] for b in branches]}], shapes[0]


def _same_weights(model, other, how):
    w1, w2 = model.state_dict(), other.state_dict()
    if set(w1) != set(w2):
        raise Fail(f"{how}: weights {sorted(w2)} differ from the saved {sorted(w1)}")
    for k in w1:
        if w2[k].dtype != np.float32 or not np.array_equal(w1[k], w2[k]):
            raise Fail(f"{how}: '{k}' came back as {w2[k].dtype} {list(w2[k].shape)} ({max_diff(w1[k], w2[k])})")


# -- the check -----------------------------------------------------------------------------------


def check_layer(
    layer: Any,
    input_shape: Any = None,
    *,
    seed: int = 0,
    batch_size: int = 3,
    checks: Any = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    eps: float = 1e-6,
    max_entries: int = 48,
) -> Report:
    """Check a layer (name, ``{"type": ...}`` config or instance) on ``input_shape`` (no batch axis).

    ``input_shape`` defaults to the class attribute ``test_input_shape``, the built-in table, or
    the first of ``FALLBACK_INPUT_SHAPES`` that builds. Gradients are checked on at most
    ``max_entries`` randomly chosen entries of each tensor, in inference and training mode.
    ``checks`` names the properties to run (``PROPERTIES``; all by default).
    """
    requested = requested_properties("layers", PROPERTIES, checks)  # a bad name fails before any work
    subject = resolve("layers", layer)
    shape = default_input_shape(subject) if input_shape is None else normalize_shape(input_shape)
    t = LayerUnderTest(subject, shape, seed, batch_size)
    run = Run(f"{subject.label} on input {shape_text(shape)}", requested)
    run("config", config_round_trips, subject)
    try:
        t.build()
    except Exception as exc:  # nothing else can run
        run.fail("build", f"setup({shape_text(shape)}) raised {type(exc).__name__}: {exc}")
        run.skip_rest(f"the layer does not build on input {shape_text(shape)}")
        return run.finish()
    for training in (False, True):
        run("shape", _shapes_match_build, t, training)
        run("dtype", _stays_float32, t, training)
        run("inputs_unchanged", _leaves_inputs_unchanged, t, training)
        run("gradient", _gradients_match_central_differences, t, training, atol, rtol, max_entries, eps)
        run("batch_independence", _samples_are_independent, t, training)
    run("determinism", _same_seed_same_layer, t)
    run("hdf5", _survives_hdf5_round_trip, t)
    return run.finish()
