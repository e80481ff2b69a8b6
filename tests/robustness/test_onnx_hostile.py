"""Hostile ONNX graphs: an external-data location no file system holds, graphs of many unnamed
nodes (imported or refused in time linear in their size) and constant-folding bombs (refused
before anything of their size is allocated)."""

import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import regnet  # noqa: E402
from regnet import FileFormatError, Model, cli  # noqa: E402
from regnet import onnx as ronnx  # noqa: E402
from regnet.onnx import folding, naming  # noqa: E402

SPEC = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "h", "units": 3, "activation": "relu"},
        {"type": "Dense", "name": "out", "units": 2},
    ],
}


def external_model(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    onnx.save_model(
        ronnx.to_proto(Model.from_spec(SPEC, seed=0)),
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return folder, onnx.load(str(folder / "model.onnx"), load_external_data=False)


def point_at(folder, model, location):
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_a_nul_byte_in_an_external_location_is_a_file_format_error(tmp_path, capsys):
    folder, model = external_model(tmp_path)
    path = point_at(folder, model, "weights.bin\0.png")
    with pytest.raises(FileFormatError, match="NUL byte"):
        ronnx.load(path)
    assert cli.main(["import", str(path), str(tmp_path / "out.h5")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("regnet: error: ") and "unexpected" not in err and "NUL byte" in err


@settings(max_examples=60, deadline=None)
@given(location=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_any_external_location_loads_or_is_a_file_format_error(tmp_path_factory, location):
    folder, model = external_model(tmp_path_factory.mktemp("x"))
    path = point_at(folder, model, location)
    try:
        ronnx.load(path)
    except FileFormatError:
        pass


# -- many nodes --------------------------------------------------------------------------------------
def chain(n, op="Relu", named=False):
    """``n`` nodes ``op`` one after the other (no names unless ``named``)."""
    nodes = [helper.make_node(op, [f"t{i}"], [f"t{i + 1}"], name=f"relu_{i % 7}" if named else "") for i in range(n)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, ["N", 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_graph_over_the_layer_limit_is_refused_quickly(time_limit):
    proto = chain(3 * regnet.spec.MAX_LAYERS)
    start = time.perf_counter()
    with time_limit(60), pytest.raises(ronnx.OnnxImportError, match="more than"):
        ronnx.from_proto(proto)
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize("named", [False, True])
def test_naming_many_layers_is_linear(named, time_limit):
    """Naming 4000 and 16000 layers of one base name: the second takes about four times as long,
    not sixteen (the old search restarted at 1 for every layer)."""

    def timed(n):
        candidates = [["relu_1"] if named else [] for _ in range(n)]
        start = time.perf_counter()
        with time_limit(60):
            names = naming.assign(candidates, ["ReLU"] * n)
        assert len(set(names)) == n
        return time.perf_counter() - start

    small, large = min(timed(4000) for _ in range(3)), min(timed(16000) for _ in range(3))
    assert large < 10 * small + 0.05, (small, large)


def reference_assign(candidates, types):
    """The naming rule, written the slow and obvious way."""
    taken, out = {regnet.spec.INPUT}, []
    for cands, type_name in zip(candidates, types):
        stem, chosen = naming.snake(type_name), ""
        for cand in cands:
            if regnet.names.problem(cand) is not None or len(cand) > naming.MAX_NAME:
                cand = naming.sanitise(cand)
            if cand:
                chosen = f"{stem}_{cand}" if cand[0].isdigit() else cand
                break
        if not chosen or chosen in taken:
            base, k = chosen or stem, 1 if not chosen else 2
            while f"{base}_{k}" in taken:
                k += 1
            chosen = f"{base}_{k}"
        taken.add(chosen)
        out.append(chosen)
    return out


NAME = st.sampled_from(["relu", "relu_1", "relu_2", "relu_3", "dense", "dense_2", "3", "a/b", "", "input"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(NAME, max_size=2), st.sampled_from(["ReLU", "Dense"])), max_size=30))
def test_naming_gives_the_names_the_rule_gives(layers):
    candidates, types = [c for c, _ in layers], [t for _, t in layers]
    assert naming.assign(candidates, types) == reference_assign(candidates, types)


# -- folding bombs -----------------------------------------------------------------------------------
def bomb(op):
    """A tiny file whose folding would make 2**25 int64 values (256 MiB) from a 2**22-value constant."""
    fill = helper.make_tensor("v", TensorProto.INT64, [1], [7])
    if op == "Concat":
        inits = [numpy_helper.from_array(np.array([1 << 22], np.int64), "shape")]
        nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"], value=fill)]
        nodes.append(helper.make_node("Concat", ["big"] * 8, ["c"], axis=0, name="bomb"))
    elif op == "Gather":
        inits = [numpy_helper.from_array(np.array([1, 1 << 22], np.int64), "shape")]
        inits.append(numpy_helper.from_array(np.zeros(8, np.int64), "idx"))
        nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"], value=fill)]
        nodes.append(helper.make_node("Gather", ["big", "idx"], ["c"], axis=0, name="bomb"))
    else:  # Mul: broadcasting a column by a row
        inits = [numpy_helper.from_array(np.array([1 << 13, 1], np.int64), "s1")]
        inits.append(numpy_helper.from_array(np.array([1, 1 << 12], np.int64), "s2"))
        nodes = [helper.make_node("ConstantOfShape", ["s1"], ["a"], value=fill)]
        nodes.append(helper.make_node("ConstantOfShape", ["s2"], ["b"], value=fill))
        nodes.append(helper.make_node("Mul", ["a", "b"], ["c"], name="bomb"))
    nodes += [helper.make_node("Reshape", ["x", "c"], ["y"]), helper.make_node("Relu", ["y"], ["z"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op", ["Concat", "Gather", "Mul"])
def test_a_folding_bomb_is_refused_before_it_is_allocated(op):
    proto = bomb(op)
    assert len(proto.SerializeToString()) < 1000
    tracemalloc.start()
    try:
        with pytest.raises(ronnx.OnnxImportError, match=rf"\({op}\).*33554432 elements"):
            ronnx.from_proto(proto)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 << 20, peak  # the 32 MiB constant it starts from, not the 256 MiB result


SMALL = st.lists(st.integers(0, 4), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(op=st.sampled_from(sorted(folding.FOLDERS)), shapes=st.lists(SMALL, min_size=1, max_size=3), data=st.data())
def test_the_size_bound_is_never_below_the_result(op, shapes, data):
    """For every folded operator, on any inputs it evaluates, the size checked before folding is
    at least the size of what folding makes."""
    inputs = [np.arange(int(np.prod(s)), dtype=np.int64).reshape(s) for s in shapes]
    attrs = {"axis": data.draw(st.integers(-1, 1)), "to": TensorProto.INT64}
    if op in ("Gather", "Reshape", "Slice", "Unsqueeze", "Squeeze", "ConstantOfShape"):
        inputs = inputs[:1] + [np.asarray(data.draw(st.lists(st.integers(-2, 3), min_size=1, max_size=3)), np.int64)]
    try:
        out = folding.fold(op, attrs, inputs, 17)
    except folding.FoldError:
        return
    assert folding.result_size(op, attrs, inputs) >= out.size
