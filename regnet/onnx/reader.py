"""Reading an ONNX file safely: a size limit, a checked parse, external data kept inside the
model's folder, and every tensor's byte count checked before it becomes an array."""

import math
import os
import stat
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import Error as ProtobufError
from onnx import helper, numpy_helper

from ..errors import FileFormatError
from ..text import escape, show

#: protobuf cannot parse a message of 2 GiB or more; the default limit on a file read
MAX_BYTES = (2 << 30) - 1


def _shown(path: str) -> str:
    return escape(path, 300)


def read(path: "str | os.PathLike[str]", *, max_bytes: int = MAX_BYTES) -> onnx.ModelProto:
    """The checked ``ModelProto`` in the file at ``path``, external data loaded into it."""
    path = os.fspath(path)
    shown = _shown(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise FileFormatError(f"cannot read ONNX file {shown}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL byte in the path
        raise FileFormatError(f"cannot read ONNX file {shown}: {exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileFormatError(f"ONNX file {shown} is not a regular file")
    if info.st_size > max_bytes:
        raise FileFormatError(f"ONNX file {shown} is {info.st_size} bytes, over the limit of {max_bytes}")
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise FileFormatError(f"cannot read ONNX file {shown}: {exc.strerror or exc}") from None
    return parse(data, where=f"ONNX file {shown}", folder=os.path.dirname(os.path.abspath(path)), max_bytes=max_bytes)


def parse(
    data: bytes, *, where: str = "ONNX model", folder: str | None = None, max_bytes: int = MAX_BYTES
) -> onnx.ModelProto:
    """Parse and check serialised ONNX; external data is read from ``folder`` (refused without one)."""
    if len(data) > max_bytes:
        raise FileFormatError(f"{where} is {len(data)} bytes, over the limit of {max_bytes}")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (ProtobufError, ValueError, RuntimeError) as exc:
        raise FileFormatError(f"{where} is not a valid ONNX file (truncated or corrupted?): {exc}") from None
    return check(proto, where=where, folder=folder)


def check(proto: onnx.ModelProto, *, where: str = "ONNX model", folder: str | None = None) -> onnx.ModelProto:
    """Load external data (from inside ``folder`` only) and run ``onnx.checker`` on ``proto``."""
    if not proto.HasField("graph") or not proto.graph.node:
        raise FileFormatError(f"{where} holds no ONNX graph (an empty, truncated or foreign file?)")
    for tensor in tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _load_external(tensor, folder, where)
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:500]
        raise FileFormatError(f"{where} is not a valid ONNX model: {detail}") from None
    return proto


def tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """The graph's initializers and the tensors of its Constant nodes (not of subgraphs)."""
    out = list(graph.initializer)
    for node in graph.node:
        out.extend(a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
    return out


def _load_external(tensor: onnx.TensorProto, folder: str | None, where: str) -> None:
    """Replace an external-data reference by the bytes it names, if they lie inside ``folder``."""
    name = show(tensor.name)
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if folder is None:
        raise FileFormatError(
            f"{where}: tensor {name} keeps its data in an external file, which needs the model's path"
        )
    if "\0" in location:  # no file name holds one; os calls would raise a bare ValueError
        raise FileFormatError(f"{where}: tensor {name} names external data {show(location)}, which holds a NUL byte")
    if not location or os.path.isabs(location) or os.path.normpath(location).split(os.sep)[0] == os.pardir:
        raise FileFormatError(
            f"{where}: tensor {name} points at external data {show(location)} outside the model's folder; refused"
        )
    try:
        root = os.path.realpath(folder)
        target = os.path.realpath(os.path.join(root, location))
        outside = os.path.commonpath([root, target]) != root
    except (OSError, ValueError) as exc:  # a name the file system cannot hold
        raise FileFormatError(
            f"{where}: tensor {name} names external data {show(location)} that cannot be used: {exc}"
        ) from None
    if outside:  # e.g. through a symbolic link
        raise FileFormatError(
            f"{where}: tensor {name} points at external data {show(location)}, which resolves outside the "
            f"model's folder; refused"
        )
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise FileFormatError(f"{where}: tensor {name} has a malformed external-data offset or length") from None
    try:
        size = os.stat(target).st_size
        if not stat.S_ISREG(os.stat(target).st_mode):
            raise FileFormatError(f"{where}: external data {show(location)} of tensor {name} is not a regular file")
        length = size - offset if length is None else length
        if offset < 0 or length < 0 or offset + length > size:
            raise FileFormatError(
                f"{where}: tensor {name} asks for bytes [{offset}, {offset + length}) of {show(location)}, "
                f"which holds {size}"
            )
        with open(target, "rb") as fh:
            fh.seek(offset)
            raw = fh.read(length)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise FileFormatError(
            f"{where}: cannot read external data {show(location)} of tensor {name}: {reason}"
        ) from None
    tensor.raw_data = raw
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT


def to_array(tensor: onnx.TensorProto, what: str) -> np.ndarray:
    """The tensor as a NumPy array, after checking that its data holds exactly its shape."""
    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        raise FileFormatError(f"{what}: negative dimension in {dims}")
    count = math.prod(dims)
    try:
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    except (KeyError, ValueError, TypeError):
        raise FileFormatError(f"{what}: unknown data type {tensor.data_type}") from None
    if tensor.HasField("raw_data"):
        have = len(tensor.raw_data)
        want = count * np.dtype(dtype).itemsize
        if dtype.kind not in "OSU" and have != want:
            raise FileFormatError(f"{what}: {have} bytes of data for shape {dims} of {dtype} ({want} bytes)")
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise FileFormatError(f"{what}: unreadable data ({exc})") from None


def attribute_values(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as Python values (tensors stay ``TensorProto``)."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
