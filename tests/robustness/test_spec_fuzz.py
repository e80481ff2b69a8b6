"""Model specs, valid, broken and hostile: ``Model.from_spec`` either builds a model that runs or
raises a ``RegnetError``; never another exception, never a hang, never a huge allocation.

The first part lists invalid specs one by one (each a ``ConfigError`` naming the layer, by index
and name, and the field). The second part generates specs with hypothesis: valid ones (which
must build and run), mutated ones (values swapped for other JSON values, huge or negative
numbers, fields dropped or added, types renamed, inputs rewired into cycles and dangling
references), random JSON values, random text and bytes, and deep graphs. Every example runs
under a time limit. The number of cases each property ran is printed (``pytest -s``) and
recorded as ``fuzz_cases[...]`` properties (``--junitxml``; see conftest.py).
"""

import copy
import json
import math
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regnet import ConfigError, Model, RegnetError

#: wall-clock limit for one example (a hang, not a speed requirement: the machine is shared)
EXAMPLE_LIMIT_S = 20


def fuzz(max_examples):
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- invalid specs, one by one ------------------------------------------------------------------

VEC = {"format": "regnet.model", "version": 1, "input_shape": [4]}
IMG = {"format": "regnet.model", "version": 1, "input_shape": [1, 6, 6]}


def dense(**kw):
    return {"type": "Dense", **kw}


INVALID = [
    # (id, spec, layer, field, words the message must contain)
    (
        "unknown layer type",
        {**VEC, "layers": [dense(units=3, name="a"), {"type": "Dence", "units": 2}]},
        "#1 (type 'Dence')",
        "type",
        ["unknown layer 'Dence'", "did you mean 'Dense'"],
    ),
    (
        "type not a string",
        {**VEC, "layers": [{"type": ["Dense"], "units": 2}]},
        "#0 (type ['Dense'])",
        "type",
        ["must be a string", "list"],
    ),
    ("missing type", {**VEC, "layers": [{"units": 2}]}, "#0 (no type)", "type", ["needs a 'type'"]),
    (
        "unknown field",
        {**VEC, "layers": [dense(units=3, name="h", unit=4)]},
        "#0 'h'",
        "unit",
        ["no field 'unit'", "did you mean 'units'"],
    ),
    ("wrong type", {**VEC, "layers": [dense(units="3")]}, "#0 'dense_1'", "units", ["expected an integer", "'3'"]),
    (
        "float for an integer",
        {**VEC, "layers": [dense(units=3.0)]},
        "#0 'dense_1'",
        "units",
        ["expected an integer", "3.0"],
    ),
    (
        "bool for an integer",
        {**VEC, "layers": [dense(units=True)]},
        "#0 'dense_1'",
        "units",
        ["expected an integer", "True"],
    ),
    ("out of range", {**VEC, "layers": [dense(units=0)]}, "#0 'dense_1'", "units", [">= 1", "got 0"]),
    ("too large", {**VEC, "layers": [dense(units=10**9)]}, "#0 'dense_1'", "units", ["<= 16777216", "1000000000"]),
    ("astronomically large", {**VEC, "layers": [dense(units=10**5000)]}, "#0 'dense_1'", "units", ["<=", "<int of"]),
    (
        "NaN rate",
        {**VEC, "layers": [{"type": "Dropout", "rate": float("nan")}, dense(units=2)]},
        "#0 'dropout_1'",
        "rate",
        ["finite number", "nan"],
    ),
    (
        "huge int for a float",
        {**VEC, "layers": [{"type": "Dropout", "rate": 10**400}, dense(units=2)]},
        "#0 'dropout_1'",
        "rate",
        ["finite number"],
    ),
    (
        "rate of one",
        {**VEC, "layers": [{"type": "Dropout", "rate": 1}, dense(units=2)]},
        "#0 'dropout_1'",
        "rate",
        ["< 1"],
    ),
    (
        "bad choice",
        {**IMG, "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "full"}]},
        "#0 'conv2d_1'",
        "padding",
        ["'valid', 'same'", "'full'"],
    ),
    ("missing required field", {**VEC, "layers": [dense(name="out")]}, "#0 'out'", "units", ["needs field(s) units"]),
    (
        "duplicate name",
        {**VEC, "layers": [dense(units=3, name="a"), dense(units=3, name="a")]},
        "#1 'a'",
        "name",
        ["duplicate layer name 'a'"],
    ),
    (
        "name 'input' is reserved",
        {**VEC, "layers": [dense(units=3, name="input")]},
        "#0 'input'",
        "name",
        ["duplicate layer name 'input'"],
    ),
    ("name with a slash", {**VEC, "layers": [dense(units=3, name="a/b")]}, "#0 'a/b'", "name", ["without '/'"]),
    (
        "dangling input",
        {**VEC, "layers": [dense(units=3, name="a"), dense(units=2, name="b", inputs=["ghost"])]},
        "#1 'b'",
        "inputs",
        ["'ghost' is not the name of any layer"],
    ),
    (
        "cycle",
        {
            **VEC,
            "layers": [
                dense(units=3, name="a", inputs=["c"]),
                dense(units=3, name="b"),
                dense(units=3, name="c", inputs=["b"]),
            ],
        },
        None,
        "inputs",
        ["cycle"],
    ),
    (
        "self loop",
        {**VEC, "layers": [dense(units=3, name="a", inputs=["a"])]},
        "#0 'a'",
        "inputs",
        ["cycle through 'a'"],
    ),
    (
        "inputs not names",
        {**VEC, "layers": [dense(units=3, inputs=[1, 2])]},
        "#0 'dense_1'",
        "inputs",
        ["layer name or a list"],
    ),
    (
        "merge with one input",
        {**VEC, "layers": [dense(units=4, name="a"), {"type": "Add", "inputs": ["a"]}]},
        "#1 'add_1'",
        "inputs",
        ["two or more inputs"],
    ),
    (
        "Add of different shapes",
        {**VEC, "layers": [dense(units=3, name="a"), {"type": "Add", "inputs": ["a", "input"]}]},
        "#1 'add_1'",
        "inputs",
        ["do not broadcast", "(N, 3), (N, 4)"],
    ),
    (
        "Concatenate of mismatched shapes",
        {**IMG, "layers": [{"type": "MaxPool2D", "name": "p"}, {"type": "Concatenate", "inputs": ["p", "input"]}]},
        "#1 'concatenate_1'",
        "inputs",
        ["equal except on axis 1", "[1, 3, 3]", "[1, 6, 6]"],
    ),
    (
        "Concatenate on the batch axis",
        {**VEC, "layers": [dense(units=4, name="a"), {"type": "Concatenate", "axis": 0, "inputs": ["a", "input"]}]},
        "#1 'concatenate_1'",
        "axis",
        ["axis 0 is the batch"],
    ),
    (
        "pooling larger than the image",
        {**IMG, "layers": [{"type": "MaxPool2D", "pool_size": 7}, {"type": "Flatten"}]},
        "#0 'max_pool2d_1'",
        "pool_size",
        ["window [7, 7] does not fit input [1, 6, 6]"],
    ),
    (
        "kernel larger than the image",
        {**IMG, "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": [3, 9]}]},
        "#0 'conv2d_1'",
        "kernel_size",
        ["window [3, 9] does not fit"],
    ),
    (
        "pooling after flatten",
        {**IMG, "layers": [{"type": "Flatten"}, {"type": "AvgPool2D"}]},
        "#1 'avg_pool2d_1'",
        "inputs",
        ["rank-4", "(N, 36)"],
    ),
    (
        "conv on vectors",
        {**VEC, "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 1}]},
        "#0 'conv2d_1'",
        "inputs",
        ["rank-4", "(N, 4)"],
    ),
    (
        "reshape to the wrong size",
        {**VEC, "layers": [{"type": "Reshape", "target_shape": [3]}]},
        "#0 'reshape_1'",
        "target_shape",
        ["cannot reshape [4]", "[3]"],
    ),
    (
        "pooling padding over half the window",
        {**IMG, "layers": [{"type": "AvgPool2D", "pool_size": 2, "padding": 2}]},
        "#0 'avg_pool2d_1'",
        "padding",
        ["more than half the window [2, 2]"],
    ),
    (
        "padding too large",
        {**IMG, "layers": [{"type": "Conv2D", "filters": 1, "kernel_size": 1, "padding": 10**7}]},
        "#0 'conv2d_1'",
        "padding",
        ["padded input", "limit"],
    ),
    (
        "softmax over a missing axis",
        {**VEC, "layers": [dense(units=3, activation={"type": "softmax", "axis": 2})]},
        "#0 'dense_1'",
        "activation",
        ["axis 2 does not fit output (N, 3)"],
    ),
    (
        "nested component field",
        {**VEC, "layers": [dense(units=3, activation={"type": "leaky_relu", "alpha": "big"})]},
        "#0 'dense_1'",
        "activation.alpha",
        ["finite number", "'big'"],
    ),
    (
        "component dict without a type name",
        {**VEC, "layers": [dense(units=3, kernel_initializer={"type": 7})]},
        "#0 'dense_1'",
        "kernel_initializer",
        ["'type' name"],
    ),
    (
        "entry that is not an object",
        {**VEC, "layers": [dense(units=3), "Dense"]},
        "#1",
        None,
        ["must be an object", "str"],
    ),
    (
        "kernel too large to allocate",
        {**VEC, "input_shape": [1 << 20], "layers": [dense(units=1 << 20)]},
        "#0 'dense_1'",
        None,
        ["kernel", "limit"],
    ),
]


@pytest.mark.parametrize("spec, layer, field, words", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_spec_names_layer_and_field(spec, layer, field, words):
    with pytest.raises(ConfigError) as info:
        Model.from_spec(spec)
    e = info.value
    assert e.layer is not None and e.layer.startswith("#"), e
    if layer is not None:  # None: which layer of a cycle is named depends on the search order
        assert e.layer == layer, e
    assert e.field == field, e
    for w in words:
        assert w in str(e), (w, str(e))


TOP_LEVEL = [
    ("no input_shape", {"layers": [dense(units=1)]}, "input_shape"),
    ("input_shape not a list", {"input_shape": "4", "layers": [dense(units=1)]}, "input_shape"),
    ("input_shape with zero", {"input_shape": [4, 0], "layers": [dense(units=1)]}, "input_shape"),
    ("input too large per sample", {"input_shape": [1 << 20, 1 << 20], "layers": [dense(units=1)]}, "input_shape"),
    ("layers not a list", {"input_shape": [4], "layers": {"a": dense(units=1)}}, "layers"),
    ("no layers", {"input_shape": [4], "layers": []}, "layers"),
    ("unknown top-level field", {"input_shape": [4], "layer": [], "layers": [dense(units=1)]}, "layer"),
    ("wrong format", {"format": "keras", "input_shape": [4], "layers": [dense(units=1)]}, "format"),
    ("future version", {"version": 99, "input_shape": [4], "layers": [dense(units=1)]}, "version"),
    ("version not an integer", {"version": "1", "input_shape": [4], "layers": [dense(units=1)]}, "version"),
    ("name not a string", {"name": ["m"], "input_shape": [4], "layers": [dense(units=1)]}, "name"),
]


@pytest.mark.parametrize("spec, field", [c[1:] for c in TOP_LEVEL], ids=[c[0] for c in TOP_LEVEL])
def test_invalid_top_level_names_the_field(spec, field):
    with pytest.raises(ConfigError) as info:
        Model.from_spec(spec)
    assert info.value.field == field and field in str(info.value)


@pytest.mark.parametrize(
    "src, words",
    [
        (b"\xff\xfe{}", ["not UTF-8"]),
        ('{"input_shape": [4], "layers": [', ["not valid JSON"]),
        ('{"input_shape": [4], "input_shape": [5], "layers": []}', ["'input_shape' appears twice"]),
        ('{"input_shape": [4], "layers": [{"type": "Dense", "units": 1' + "0" * 5000 + "}]}", ["not valid JSON"]),
        ("/dev/zero", ["not a regular file"]),
        ("a\x00b.json", ["cannot read spec file"]),
        (12, ["path, JSON text or a dict", "int"]),
        (None, ["path, JSON text or a dict"]),
        ([{"type": "Dense", "units": 1}], ["must start with", "Input"]),
    ],
)
def test_unreadable_specs(src, words):
    with pytest.raises(ConfigError) as info:
        Model.from_spec(src)
    for w in words:
        assert w in str(info.value)


def test_byte_order_mark_and_bare_layer_list_are_accepted():
    text = json.dumps([{"type": "Input", "shape": [3]}, dense(units=2)])
    model = Model.from_spec(b"\xef\xbb\xbf" + text.encode())
    assert model.output_shape == (2,)


# -- resource bombs ------------------------------------------------------------------------------


def cpu_and_peak(fn):
    """``(CPU seconds, peak traced bytes, exception)`` of ``fn()``; CPU time, not wall time, so
    that other processes on the machine do not count."""
    tracemalloc.start()
    t0 = time.process_time()
    try:
        fn()
        exc = None
    except Exception as e:
        exc = e
    elapsed = time.process_time() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak, exc


DEPTH = 100_000


@pytest.mark.parametrize("form", ["text", "bytes", "dict"])
def test_spec_nested_100000_levels_fails_fast(form, time_limit):
    if form == "dict":  # built without recursion: 100 000 nested lists as a field value
        deep = []
        for _ in range(DEPTH):
            deep = [deep]
        src = {"input_shape": [4], "layers": [dense(units=deep)]}
    else:
        text = '{"input_shape": [4], "layers": [{"type": "Dense", "units": ' + "[" * DEPTH + "]" * DEPTH + "}]}"
        src = text if form == "text" else text.encode()
    with time_limit(EXAMPLE_LIMIT_S):
        elapsed, peak, exc = cpu_and_peak(lambda: Model.from_spec(src))
    assert isinstance(exc, ConfigError), repr(exc)
    assert elapsed < 1.0, f"took {elapsed:.2f} s of CPU"
    assert peak < 64 << 20, f"peak allocation {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    "entry",
    [
        dense(units=10**9),
        dense(units=1 << 24),  # allowed size, but the kernel would hold 2^24 * 4096 values
        {"type": "Conv2D", "filters": 1 << 24, "kernel_size": 3},
        {"type": "Conv2D", "filters": 4096, "kernel_size": [4096, 4096], "padding": "same"},
        {"type": "MaxPool2D", "pool_size": 1, "padding": 1 << 20},
    ],
    ids=["dense-1e9-units", "dense-2^24-units", "conv-2^24-filters", "conv-huge-kernel", "pool-huge-padding"],
)
def test_huge_layers_fail_fast_without_allocating(entry, time_limit):
    input_shape = [4096] if entry["type"] == "Dense" else [4, 16, 16]
    layers_ = [entry] if entry["type"] == "Dense" else [entry, {"type": "Flatten"}]
    spec = {"input_shape": input_shape, "layers": layers_}
    with time_limit(EXAMPLE_LIMIT_S):
        elapsed, peak, exc = cpu_and_peak(lambda: Model.from_spec(spec))
    assert isinstance(exc, ConfigError), repr(exc)
    assert elapsed < 1.0, f"took {elapsed:.2f} s of CPU"
    assert peak < 64 << 20, f"peak allocation {peak / 2**20:.0f} MiB"


LONG = "x" * 1_000_000


@pytest.mark.parametrize(
    "entry",
    [
        {"type": LONG, "units": 1},
        dense(units=1, **{LONG: 1}),
        dense(units=1, activation=LONG),
        dense(units=1, name=LONG + "/"),
        dense(units=[LONG] * 1000),
    ],
    ids=["type", "field-name", "activation", "layer-name", "value"],
)
def test_megabyte_names_give_short_messages(entry, time_limit):
    with time_limit(EXAMPLE_LIMIT_S):
        elapsed, _, exc = cpu_and_peak(lambda: Model.from_spec({"input_shape": [2], "layers": [entry]}))
    assert isinstance(exc, ConfigError), repr(exc)
    assert len(str(exc)) < 2000 and "..." in str(exc)
    assert elapsed < 1.0, f"took {elapsed:.2f} s of CPU"


def test_ten_thousand_layers_build_and_run(time_limit):
    spec = {"input_shape": [3], "layers": [dense(units=3, activation="tanh") for _ in range(10_000)]}
    with time_limit(120):
        model = Model.from_spec(spec)
        out = model.predict(np.ones((2, 3), np.float32))
        again = Model.from_spec(model.to_json())
    assert out.shape == (2, 3) and np.isfinite(out).all()
    assert model.layers[-1].name == "dense_10000" and again.to_spec() == model.to_spec()


def test_long_cycle_is_found_without_recursion(time_limit):
    n = 5000
    entries = [dense(units=2, name=f"l{i}", inputs=[f"l{i - 1}" if i else f"l{n - 1}"]) for i in range(n)]
    with time_limit(60), pytest.raises(ConfigError, match="cycle") as info:
        Model.from_spec({"input_shape": [2], "layers": entries})
    assert info.value.field == "inputs"


# -- generated specs -----------------------------------------------------------------------------

ACTIVATIONS = ["linear", "relu", "tanh", "sigmoid", "elu", "selu", "gelu", "leaky_relu", "softmax"]


@st.composite
def vector_specs(draw):
    """A valid spec over vectors: dense blocks, optional residual Add / Concatenate."""
    width = draw(st.integers(1, 6))
    layers_, names, shapes = [], [], {}
    prev, shape = "input", (width,)
    for i in range(draw(st.integers(1, 6))):
        name = f"v{i}"
        kind = draw(st.sampled_from(["Dense", "Dense", "Dropout", "Activation", "BatchNorm", "Reshape", "merge"]))
        if kind == "Dense":
            units = draw(st.integers(1, 8))
            entry = dense(units=units, activation=draw(st.sampled_from(ACTIVATIONS)), use_bias=draw(st.booleans()))
            shape = (units,)
        elif kind == "Dropout":
            entry = {"type": "Dropout", "rate": draw(st.floats(0, 0.9))}
        elif kind == "Activation":
            entry = {"type": "Activation", "activation": draw(st.sampled_from(ACTIVATIONS))}
        elif kind == "BatchNorm":
            entry = {"type": "BatchNorm", "momentum": draw(st.floats(0, 1)), "epsilon": draw(st.floats(1e-5, 1))}
        elif kind == "Reshape":
            entry = {"type": "Reshape", "target_shape": [-1]}
        else:
            same = [n for n in names if shapes[n] == shape and n != prev]
            if same and draw(st.booleans()):
                entry = {"type": "Add", "inputs": [prev, draw(st.sampled_from(same))]}
            else:
                other = draw(st.sampled_from(["input", *names]))
                entry = {"type": "Concatenate", "inputs": [prev, other]}
                shape = (shape[0] + (shapes[other] if other != "input" else (width,))[0],)
        entry["name"] = name
        layers_.append(entry)
        names.append(name)
        shapes[name] = shape
        prev = name
    layers_.append(dense(units=draw(st.integers(1, 5)), name="out", activation="softmax"))
    return {"input_shape": [width], "layers": layers_}


@st.composite
def image_specs(draw):
    """A valid spec over NCHW images: conv / pool blocks, then Flatten and Dense."""
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(2, 9)), draw(st.integers(2, 9))
    input_shape = [c, h, w]
    layers_ = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["Conv2D", "MaxPool2D", "AvgPool2D", "BatchNorm"]))
        if kind == "BatchNorm":
            layers_.append({"type": "BatchNorm"})
            continue
        k = draw(st.integers(1, min(3, h, w)))
        stride = draw(st.integers(1, 2))
        padding = draw(st.sampled_from(["valid", "same", 0, 1] if kind == "Conv2D" or k >= 2 else ["valid", "same", 0]))
        if padding == "same":
            h, w = math.ceil(h / stride), math.ceil(w / stride)
        else:
            pad = 0 if padding == "valid" else padding
            h, w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        if kind == "Conv2D":
            c = draw(st.integers(1, 4))
            layers_.append(
                {
                    "type": "Conv2D",
                    "filters": c,
                    "kernel_size": k,
                    "strides": stride,
                    "padding": padding,
                    "activation": draw(st.sampled_from(ACTIVATIONS[:4])),
                }
            )
        else:
            layers_.append({"type": kind, "pool_size": k, "strides": stride, "padding": padding})
    layers_ += [{"type": "Flatten"}, dense(units=draw(st.integers(1, 4)))]
    return {"input_shape": input_shape, "layers": layers_}


LAYER_TYPES = [
    "Dense",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "BatchNorm",
    "Dropout",
    "Flatten",
    "Reshape",
    "Activation",
    "Add",
    "Concatenate",
    "Input",
    "Linear",
    "dense",
    "Conv2d",
]
FIELDS = [
    "type",
    "name",
    "inputs",
    "units",
    "activation",
    "use_bias",
    "kernel_initializer",
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "pool_size",
    "rate",
    "target_shape",
    "axis",
    "momentum",
    "epsilon",
    "center",
    "scale",
]
NAMES = ["input", "v0", "v1", "out", "ghost", "dense_1", *ACTIVATIONS, *LAYER_TYPES, "same", "valid", ""]
#: numbers beyond every limit (allowed sizes stay small: a generated spec must never allocate much)
HUGE = [(1 << 24) + 1, 10**9, 10**18, 2**63, -(2**63), 10**400, -(10**400)]
INTS = st.integers(-3, 12) | st.sampled_from(HUGE)
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.5, -0.5, 2.0, 1e308, 1e-320])
SCALARS = st.none() | st.booleans() | INTS | FLOATS | st.text(max_size=10) | st.sampled_from(NAMES)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_specs(draw):
    spec = copy.deepcopy(draw(vector_specs() | image_specs()))
    for _ in range(draw(st.integers(1, 3))):
        entries = spec.get("layers")
        dicts = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        op = draw(
            st.sampled_from(["set", "drop", "add", "type", "inputs", "dup", "reorder", "top"] if dicts else ["top"])
        )
        entry = draw(st.sampled_from(dicts)) if dicts else None
        if op == "set" and entry:
            entry[draw(st.sampled_from(sorted(entry)))] = draw(JSON_VALUES)
        elif op == "drop" and entry:
            del entry[draw(st.sampled_from(sorted(entry)))]
        elif op == "add":
            entry[draw(st.sampled_from(FIELDS) | st.text(max_size=6))] = draw(JSON_VALUES)
        elif op == "type":
            entry["type"] = draw(st.sampled_from(LAYER_TYPES) | JSON_VALUES)
        elif op == "inputs":  # may point forward (a cycle), at itself, or nowhere
            names = [e.get("name") for e in dicts if isinstance(e.get("name"), str)] + ["input", "ghost"]
            entry["inputs"] = draw(st.lists(st.sampled_from(names), max_size=3) | st.sampled_from(names) | JSON_VALUES)
        elif op == "dup":
            entries.insert(draw(st.integers(0, len(entries))), copy.deepcopy(entry))
        elif op == "reorder":
            i, j = draw(st.integers(0, len(entries) - 1)), draw(st.integers(0, len(entries) - 1))
            entries[i], entries[j] = entries[j], entries[i]
        else:
            key = draw(st.sampled_from(["input_shape", "layers", "format", "version", "name", "extra"]))
            if draw(st.booleans()):
                spec.pop(key, None)
            else:
                spec[key] = draw(JSON_VALUES | st.lists(INTS, max_size=4))
    return spec


@st.composite
def graphs(draw):
    """Graphs of Dense and Add nodes (one width): mostly DAGs listed in any order, joined at the
    end by an Add of every node nothing reads; one reference in ten points anywhere, which makes
    cycles, self loops and forward references."""
    n = draw(st.integers(2, 40))
    entries, read = [], set()
    for i in range(n):

        def ref():
            anywhere = draw(st.integers(0, 9)) == 0
            k = draw(st.integers(-1, n - 1)) if anywhere or i == 0 else draw(st.integers(-1, i - 1))
            name = "input" if k < 0 else f"n{k}"
            read.add(name)
            return name

        if i >= 1 and draw(st.integers(0, 3)) == 0:
            entries.append({"type": "Add", "name": f"n{i}", "inputs": [ref() for _ in range(draw(st.integers(2, 3)))]})
        else:
            entries.append(dense(units=3, name=f"n{i}", inputs=[ref()], activation="tanh"))
    sinks = [e["name"] for e in entries if e["name"] not in read] or [f"n{n - 1}"]
    entries.append(
        {"type": "Add", "name": "sum", "inputs": sinks} if len(sinks) > 1 else dense(units=3, name="sum", inputs=sinks)
    )
    order = draw(st.permutations(entries[:-1]))
    return {"input_shape": [3], "layers": [*order, entries[-1]]}


def outcome(src):
    """Build ``src``; a model that builds must run. Returns the model, or None after a RegnetError."""
    try:
        model = Model.from_spec(src, seed=0)
    except RegnetError as e:
        assert str(e)
        if isinstance(e, ConfigError) and e.layer is not None:
            assert e.layer.startswith("#"), e
        return None
    x = np.random.default_rng(0).standard_normal((2, *model.input_shape)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no NaN or overflow inside a layer
        out = model.predict(x)
    assert out.shape == (2, *model.output_shape) and out.dtype == np.float32
    assert np.isfinite(out).all()
    return model


def forms(spec):
    """The same spec as a dict, as JSON text and as UTF-8 bytes."""
    text = json.dumps(spec)
    return [spec, text, text.encode()]


def test_valid_specs_build_run_and_round_trip(fuzz_cases, time_limit):
    @fuzz(300)
    @given(spec=vector_specs() | image_specs())
    def valid(spec):
        fuzz_cases("valid")
        with time_limit(EXAMPLE_LIMIT_S):
            model = outcome(copy.deepcopy(spec))
            assert model is not None, "a valid spec was refused"
            again = Model.from_spec(model.to_json())
            assert again.to_spec() == model.to_spec()

    valid()


def test_mutated_specs_build_or_raise_regnet_errors(fuzz_cases, time_limit):
    @fuzz(500)
    @given(spec=mutated_specs())
    def mutated(spec):
        fuzz_cases("mutated")
        with time_limit(EXAMPLE_LIMIT_S):
            built = [outcome(copy.deepcopy(src) if isinstance(src, dict) else src) is not None for src in forms(spec)]
        assert len(set(built)) == 1, "the dict, text and bytes forms of one spec disagree"
        fuzz_cases("mutated, built" if built[0] else "mutated, refused")

    mutated()


def test_random_json_values_raise_regnet_errors(fuzz_cases, time_limit):
    @fuzz(300)
    @given(value=JSON_VALUES | st.lists(JSON_VALUES, max_size=3).map(lambda v: [{"type": "Input", "shape": [2]}, *v]))
    def random_json(value):
        fuzz_cases("random_json")
        with time_limit(EXAMPLE_LIMIT_S):
            outcome(value)
            outcome(json.dumps(value))

    random_json()


JSONISH = st.text(alphabet='{}[]":,. -eE0123456789aflnrstuDIypeNF\\', max_size=80).map(lambda t: "{" + t)


def test_random_text_and_bytes_raise_regnet_errors(fuzz_cases, time_limit):
    @fuzz(1000)
    @given(src=JSONISH | st.text(max_size=60) | st.binary(max_size=80) | st.binary(max_size=80).map(lambda b: b"{" + b))
    def random_input(src):
        fuzz_cases("text_and_bytes")
        with time_limit(EXAMPLE_LIMIT_S):
            outcome(src)

    random_input()


def test_random_graphs_build_or_name_the_cycle(fuzz_cases, time_limit):
    @fuzz(150)
    @given(spec=graphs())
    def graph(spec):
        fuzz_cases("graphs")
        with time_limit(EXAMPLE_LIMIT_S):
            model = outcome(spec)
            fuzz_cases("graphs, built" if model is not None else "graphs, refused")
            if model is not None:
                out = model.predict(np.ones((2, 3), np.float32))
                assert np.isfinite(out).all()

    graph()


COMPONENT_FIELDS = FIELDS + [
    "learning_rate",
    "lr",
    "momentum",
    "nesterov",
    "beta_1",
    "beta_2",
    "rho",
    "alpha",
    "value",
    "from_logits",
    "weight_decay",
    "initial_accumulator_value",
    "clipnorm",
    "global_clipnorm",
    "clipvalue",
    # schedules and metrics
    "initial",
    "decay_steps",
    "decay_rate",
    "milestones",
    "warmup_steps",
    "schedule",
    "total_steps",
    "average",
    "k",
    "threshold",
    "num_bins",
    "name",
]


def test_random_component_configs_raise_regnet_errors(fuzz_cases, time_limit):
    """Components of every kind from random names and configs, directly and through ``compile``
    (schedules as an optimizer's learning rate, metrics in the metrics list)."""
    from regnet.registry import REGISTRIES

    kinds = sorted(REGISTRIES)

    @fuzz(300)
    @given(kind=st.sampled_from(kinds), data=st.data())
    def component(kind, data):
        fuzz_cases("components")
        name = data.draw(st.sampled_from(REGISTRIES[kind].list()) | JSON_VALUES)
        config = data.draw(
            st.dictionaries(st.sampled_from(COMPONENT_FIELDS) | st.text(max_size=5), JSON_VALUES, max_size=3)
        )
        spec = data.draw(st.sampled_from([name, {"type": name, **config}, config]))
        model = Model.from_spec({"input_shape": [3], "layers": [dense(units=2)]})
        with time_limit(EXAMPLE_LIMIT_S):
            for make in (
                lambda: REGISTRIES[kind].create(spec),
                lambda: model.compile(loss=spec) if kind == "losses" else None,
                lambda: model.compile(optimizer=spec) if kind == "optimizers" else None,
                lambda: (
                    model.compile(optimizer={"type": "sgd", "learning_rate": spec}) if kind == "schedules" else None
                ),
                lambda: model.compile(metrics=[spec]) if kind == "metrics" else None,
            ):
                try:
                    make()
                except RegnetError as e:
                    assert str(e)

    component()
