"""ONNX interop: ``export(model, path, opset=...)`` writes a regnet model as ONNX and
``load(path)`` reads an ONNX model (from regnet, PyTorch, ...) as a regnet ``Model``.

Needs the optional extra: ``pip install 'regnet[onnx]'`` (the ``onnx`` package; ``onnxruntime``
is only needed to run the exported files). See ``docs/onnx.md``.
"""

from ..errors import MissingDependencyError

try:
    import onnx as _onnx  # noqa: F401  (checked here so that every submodule may import it)
except ImportError as _exc:
    raise MissingDependencyError(
        f"regnet.onnx needs the onnx package, which cannot be imported ({_exc}): pip install 'regnet[onnx]'"
    ) from _exc

from .builder import LoweringContext
from .errors import OnnxExportError, OnnxImportError
from .exporter import DEFAULT_OPSET, MIN_OPSET, export, to_proto
from .hooks import NOT_MINE
from .importer import convert, from_proto, load

__all__ = [
    "export",
    "to_proto",
    "load",
    "from_proto",
    "convert",
    "LoweringContext",
    "NOT_MINE",
    "OnnxExportError",
    "OnnxImportError",
    "DEFAULT_OPSET",
    "MIN_OPSET",
]
