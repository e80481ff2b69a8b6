"""Conformance checks for regnet components, built-in or from plugins.

Each ``check_*`` function builds fresh components from a configuration, runs a list of named
properties on them and returns a ``Report``; if any property fails it raises
``ConformanceError`` naming every failed property, the component and the numbers::

    from regnet.testing import check_layer
    check_layer({"type": "LayerNorm"}, input_shape=(6,))

Properties checked
------------------
layers        config, shape, dtype, inputs_unchanged, gradient, batch_independence, determinism, hdf5
activations   config, shape, dtype, inputs_unchanged, gradient, batch_independence
losses        config, targets, value, dtype, inputs_unchanged, gradient, fusion
optimizers    config, dtype, descent, state, determinism
initializers  config, shape, dtype, determinism, global_state, variance

Gradients are compared with central differences in float64 (parameters, gradients and buffers
are converted for the check); a layer's parameter gradients must also stay the same when a model
calls its backward with ``need_input_grad=False``. ``checks=("gradient", ...)`` restricts a run to some
properties.

A plugin test suite checks everything its distribution provides with::

    from regnet.testing import parametrize_components

    @parametrize_components(distribution="my-plugin")
    def test_conformance(case):
        case.check()

Components describe how to test them with optional class attributes (never annotated, so they
are not config fields): ``test_config`` (a config for required fields), ``test_input_shape``
(layers; a list of shapes for merge layers), ``test_cases`` (a list of
``{"config": {...}, **options}`` dicts; options are keyword arguments of the check function),
``test_input_range`` (activations) and ``test_pred_shape`` (losses).
"""

import contextlib
import copy
import importlib
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile

import attrs
import numpy as np

from . import checkpoint, registry
from .errors import DataError, PluginError, RegnetError
from .model import Model

#: the kinds the kit checks
KINDS = ("layers", "activations", "losses", "optimizers", "initializers")

# -------------------------------------------------------------------------------------------------
# errors and reports
# -------------------------------------------------------------------------------------------------


class ConformanceError(RegnetError, AssertionError):
    """A component breaks the contract of its kind; ``failures`` lists ``(property, message)``."""

    def __init__(self, component, failures):
        self.component = component
        self.failures = list(failures)
        lines = [f"{component} fails {len(self.failures)} conformance check(s):"]
        lines += [f"  [{prop}] {msg}" for prop, msg in self.failures]
        super().__init__("\n".join(lines))

    @property
    def properties(self):
        """The names of the failed properties, in order, without repeats."""
        return list(dict.fromkeys(p for p, _ in self.failures))


@attrs.define
class Report:
    """What a passing check ran: property names passed, and skipped ones with the reason."""

    component: str
    passed: list = attrs.Factory(list)
    skipped: dict = attrs.Factory(dict)


class _Fail(Exception):
    """One property failed; the message carries the numbers."""


class _Skip(Exception):
    """One property does not apply to this component."""


class _Run:
    """Runs named properties, collecting failures instead of stopping at the first."""

    def __init__(self, component, checks):
        self.component = component
        self.only = None if checks is None else set(checks)
        self.failures = []
        self.report = Report(component)

    def wanted(self, prop):
        return self.only is None or prop in self.only

    def __call__(self, prop, fn, *args, **kwargs):
        if not self.wanted(prop):
            return
        try:
            fn(*args, **kwargs)
        except _Fail as exc:
            self.failures.append((prop, str(exc)))
        except _Skip as exc:
            self.report.skipped.setdefault(prop, str(exc))
        except Exception as exc:  # a component under test may fail in any way
            self.failures.append((prop, f"raised {type(exc).__name__}: {exc}"))
        else:
            if prop not in self.report.passed:
                self.report.passed.append(prop)

    def finish(self):
        if self.failures:
            raise ConformanceError(self.component, self.failures)
        return self.report


# -------------------------------------------------------------------------------------------------
# numerical gradients
# -------------------------------------------------------------------------------------------------


def numerical_gradient(f, x, *, eps=1e-6, indices=None):
    """Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / 2 eps`` of a scalar ``f()``.

    ``x`` is perturbed in place (``f`` must read it) and restored. ``indices`` are flat indices
    to evaluate; the result then has one entry per index, else the shape of ``x``.
    """
    if not (isinstance(x, np.ndarray) and x.flags.c_contiguous):
        raise TypeError("numerical_gradient needs a C-contiguous numpy array to perturb in place")
    flat = x.reshape(-1)
    idx = range(x.size) if indices is None else [int(i) for i in indices]
    out = np.empty(len(idx), dtype=np.float64)
    for k, i in enumerate(idx):
        orig = flat[i]
        flat[i] = orig + eps
        f_plus = f()
        flat[i] = orig - eps
        f_minus = f()
        flat[i] = orig
        out[k] = (f_plus - f_minus) / (2 * eps)
    return out.reshape(x.shape) if indices is None else out


def gradient_error(analytic, numeric, *, atol=1e-6, rtol=1e-5, shape=None, indices=None):
    """``None`` if ``analytic`` matches ``numeric`` within ``atol + rtol*|value|``, else a message."""
    a = np.asarray(analytic, dtype=np.float64).reshape(-1)
    n = np.asarray(numeric, dtype=np.float64).reshape(-1)
    if a.shape != n.shape:
        return f"analytic gradient has {a.size} entries, expected {n.size}"
    if not np.all(np.isfinite(a)):
        return f"analytic gradient has {int(np.sum(~np.isfinite(a)))} non-finite entries"
    err = np.abs(a - n)
    scale = np.maximum(np.abs(a), np.abs(n))
    excess = err - (atol + rtol * scale)
    if a.size == 0 or excess.max() <= 0:
        return None
    k = int(np.argmax(excess))
    flat = k if indices is None else int(indices[k])
    where = np.unravel_index(flat, shape) if shape is not None else (flat,)
    rel = err / np.maximum(scale, 1e-300)
    return (
        f"max abs error {err.max():.3g}, max rel error {rel.max():.3g} over {a.size} entries; worst at "
        f"index {tuple(int(i) for i in where)}: analytic {a[k]:.6g} vs numeric {n[k]:.6g} "
        f"(tolerance atol={atol:g}, rtol={rtol:g})"
    )


def _sample(size, max_entries, rng):
    if size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, max_entries, replace=False))


def _shape_str(shape):
    if isinstance(shape, list):
        return "[" + ", ".join(_shape_str(s) for s in shape) + "]"
    return str(["N", *shape]).replace("'", "")


def _max_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return f"shapes {list(a.shape)} vs {list(b.shape)}"
    return f"max abs difference {np.max(np.abs(a - b), initial=0):.3g}"


# -------------------------------------------------------------------------------------------------
# components from specs
# -------------------------------------------------------------------------------------------------


@attrs.define
class _Subject:
    """A component class and the config the check builds fresh instances from."""

    kind: str
    cls: type
    config: dict
    instance: object = None  # the object the caller passed, if any

    @property
    def label(self):
        return f"{_noun(self.kind)} {json.dumps(self.config, sort_keys=True, default=str)}"

    @property
    def registered(self):
        try:
            return registry.REGISTRIES[self.kind].get(self.config.get("type")) is self.cls
        except RegnetError:
            return False

    def make(self):
        cfg = {k: v for k, v in self.config.items() if k != "type"}
        if self.kind == "layers":
            return self.cls.from_config(cfg)
        return registry.construct(self.cls, cfg, what=self.label)

    def from_config(self, cfg):
        cfg = {k: v for k, v in cfg.items() if k != "type"}
        if self.kind == "layers":
            return self.cls.from_config(cfg)
        return registry.construct(self.cls, cfg, what=self.label)


def _subject(kind, spec):
    """Resolve a name, ``{"type": ...}`` dict or instance; raises ``ConformanceError`` if it can't."""
    reg = registry.REGISTRIES[kind]
    try:
        if isinstance(spec, str):
            cls = reg.get(spec)
            return _Subject(kind, cls, {"type": reg.canonical(spec)})
        if isinstance(spec, dict):
            if "type" not in spec:
                raise _Fail(f"a {_noun(kind)} given as a dict needs a 'type' field")
            cls = reg.get(spec["type"])
            return _Subject(kind, cls, {**spec, "type": reg.canonical(spec["type"])})
        if isinstance(spec, type):
            raise _Fail(f"give a {_noun(kind)} as a name, dict or instance, not a class")
        return _Subject(kind, type(spec), _config_of(spec), spec)
    except (_Fail, RegnetError) as exc:
        raise ConformanceError(f"{_noun(kind)} {spec!r}", [("construct", str(exc))]) from None


def _noun(kind):
    return "loss" if kind == "losses" else kind[:-1]


def _config_of(obj):
    cfg = obj.get_config()
    if not isinstance(cfg, dict):
        raise _Fail(f"get_config() returned {type(cfg).__name__}, expected a dict")
    return dict(cfg)


def _check_config(subject):
    """get_config -> json.dumps -> json.loads -> from_config gives the same config and fields."""
    for obj in ([subject.instance] if subject.instance is not None else []) + [subject.make()]:
        _config_round_trip(subject, obj)


def _config_round_trip(subject, obj):
    cfg = _config_of(obj)
    if "type" not in cfg:
        raise _Fail(f"get_config() has no 'type' field: {cfg!r}")
    try:
        text = json.dumps(cfg, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise _Fail(f"get_config() is not JSON data ({exc}): {cfg!r}") from None
    try:
        cls = registry.REGISTRIES[subject.kind].get(cfg["type"])
    except RegnetError as exc:
        if subject.registered:  # an unregistered class (a local test double) may not resolve
            raise _Fail(f"config type {cfg['type']!r} does not resolve in the registry: {exc}") from None
        cls = subject.cls
    if cls is not subject.cls:
        raise _Fail(f"config type {cfg['type']!r} resolves to {cls.__name__}, not {subject.cls.__name__}")
    rebuilt = subject.from_config(json.loads(text))
    text2 = json.dumps(_config_of(rebuilt), sort_keys=True, default=repr)
    if text2 != text:
        raise _Fail(f"config changed through a JSON round trip: {text} became {text2}")
    if attrs.has(type(obj)):
        for a in attrs.fields(type(obj)):
            if not a.init or a.name == "name":
                continue
            before, after = registry.to_plain(getattr(obj, a.name)), registry.to_plain(getattr(rebuilt, a.name))
            if before != after:
                raise _Fail(
                    f"field '{a.name}' is {before!r} but {after!r} after a JSON round trip of get_config() "
                    f"(the config is {text})"
                )


# -------------------------------------------------------------------------------------------------
# layers
# -------------------------------------------------------------------------------------------------

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
#: configs for the built-in components' required fields
BUILTIN_CONFIGS = {
    "layers": {
        "Dense": {"units": 3},
        "Reshape": {"target_shape": [3, -1]},
        "Activation": {"activation": "tanh"},
        "Dropout": {"rate": 0.3},
        "Conv2D": {"filters": 3, "kernel_size": 3},
    },
}
#: further configurations of the built-ins, each ``(config, options)``: the options that take
#: other code paths (``component_cases(extra=True)`` adds them)
BUILTIN_EXTRA_CASES = {
    "layers": [
        ({"type": t, **c}, {"input_shape": s})
        for t, c, s in [
            ("Dense", {"units": 3, "use_bias": False}, (4,)),
            ("Dense", {"units": 4, "activation": "relu"}, (5,)),
            ("Dense", {"units": 3, "activation": "softmax"}, (4,)),
            ("Dense", {"units": 2, "activation": {"type": "leaky_relu", "alpha": 0.2}}, (3,)),
            ("Conv2D", {"filters": 2, "kernel_size": 3, "strides": 2}, (2, 7, 7)),
            ("Conv2D", {"filters": 2, "kernel_size": 3, "padding": "same"}, (2, 5, 5)),
            ("Conv2D", {"filters": 2, "kernel_size": [2, 3], "padding": 1}, (3, 4, 5)),
            ("Conv2D", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same", "use_bias": False}, (2, 6, 6)),
            ("Conv2D", {"filters": 2, "kernel_size": 1, "activation": "tanh"}, (3, 3, 3)),
            ("MaxPool2D", {"pool_size": 3, "strides": 2, "padding": "same"}, (2, 5, 5)),
            ("MaxPool2D", {"pool_size": 3, "strides": 1}, (1, 5, 5)),
            ("MaxPool2D", {"pool_size": 2, "padding": 1}, (2, 5, 5)),
            ("AvgPool2D", {"pool_size": 3, "strides": 2, "padding": "same"}, (2, 5, 5)),
            ("AvgPool2D", {"pool_size": [2, 3], "strides": [1, 2]}, (2, 4, 6)),
            ("AvgPool2D", {"pool_size": 2, "padding": 1}, (1, 4, 4)),
            ("BatchNorm", {}, (3, 4, 4)),
            ("BatchNorm", {"center": False, "momentum": 0.5}, (3, 2, 2)),
            ("BatchNorm", {"scale": False, "activation": "relu"}, (5,)),
            ("Dropout", {"rate": 0.5}, (3, 2, 2)),
            ("Dropout", {"rate": 0.0}, (4,)),
            ("Concatenate", {"axis": 1}, [(3, 2, 2), (3, 2, 2)]),
            ("Concatenate", {"axis": -1}, [(2, 3, 2), (2, 3, 4)]),
            ("Concatenate", {}, [(3,), (2,), (4,)]),
            ("Add", {"activation": "relu"}, [(4,), (4,), (4,)]),
            ("Activation", {"activation": "softmax"}, (6,)),
            ("Activation", {"activation": {"type": "softmax", "axis": 1}}, (3, 2, 2)),
            ("Activation", {"activation": {"type": "leaky_relu", "alpha": 0.3}}, (2, 3, 3)),
            ("Flatten", {}, (2, 2, 3)),
            ("Reshape", {"target_shape": [2, 2, 3]}, (12,)),
        ]
    ],
    "activations": [
        ({"type": t, **c}, {})
        for t, c in [
            ("leaky_relu", {"alpha": 0.3}),
            ("elu", {"alpha": 0.5}),
            ("softmax", {"axis": 1}),
        ]
    ],
    "losses": [
        ({"type": t, "from_logits": f}, {"targets": [k]})
        for t, ks in [
            ("categorical_crossentropy", ("integer_labels", "one_hot")),
            ("binary_crossentropy", ("binary", "probabilities")),
        ]
        for f in (False, True)
        for k in ks
    ],
    "optimizers": [
        ({"type": t, **c}, {})
        for t, c in [
            ("SGD", {"momentum": 0.9}),
            ("SGD", {"momentum": 0.9, "nesterov": True}),
            ("SGD", {"weight_decay": 0.01}),
            ("AdaGrad", {"initial_accumulator_value": 0.1}),
            ("RMSprop", {"learning_rate": 0.01}),
            ("AdamW", {"weight_decay": 0.1}),
        ]
    ],
    "initializers": [({"type": "constant", "value": 0.5}, {})],
}
#: shapes tried, in order, for a layer that declares none
FALLBACK_INPUT_SHAPES = [(4,), (2, 5, 5)]


def default_input_shape(subject_or_spec):
    """A test input shape for a layer: declared, built-in table, or the first fallback that builds."""
    subject = subject_or_spec if isinstance(subject_or_spec, _Subject) else _subject("layers", subject_or_spec)
    declared = getattr(subject.cls, "test_input_shape", None)
    if declared is not None:
        return _norm_shape(declared)
    name = getattr(subject.cls, "registered_name", None)
    if name in BUILTIN_INPUT_SHAPES and registry.layers.provider(name).builtin:
        return _norm_shape(BUILTIN_INPUT_SHAPES[name])
    merge = subject.cls.n_inputs is None
    for shape in FALLBACK_INPUT_SHAPES:
        candidate = [shape, shape] if merge else shape
        try:
            subject.make().setup(candidate, np.random.default_rng(0))
            return candidate
        except Exception:  # try the next shape
            continue
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


def _norm_shape(shape):
    """A tuple for one input, a list of tuples for several (from tuples, lists or JSON data)."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return [tuple(int(d) for d in s) for s in shape]
    return tuple(int(d) for d in shape)


class _Layer:
    """A layer under test: fresh builds, batches, and passes that restore state between calls."""

    def __init__(self, subject, input_shape, seed, batch_size):
        self.subject = subject
        self.shape = input_shape
        self.seed = seed
        self.batch = batch_size
        self.merge = isinstance(input_shape, list)

    def build(self, dtype=np.float32, seed=None):
        layer = self.subject.make()
        layer.setup(self.shape, np.random.default_rng(self.seed if seed is None else seed))
        if dtype != np.float32:
            for store in (layer.params, layer.grads, layer.buffers):
                for k in store:
                    store[k] = store[k].astype(dtype)
        return layer

    def inputs(self, rng, dtype=np.float32):
        shapes = self.shape if self.merge else [self.shape]
        return [np.ascontiguousarray(rng.standard_normal((self.batch, *s)), dtype=dtype) for s in shapes]

    def arg(self, xs):
        return xs if self.merge else xs[0]

    def grads_in(self, g):
        return list(g) if self.merge else [g]


class _Frozen:
    """Snapshot of a layer's buffers and random generators, restored before every pass."""

    def __init__(self, layer):
        self.layer = layer
        self.buffers = {k: v.copy() for k, v in layer.buffers.items()}
        gens = {id(v): v for v in vars(layer).values() if isinstance(v, np.random.Generator)}
        self.gens = [(g, copy.deepcopy(g.bit_generator.state)) for g in gens.values()]

    def restore(self):
        for k, v in self.buffers.items():
            self.layer.buffers[k][...] = v
        for g, state in self.gens:
            g.bit_generator.state = state


def _mode(training):
    return "training" if training else "inference"


def _layer_shape(t, training):
    layer = t.build()
    rng = np.random.default_rng(t.seed + 1)
    xs = t.inputs(rng)
    y = layer(t.arg(xs), training)
    want = (t.batch, *layer.output_shape)
    if not isinstance(y, np.ndarray) or y.shape != want:
        got = list(y.shape) if isinstance(y, np.ndarray) else type(y).__name__
        raise _Fail(
            f"{_mode(training)}: forward gave output shape {got} for input {_shape_str(t.shape)} "
            f"(batch {t.batch}), but build promised {_shape_str(layer.output_shape)}"
        )
    gin = t.grads_in(layer.call_backward(rng.standard_normal(y.shape).astype(np.float32)))
    if len(gin) != len(xs):
        raise _Fail(f"{_mode(training)}: backward returned {len(gin)} input gradients for {len(xs)} inputs")
    for i, (g, x) in enumerate(zip(gin, xs)):
        if np.shape(g) != x.shape:
            raise _Fail(
                f"{_mode(training)}: input gradient {i} has shape {list(np.shape(g))}, input has {list(x.shape)}"
            )
    if set(layer.grads) != set(layer.params):
        raise _Fail(f"grads keys {sorted(layer.grads)} differ from params keys {sorted(layer.params)}")
    for k, p in layer.params.items():
        if layer.grads[k].shape != p.shape:
            raise _Fail(f"grads['{k}'] has shape {list(layer.grads[k].shape)}, the parameter {list(p.shape)}")


def _layer_dtype(t, training):
    layer = t.build()
    bad = [f"{k} is {v.dtype}" for k, v in layer.weights.items() if v.dtype != np.float32]
    if bad:
        raise _Fail(f"after build: weights must be float32, but {', '.join(bad)}")
    rng = np.random.default_rng(t.seed + 2)
    xs = t.inputs(rng)
    y = layer(t.arg(xs), training)
    if y.dtype != np.float32:
        raise _Fail(f"{_mode(training)}: float32 input gave {y.dtype} output (silent upcast)")
    gin = t.grads_in(layer.call_backward(rng.standard_normal(y.shape).astype(np.float32)))
    for i, g in enumerate(gin):
        if np.asarray(g).dtype != np.float32:
            raise _Fail(f"{_mode(training)}: float32 backward gave a {np.asarray(g).dtype} gradient for input {i}")
    bad = [f"grads['{k}'] is {v.dtype}" for k, v in layer.grads.items() if v.dtype != np.float32]
    bad += [f"{k} is {v.dtype}" for k, v in layer.weights.items() if v.dtype != np.float32]
    if bad:
        raise _Fail(f"{_mode(training)}: after forward and backward {', '.join(bad)} (expected float32)")


def _layer_inputs_unchanged(t, training):
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
            raise _Fail(f"{_mode(training)}: forward or backward modified input {i} in place ({_max_diff(x, s)})")
    if not np.array_equal(g, g_saved):
        raise _Fail(f"{_mode(training)}: backward modified the incoming gradient in place ({_max_diff(g, g_saved)})")


def _layer_gradient(t, training, atol, rtol, max_entries, eps):
    layer = t.build(np.float64)
    frozen = _Frozen(layer)
    rng = np.random.default_rng(t.seed + 4)
    xs = t.inputs(rng, np.float64)
    arg = t.arg(xs)
    frozen.restore()
    y = layer(arg, training)
    note = ""
    if y.dtype != np.float64:
        note = f" (the layer returned {y.dtype} for float64 input, which limits the precision)"
    r = rng.standard_normal(y.shape)
    gin = t.grads_in(layer.call_backward(r.copy()))
    analytic = {k: np.array(g, dtype=np.float64) for k, g in layer.grads.items()}

    def f():
        frozen.restore()
        return float(np.sum(layer(arg, training) * r))

    problems = []
    tensors = [(f"input {i}" if t.merge else "input", x, np.asarray(g)) for i, (x, g) in enumerate(zip(xs, gin))]
    tensors += [(f"parameter '{k}'", p, analytic.get(k)) for k, p in layer.params.items()]
    for what, value, grad in tensors:
        if grad is None:
            problems.append(f"{what}: no gradient in grads")
            continue
        idx = _sample(value.size, max_entries, rng)
        numeric = numerical_gradient(f, value, eps=eps, indices=idx)
        err = gradient_error(grad.reshape(-1)[idx], numeric, atol=atol, rtol=rtol, shape=value.shape, indices=idx)
        if err:
            problems.append(f"{what} gradient {list(value.shape)}: {err}")
    if problems:
        raise _Fail(
            f"{_mode(training)}: backward disagrees with central differences (float64){note}: " + "; ".join(problems)
        )
    _skipped_input_grad(layer, frozen, arg, r, training, analytic)


def _skipped_input_grad(layer, frozen, arg, r, training, analytic):
    """A model calls the layer reading its input with ``need_input_grad=False``: parameter
    gradients must not change when the layer skips the input gradient."""
    if not analytic:
        return
    frozen.restore()
    layer(arg, training)
    layer.call_backward(r.copy(), need_input_grad=False)
    for k, g in analytic.items():
        if not np.allclose(layer.grads[k], g, rtol=1e-12, atol=0):
            raise _Fail(
                f"{_mode(training)}: with need_input_grad=False the gradient of parameter '{k}' changes "
                f"({_max_diff(layer.grads[k], g)})"
            )


def _layer_batch_independence(t, training):
    layer = t.build()
    if training and not getattr(layer, "batch_independent", True):
        raise _Skip("the layer declares batch_independent=False (its training output depends on the batch)")
    if t.batch < 2:
        raise _Skip("needs a batch of at least 2")
    frozen = _Frozen(layer)
    rng = np.random.default_rng(t.seed + 5)
    xs = t.inputs(rng)
    others = [x.copy() for x in xs]
    for x in others:
        x[1:] = rng.standard_normal(x[1:].shape).astype(np.float32) * 3
    frozen.restore()
    y1 = layer(t.arg(xs), training)
    frozen.restore()
    y2 = layer(t.arg(others), training)
    a, b = np.asarray(y1[0], np.float64), np.asarray(y2[0], np.float64)
    if not np.allclose(a, b, rtol=1e-5, atol=1e-6):
        raise _Fail(
            f"{_mode(training)}: the output for sample 0 changed when the other samples of the batch changed "
            f"({_max_diff(a, b)}); declare batch_independent = False if that is intended"
        )


def _layer_determinism(t):
    a, b = t.build(), t.build()
    if set(a.weights) != set(b.weights):
        raise _Fail(f"two builds with seed {t.seed} have different weights {sorted(a.weights)} vs {sorted(b.weights)}")
    for k in a.weights:
        if not np.array_equal(a.weights[k], b.weights[k]):
            raise _Fail(f"two builds with seed {t.seed} give different '{k}' ({_max_diff(a.weights[k], b.weights[k])})")
    rng = np.random.default_rng(t.seed + 6)
    xs = t.inputs(rng)
    for training in (True, False):
        ya, yb = a(t.arg(xs), training), b(t.arg(xs), training)
        if not np.array_equal(ya, yb):
            raise _Fail(
                f"{_mode(training)}: two layers built with seed {t.seed} give different outputs ({_max_diff(ya, yb)})"
            )
    y1, y2 = a(t.arg(xs), False), a(t.arg(xs), False)
    if not np.array_equal(y1, y2):
        raise _Fail(f"inference: two calls on the same input give different outputs ({_max_diff(y1, y2)})")


def _layer_hdf5(t):
    if not t.subject.registered:
        raise _Skip(f"{t.subject.cls.__name__} is not registered, so a saved model cannot name it")
    shapes = t.shape if t.merge else [t.shape]
    if len(set(shapes)) != 1:
        raise _Skip(f"input shapes {_shape_str(t.shape)} differ; the round trip uses one model input")
    cfg = {**t.subject.config, "name": t.subject.config.get("name") or "under_test"}
    if t.merge:
        branches = [
            {"type": "Activation", "activation": "linear", "name": f"branch_{i}", "inputs": ["input"]}
            for i in range(len(shapes))
        ]
        entries = [*branches, {**cfg, "inputs": [b["name"] for b in branches]}]
    else:
        entries = [cfg]
    model = Model(copy.deepcopy(entries), shapes[0], seed=t.seed)
    rng = np.random.default_rng(t.seed + 7)
    for p in model.params.values():
        p[...] = p * (1 + 0.1 * rng.uniform(-1, 1, p.shape)) + 0.01 * rng.standard_normal(p.shape)
    x = rng.standard_normal((t.batch, *shapes[0])).astype(np.float32)
    model.forward(x, training=True)  # moves buffers such as running statistics away from their init
    y = model.forward(x, training=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.h5")
        checkpoint.save(model, path)
        loaded = Model.load(path, compile=False)
        _same_weights(model, loaded, "regnet.load")
        y2 = loaded.forward(x, training=False)
        if y2.dtype != y.dtype or not np.array_equal(y, y2):
            raise _Fail(f"regnet.save/load changed the outputs: {y.dtype} vs {y2.dtype}, {_max_diff(y, y2)}")
        wpath = os.path.join(tmp, "weights.h5")
        checkpoint.save_weights(model, wpath)
        other = Model(copy.deepcopy(entries), shapes[0], seed=t.seed + 1)
        checkpoint.load_weights(other, wpath)
        _same_weights(model, other, "load_weights")
        y3 = other.forward(x, training=False)
        if not np.array_equal(y, y3):
            raise _Fail(f"save_weights/load_weights changed the outputs: {_max_diff(y, y3)}")


def _same_weights(model, other, how):
    w1, w2 = model.get_weights(), other.get_weights()
    if set(w1) != set(w2):
        raise _Fail(f"{how}: weights {sorted(w2)} differ from the saved {sorted(w1)}")
    for k in w1:
        if w2[k].dtype != np.float32 or not np.array_equal(w1[k], w2[k]):
            raise _Fail(f"{how}: '{k}' came back as {w2[k].dtype} {list(w2[k].shape)} ({_max_diff(w1[k], w2[k])})")


def check_layer(
    layer, input_shape=None, *, seed=0, batch_size=3, checks=None, atol=1e-6, rtol=1e-5, eps=1e-6, max_entries=48
):
    """Check a layer (name, ``{"type": ...}`` config or instance) on ``input_shape`` (no batch axis).

    ``input_shape`` defaults to the class attribute ``test_input_shape``, the built-in table, or
    the first of ``FALLBACK_INPUT_SHAPES`` that builds. Gradients are checked on at most
    ``max_entries`` randomly chosen entries of each tensor, in inference and training mode.
    """
    subject = _subject("layers", layer)
    shape = default_input_shape(subject) if input_shape is None else _norm_shape(input_shape)
    t = _Layer(subject, shape, seed, batch_size)
    run = _Run(f"{subject.label} on input {_shape_str(shape)}", checks)
    run("config", _check_config, subject)
    try:
        t.build()
    except Exception as exc:  # nothing else can run
        run.failures.append(("build", f"setup({_shape_str(shape)}) raised {type(exc).__name__}: {exc}"))
        return run.finish()
    for training in (False, True):
        run("shape", _layer_shape, t, training)
        run("dtype", _layer_dtype, t, training)
        run("inputs_unchanged", _layer_inputs_unchanged, t, training)
        run("gradient", _layer_gradient, t, training, atol, rtol, max_entries, eps)
        run("batch_independence", _layer_batch_independence, t, training)
    run("determinism", _layer_determinism, t)
    run("hdf5", _layer_hdf5, t)
    return run.finish()


# -------------------------------------------------------------------------------------------------
# activations
# -------------------------------------------------------------------------------------------------


def _act_input(act, shape, rng, dtype):
    lo, hi = getattr(act, "test_input_range", (-2.5, 2.5))
    u = rng.uniform(lo, hi, shape)
    if lo < 0 < hi:  # keep clear of the kink at 0 that many activations have
        u = np.where(np.abs(u) < 0.05, np.sign(u + 1e-12) * 0.05 + u, u)
    return np.ascontiguousarray(u, dtype=dtype)


def _act_shape_dtype(act, shape, seed):
    x = _act_input(act, shape, np.random.default_rng(seed), np.float32)
    y = act.forward(x)
    if np.shape(y) != x.shape:
        raise _Fail(f"forward turned input {list(x.shape)} into output {list(np.shape(y))}")
    g = act.backward(np.ones_like(y), x, y)
    if np.shape(g) != x.shape:
        raise _Fail(f"backward gave a gradient of shape {list(np.shape(g))} for input {list(x.shape)}")


def _act_dtype(act, shape, seed):
    x = _act_input(act, shape, np.random.default_rng(seed), np.float32)
    y = act.forward(x)
    g = act.backward(np.ones_like(y), x, y)
    if y.dtype != np.float32 or g.dtype != np.float32:
        raise _Fail(f"float32 input gave a {y.dtype} output and a {g.dtype} gradient (expected float32)")


def _act_inputs_unchanged(act, shape, seed):
    rng = np.random.default_rng(seed)
    x = _act_input(act, shape, rng, np.float32)
    x0 = x.copy()
    y = act.forward(x)
    y0 = y.copy()
    g = rng.standard_normal(y.shape).astype(np.float32)
    g0 = g.copy()
    act.backward(g, x, y)
    for what, a, b in (("input", x, x0), ("output", y, y0), ("incoming gradient", g, g0)):
        if not np.array_equal(a, b):
            raise _Fail(f"forward or backward modified its {what} in place ({_max_diff(a, b)})")


def _act_gradient(act, shape, seed, atol, rtol, eps):
    rng = np.random.default_rng(seed)
    x = _act_input(act, shape, rng, np.float64)
    r = rng.standard_normal(shape)
    y = act.forward(x)
    analytic = act.backward(r.copy(), x.copy(), y.copy())
    numeric = numerical_gradient(lambda: float(np.sum(act.forward(x) * r)), x, eps=eps)
    err = gradient_error(analytic, numeric, atol=atol, rtol=rtol, shape=x.shape)
    if err:
        raise _Fail(f"backward on input {list(shape)} disagrees with central differences (float64): {err}")


def _act_batch_independence(act, shape, seed):
    rng = np.random.default_rng(seed)
    x = _act_input(act, shape, rng, np.float32)
    x2 = x.copy()
    x2[1:] = _act_input(act, x2[1:].shape, rng, np.float32)
    a, b = act.forward(x)[0], act.forward(x2)[0]
    if not np.allclose(a, b, rtol=1e-6, atol=1e-7):
        raise _Fail(f"the output for sample 0 changed when other samples changed ({_max_diff(a, b)})")


def check_activation(activation, shapes=((3, 5), (2, 3, 2, 2)), *, seed=0, checks=None, atol=1e-6, rtol=1e-5, eps=1e-6):
    """Check an activation: element-wise or along an axis (softmax), on each shape in ``shapes``."""
    subject = _subject("activations", activation)
    run = _Run(subject.label, checks)
    run("config", _check_config, subject)
    act = subject.make()
    for shape in shapes:
        shape = tuple(shape)
        run("shape", _act_shape_dtype, act, shape, seed)
        run("dtype", _act_dtype, act, shape, seed)
        run("inputs_unchanged", _act_inputs_unchanged, act, shape, seed)
        run("gradient", _act_gradient, act, shape, seed, atol, rtol, eps)
        run("batch_independence", _act_batch_independence, act, shape, seed)
    return run.finish()


# -------------------------------------------------------------------------------------------------
# losses
# -------------------------------------------------------------------------------------------------


def _loss_targets(loss, shape, rng):
    """Every standard kind of target the loss accepts for predictions of ``shape``."""
    n, k = shape[0], shape[-1]
    labels = rng.integers(0, k, n)
    onehot = np.zeros(shape, np.float32)
    onehot.reshape(-1, k)[np.arange(onehot.size // k), rng.integers(0, k, onehot.size // k)] = 1
    soft = rng.uniform(0.05, 1, shape)
    soft = (soft / soft.sum(axis=-1, keepdims=True)).astype(np.float32)
    candidates = {
        "integer_labels": labels.astype(np.int64) if len(shape) == 2 else None,
        "one_hot": onehot,
        "probabilities": soft,
        "binary": rng.integers(0, 2, shape).astype(np.float32),
        "real": rng.standard_normal(shape).astype(np.float32),
    }
    accepted, refused = [], {}
    for label, target in candidates.items():
        if target is None:
            refused[label] = f"not defined for predictions of rank {len(shape)}"
            continue
        try:
            loss.check_target(target, shape)
        except DataError as exc:
            refused[label] = str(exc)
            continue
        accepted.append((label, target))
    return accepted, refused


def _loss_pred(loss, shape, rng, dtype):
    z = rng.standard_normal(shape)
    fuses = getattr(loss, "fuses", None)
    if fuses and not getattr(loss, "from_logits", True):
        from .activations import get as get_activation

        z = get_activation(fuses).forward(z)
    return np.ascontiguousarray(z, dtype=dtype)


def _loss_value(loss, shape, label, target, seed):
    pred = _loss_pred(loss, shape, np.random.default_rng(seed), np.float32)
    value, grad = loss.value_and_grad(pred, target)
    v = np.asarray(value)
    if v.shape != () or not np.isfinite(v):
        raise _Fail(f"{label}: value_and_grad gave loss {value!r}, expected a finite scalar")
    other = loss.value(pred, target)
    if not np.isclose(float(other), float(value), rtol=1e-5, atol=1e-7):
        raise _Fail(f"{label}: value() = {float(other):.8g} but value_and_grad() = {float(value):.8g}")


def _loss_dtype(loss, shape, label, target, seed):
    pred = _loss_pred(loss, shape, np.random.default_rng(seed), np.float32)
    _, grad = loss.value_and_grad(pred, target)
    if np.shape(grad) != pred.shape:
        raise _Fail(f"{label}: gradient has shape {list(np.shape(grad))}, predictions {list(pred.shape)}")
    if np.asarray(grad).dtype != np.float32:
        raise _Fail(f"{label}: float32 predictions gave a {np.asarray(grad).dtype} gradient (expected float32)")


def _loss_inputs_unchanged(loss, shape, label, target, seed):
    pred = _loss_pred(loss, shape, np.random.default_rng(seed), np.float32)
    p0, t0 = pred.copy(), target.copy()
    loss.value_and_grad(pred, target)
    loss.value(pred, target)
    if not np.array_equal(pred, p0) or not np.array_equal(target, t0):
        raise _Fail(f"{label}: the loss modified its predictions or targets in place")


def _loss_gradient(loss, shape, label, target, seed, atol, rtol, eps):
    pred = _loss_pred(loss, shape, np.random.default_rng(seed), np.float64)
    _, analytic = loss.value_and_grad(pred.copy(), target)
    numeric = numerical_gradient(lambda: float(loss.value(pred, target)), pred, eps=eps)
    err = gradient_error(analytic, numeric, atol=atol, rtol=rtol, shape=pred.shape)
    if err:
        raise _Fail(f"{label}: gradient w.r.t. predictions disagrees with central differences (float64): {err}")


def _loss_fusion(loss, shape, label, target, seed, atol, rtol):
    fuses = getattr(loss, "fuses", None)
    if not fuses:
        raise _Skip("the loss absorbs no output activation")
    fused = loss.fused_with(fuses)
    if fused is None:
        raise _Skip("already works on logits")
    from .activations import get as get_activation

    act = get_activation(fuses)
    z = np.random.default_rng(seed).standard_normal(shape)
    p = act.forward(z)
    v_prob, g_prob = loss.value_and_grad(p, target)
    v_logit, g_logit = fused.value_and_grad(z, target)
    if not np.isclose(v_prob, v_logit, rtol=1e-6, atol=1e-9):
        raise _Fail(f"{label}: loss on {fuses}(z) is {v_prob:.10g} but the fused loss on z is {v_logit:.10g}")
    err = gradient_error(act.backward(g_prob, z, p), g_logit, atol=atol, rtol=rtol, shape=z.shape)
    if err:
        raise _Fail(f"{label}: fused gradient w.r.t. logits differs from the chain rule through {fuses}: {err}")


#: the kinds of target ``check_loss`` tries
TARGET_KINDS = ("integer_labels", "one_hot", "probabilities", "binary", "real")


def check_loss(loss, pred_shape=None, *, targets=None, seed=0, checks=None, atol=1e-6, rtol=1e-5, eps=1e-6):
    """Check a loss on predictions of ``pred_shape`` (batch axis included) with every kind of
    target it accepts (``TARGET_KINDS``: integer labels, one-hot or probability rows, binary and
    real targets), or only the kinds named in ``targets``, which must then all be accepted."""
    subject = _subject("losses", loss)
    obj = subject.make()
    shape = tuple(pred_shape or getattr(subject.cls, "test_pred_shape", (4, 5)))
    run = _Run(f"{subject.label} on predictions {list(shape)}", checks)
    run("config", _check_config, subject)
    accepted, refused = _loss_targets(obj, shape, np.random.default_rng(seed))
    if targets is not None:
        unknown = sorted(set(targets) - set(TARGET_KINDS))
        if unknown:
            raise RegnetError(f"unknown target kind(s) {unknown}; expected some of {list(TARGET_KINDS)}")
        for label in targets:
            if label in refused:
                run.failures.append(("targets", f"check_target() refuses {label} targets: {refused[label]}"))
        accepted = [(label, t) for label, t in accepted if label in targets]
    elif not accepted:
        run.failures.append(
            (
                "targets",
                "check_target() refuses every standard kind of target: "
                + "; ".join(f"{k}: {v}" for k, v in refused.items()),
            )
        )
    targets = accepted
    for label, target in targets:
        run("value", _loss_value, obj, shape, label, target, seed)
        run("dtype", _loss_dtype, obj, shape, label, target, seed)
        run("inputs_unchanged", _loss_inputs_unchanged, obj, shape, label, target, seed)
        run("gradient", _loss_gradient, obj, shape, label, target, seed, atol, rtol, eps)
        run("fusion", _loss_fusion, obj, shape, label, target, seed, atol, rtol)
    return run.finish()


# -------------------------------------------------------------------------------------------------
# optimizers
# -------------------------------------------------------------------------------------------------


@attrs.define
class _Quadratic:
    """``f(p) = sum(a * (p - c)**2) / 2`` over two named parameters, scaled to the learning rate.

    Curvatures are ``10/(lr*steps)`` times U(0.5, 2) so plain SGD contracts by about ``e^-5`` over
    ``steps``; starting points lie ``lr*sqrt(steps)/2`` times U(0.5, 1) from the minimum so
    sign-like rules (Adam, Lion) and decaying ones (AdaGrad) can reach it.
    """

    a: dict
    c: dict
    start: dict

    @classmethod
    def make(cls, lr, steps, seed):
        rng = np.random.default_rng(seed)
        shapes = {"quad/kernel": (3, 2), "quad/bias": (2,)}
        a = {k: rng.uniform(0.5, 2, s) * 10 / (lr * steps) for k, s in shapes.items()}
        c = {k: rng.uniform(-1, 1, s) for k, s in shapes.items()}
        dist = lr * math.sqrt(steps) / 2
        start = {
            k: (c[k] + rng.choice([-1, 1], s) * rng.uniform(0.5, 1, s) * dist).astype(np.float32)
            for k, s in shapes.items()
        }
        return cls(a, c, start)

    def params(self):
        return {k: v.copy() for k, v in self.start.items()}

    def value(self, params):
        return float(sum(np.sum(self.a[k] * (params[k] - self.c[k]) ** 2) / 2 for k in params))

    def grads(self, params):
        return {k: (self.a[k] * (params[k] - self.c[k])).astype(np.float32) for k in params}


def _opt_lr(opt):
    lr = float(getattr(opt, "learning_rate", 0.01))
    if not lr > 0:
        raise _Skip(f"learning_rate is {lr}; the problem is scaled to a positive learning rate")
    return lr


def _opt_descent(subject, steps, seed):
    opt = subject.make()
    quad = _Quadratic.make(_opt_lr(opt), steps, seed)
    params = quad.params()
    f0 = quad.value(params)
    for _ in range(steps):
        opt.step(params, quad.grads(params))
    f1 = quad.value(params)
    if not math.isfinite(f1) or not f1 < 0.5 * f0:
        raise _Fail(
            f"{steps} steps on a convex quadratic took the loss from {f0:.6g} to {f1:.6g} "
            f"(expected below half the start)"
        )


def _opt_dtype(subject, seed):
    opt = subject.make()
    quad = _Quadratic.make(_opt_lr(opt), 100, seed)
    params = quad.params()
    ids = {k: id(v) for k, v in params.items()}
    for _ in range(3):
        opt.step(params, quad.grads(params))
    for k, v in params.items():
        if id(v) != ids[k]:
            raise _Fail(f"step() replaced params['{k}'] instead of updating it in place")
        if v.dtype != np.float32:
            raise _Fail(f"step() turned float32 params['{k}'] into {v.dtype}")
        if np.array_equal(v, quad.start[k]):
            raise _Fail(f"three steps with non-zero gradients left params['{k}'] unchanged")
    state = opt.state_dict()
    bad = [
        f"'{k}' is {np.asarray(v).dtype}"
        for k, v in state.items()
        if k != "iterations" and np.asarray(v).dtype != np.float32
    ]
    if bad:
        raise _Fail(f"optimizer state must be float32: {', '.join(bad)}")
    zero = {k: np.zeros_like(v) for k, v in params.items()}
    opt.step(params, zero)
    if not all(np.all(np.isfinite(v)) for v in params.values()):
        raise _Fail("a step with zero gradients made parameters non-finite")


def _opt_state(subject, seed):
    a = subject.make()
    quad = _Quadratic.make(_opt_lr(a), 100, seed)
    pa = quad.params()
    for _ in range(3):
        a.step(pa, quad.grads(pa))
    state = {k: np.array(v, copy=True) for k, v in a.state_dict().items()}
    if "iterations" not in state or int(state["iterations"]) != 3:
        raise _Fail(f"state_dict() iterations is {state.get('iterations')!r} after 3 steps, expected 3")
    b = subject.from_config(json.loads(json.dumps(_config_of(subject.make()))))
    b.load_state_dict(state)
    pb = {k: v.copy() for k, v in pa.items()}
    for step in range(3):
        a.step(pa, quad.grads(pa))
        b.step(pb, quad.grads(pb))
        for k in pa:
            if not np.array_equal(pa[k], pb[k]):
                raise _Fail(
                    f"an optimizer restored from state_dict() diverges at step {step + 4} on '{k}' "
                    f"({_max_diff(pa[k], pb[k])})"
                )


def _opt_determinism(subject, seed):
    runs = []
    for _ in range(2):
        opt = subject.make()
        quad = _Quadratic.make(_opt_lr(opt), 100, seed)
        params = quad.params()
        for _ in range(5):
            opt.step(params, quad.grads(params))
        runs.append(params)
    for k in runs[0]:
        if not np.array_equal(runs[0][k], runs[1][k]):
            raise _Fail(f"two identical runs end with different '{k}' ({_max_diff(runs[0][k], runs[1][k])})")


def check_optimizer(optimizer, *, seed=0, steps=500, checks=None):
    """Check an optimizer: it minimises a convex quadratic, updates float32 params in place, and
    resumes exactly from ``state_dict()``."""
    subject = _subject("optimizers", optimizer)
    run = _Run(subject.label, checks)
    run("config", _check_config, subject)
    run("dtype", _opt_dtype, subject, seed)
    run("descent", _opt_descent, subject, steps, seed)
    run("state", _opt_state, subject, seed)
    run("determinism", _opt_determinism, subject, seed)
    return run.finish()


# -------------------------------------------------------------------------------------------------
# initializers
# -------------------------------------------------------------------------------------------------


def _fan_in(shape):
    from .initializers import fans

    return fans(tuple(shape))[0]


def _init_shape_dtype(init, shape, seed):
    w = init(shape, np.random.default_rng(seed))
    if not isinstance(w, np.ndarray) or w.shape != tuple(shape):
        raise _Fail(f"asked for shape {list(shape)}, got {list(np.shape(w))}")
    if w.dtype != np.float32:
        raise _Fail(f"shape {list(shape)}: got {w.dtype} values, expected float32")
    if not np.all(np.isfinite(w)):
        raise _Fail(f"shape {list(shape)}: {int(np.sum(~np.isfinite(w)))} non-finite values")


def _init_determinism(init, shape, seed):
    a = init(shape, np.random.default_rng(seed))
    b = init(shape, np.random.default_rng(seed))
    if not np.array_equal(a, b):
        raise _Fail(f"shape {list(shape)}: the same seed gave different values ({_max_diff(a, b)})")


def _init_global_state(init, shape, seed):
    before = np.random.get_state()
    init(shape, np.random.default_rng(seed))
    after = np.random.get_state()
    if not (before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]):
        raise _Fail("the initializer drew from numpy's global random state instead of the given Generator")


def _init_variance(init, shape, seed, max_gain):
    w = init(shape, np.random.default_rng(seed)).astype(np.float64)
    fan_in = _fan_in(shape)
    gain = float(np.var(w)) * fan_in
    if not gain <= max_gain:
        raise _Fail(
            f"shape {list(shape)}: variance {np.var(w):.4g} times fan_in {fan_in} is {gain:.4g} "
            f"(above {max_gain}: activations would grow layer after layer)"
        )


def check_initializer(initializer, shapes=((64, 32), (16, 8, 3, 3), (128,)), *, seed=0, checks=None, max_gain=8.0):
    """Check an initializer: exact shape, float32, finite, deterministic under a seed, only the
    given Generator used, and ``variance * fan_in <= max_gain`` for kernels (rank >= 2)."""
    subject = _subject("initializers", initializer)
    run = _Run(subject.label, checks)
    run("config", _check_config, subject)
    init = subject.make()
    for shape in shapes:
        shape = tuple(shape)
        run("shape", _init_shape_dtype, init, shape, seed)
        run("determinism", _init_determinism, init, shape, seed)
        run("global_state", _init_global_state, init, shape, seed)
        if len(shape) >= 2:
            run("variance", _init_variance, init, shape, seed, max_gain)
    return run.finish()


# -------------------------------------------------------------------------------------------------
# parametrising over the registry
# -------------------------------------------------------------------------------------------------

CHECKS = {
    "layers": check_layer,
    "activations": check_activation,
    "losses": check_loss,
    "optimizers": check_optimizer,
    "initializers": check_initializer,
}


def check_component(kind, spec, **options):
    """Run the check of ``kind`` (``"layers"``, ``"losses"``, ...) on ``spec``."""
    if kind not in CHECKS:
        raise RegnetError(f"unknown component kind {kind!r}; expected one of {', '.join(KINDS)}")
    return CHECKS[kind](spec, **options)


@attrs.frozen
class Case:
    """One component configuration to check; ``error`` is set for a broken plugin entry."""

    kind: str
    name: str
    config: dict
    options: dict = attrs.Factory(dict)
    distribution: str = registry.BUILTIN
    error: str | None = None

    @property
    def id(self):
        extra = {k: v for k, v in self.config.items() if k != "type"}
        extra.update({k: v for k, v in self.options.items() if k != "checks"})
        args = ",".join(f"{k}={_id_value(v)}" for k, v in extra.items())
        return f"{self.kind}/{self.name}" + (f"[{args}]" if args else "")

    def check(self, **overrides):
        """Run the kit on this case; a broken plugin entry raises ``PluginError``."""
        if self.error is not None:
            raise PluginError(f"{self.kind} '{self.name}' of {self.distribution} is broken: {self.error}")
        return check_component(self.kind, self.config, **{**self.options, **overrides})


def _id_value(v):
    if isinstance(v, (list, tuple)):
        return (
            "x".join(_id_value(x) for x in v)
            if all(isinstance(x, int) for x in v)
            else "+".join(_id_value(x) for x in v)
        )
    if isinstance(v, dict):
        return v.get("type", "dict") if "type" in v else "dict"
    return str(v)


def _declared_cases(kind, name, cls, builtin):
    declared = getattr(cls, "test_cases", None)
    if declared is not None:
        for entry in declared:
            entry = dict(entry)
            yield {"type": name, **entry.pop("config", {})}, entry
        return
    config = {
        "type": name,
        **(BUILTIN_CONFIGS.get(kind, {}).get(name, {}) if builtin else {}),
        **getattr(cls, "test_config", {}),
    }
    if kind == "losses" and attrs.has(cls) and "from_logits" in attrs.fields_dict(cls) and "from_logits" not in config:
        yield {**config, "from_logits": False}, {}
        yield {**config, "from_logits": True}, {}
        return
    yield config, {}


def component_cases(distribution=None, kinds=KINDS, *, extra=False):
    """Cases for every registered component of ``kinds`` (provided by ``distribution``, if given;
    ``"regnet"`` selects the built-ins), broken plugin entries included as failing cases. With
    ``extra``, the built-ins' further configurations (``BUILTIN_EXTRA_CASES``) are added."""
    want = None if distribution is None else registry.normalize_distribution(distribution)
    cases = []
    for kind in kinds:
        reg = registry.REGISTRIES[kind]
        if extra and want in (None, registry.BUILTIN):
            for config, options in BUILTIN_EXTRA_CASES.get(kind, []):
                cases.append(Case(kind, config["type"], config, options))
        for name in reg.list():
            prov = reg.provider(name)
            if want is not None and registry.normalize_distribution(prov.distribution) != want:
                continue
            try:
                cls = reg.get(name)
            except RegnetError as exc:
                cases.append(Case(kind, name, {"type": name}, distribution=prov.distribution, error=str(exc)))
                continue
            for config, options in _declared_cases(kind, name, cls, prov.builtin):
                cases.append(Case(kind, name, config, options, distribution=prov.distribution))
        for b in reg.broken():
            if want is None or registry.normalize_distribution(b.provider.distribution) == want:
                cases.append(Case(kind, b.name, {"type": b.name}, distribution=b.provider.distribution, error=b.error))
    return cases


def parametrize_components(distribution=None, kinds=KINDS, *, extra=False, argname="case"):
    """A ``pytest.mark.parametrize`` over ``component_cases(distribution, kinds, extra=extra)``."""
    import pytest

    cases = component_cases(distribution, kinds, extra=extra)
    return pytest.mark.parametrize(argname, [pytest.param(c, id=c.id) for c in cases])


# -------------------------------------------------------------------------------------------------
# simulated plugin distributions (for testing entry points without installing anything)
# -------------------------------------------------------------------------------------------------


def reset_registries():
    """Forget discovered plugins in every registry (built-ins stay)."""
    for reg in registry.REGISTRIES.values():
        reg.reset_plugins()


@contextlib.contextmanager
def plugin_distribution(name, entry_points, *, modules=None, version="1.0", root=None):
    """Make a distribution look installed while the block runs.

    ``entry_points`` maps a kind (``"layers"``) or group (``"regnet.layers"``) to
    ``{entry-point name: "module:attribute"}``; ``modules`` maps module names to source text,
    written next to the ``*.dist-info`` directory. Registries are reset on entry and exit, and
    the modules are removed from ``sys.modules`` on exit.
    """
    own = root is None
    root = tempfile.mkdtemp(prefix="regnet-plugin-") if own else os.fspath(root)
    info = os.path.join(root, f"{name.replace('-', '_')}-{version}.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w", encoding="utf-8") as fh:
        fh.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    with open(os.path.join(info, "entry_points.txt"), "w", encoding="utf-8") as fh:
        for group, eps in entry_points.items():
            group = group if group.startswith("regnet.") else f"regnet.{group}"
            fh.write(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n")
    for mod, source in (modules or {}).items():
        path = os.path.join(root, *mod.split(".")) + ".py"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(source)
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    reset_registries()
    try:
        yield root
    finally:
        if root in sys.path:
            sys.path.remove(root)
        for mod in list(sys.modules):
            if any(mod == m or mod.startswith(m + ".") for m in (modules or {})):
                del sys.modules[mod]
        importlib.invalidate_caches()
        reset_registries()
        if own:
            shutil.rmtree(root, ignore_errors=True)
