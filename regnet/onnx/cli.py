"""``regnet export`` and ``regnet import``: the ONNX commands (``add_commands`` adds them to the
``regnet`` parser)."""

import argparse
import os
import sys
from typing import Any

import onnx

from .. import atomic, checkpoint, io
from ..errors import FileFormatError
from ..model import Model
from ..text import escape
from . import exporter, importer, reader


def _check_onnx_target(path: str) -> None:
    """``export`` replaces an ONNX file (or an empty one), never a file of another kind."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return
        with open(path, "rb") as fh:
            data = fh.read(reader.MAX_BYTES + 1)
    except (OSError, ValueError):
        return  # no file (the save reports any other problem)
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
        ok = proto.HasField("graph") and len(proto.graph.node) > 0
    except Exception:  # protobuf raises its own errors on foreign bytes
        ok = False
    if not ok:
        raise FileFormatError(
            f"cannot write {escape(path)}: the file exists and is not an ONNX model; it is left untouched: "
            "remove it first or choose another path"
        )


def cmd_export(args: argparse.Namespace, argv: list[str]) -> int:
    """Write a model file (or a spec with ``--weights``) as ONNX."""
    atomic.refuse_input(args.out, {"the model": args.model, "--weights": args.weights})
    _check_onnx_target(args.out)
    if str(args.model).lower().endswith(".json"):
        model = Model.from_spec(args.model, seed=0)
        if args.weights is None:
            note = "no --weights given: the file holds the spec's initial weights (seed 0)"
            print(f"regnet: note: {note}", file=sys.stderr)
    else:
        model = Model.load(args.model, compile=False)
    if args.weights is not None:
        checkpoint.load_weights(model, args.weights)
    proto = exporter.to_proto(model, args.opset)
    exporter.write(proto, args.out)
    print(
        f"wrote {args.out}: ONNX opset {args.opset}, {len(proto.graph.node)} nodes, "
        f"{model.count_params():,} parameters, {_inputs(model)}"
    )
    return 0


def _inputs(model: Model) -> str:
    """``input ['N', 4]``, or each input with its dtype for other models."""
    if len(model.inputs) == 1 and model.inputs[0].dtype == "float32":
        return f"input {['N', *model.inputs[0].shape]}"
    return "inputs " + ", ".join(f"{i.name} {['N', *i.shape]} {i.dtype}" for i in model.inputs)


def cmd_import(args: argparse.Namespace, argv: list[str]) -> int:
    """Read an ONNX file and save it as a regnet model file."""
    atomic.refuse_input(args.out, {"the ONNX file": args.onnx})
    io.check_model_target(args.out)
    proto = reader.read(args.onnx)
    model = importer.from_proto(proto, checked=True)
    producer = f"{proto.producer_name} {proto.producer_version}".strip()
    metadata = {"imported_from": os.path.basename(args.onnx), "onnx_producer": producer}
    checkpoint.save(model, args.out, metadata=metadata)
    print(
        f"wrote {args.out}: {len(model.nodes)} layers, {model.count_params():,} parameters, "
        f"{_inputs(model)} (from {os.path.basename(args.onnx)}, made by {producer or 'unknown'})"
    )
    return 0


def _opset(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer opset, got '{text}'") from None


def add_commands(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``export`` and ``import`` to the ``regnet`` command's subparsers."""
    e = subparsers.add_parser(
        "export",
        parents=parents,
        help="write a model as ONNX",
        description="Write a regnet model (an HDF5 model file, or a JSON spec with --weights) as an ONNX file.",
    )
    e.add_argument("model", metavar="MODEL.h5|SPEC.json")
    e.add_argument("out", metavar="OUT.onnx")
    e.add_argument("--weights", metavar="W.h5", help="weights (or model) file whose tensors replace the model's")
    e.add_argument(
        "--opset",
        type=_opset,
        default=exporter.DEFAULT_OPSET,
        help=f"ONNX opset to write ({exporter.MIN_OPSET} or newer; default {exporter.DEFAULT_OPSET})",
    )
    e.set_defaults(func=cmd_export)
    i = subparsers.add_parser(
        "import",
        parents=parents,
        help="read an ONNX model into a regnet model file",
        description="Read an ONNX model (from regnet, PyTorch, ...) and save it as a regnet HDF5 model file.",
    )
    i.add_argument("onnx", metavar="MODEL.onnx")
    i.add_argument("out", metavar="OUT.h5")
    i.set_defaults(func=cmd_import)
