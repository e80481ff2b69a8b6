"""Model specs: JSON text ⇄ validated layer configs wired into a graph.

A spec is ``{"format": "regnet.model", "version": 3, "input_shape": [...], "layers": [...]}``
(one float32 input called ``input``) or, for several inputs or other dtypes,
``{..., "inputs": [{"name": "ids", "shape": [null], "dtype": "int64"}, ...], "layers": [...]}``;
a bare list of layers starting with ``{"type": "Input", "shape": [...]}`` entries (``name`` and
``dtype`` optional) is accepted too. Each layer entry may give a ``name`` (unique; generated when
absent) and ``inputs`` (names of layers or model inputs; default: the previous entry, or the
first model input for the first entry). The output is the last entry.

A ``null`` in an input's shape is an axis of any length (e.g. a sequence length); layers are
built with ``None`` there, so a layer whose weights or output depend on that length refuses it
at build time (``ConfigError`` naming the layer and the input).

Versions: 2 since the ``gelu`` activation has an ``approximate`` field and means the exact (erf)
form by default; in a version-1 spec ``gelu`` meant the tanh form, so ``normalise`` reads every
``gelu`` there without ``approximate`` as ``{"type": "gelu", "approximate": true}``. 3 since a
spec may declare named ``inputs`` (dtypes, variable-length axes); a version-1 or 2 spec's
``input_shape`` is read as the one float32 input ``input`` (as it is in version 3).
"""

import json
import math
import os
import re
import stat

import attrs

from . import fields
from .errors import ConfigError, RegnetError
from .layers.base import MAX_SAMPLE_ELEMENTS, Layer, create
from .names import check as check_name
from .registry import activations as activation_registry
from .registry import layers

FORMAT = "regnet.model"
VERSION = 3
#: the spec version whose ``gelu`` was the tanh approximation
TANH_GELU_VERSION = 1
#: the first spec version with named ``inputs``
INPUTS_VERSION = 3
#: the name of the model input of a spec with ``input_shape``
INPUT = "input"
#: the dtypes a model input may have
DTYPES = ("float32", "int64")
MAX_INPUTS = 1000
#: refuse spec documents larger than this many bytes (a model spec is a few kB)
MAX_SPEC_BYTES = 16 << 20
MAX_LAYERS = 10_000


@attrs.frozen
class InputSpec:
    """One model input: its name, a sample's shape (``None`` for an axis of any length) and dtype."""

    name: str = INPUT
    shape: tuple = ()
    dtype: str = "float32"

    @property
    def variable(self) -> bool:
        """True when an axis has no fixed length."""
        return any(s is None for s in self.shape)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@attrs.define(eq=False)
class Node:
    """One layer in the graph, with the names of the tensors it reads."""

    name: str
    layer: Layer
    inputs: list
    index: int  # position in the spec's layer list


def load(src):
    """A spec dict (or list) from a path, JSON text, bytes, dict or list."""
    if isinstance(src, (dict, list)):
        return src
    if isinstance(src, os.PathLike) or (isinstance(src, str) and not src.lstrip().startswith(("{", "["))):
        path = os.fspath(src)
        shown = path if isinstance(path, str) and len(path) <= 1024 and path.isprintable() else fields.show(path)
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):  # a directory, FIFO or device could block or never end
                raise ConfigError(f"spec file {shown} is not a regular file")
            if info.st_size > MAX_SPEC_BYTES:
                raise ConfigError(f"spec file {shown} is {info.st_size} bytes (limit {MAX_SPEC_BYTES})")
            with open(path, "rb") as fh:
                src = fh.read(MAX_SPEC_BYTES + 1)
        except ConfigError:
            raise
        except OSError as exc:
            raise ConfigError(f"cannot read spec file {shown}: {exc.strerror or exc}") from exc
        except ValueError as exc:  # e.g. a NUL byte in the path
            raise ConfigError(f"cannot read spec file {shown}: {exc}") from None
        where = shown
    else:
        where = "spec"
    if isinstance(src, (bytes, bytearray)):
        if len(src) > MAX_SPEC_BYTES:
            raise ConfigError(f"{where} is {len(src)} bytes (limit {MAX_SPEC_BYTES})")
        try:
            src = bytes(src).decode("utf-8-sig")  # a leading byte-order mark is allowed
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where} is not UTF-8 text: {exc}") from exc
    if not isinstance(src, str):
        raise ConfigError(f"a model spec must be a path, JSON text or a dict, got {type(src).__name__}")
    try:
        return json.loads(src, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to be a model spec") from None
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from exc


def _no_duplicate_keys(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ConfigError(f"key {fields.show(dup)} appears twice in one JSON object", field=dup)
    return out


def _snake(name):
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


def _bare_list(spec):
    """A bare layer list (leading ``Input`` entries) as a spec dict."""
    if not spec or not isinstance(spec[0], dict) or spec[0].get("type") != "Input":
        raise ConfigError('a bare layer list must start with {"type": "Input", "shape": [...]}')
    heads = []
    while len(heads) < len(spec) and isinstance(spec[len(heads)], dict) and spec[len(heads)].get("type") == "Input":
        heads.append(spec[len(heads)])
    for i, head in enumerate(heads):
        extra = set(head) - {"type", "shape", "name", "dtype"}
        if extra:
            raise ConfigError(f"Input entry has unknown field(s) {sorted(extra)}", layer=f"#{i} 'input'")
    if len(heads) == 1 and set(heads[0]) <= {"type", "shape", "name"}:
        # one float input: the name is not used (layers read it as "input"), as before
        return {"format": FORMAT, "version": VERSION, "input_shape": heads[0].get("shape"), "layers": spec[1:]}
    inputs = [{k: v for k, v in head.items() if k != "type"} for head in heads]
    return {"format": FORMAT, "version": VERSION, "inputs": inputs, "layers": spec[len(heads) :]}


def normalise(spec):
    """Check the top level; return ``([InputSpec], [layer entry dicts])``. Older versions are
    migrated (see the module docstring)."""
    if isinstance(spec, list):
        spec = _bare_list(spec)
    if not isinstance(spec, dict):
        raise ConfigError(f"a model spec must be a JSON object, got {type(spec).__name__}")
    known = {"format", "version", "input_shape", "inputs", "layers", "name"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"unknown top-level field(s) {unknown}; expected {sorted(known)}", field=unknown[0])
    if spec.get("format", FORMAT) != FORMAT:
        raise ConfigError(f"'format' must be {FORMAT!r}, got {fields.show(spec.get('format'))}", field="format")
    version = spec.get("version", VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"'version' must be a positive integer, got {fields.show(version)}", field="version")
    if version > VERSION:
        raise ConfigError(
            f"spec version {fields.show(version)} is newer than this regnet understands ({VERSION}); upgrade regnet",
            field="version",
        )
    if not isinstance(spec.get("name", ""), str):
        raise ConfigError(f"'name' must be a string, got {fields.show(spec['name'])}", field="name")
    if "inputs" in spec:
        if "input_shape" in spec:
            raise ConfigError("give 'input_shape' (one float32 input) or 'inputs', not both", field="inputs")
        if version < INPUTS_VERSION:
            raise ConfigError(
                f"'inputs' is a spec version {INPUTS_VERSION} field; this spec says version {version}", field="version"
            )
        inputs = parse_inputs(spec["inputs"])
    else:
        inputs = [InputSpec(INPUT, parse_input_shape(spec.get("input_shape")), "float32")]
    entries = spec.get("layers")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("'layers' must be a non-empty list of layer objects", field="layers")
    if len(entries) > MAX_LAYERS:
        raise ConfigError(f"{len(entries)} layers is more than the limit of {MAX_LAYERS}", field="layers")
    if version <= TANH_GELU_VERSION:
        entries = [_tanh_gelu(entry) for entry in entries]
    return inputs, entries


_InputShape = attrs.make_class("InputShape", {"input_shape": fields.shape()})


def parse_input_shape(value, field="input_shape", variable=False):
    """A sample's shape (no batch axis) as a tuple; with ``variable`` an axis may be ``None``
    (any length)."""
    if value is None:
        raise ConfigError("the spec needs an 'input_shape' (without the batch axis)", field=field)
    try:
        if variable and isinstance(value, (list, tuple)) and any(v is None for v in value):
            fixed = [v for v in value if v is not None]
            if fixed:
                _InputShape(fixed)  # the fixed axes are checked as any shape's
            shape = tuple(value)
        else:
            shape = _InputShape(value).input_shape
    except ConfigError as exc:
        if field == "input_shape":
            raise
        raise ConfigError(getattr(exc, "message", str(exc)), field=field) from None
    size = math.prod(s for s in shape if s is not None)
    if size > MAX_SAMPLE_ELEMENTS:
        raise ConfigError(
            f"an input of shape {list(shape)} holds {size:.3g} values per sample (limit {MAX_SAMPLE_ELEMENTS:.3g})",
            field=field,
        )
    return shape


def parse_input(value, where="inputs[0]"):
    """One ``{"name", "shape", "dtype"}`` input declaration (or an ``InputSpec``) checked."""
    if isinstance(value, InputSpec):
        value = value.to_json()
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object {{name, shape, dtype}}, got {fields.show(value)}", field="inputs")
    extra = sorted(k for k in value if k not in ("name", "shape", "dtype"))
    if extra:
        raise ConfigError(f"{where} has unknown field(s) {extra}; expected name, shape, dtype", field="inputs")
    name = value.get("name", INPUT)
    if not isinstance(name, str):
        raise ConfigError(f"{where}: 'name' must be a string, got {fields.show(name)}", field="inputs")
    check_name(name, field=f"{where}.name")
    if "shape" not in value:
        raise ConfigError(
            f"{where} (input {fields.show(name)}) needs a 'shape' (without the batch axis)", field="inputs"
        )
    shape = parse_input_shape(value["shape"], field=f"{where}.shape", variable=True)
    dtype = value.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ConfigError(
            f"{where} (input {fields.show(name)}): 'dtype' must be one of {list(DTYPES)}, got {fields.show(dtype)}",
            field="inputs",
        )
    return InputSpec(name, shape, dtype)


def parse_inputs(value):
    """A list of input declarations checked: names unique."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"'inputs' must be a non-empty list of inputs, got {fields.show(value)}", field="inputs")
    if len(value) > MAX_INPUTS:
        raise ConfigError(f"{len(value)} inputs is more than the limit of {MAX_INPUTS}", field="inputs")
    out = [parse_input(v, f"inputs[{i}]") for i, v in enumerate(value)]
    seen = set()
    for inp in out:
        if inp.name in seen:
            raise ConfigError(f"two model inputs are named {fields.show(inp.name)}", field="inputs")
        seen.add(inp.name)
    return out


def build_nodes(entries, input_names=(INPUT,)):
    """Create layers from entries and wire them (``input_names``: the model inputs, which the
    first entry reads the first of by default); returns nodes in topological order."""
    nodes, names = [], Names()
    sources = set(input_names)
    prev = input_names[0]
    for i, entry in enumerate(entries):
        where = _where(i, entry, names)
        if isinstance(entry, Layer):
            layer, inputs = entry, None
        elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], Layer):
            layer, inputs = entry  # (layer, [input names]): what the functional API gives
        elif isinstance(entry, dict):
            odd = [k for k in entry if not isinstance(k, str)]
            if odd:
                raise ConfigError(f"field names must be strings, got {fields.show(odd[0])}", layer=where)
            inputs = entry.get("inputs")
            try:
                layer = create(entry)
            except ConfigError as exc:
                raise _with_layer(exc, where) from exc
        else:
            raise ConfigError(f"a layer entry must be an object, got {type(entry).__name__}", layer=f"#{i}")
        name = layer.name or check_name(fresh_name(layer, names), layer=f"#{i}")
        where = f"#{i} '{name}'"
        if name in names or name in sources:
            also = "" if name in names else " (a model input's name)"
            raise ConfigError(f"duplicate layer name '{name}'{also}", layer=where, field="name")
        names.add(name)
        inputs = _inputs(inputs, prev, layer, where)
        nodes.append(Node(name, layer, inputs, i))
        prev = name
    for node in nodes:
        for src in node.inputs:
            if src not in sources and src not in names:
                known = "any layer" if sources == {INPUT} else f"any layer or model input ({', '.join(input_names)})"
                raise ConfigError(
                    f"input {fields.show(src)} is not the name of {known}",
                    layer=f"#{node.index} '{node.name}'",
                    field="inputs",
                )
    return _toposort(nodes, sources, input_names)


def _where(i, entry, taken):
    """``#i 'name'`` for error messages, with the name the entry has or would be given."""
    if not isinstance(entry, dict):
        return f"#{i}"
    if isinstance(entry.get("name"), str):
        return f"#{i} {fields.show(entry['name'], 120)}"
    try:
        return f"#{i} '{fresh_name(layers.get(entry.get('type')), taken)}'"
    except RegnetError:  # no usable type: say what was given
        return f"#{i} (type {fields.show(entry['type'])})" if "type" in entry else f"#{i} (no type)"


class Names(set):
    """Taken layer names, with the lowest number that may still be free per base name: names are
    only ever added, so generating one stays O(1) however many layers there are."""

    def __init__(self):
        super().__init__()
        self.next = {}


def fresh_name(layer, taken):
    cls = layer if isinstance(layer, type) else type(layer)
    base = _snake(getattr(cls, "registered_name", cls.__name__))
    hints = getattr(taken, "next", {})
    k = hints.get(base, 1)
    while f"{base}_{k}" in taken:
        k += 1
    hints[base] = k
    return f"{base}_{k}"


def _inputs(value, prev, layer, where):
    if value is None:
        if layer.n_inputs is None:
            raise ConfigError(
                f"{type(layer).__name__} needs 'inputs': a list of two or more layer names", layer=where, field="inputs"
            )
        return [prev]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise ConfigError(
            f"'inputs' must be a layer name or a list of names, got {fields.show(value)}", layer=where, field="inputs"
        )
    if layer.n_inputs is None and len(value) < 2:
        raise ConfigError(f"{type(layer).__name__} needs two or more inputs, got {value}", layer=where, field="inputs")
    if layer.n_inputs is not None and len(value) != layer.n_inputs:
        raise ConfigError(
            f"{type(layer).__name__} takes {layer.n_inputs} input(s), got {value}", layer=where, field="inputs"
        )
    return list(value)


def _toposort(nodes, sources=frozenset((INPUT,)), input_names=(INPUT,)):
    by_name = {n.name: n for n in nodes}
    state, order = {}, []
    for root in nodes:  # iterative DFS: no recursion limit on deep graphs
        if root.name in state:
            continue
        stack = [(root, iter(root.inputs))]
        state[root.name] = "open"
        while stack:
            node, it = stack[-1]
            nxt = next((s for s in it if s not in sources), None)
            if nxt is None:
                stack.pop()
                state[node.name] = "done"
                order.append(node)
                continue
            if state.get(nxt) == "open":
                raise ConfigError(
                    f"the graph has a cycle through '{nxt}'", layer=f"#{node.index} '{node.name}'", field="inputs"
                )
            if nxt not in state:
                state[nxt] = "open"
                stack.append((by_name[nxt], iter(by_name[nxt].inputs)))
    output = nodes[-1].name
    used = {output}
    for node in reversed(order):
        if node.name in used:
            used.update(node.inputs)
    for node in nodes:
        if node.name not in used:
            raise ConfigError(
                "layer is not connected to the model output (the last layer)", layer=f"#{node.index} '{node.name}'"
            )
    for name in input_names:
        if name not in used:
            raise ConfigError(
                f"model input {fields.show(name)} is not connected to the model output (no layer path reads it)",
                field="inputs",
            )
    return order


def _with_layer(exc, where):
    if exc.layer is not None:
        return exc
    msg = str(exc) if exc.field is None else getattr(exc, "message", str(exc))
    return type(exc)(msg, layer=where, field=exc.field)


def with_layer_context(exc, node):
    """Re-raise a build-time error as a ``ConfigError`` naming the node."""
    where = f"#{node.index} '{node.name}'"
    if isinstance(exc, ConfigError):
        return _with_layer(exc, where)
    if isinstance(exc, RegnetError):
        return ConfigError(str(exc), layer=where, field=getattr(exc, "field", None))
    return ConfigError(f"{type(exc).__name__}: {exc}", layer=where)


def variable_length_error(exc, node, shapes, inputs):
    """The ``ConfigError`` of a layer that cannot be built on a variable-length axis."""
    shown = ", ".join("(" + ", ".join("None" if d is None else str(d) for d in s) + ")" for s in shapes)
    which = ", ".join(f"'{n}'" for n in inputs)
    detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return ConfigError(
        f"{type(node.layer).__name__} cannot take an axis of variable length (input shape {shown}, from model "
        f"input(s) {which} whose shape has null): it needs a fixed length there ({detail}); give the input a "
        f"fixed length or put a layer that removes that axis (pooling) before it",
        layer=f"#{node.index} '{node.name}'",
    )


def _is_gelu(value):
    try:
        return activation_registry.canonical(value) == "gelu"
    except RegnetError:
        return False


def _tanh_gelu(entry):
    """A version-1 layer entry with each ``gelu`` in its activation fields made the tanh form
    (``approximate: true``) that version meant; other entries are returned as they are."""
    if not isinstance(entry, dict):
        return entry
    try:
        cls = layers.get(entry.get("type"))
    except RegnetError:
        return entry  # reported when the layer is built
    if not attrs.has(cls):
        return entry
    out = entry
    for a in attrs.fields(cls):
        key = a.alias or a.name
        value = entry.get(key)
        if fields.kind_of(a) != "activations" or value is None:
            continue
        if isinstance(value, str) and _is_gelu(value):
            value = {"type": value, "approximate": True}
        elif isinstance(value, dict) and _is_gelu(value.get("type")) and "approximate" not in value:
            value = {**value, "approximate": True}
        else:
            continue
        out = {**out, key: value}
    return out
