"""The generic tensor layers (regnet/layers/tensor.py): MatMul, Softmax, Gather, Slice, Cast,
Where, CausalMask and ReplaceNaN against PyTorch (forward and gradients), in a functional model
with an int64 attention-mask input, their ONNX export in onnxruntime and import, and their
errors; the ONNX operators of GPT-2's graph (a causal mask, Gemm on the merged batch, Split, the
IsNaN guard) written by hand."""

import numpy as np
import pytest

import regnet
from regnet import layers
from regnet.errors import ConfigError, ShapeError

torch = pytest.importorskip("torch")

from tests.torch_agreement import layer_agrees  # noqa: E402


# -- PyTorch agreement ------------------------------------------------------------------------------
def per_sample(*xs):
    """The tensors with axes of length 1 after the batch axis up to the highest rank: regnet
    broadcasts the axes of each sample, torch from the last axis with the batch included."""
    rank = max(x.dim() for x in xs)
    return [x.reshape(x.shape[0], *([1] * (rank - x.dim())), *x.shape[1:]) for x in xs]


@pytest.mark.parametrize(
    "shapes",
    [[(2, 4, 3), (2, 3, 5)], [(2, 1, 4, 3), (3, 3, 2)], [(4, 3), (2, 3, 5)], [(5, 3), (3, 2)]],
    ids=str,
)
def test_matmul_agrees_with_torch_matmul(shapes):
    layer_agrees({"type": "MatMul"}, shapes, lambda xs, w: torch.matmul(*per_sample(*xs)))


def test_matmul_transpose_b_agrees_with_torch():
    layer_agrees(
        {"type": "MatMul", "transpose_b": True},
        [(2, 4, 3), (1, 5, 3)],
        lambda xs, w: torch.matmul(xs[0], xs[1].transpose(-1, -2)),
    )


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_softmax_layer_agrees_with_torch_softmax(axis):
    layer_agrees({"type": "Softmax", "axis": axis}, (3, 4), lambda x, w: torch.softmax(x, dim=axis))


@pytest.mark.parametrize(
    "config, fn",
    [
        ({"indices": 0, "axis": 1}, lambda x, w: x[:, 0]),  # BERT's pooled first token
        ({"indices": -1, "axis": -1}, lambda x, w: x[..., -1]),
        ({"indices": [2, 0, 2], "axis": 2}, lambda x, w: torch.index_select(x, 2, torch.tensor([2, 0, 2]))),
    ],
    ids=["first-token", "last", "repeated"],
)
def test_gather_agrees_with_torch_indexing(config, fn):
    layer_agrees({"type": "Gather", **config}, (4, 3, 2), fn)


@pytest.mark.parametrize(
    "config, fn",
    [
        ({"axis": 1, "start": 1, "stop": 3}, lambda x, w: x[:, 1:3]),
        ({"axis": -1, "start": None, "stop": -1, "step": 2}, lambda x, w: x[..., :-1:2]),
        ({"axis": 2, "step": -1}, lambda x, w: torch.flip(x, dims=[2])),
        ({"axis": 2, "start": -2}, lambda x, w: torch.narrow(x, 2, 1, 2)),
    ],
    ids=["range", "strided", "reversed", "narrow"],
)
def test_slice_agrees_with_torch_slicing(config, fn):
    layer_agrees({"type": "Slice", **config}, (4, 3, 5)[:2] + (3,), fn)


def test_where_agrees_with_torch_where_and_masked_fill():
    rng = np.random.default_rng(1)
    cond = (rng.random((3, 4)) > 0.5).astype(np.int64)  # an attention mask: no gradient
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    y = rng.standard_normal((3, 1, 4)).astype(np.float32)
    layer_agrees(
        {"type": "Where"},
        [(4,), (2, 4), (1, 4)],
        lambda xs, w: torch.where(xs[0][:, None, :] != 0, xs[1], xs[2]),
        x=[cond, x, y],
    )
    layer_agrees(
        {"type": "Where", "true_value": -1e4},
        [(4,), (2, 4)],
        lambda xs, w: xs[1].masked_fill(xs[0][:, None, :] != 0, -1e4),
        x=[cond, x],
    )
    layer_agrees(
        {"type": "Where", "false_value": 0.5},
        [(4,), (2, 4)],
        lambda xs, w: torch.where(xs[0][:, None, :] != 0, xs[1], torch.tensor(0.5)),
        x=[cond, x],
    )


def test_where_of_two_constants_makes_numbers_of_the_condition():
    cond = np.array([[1, 0, 3], [0, 0, 1]], np.int64)
    layer = layers.Where(true_value=0.0, false_value=-5.0)
    assert layer.setup((3,), np.random.default_rng(0)) == (3,)
    y = layer(cond)
    want = torch.where(torch.tensor(cond) != 0, torch.tensor(0.0), torch.tensor(-5.0)).numpy()
    assert y.dtype == np.float32 and np.array_equal(y, want)
    assert not layer.call_backward(np.ones((2, 3), np.float32)).any()  # the condition gets no gradient


@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 3), (2, 1, 4)], ids=str)
def test_causal_mask_agrees_with_torch_where_on_the_lower_triangle(shape):
    n = shape[-1]
    keep = torch.tril(torch.ones(n, n, dtype=torch.bool))
    layer_agrees({"type": "CausalMask", "value": -7.0}, shape, lambda x, w: torch.where(keep, x, torch.tensor(-7.0)))


def test_replace_nan_agrees_with_torch_where_isnan():
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    x[0, 1, 2] = x[2, 0, 0] = np.nan
    layer = layer_agrees(
        {"type": "ReplaceNaN", "value": 0.25},
        (2, 4),
        lambda t, w: torch.where(torch.isnan(t), torch.tensor(0.25), t),
        x=[x],
    )
    assert not np.isnan(layer(x)).any()


def test_the_examples_of_the_tensor_layers_run():
    import doctest

    from regnet.layers import tensor

    result = doctest.testmod(tensor, raise_on_error=False, verbose=False)
    assert result.attempted >= 8 * 4 and result.failed == 0


def test_cast_makes_int_ids_float_numbers_without_a_gradient():
    cast = layers.Cast()
    cast.setup((3,), np.random.default_rng(0))
    y = cast(np.array([[1, 0, 7]], np.int64))
    assert y.dtype == np.float32 and y.tolist() == [[1.0, 0.0, 7.0]]
    assert not cast.call_backward(np.ones((1, 3), np.float32)).any()
    x = np.array([[0.5, -1.0, 2.0]], np.float32)
    assert np.array_equal(cast(x), x) and cast(x) is not x
    assert np.array_equal(cast.call_backward(np.full((1, 3), 2.0, np.float32)), np.full((1, 3), 2.0))


# -- in a model: an additive attention mask from an int64 input -------------------------------------
def attention_model():
    """Single-head self-attention with BERT's additive mask built from an int64 attention_mask
    (and the padded keys' weights set to 0 by Where) and the first token taken at the end, in
    generic layers."""
    x = regnet.Input((5, 4), name="x")
    mask = regnet.Input((5,), name="attention_mask", dtype="int64")
    q = layers.Dense(4, name="q")(x)
    k = layers.Dense(4, name="k")(x)
    v = layers.Dense(4, name="v")(x)
    scores = layers.MatMul(transpose_b=True)([q, k])  # (N, 5, 5)
    bias = layers.Rescaling(scale=1e9, offset=-1e9)(layers.Cast()(mask))  # 0 kept, -1e9 padding
    weights = layers.Softmax(axis=-1)(layers.Add()([layers.Rescaling(scale=0.5)(scores), bias]))
    weights = layers.Where(false_value=0.0)([mask, weights])  # padded keys: exactly 0
    out = layers.MatMul()([weights, v])
    first = layers.Gather(indices=0, axis=1)(layers.Slice(axis=2, start=1)(out))
    return regnet.Model([x, mask], first)


def attention_inputs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, 5), np.int64)
    mask[1, 3:] = 0
    mask[2, 1:] = 0
    return {"x": rng.standard_normal((n, 5, 4)).astype(np.float32), "attention_mask": mask}


def test_masked_attention_in_generic_layers_matches_torch_and_trains():
    model = attention_model()
    inputs = attention_inputs()
    y = model.predict(inputs)
    assert y.shape == (3, 3)
    w = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    tx = torch.tensor(inputs["x"])
    q, k, v = (tx @ w[f"{n}/kernel"] + w[f"{n}/bias"] for n in "qkv")
    scores = (q @ k.transpose(-1, -2)) * 0.5
    mask = torch.tensor(inputs["attention_mask"])[:, None, :] == 0
    want = torch.softmax(scores.masked_fill(mask, -1e9), -1) @ v
    np.testing.assert_allclose(y, want[:, 0, 1:].numpy(), rtol=1e-5, atol=1e-6)
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(inputs, np.zeros((3, 3), np.float32), epochs=3, batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_the_tensor_layers_export_to_onnx_as_onnxruntime_runs_them(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import regnet.onnx as ronnx

    model = attention_model()
    inputs = attention_inputs()
    path = ronnx.export(model, tmp_path / "attention.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)[0]
    np.testing.assert_allclose(got, model.predict(inputs), rtol=1e-5, atol=1e-6)


# -- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, shape, match",
    [
        ({"type": "MatMul"}, [(2, 3), (4, 5)], "3 columns but b .* has 4 rows"),
        ({"type": "MatMul"}, [(3,), (3, 2)], "rank 3 or more"),
        ({"type": "MatMul"}, [(2, 2, 3), (3, 3, 2)], "leading axes"),
        ({"type": "Softmax", "axis": 3}, (2, 3), "axis 3 does not fit"),
        ({"type": "Gather", "indices": 3, "axis": 1}, (3, 2), "index 3 is outside axis 1 of length 3"),
        ({"type": "Gather", "indices": 0, "axis": 1}, (3,), "no axis"),
        ({"type": "Slice", "axis": 1, "start": 2, "stop": 2}, (3,), "is empty"),
        ({"type": "Where"}, [(2,), (2,)], r"takes the inputs \[condition, x, y\]"),
        ({"type": "Where", "true_value": 1.0}, [(2,), (3,)], "do not broadcast"),
        ({"type": "CausalMask"}, (2, 3), r"\(N, \.\.\., L, L\)"),
        ({"type": "CausalMask"}, (3,), r"\(N, \.\.\., L, L\)"),
    ],
)
def test_bad_shapes_are_shape_errors_naming_the_layer(config, shape, match):
    layer = layers.create(config)
    with pytest.raises(ShapeError, match=match):
        layer.setup(shape, np.random.default_rng(0))


@pytest.mark.parametrize(
    "config, field",
    [
        ({"type": "Softmax", "axis": 0}, "axis"),
        ({"type": "Gather", "indices": []}, "indices"),
        ({"type": "Gather", "indices": 1.5}, "indices"),
        ({"type": "Slice", "step": 0}, "step"),
        ({"type": "Slice", "start": "1"}, "start"),
        ({"type": "Cast", "dtype": "int64"}, "dtype"),
        ({"type": "CausalMask", "value": float("-inf")}, "value"),
        ({"type": "ReplaceNaN", "value": "0"}, "value"),
    ],
)
def test_bad_configs_are_config_errors_naming_the_field(config, field):
    with pytest.raises(ConfigError) as info:
        layers.create(config)
    assert info.value.field == field


def test_only_layers_that_read_integers_take_the_int64_input():
    mask = regnet.Input((5,), name="attention_mask", dtype="int64")
    with pytest.raises(ConfigError, match="reads the int64 model input"):
        regnet.Model(mask, layers.Softmax()(mask))
    regnet.Model(mask, layers.Softmax()(layers.Cast()(mask)))  # through Cast: numbers


def test_the_exported_attention_imports_back_with_both_inputs(tmp_path):
    pytest.importorskip("onnxruntime")
    import regnet.onnx as ronnx

    model = attention_model()
    back = ronnx.load(ronnx.export(model, tmp_path / "attention.onnx"))
    assert back.input_names == ["x", "attention_mask"]
    assert [i.dtype for i in back.inputs] == ["float32", "int64"]
    assert [type(layer).__name__ for layer in back.layers] == [type(layer).__name__ for layer in model.layers]
    inputs = attention_inputs(seed=3)
    np.testing.assert_array_equal(back.predict(inputs), model.predict(inputs))


class TorchTensorOps(torch.nn.Module):
    """Matrix products of activations, a softmax over axis 1, slicing with a step and taking one
    index, as PyTorch writes them (no regnet hints in the graph)."""

    def forward(self, x):
        scores = torch.matmul(x, x.transpose(-1, -2))  # (N, 4, 4)
        weights = torch.softmax(scores, dim=1)
        mixed = torch.matmul(weights, x)  # (N, 4, 6)
        return mixed[:, :, 1::2][:, 0] + mixed[:, -1, :3]


def test_torch_tensor_operators_import_and_match_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    import regnet.onnx as ronnx
    from tests.torch_agreement import torch_onnx_bytes

    x = np.random.default_rng(0).standard_normal((3, 4, 6)).astype(np.float32)
    data = torch_onnx_bytes(TorchTensorOps().eval(), x)
    model = ronnx.from_proto(__import__("onnx").load_from_string(data))
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"MatMul", "Slice", "Gather"} <= kinds, kinds
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-6)


# -- ONNX import of attention masks (graphs written by hand) ----------------------------------------
def mask_graph(nodes, initializers=()):
    """A graph of ``x`` (N, 2, 4) float32 scores and ``mask`` (N, 4) int64 with output ``y``."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "masks",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 4])],
        initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in initializers],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


MASK_CONSTANTS = [
    ("zero", np.array(0, np.int64)),
    ("axes1", np.array([1], np.int64)),
    ("fill", np.array(-1e9, np.float32)),
    ("one", np.array(1.0, np.float32)),
]


def node(op, inputs, outputs, **attributes):
    from onnx import helper

    return helper.make_node(op, inputs, outputs, name=outputs[0], **attributes)


@pytest.mark.parametrize(
    "nodes",
    [
        # DistilBERT's masked_fill: Where(Cast(Expand(Reshape(mask == 0))), -1e9, x)
        [
            node("Equal", ["mask", "zero"], ["eq"]),
            node("Unsqueeze", ["eq", "axes1"], ["eq3"]),
            node("Cast", ["eq3"], ["cond"], to=9),
            node("Where", ["cond", "fill", "x"], ["y"]),
        ],
        # Not of the cast mask, the branches the other way round
        [
            node("Cast", ["mask"], ["b"], to=9),
            node("Not", ["b"], ["nb"]),
            node("Unsqueeze", ["nb", "axes1"], ["nb3"]),
            node("Where", ["nb3", "fill", "x"], ["y"]),
        ],
        # BERT's additive mask: x + (1 - float(mask)) * -1e9
        [
            node("Unsqueeze", ["mask", "axes1"], ["m3"]),
            node("Cast", ["m3"], ["f"], to=1),
            node("Sub", ["one", "f"], ["inv"]),
            node("Mul", ["inv", "fill"], ["add"]),
            node("Add", ["x", "add"], ["y"]),
        ],
    ],
    ids=["equal-where", "not-where", "additive"],
)
def test_attention_masks_import_from_the_int64_input(nodes):
    ort = pytest.importorskip("onnxruntime")
    import regnet.onnx as ronnx

    proto = mask_graph(nodes, MASK_CONSTANTS)
    model = ronnx.from_proto(proto)
    assert [i.dtype for i in model.inputs] == ["float32", "int64"]
    inputs = attention_inputs(n=3)
    inputs = {"x": inputs["x"][:, :2, :4].copy(), "mask": inputs["attention_mask"][:, :4].copy()}
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    np.testing.assert_allclose(model.predict(inputs), want, rtol=1e-6)


@pytest.mark.parametrize(
    "nodes, match",
    [
        ([node("Equal", ["mask", "zero"], ["e"]), node("Cast", ["e"], ["y"], to=1)], "casting a condition"),
        ([node("Equal", ["mask", "axes1"], ["e"]), node("Where", ["e", "fill", "x"], ["y"])], "only against 0"),
        (
            [
                node("Cast", ["mask"], ["b"], to=9),
                node("And", ["b", "b"], ["k"]),
                node("Where", ["k", "one", "x"], ["y"]),
            ],
            "And",
        ),
        ([node("MatMul", ["x", "mask"], ["y"])], "MatMul"),
    ],
    ids=["cast-condition", "equal-one", "and-of-masks", "matmul-int"],
)
def test_unsupported_mask_arithmetic_is_refused_naming_the_node(nodes, match):
    import regnet.onnx as ronnx

    with pytest.raises(ronnx.OnnxImportError, match=match) as info:
        ronnx.from_proto(mask_graph(nodes, MASK_CONSTANTS))
    assert nodes[-1].name in str(info.value) or nodes[0].name in str(info.value)


# -- causal masks (GPT-2): the layers, their export and the import of the operators -----------------
def causal_model():
    """Causal self-attention scores with a padding mask: ``CausalMask`` of the additive padding
    mask (``Where`` of two constants) added to the scores, the causal triangle on the scores too,
    softmax, the NaN guard."""
    x = regnet.Input((4, 4), name="x")
    mask = regnet.Input((4,), name="attention_mask", dtype="int64")
    bias = layers.Reshape((1, 4))(layers.Where(true_value=0.0, false_value=-1e9)(mask))
    bias = layers.CausalMask(value=-1e9)(bias)  # (N, 4, 4)
    scores = layers.CausalMask(value=-3e38)(layers.MatMul(transpose_b=True)([x, x]))
    weights = layers.ReplaceNaN()(layers.Softmax(axis=-1)(layers.Add()([scores, bias])))
    return regnet.Model([x, mask], layers.MatMul()([weights, x]))


def causal_inputs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, 4), np.int64)
    mask[1, 2:] = 0
    mask[2, 1:] = 0
    return {"x": rng.standard_normal((n, 4, 4)).astype(np.float32), "attention_mask": mask}


def test_causal_layers_export_to_onnxruntime_and_import_back(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import regnet.onnx as ronnx

    model = causal_model()
    inputs = causal_inputs()
    y = model.predict(inputs)
    # torch: the same attention (future keys and padded keys masked)
    tx = torch.tensor(inputs["x"])
    keep = torch.tril(torch.ones(4, 4, dtype=torch.bool)) & (torch.tensor(inputs["attention_mask"])[:, None, :] != 0)
    want = torch.softmax((tx @ tx.transpose(-1, -2)).masked_fill(~keep, -1e9), -1) @ tx
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-6)
    path = ronnx.export(model, tmp_path / "causal.onnx")
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-6)
    back = ronnx.load(path)
    kinds = [type(layer).__name__ for layer in back.layers]
    assert {"CausalMask", "ReplaceNaN", "Where"} <= set(kinds), kinds
    np.testing.assert_array_equal(back.predict(inputs), y)


def causal_graph(nodes, initializers=()):
    """A graph of ``x`` (N, 4, 4) float32 scores and (where a node reads it) ``mask`` (N, 4) int64
    with output ``y``."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4])]
    if any("mask" in n.input for n in nodes):
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 4]))
    graph = helper.make_graph(
        nodes,
        "causal",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 4])],
        initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in initializers],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


CAUSAL_CONSTANTS = [
    ("start", np.array(0, np.int64)),
    ("length", np.array(4, np.int64)),
    ("delta", np.array(1, np.int64)),
    ("column", np.array([4, 1], np.int64)),
    ("axes1", np.array([1], np.int64)),
    ("axes0", np.array([0], np.int64)),
    ("zero", np.array(0.0, np.float32)),
    ("ninf", np.array(-np.inf, np.float32)),
    ("lowest", np.array(np.finfo(np.float32).min, np.float32)),
    ("tril", np.tril(np.ones((4, 4), bool))[None]),
    ("triu", np.triu(np.ones((4, 4), bool))[None]),
    ("flat", np.array([-1, 4], np.int64)),
    ("w", np.random.default_rng(5).standard_normal((4, 12)).astype(np.float32)),
    ("b", np.random.default_rng(6).standard_normal(12).astype(np.float32)),
    ("back", np.array([-1, 4, 12], np.int64)),
    ("sizes", np.array([4, 4, 4], np.int64)),
]

#: transformers' older causal mask builder: kv <= q from Range, And with the padding mask, made
#: additive by Where(·, 0, -inf) (sdpa), added to the scores; softmax; the IsNaN guard
CAUSAL_SDPA = [
    node("Range", ["start", "length", "delta"], ["pos"]),
    node("Reshape", ["pos", "column"], ["q"]),
    node("LessOrEqual", ["pos", "q"], ["tri"]),
    node("Unsqueeze", ["tri", "axes0"], ["tri3"]),  # (1, 4, 4): the batch axis as 1
    node("Cast", ["mask"], ["pad"], to=9),
    node("Unsqueeze", ["pad", "axes1"], ["pad3"]),  # (N, 1, 4)
    node("And", ["tri3", "pad3"], ["keep"]),
    node("Where", ["keep", "zero", "ninf"], ["bias"]),
    node("Add", ["x", "bias"], ["scores"]),
    node("Softmax", ["scores"], ["p"], axis=-1),
    node("IsNaN", ["p"], ["nan"]),
    node("Where", ["nan", "zero", "p"], ["y"]),
]

#: GPT-2's eager attention: the causal bias as a constant condition on the scores (Where(tril, x, min))
CAUSAL_EAGER = [
    node("Where", ["tril", "x", "lowest"], ["s"]),
    node("Softmax", ["s"], ["y"], axis=-1),
]

#: GPT-2's Conv1D: the batch merged into the positions around Gemm, then query, key and value split
MERGED_GEMM = [
    node("Reshape", ["x", "flat"], ["rows"]),
    node("Gemm", ["rows", "w", "b"], ["qkv_rows"]),
    node("Reshape", ["qkv_rows", "back"], ["qkv"]),
    node("Split", ["qkv", "sizes"], ["qq", "kk", "vv"], axis=2),
    node("Add", ["qq", "kk"], ["qk"]),
    node("Mul", ["qk", "vv"], ["y"]),
]


@pytest.mark.parametrize(
    "nodes", [CAUSAL_SDPA, CAUSAL_EAGER, MERGED_GEMM], ids=["sdpa-mask", "eager-bias", "gemm-split"]
)
def test_gpt2_operators_import_and_match_onnxruntime(nodes):
    ort = pytest.importorskip("onnxruntime")
    import regnet.onnx as ronnx

    used = {name for n in nodes for name in n.input}
    proto = causal_graph(nodes, [(k, v) for k, v in CAUSAL_CONSTANTS if k in used])
    model = ronnx.from_proto(proto)
    inputs = {"x": causal_inputs()["x"], "mask": causal_inputs()["attention_mask"]}
    feeds = {i.name: inputs[i.name] for i in proto.graph.input}
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = model.predict({k: v for k, v in feeds.items()} if len(feeds) > 1 else feeds["x"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "nodes, match",
    [
        ([node("Where", ["triu", "x", "lowest"], ["y"])], "causal mask"),
        (
            [
                node("Softmax", ["x"], ["p"], axis=-1),
                node("IsNaN", ["p"], ["n"]),
                node("Where", ["n", "zero", "x"], ["y"]),
            ],
            "IsNaN",
        ),
        (
            [
                node("Reshape", ["x", "flat"], ["r"]),
                node("Gemm", ["r", "w", "b"], ["g"]),
                node("Reshape", ["g", "sizes"], ["y"]),
            ],
            "merged batch",
        ),
        (
            [
                node("Reshape", ["x", "flat"], ["r"]),
                node("Gemm", ["r", "w", "b"], ["g"]),
                node("Relu", ["g"], ["g2"]),
                node("Reshape", ["g2", "back"], ["y"]),
            ],
            "Reshape back",
        ),
        (
            [
                node("Cast", ["mask"], ["m"], to=9),
                node("Unsqueeze", ["m", "axes1"], ["m3"]),
                node("And", ["m3", "triu"], ["k"]),
                node("Where", ["k", "x", "lowest"], ["y"]),
            ],
            "causal mask",
        ),
        (
            [
                node("Cast", ["mask"], ["m"], to=9),
                node("Unsqueeze", ["m", "axes1"], ["m3"]),
                node("And", ["m3", "tril"], ["k"]),
                node("Not", ["k"], ["nk"]),
                node("Where", ["nk", "x", "lowest"], ["y"]),
            ],
            "And-ed with a constant",
        ),
    ],
    ids=["upper-triangle", "isnan-of-another", "merged-reshape", "merged-relu", "and-upper", "not-of-and"],
)
def test_unsupported_gpt2_operators_are_refused_naming_the_node(nodes, match):
    import regnet.onnx as ronnx

    used = {name for n in nodes for name in n.input}
    with pytest.raises(ronnx.OnnxImportError, match=match) as info:
        ronnx.from_proto(causal_graph(nodes, [(k, v) for k, v in CAUSAL_CONSTANTS if k in used]))
    assert any(n.name in str(info.value) for n in nodes)
