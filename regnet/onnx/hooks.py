"""The import side of plugins: what ``regnet.onnx.load`` asks before its own handlers, at each node.

1. **A plugin layer exported by regnet comes back as itself.** The exporter names the nodes of a
   layer ``<layer>`` (its main node, which carries the layer's config as a hint) and
   ``<layer>/...``. Where the hint names a layer type that is not built in, the importer resolves
   the type through the registry (which loads the plugin), builds the layer with the hinted config
   on the input shapes found, gives it the initializers ``<layer>/<tensor>`` as weights, lowers it
   again with its own ``to_onnx`` and compares: only when the file's nodes are exactly the rebuilt
   ones (operators, attributes, wiring and every constant) do they become that layer. Otherwise
   they are read node by node as usual: a hint never decides what a graph computes.
2. **Import handlers** registered in the entry-point group ``regnet.onnx_import``. The entry-point
   name is the operator it claims, ``Softplus`` for the default ONNX domain and
   ``com.example::RMSNorm`` for another one; the value is a function ``handler(st, node, attrs)``
   that works as regnet's own handlers (``regnet.onnx.handlers``) do. It returns ``None`` once it
   has defined the node's output, ``NOT_MINE`` to decline (before changing anything: regnet's own
   handler, if it has one, then reads the node), or the further nodes it read as well (a pattern
   that starts at the claimed node: those are then skipped).

Handlers are loaded only when a graph uses their operator, so a broken plugin never affects a
model that does not. A handler that cannot be loaded makes regnet's own handler read a standard
operator (with a warning) and is an error naming the distribution for an operator regnet cannot
read itself; a handler that raises is an error naming the node, the entry point and the
distribution. ``REGNET_DISABLE_PLUGIN_AUTOLOAD=1`` leaves every plugin out (``REGNET_PLUGINS``
lets some in), as it does for the other kinds.
"""

import warnings
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import onnx
from onnx import numpy_helper

from .. import registry
from ..errors import RegnetError
from ..registry import PluginError, autoload_hint, install_command
from ..text import escape, show
from . import exporter, reader
from .builder import GraphBuilder, LoweringContext
from .errors import OnnxImportError
from .graph import ImportState, Tensor, hint_of

#: the group plugins register import handlers in
GROUP = registry.onnx_import.group
#: the domains that are the default ONNX domain
DEFAULT_DOMAINS = ("", "ai.onnx")


class _NotMine:
    """What an import handler returns to decline a node."""

    def __repr__(self) -> str:
        return "regnet.onnx.NOT_MINE"


#: returned by an import handler that leaves the node to regnet's own handler
NOT_MINE = _NotMine()


def op_key(node: onnx.NodeProto) -> str:
    """The entry-point name that claims ``node``: ``Op`` in the default domain, else ``domain::Op``."""
    if node.domain in DEFAULT_DOMAINS:
        return node.op_type
    return f"{node.domain}::{node.op_type}"


@attrs.define(eq=False)
class _Group:
    """The nodes regnet's exporter wrote for one layer of a plugin type (or with a plugin's activation)."""

    name: str
    type: str
    hint: dict
    main: onnx.NodeProto
    nodes: list  # in graph order
    made: set  # the tensors the group's nodes make
    part: tuple  # (kind, name) of the plugin component: the layer type, or its activation


def _builtin(reg: registry.Registry, name: Any) -> bool:
    try:
        return reg.provider(reg.canonical(name)).builtin
    except RegnetError:
        return False  # not installed: a plugin's


def _plugin_part(hint: dict) -> tuple[str, str] | None:
    """``(kind, name)`` of the plugin component a hinted layer is (its type) or uses (its
    activation), else ``None``."""
    if not _builtin(registry.layers, hint["type"]):
        return "layers", hint["type"]
    act = hint.get("activation")
    name = act.get("type") if isinstance(act, dict) else act
    if isinstance(name, str) and not _builtin(registry.activations, name):
        return "activations", name
    return None


def _groups(nodes: list[onnx.NodeProto], synthetic: set[int], outputs: set[str]) -> dict[int, _Group]:
    """``id(first node) -> _Group`` for each layer whose hint names a plugin layer type."""
    by_layer: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        by_layer.setdefault(node.name.split("/", 1)[0], []).append(node)
    read_by: dict[str, set[str]] = {}  # tensor -> the layers (name prefixes) whose nodes read it
    for node in nodes:
        for i in node.input:
            read_by.setdefault(i, set()).add(node.name.split("/", 1)[0])
    found = {}
    for node in nodes:
        hint = hint_of(node) if node.name else None
        if hint is None or hint.get("name") != node.name:
            continue
        part = _plugin_part(hint)
        if part is None:
            continue
        members = by_layer.get(node.name, [])
        made = {o for n in members for o in n.output if o}
        if node.name not in made or any(id(n) in synthetic for n in members):
            continue
        # every tensor made inside but the layer's output is read only inside
        if any(t in outputs or read_by.get(t, set()) - {node.name} for t in made - {node.name}):
            continue
        found[id(members[0])] = _Group(node.name, hint["type"], hint, node, members, made, part)
    return found


def _attributes(node: onnx.NodeProto) -> list:
    return sorted((a.name, a.SerializeToString()) for a in node.attribute)


class Dispatcher:
    """Asked at each node before regnet's own handlers: ``True`` when a plugin read the node.

    ``builtin(node)`` says whether regnet can read the node itself; ``synthetic`` holds the ids of
    the nodes regnet's own pattern rewrites made (never offered to plugins)."""

    def __init__(
        self,
        nodes: list[onnx.NodeProto],
        const: Callable[[str], "np.ndarray | None"],
        synthetic: set[int],
        outputs: set[str],
        builtin: Callable[[onnx.NodeProto], bool],
    ) -> None:
        self.const = const
        self.synthetic = synthetic
        self.builtin = builtin
        self.ids = {id(n) for n in nodes}
        self.done: set[int] = set()
        self.groups = _groups(nodes, synthetic, outputs)
        self.warned: set[str] = set()

    def __call__(self, st: ImportState, node: onnx.NodeProto) -> bool:
        if id(node) in self.done:
            return True
        if id(node) in self.synthetic:
            return False
        group = self.groups.get(id(node))
        if group is not None and self._rebuild(st, group):
            return True
        return self._handler(st, node)

    # -- plugin layers written by regnet's exporter ---------------------------------------------
    def _rebuild(self, st: ImportState, g: _Group) -> bool:
        try:
            registry.REGISTRIES[g.part[0]].get(g.part[1])
        except RegnetError as exc:
            self._missing(st, g, exc)
            return False
        inputs: list[str] = []
        for n in g.nodes:
            for name in n.input:
                if not name or name in g.made or name in inputs:
                    continue
                if name not in st.values:
                    return False
                value = st.values[name]
                if isinstance(value, Tensor):
                    inputs.append(name)
                elif not isinstance(value, np.ndarray):
                    return False
        shapes = [st.values[i].shape for i in inputs]
        if not inputs or any(None in s for s in shapes):
            return False
        config = {k: v for k, v in g.hint.items() if k not in ("type", "name", "inputs") and not k.startswith("_")}
        try:
            layer = registry.layers.create({"type": g.type, **config})
            out_shape = layer.setup(shapes[0] if len(shapes) == 1 else shapes, np.random.default_rng(0))
            for key, value in layer.weights.items():
                found = self.const(f"{g.name}/{key}")
                if found is None or found.size != value.size or found.dtype != np.float32:
                    return False
                value[...] = found.reshape(value.shape)
            graph = GraphBuilder(st.opset)
            for name in (*inputs, g.name):
                graph.claim(name)
            ctx = LoweringContext(graph, g.name, layer)
            pre = exporter._lower("layers", ctx, layer, list(inputs))
            out = pre if layer.activation_fn is None else exporter._lower("activations", ctx, layer.activation_fn, pre)
            exporter._finish_layer(graph, 0, pre, out, g.name, {})
        except Exception:  # the hint does not build here, or the plugin's lowering fails: read node by node
            return False
        if not self._same(st, g, graph, set(inputs)):
            return False
        entry = st.add(g.main, g.type, config, [st.values[i] for i in inputs], out_shape, layer.weights)
        st.values[g.name] = Tensor(entry, entry.shape)
        self.done.update(id(n) for n in g.nodes)
        return True

    def _same(self, st: ImportState, g: _Group, graph: GraphBuilder, inputs: set[str]) -> bool:
        """Whether the file's nodes of ``g`` are the rebuilt ones, constants included."""
        if len(graph.nodes) != len(g.nodes):
            return False
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializers}
        ours: dict[str, str] = {}  # the file's tensor -> the rebuilt one
        for theirs, mine in zip(g.nodes, graph.nodes):
            if (theirs.op_type, theirs.domain or "", len(theirs.input), len(theirs.output)) != (
                mine.op_type,
                mine.domain or "",
                len(mine.input),
                len(mine.output),
            ):
                return False
            if _attributes(theirs) != _attributes(mine):
                return False
            for a, b in zip(theirs.input, mine.input):
                if not a or not b:  # an omitted optional input
                    if a or b:
                        return False
                    continue
                if b not in consts:  # a tensor made inside (mapped), or an input of the layer (same name)
                    if (ours[a] if a in ours else a if a in inputs else None) != b:
                        return False
                    continue
                value = st.values.get(a)
                if not isinstance(value, np.ndarray) or value.dtype != consts[b].dtype:
                    return False
                if value.shape != consts[b].shape or not np.array_equal(value, consts[b]):
                    return False
            for a, b in zip(theirs.output, mine.output):
                ours[a] = b
        return ours.get(g.name) == g.name

    def _missing(self, st: ImportState, g: _Group, exc: RegnetError) -> None:
        """Raise, naming the layer and what to install, when the plugin of ``g`` is not usable
        here and regnet cannot read some of its nodes itself (else they are read node by node)."""
        unread = [n for n in g.nodes if not self.builtin(n)]
        if not unread:
            return
        kind, name = g.part
        what = f"layer {show(g.name)} of type {show(g.type)}"
        what += f" with the activation {show(name)}" if kind == "activations" else ""
        withheld = registry.REGISTRIES[kind].withheld(name)
        if withheld is not None:
            reason = f"its distribution {escape(withheld.distribution, 100)} is installed but {autoload_hint(withheld)}"
        elif isinstance(exc, PluginError):
            reason = str(exc)
        else:
            reason = f"no installed plugin provides the {registry.REGISTRIES[kind].noun} {show(name)}"
            prov = g.hint.get(exporter.PROVIDER_KEY)
            if isinstance(prov, dict) and isinstance(prov.get("distribution"), str):
                dist, version = prov["distribution"], prov.get("version")
                pin = f" {escape(version, 40)}" if isinstance(version, str) else ""
                command = install_command(dist, version)
                reason += f"; the file was written with the plugin {escape(dist, 100)}{pin}"
                reason += f" ({command})" if command else ""
        raise st.fail(
            unread[0],
            f"this node belongs to the {what}, which regnet imports only through its plugin: {reason}",
        )

    # -- import handlers (group regnet.onnx_import) ---------------------------------------------
    def _handler(self, st: ImportState, node: onnx.NodeProto) -> bool:
        key = op_key(node)
        reg = registry.onnx_import
        if not reg.claims(key):
            return False
        builtin = self.builtin(node)
        try:
            handler = reg.get(key)
            if not callable(handler):
                raise PluginError(f"{GROUP} entry point '{key}' is {type(handler).__name__}, not a function")
        except RegnetError as exc:
            withheld = reg.withheld(key)
            if builtin:  # regnet reads the standard operator itself
                if withheld is None and key not in self.warned:
                    self.warned.add(key)
                    warnings.warn(f"regnet reads {key} itself: {exc}", RuntimeWarning, stacklevel=4)
                return False
            if withheld is not None:
                reason = (
                    f"the handler of {escape(withheld.distribution, 100)} is installed but {autoload_hint(withheld)}"
                )
                raise st.fail(node, f"regnet imports {escape(key, 100)} only through a plugin: {reason}") from None
            raise st.fail(
                node, f"regnet imports {escape(key, 100)} only through a plugin, whose handler is unusable: {exc}"
            ) from None
        for name in node.input:
            if name and name not in st.values:
                raise st.fail(node, f"input {show(name)} is not defined before it")
        prov = reg.provider(key)
        dist = escape(f"{prov.distribution} {prov.version or ''}".strip(), 200)
        who = f"the import handler '{escape(key, 100)} = {escape(prov.entry_point or '?', 100)}' of {dist}"
        try:
            result = handler(st, node, reader.attribute_values(node))
        except OnnxImportError as exc:
            raise OnnxImportError(f"{exc.message} (raised by {who})", node=exc.node, op=exc.op) from exc
        except RegnetError as exc:
            raise st.fail(node, f"{who} refused it: {exc}") from exc
        except Exception as exc:  # a plugin may fail in any way: say whose it is
            raise st.fail(
                node,
                f"{who} failed: {type(exc).__name__}: {exc} (REGNET_DISABLE_PLUGIN_AUTOLOAD=1 imports without plugins)",
            ) from exc
        if result is NOT_MINE:
            if builtin:
                return False
            raise st.fail(node, f"{who} declined it, and regnet has no import of its own for {escape(key, 100)}")
        taken = [node]
        if result is not None:
            try:
                taken += list(result)
            except TypeError:
                raise st.fail(
                    node, f"{who} returned {show(result)}: expected None, NOT_MINE or the nodes it read"
                ) from None
            if not all(isinstance(n, onnx.NodeProto) and id(n) in self.ids for n in taken):
                raise st.fail(node, f"{who} returned something that is not a node of this graph")
        self.done.update(id(n) for n in taken)
        for n in taken:  # what is read elsewhere is defined
            for out in n.output:
                outside = any(id(r) not in self.done for r in st.readers.get(out, ()))
                if out and (outside or out in st.outputs) and out not in st.values:
                    raise st.fail(node, f"{who} left {show(out)}, which other nodes read, undefined")
        return True
