"""Errors of the ONNX bridge, in regnet's hierarchy."""

from ..errors import ConfigError, RegnetError
from ..text import escape, show


class OnnxExportError(ConfigError):
    """A model cannot be written as ONNX: a component has no lowering, or an option is out of range.

    ``component`` (the registered name), ``kind`` and ``distribution`` say which component, when
    the error is about one; ``layer`` names the layer as in every ``ConfigError``.
    """

    def __init__(self, message, *, layer=None, field=None, component=None, kind=None, distribution=None):
        self.component = component
        self.kind = kind
        self.distribution = distribution
        super().__init__(message, layer=layer, field=field)


class OnnxImportError(RegnetError, ValueError):
    """An ONNX graph uses something regnet cannot represent. ``node`` and ``op`` say where."""

    def __init__(self, message, *, node=None, op=None):
        self.node = node
        self.op = op
        self.message = message
        where = []
        if node is not None:
            where.append(f"node {show(node)}")
        if op is not None:
            where.append(f"({escape(op, 40)})")
        super().__init__(f"{' '.join(where)}: {message}" if where else message)
