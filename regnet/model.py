"""Model: a spec built into a graph of layers, with forward/backward over whole batches.

A model's state is ``state_dict()`` (every weight and buffer by ``"layer/tensor"``), the
optimizer's own ``state_dict()``, the generator ``rng``, ``epoch`` and ``history``; files are
``regnet.checkpoint``'s business and training is ``regnet.training``'s.
"""

import difflib
import json

import numpy as np

from . import activations, checkpoint, functional, losses, optimizers, spec, training
from . import metrics as _metrics
from .errors import ConfigError, RegnetError, WeightsMismatchError
from .history import History
from .layers.symbolic import SymbolicTensor, is_symbolic
from .registry import registered_name, to_plain
from .text import shape as shape_text
from .text import show

_checked_inputs = training.validation.inputs


class Model:
    """A directed acyclic graph of layers with one or more named inputs and one output (the last
    layer). ``inputs`` lists the model inputs (``spec.InputSpec``: name, shape with ``None`` for
    an axis of any length, dtype ``float32`` or ``int64``); a model with several takes a dict
    ``{name: array}`` or a list of arrays (declaration order) wherever it takes ``x``.

    Three ways to build one, all giving the same model, JSON and saved file:

    * ``Model.from_spec(path_or_dict)``: a JSON spec;
    * ``Model(layers, input_shape)``: a list of ``Layer`` instances and/or spec entries (dicts
      with ``type``, and optionally ``name`` and ``inputs``); ``input_shape`` is a shape (one
      float32 input ``input``) or a list of input declarations (``{"name", "shape", "dtype"}``
      dicts or ``spec.InputSpec``s); ``Sequential(layers, input_shape)`` is the same for a chain;
    * ``Model(inputs, outputs)``: the functional API, ``inputs = regnet.Input(shape)`` (or a list
      of ``regnet.Input(shape, name=..., dtype=...)``) and ``outputs`` what the layers called on
      them return (see ``regnet.functional``).

    ``seed`` fixes weight initialisation, dropout and shuffling: the same seed gives the same
    weights, bit for bit.
    """

    def __init__(self, layers, input_shape=None, *, seed=None, name=None):
        if is_symbolic(layers):  # Model(inputs, outputs)
            input_shape, layers = functional.entries(layers, input_shape)
        elif input_shape is None:
            raise ConfigError("Model(layers, input_shape): give the input shape (without the batch axis)")
        #: the model inputs (``spec.InputSpec``: name, shape with ``None`` for any length, dtype)
        self.inputs = _input_specs(input_shape)
        self.name = name
        self.nodes = spec.build_nodes(list(layers), tuple(i.name for i in self.inputs))
        self.output_node = max(self.nodes, key=lambda n: n.index)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.epoch = 0  # epochs trained so far (continues across fit calls and save/load)
        self.history = History()  # one record of logs per trained epoch (across fit calls and files)
        self.training_callbacks = []  # the callbacks of the latest fit (their state is saved with the model)
        self.weights_report = None  # what from_spec(weights_from=...) took from the file
        self.initial_weights = True  # the weights are still those the initializers drew
        self.loss = self.optimizer = None
        self.metrics = []
        self.stop_training = False
        #: the loss fused with the output activation (softmax + cross-entropy), set by ``compile``
        self.fused_loss = None
        #: a warning the first prediction gives once (a file saved before any training), or None
        self.untrained_warning = None
        #: True when the latest forward skipped the output activation (``logits=True``)
        self.output_logits = False
        self._build()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, src, *, seed=None, weights_from=None, skip_mismatch=False):
        """A model built from a spec (a path, JSON text or a dict). ``seed`` fixes its initial
        weights. ``weights_from`` (a model or weights file, or ``"zoo:NAME"``) then gives every
        layer the trained weights of the layer of the same name there (see
        ``checkpoint.transfer``): to fine-tune, keep the trained layers' names, name new layers
        anew, and freeze what should not change (``"trainable": false`` or ``freeze``).
        ``skip_mismatch`` keeps the new weights of a same-named layer whose shapes differ."""
        input_shape, entries = spec.normalise(spec.load(src))
        name = src.get("name") if isinstance(src, dict) else None
        model = cls(entries, input_shape, seed=seed, name=name)
        if weights_from is not None:
            model.weights_report = checkpoint.transfer(model, weights_from, skip_mismatch=skip_mismatch)
        return model

    @classmethod
    def load(cls, path, compile=True, *, allow_non_finite=False):
        """The model saved at ``path`` by ``save`` (see ``regnet.checkpoint.load``)."""
        return checkpoint.load(cls, path, compile=compile, allow_non_finite=allow_non_finite)

    @property
    def input_names(self):
        """The names of the model inputs, in declaration order."""
        return [i.name for i in self.inputs]

    @property
    def input_shape(self):
        """A sample's shape (no batch axis; ``None`` for an axis of any length); a list of them,
        one per input, for a model with several inputs."""
        shapes = [i.shape for i in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def _build(self):
        shapes = {i.name: i.shape for i in self.inputs}
        # which variable-length model inputs each tensor's shape depends on
        variable = {i.name: [i.name] if i.variable else [] for i in self.inputs}
        integer = {i.name for i in self.inputs if i.dtype == "int64"}
        for node in self.nodes:
            ids = [s for s in node.inputs if s in integer]
            if ids and not node.layer.integer_inputs:
                raise ConfigError(
                    f"{type(node.layer).__name__} reads the int64 model input '{ids[0]}': only layers that take "
                    f"token ids (Embedding) read int64 inputs; declare the input float32 to use its values as numbers",
                    layer=f"#{node.index} '{node.name}'",
                    field="inputs",
                )
            in_shapes = [shapes[s] for s in node.inputs]
            arg = in_shapes if node.layer.n_inputs is None else in_shapes[0]
            upstream = sorted({v for s in node.inputs for v in variable[s]})
            try:
                shapes[node.name] = node.layer.setup(arg, self.rng)
            except (RegnetError, ValueError, TypeError, MemoryError) as exc:
                if upstream and any(None in s for s in in_shapes):
                    raise spec.variable_length_error(exc, node, in_shapes, upstream) from exc
                raise spec.with_layer_context(exc, node) from exc
            variable[node.name] = upstream if None in shapes[node.name] else []
            node.layer.name = node.name
        self.output_shape = shapes[self.output_node.name]
        last_use = {}
        for i, node in enumerate(self.nodes):
            for s in node.inputs:
                last_use[s] = i
        #: per node, the values no later node reads (forward drops them once the node has run)
        self._done_after = [sorted({s for s in node.inputs if last_use[s] == i}) for i, node in enumerate(self.nodes)]

    def to_spec(self):
        layers = []
        ordered = sorted(self.nodes, key=lambda n: n.index)
        for node in ordered:
            cfg = node.layer.get_config()
            cfg["name"] = node.name
            default = [self.inputs[0].name] if node.index == 0 else [ordered[node.index - 1].name]
            if node.inputs != default:
                cfg["inputs"] = list(node.inputs)
            layers.append(cfg)
        out = {"format": spec.FORMAT, "version": spec.VERSION}
        if self.inputs == [spec.InputSpec(spec.INPUT, self.inputs[0].shape, "float32")] and not self.inputs[0].variable:
            out["input_shape"] = list(self.inputs[0].shape)  # the one float input, written as ever
        else:
            out["inputs"] = [i.to_json() for i in self.inputs]
        out["layers"] = layers
        if self.name:
            out["name"] = self.name
        return out

    def to_json(self, path=None, indent=2):
        text = json.dumps(self.to_spec(), indent=indent)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        return text

    # -- access ---------------------------------------------------------------------------------
    @property
    def layers(self):
        return [n.layer for n in sorted(self.nodes, key=lambda n: n.index)]

    def get_layer(self, name):
        """The layer called ``name`` (``ConfigError``, with close names, if there is none)."""
        for node in self.nodes:
            if node.name == name:
                return node.layer
        names = [n.name for n in sorted(self.nodes, key=lambda n: n.index)]
        close = (
            difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            if isinstance(name, str) and len(name) <= 100
            else []
        )
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"no layer named {show(name)}{hint} (the layers are {', '.join(names)})")

    def freeze(self, *names):
        """Make the named layers (all layers when none is named) non-trainable: their parameters
        get no updates and no optimizer state. Every name is checked before any layer changes."""
        for layer in [self.get_layer(n) for n in names] if names else self.layers:
            layer.trainable = False
        return self

    def unfreeze(self, *names):
        """Make the named layers (all layers when none is named) trainable again."""
        for layer in [self.get_layer(n) for n in names] if names else self.layers:
            layer.trainable = True
        return self

    @property
    def params(self):
        """Every parameter (trainable layers' and frozen layers'), ``{"layer/tensor": array}``."""
        return {f"{n.name}/{k}": v for n in self.nodes for k, v in n.layer.params.items()}

    @property
    def grads(self):
        return {f"{n.name}/{k}": v for n in self.nodes for k, v in n.layer.grads.items()}

    @property
    def trainable_params(self):
        """The parameters the optimizer updates: those of layers whose ``trainable`` is True."""
        return {f"{n.name}/{k}": v for n in self.nodes if n.layer.trainable for k, v in n.layer.params.items()}

    @property
    def trainable_grads(self):
        return {f"{n.name}/{k}": v for n in self.nodes if n.layer.trainable for k, v in n.layer.grads.items()}

    def state_dict(self):
        """Every stored tensor (parameters and buffers) as ``{"layer/tensor": array}``.

        The arrays are the model's own (no copy): copy them to keep a snapshot."""
        return {f"{n.name}/{k}": v for n in self.nodes for k, v in n.layer.weights.items()}

    def get_weights(self):
        """Every weight as a list of arrays (copies), in layer order and, within a layer, in the
        order the layer created them: Keras's ``get_weights``. ``state_dict()`` gives them by name."""
        return [v.copy() for v in self.state_dict().values()]

    def set_weights(self, weights):
        """Set every weight from a list in ``get_weights()`` order (Keras's ``set_weights``); the
        count, each shape and dtype are checked before anything changes."""
        own = self.state_dict()
        weights = list(weights)
        if len(weights) != len(own):
            raise WeightsMismatchError(f"set_weights got {len(weights)} arrays; the model has {len(own)} weights")
        return checkpoint.load_state(self, dict(zip(own, weights)), strict=True)

    def load_state_dict(self, state, strict=True):
        """Copy tensors from ``{"layer/tensor": array}`` into the model's weights, by name.

        Every name, shape and dtype (a real floating-point type) is checked before anything is
        assigned. ``strict`` raises ``WeightsMismatchError`` listing every missing, unexpected
        and mismatched tensor; otherwise the matching ones are copied and the returned
        ``WeightsReport`` lists the rest (``regnet.checkpoint.load_state``)."""
        return checkpoint.load_state(self, state, strict=strict)

    def count_params(self):
        return sum(int(v.size) for v in self.state_dict().values())

    # -- passes ---------------------------------------------------------------------------------
    def forward(self, x, training=False, logits=False, release=False):
        """Output for a batch ``x``; with ``logits`` the output layer's activation is skipped.
        With ``release`` (inference loops that call no ``backward``) each layer drops what it
        kept for ``backward`` as soon as it has run, so that every intermediate array is freed
        once its last reader has run (peak memory: a few activations, not all of them)."""
        values = self.input_values(x)
        for node, done in zip(self.nodes, self._done_after):
            xs = [values[s] for s in node.inputs]
            arg = xs if node.layer.n_inputs is None else xs[0]
            if logits and node is self.output_node:
                values[node.name] = node.layer.forward(arg, training)
            else:
                values[node.name] = node.layer(arg, training)
            if release:
                node.layer.release()
            for s in done:
                del values[s]
        self.output_logits = logits
        return values[self.output_node.name]

    def input_values(self, x):
        """``{input name: batch}`` of checked inputs: an array for a one-input model, a
        ``training.validation.Inputs``, a list (declaration order) or a dict for several."""
        if type(x) is np.ndarray and len(self.inputs) == 1:  # the hot path: one input, one array
            return {self.inputs[0].name: x}
        names = self.input_names
        if isinstance(x, training.validation.Inputs):
            return dict(zip(names, x.arrays))
        if isinstance(x, dict):
            return {n: x[n] for n in names}
        if len(names) > 1:
            return dict(zip(names, x))
        return {names[0]: x}

    def backward(self, grad, input_grad=True):
        """Backpropagate ``dL/doutput`` through the graph; returns ``dL/dinput`` (a list, one
        gradient per input, for a model with several inputs; ``None`` for an integer input).

        With ``input_grad=False`` (training) returns ``None``, and a layer whose inputs lead back
        to no parameter (only to the model input) is called with ``need_input_grad=False``: it
        may skip computing that gradient (the first Dense or Conv2D does).
        """
        # does anything upstream of this tensor need a gradient? (never an integer input)
        wanted = {i.name: input_grad and i.dtype == "float32" for i in self.inputs}
        for node in self.nodes:
            learns = node.layer.trainable and bool(node.layer.params)
            wanted[node.name] = learns or any(wanted[s] for s in node.inputs)
        grads = {self.output_node.name: grad}
        for node in reversed(self.nodes):
            g = grads.pop(node.name, None)
            if g is None or not wanted[node.name]:
                continue
            need = any(wanted[s] for s in node.inputs)
            if self.output_logits and node is self.output_node:  # the loss took the activation's place
                gin = node.layer.backward_only(g, need_input_grad=need)
            else:
                gin = node.layer.call_backward(g, need_input_grad=need)
            if gin is None:  # need_input_grad was False: nothing flows further back
                continue
            gin = gin if node.layer.n_inputs is None else [gin]
            for s, gi in zip(node.inputs, gin):
                if not wanted[s]:
                    continue
                grads[s] = grads[s] + gi if s in grads else gi
        if not input_grad:
            return None
        out = [grads.get(i.name) for i in self.inputs]
        return out[0] if len(out) == 1 else out

    def release(self):
        """Drop what layers keep from the last forward pass for ``backward`` (each layer's
        ``release``). Inference loops call this after each batch so that a batch's intermediate
        arrays are freed before the next batch is computed."""
        for node in self.nodes:
            node.layer.release()

    # -- training setup -------------------------------------------------------------------------
    def compile(self, loss="categorical_crossentropy", optimizer="adam", metrics=("accuracy",)):
        """Choose the loss, optimizer and metrics (names, ``{"type": ...}`` dicts or instances)."""
        if isinstance(optimizer, dict) and "lr" in optimizer:
            optimizer = {**optimizer, "learning_rate": optimizer["lr"]}
            del optimizer["lr"]
        if isinstance(metrics, str):
            metrics = [metrics]
        if not isinstance(metrics, (list, tuple, type(None))):
            raise ConfigError(f"expected a list of metrics, got {type(metrics).__name__}", field="metrics")
        # everything is checked before anything changes: a failed compile leaves the model as it was
        loss, optimizer = losses.get(loss), optimizers.get(optimizer)
        metrics = [_metrics.get(m) for m in (metrics or ())]
        names = set()
        for m in metrics:
            m.check(self.output_shape)
            if m.name in names:
                raise ConfigError(f"two metrics are named '{m.name}'; give one another 'name'", field="metrics")
            names.add(m.name)
        self.loss, self.optimizer, self.metrics = loss, optimizer, metrics
        act = self.output_activation
        self.fused_loss = self.loss.fused_with(act)
        return self

    @property
    def output_activation(self):
        """Registered name of the output layer's activation (``None`` if linear)."""
        act = self.output_node.layer.activation_fn
        if act is None:
            return None
        if isinstance(act, activations.Softmax) and act.axis not in (-1, len(self.output_shape)):
            return "softmax_other_axis"
        return registered_name(act)

    @property
    def training_loss(self):
        """The loss as applied in training: fused with the output activation when possible."""
        return self.fused_loss or self.loss

    # -- training (regnet.training: one signature and docstring, bound here) --------------------
    fit = training.method(training.fit)
    evaluate = training.method(training.evaluate)
    predict = training.method(training.predict)
    train_on_batch = training.method(training.train_on_batch)
    test_on_batch = training.method(training.test_on_batch)
    predict_on_batch = training.method(training.predict_on_batch)
    loss_and_grad = training.method(training.loss_and_grad)

    def summary(self, print_fn=print):
        """Print a table of layers, output shapes and parameter counts (Keras's ``summary``);
        ``print_fn`` receives the table as one string instead (``lines.append`` keeps it)."""
        rows = [("Layer (type)", "Output shape", "Params", "Inputs")]
        for node in sorted(self.nodes, key=lambda n: n.index):
            frozen = " frozen" if not node.layer.trainable and node.layer.params else ""
            rows.append(
                (
                    f"{node.name} ({registered_name(node.layer)}{frozen})",
                    shape_text(node.layer.output_shape),
                    f"{node.layer.count_params():,}",
                    ", ".join(node.inputs),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "  ".join("-" * w for w in widths)
        fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        trainable = sum(int(v.size) for v in self.trainable_params.values())
        total = self.count_params()
        out = [
            fmt(rows[0]),
            line,
            *map(fmt, rows[1:]),
            line,
            *self._input_lines(),
            f"Total params: {total:,} (trainable {trainable:,}, non-trainable {total - trainable:,})",
        ]
        print_fn("\n".join(out))

    def _input_lines(self):
        plain = len(self.inputs) == 1 and self.inputs[0].dtype == "float32"
        if plain:
            return [f"Input shape: {shape_text(self.inputs[0].shape)}"]
        return [f"Input {i.name}: {shape_text(i.shape)} {i.dtype}" for i in self.inputs]

    def __call__(self, x, training=False):
        """The outputs for a batch ``x`` (``forward`` with the inputs checked as ``predict``
        checks them): ``model(x)`` as in Keras and PyTorch."""
        if is_symbolic(x):
            raise ConfigError(
                "a Model is not called on symbolic tensors: build one graph from the layers, or wrap "
                "the layers in a registered block (see docs/plugins.md)"
            )
        return self.forward(_checked_inputs(self, x), training=training)

    def __repr__(self):
        return f"<regnet.Model {len(self.nodes)} layers, {self.count_params():,} params>"

    # -- persistence (see checkpoint.py) --------------------------------------------------------
    def save(self, path, *, metadata=None):
        """Save to one HDF5 file, atomically (``regnet.save``)."""
        return checkpoint.save(self, path, metadata=metadata)

    def save_weights(self, path):
        """Save the weights only (matched by name when loaded)."""
        return checkpoint.save_weights(self, path)

    def load_weights(self, path, strict=True, *, allow_non_finite=False):
        """Load weights by name from a weights or model file (see ``checkpoint.load_weights``)."""
        return checkpoint.load_weights(self, path, strict=strict, allow_non_finite=allow_non_finite)

    def training_config(self):
        """Loss, optimizer and metrics as plain JSON data (``None`` if not compiled)."""
        if self.loss is None:
            return None
        return {
            "loss": to_plain(self.loss),
            "optimizer": to_plain(self.optimizer),
            "metrics": [_metrics.to_plain(m) for m in self.metrics],
        }


def _input_specs(value):
    """The model inputs from ``input_shape``: a shape (one float32 input ``input``), or a list of
    ``spec.InputSpec``s / ``{"name", "shape", "dtype"}`` dicts."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (dict, spec.InputSpec)) for v in value):
        return spec.parse_inputs(list(value))
    shape = list(value) if isinstance(value, tuple) else value
    return [spec.InputSpec(spec.INPUT, spec.parse_input_shape(shape, variable=True), "float32")]


class Sequential(Model):
    """A chain of layers, each reading the one before: ``Sequential([Conv2D(8, 3), Flatten(),
    Dense(10)], input_shape=(1, 28, 28))``, or with ``regnet.Input(shape)`` as the first element.
    ``add(layer)`` appends a layer (its weights drawn from the model's generator); the model is a
    ``Model`` in every other way, and saves and loads as one."""

    def __init__(self, layers=(), input_shape=None, *, seed=None, name=None):
        layers = list(layers)
        if layers and isinstance(layers[0], SymbolicTensor):
            if layers[0].layer is not None:
                raise ConfigError("Sequential takes regnet.Input(shape) first, not another layer's output")
            if input_shape is not None:
                raise ConfigError("give the input shape once: regnet.Input(shape) or input_shape")
            first = layers.pop(0)
            plain = first.input is None and first.dtype == "float32"
            input_shape = first.shape if plain else functional.entries_inputs(first)
        for i, entry in enumerate(layers):
            if isinstance(entry, dict) and "inputs" in entry:
                raise ConfigError(
                    "a Sequential layer reads the layer before: no 'inputs'", layer=f"#{i}", field="inputs"
                )
        self._pending = layers
        self._seed, self._name = seed, name
        if input_shape is not None:
            self.build(input_shape)

    @property
    def built(self):
        return "nodes" in self.__dict__

    def build(self, input_shape):
        """Build for samples of ``input_shape`` (the constructor does it when it knows the shape)."""
        if not self._pending:
            raise ConfigError("a Sequential model needs at least one layer before it is built")
        Model.__init__(self, self._pending, input_shape, seed=self._seed, name=self._name)

    def add(self, layer):
        """Append ``layer`` (an instance or a spec entry) after the current output."""
        if not self.built:
            self._pending.append(layer)
            return self
        entry = spec.build_nodes([layer])[0].layer if isinstance(layer, dict) else layer
        shape = self.output_shape
        name = entry.name or spec.fresh_name(entry, spec.Names() | {n.name for n in self.nodes})
        if name in {n.name for n in self.nodes}:
            raise ConfigError(f"duplicate layer name '{name}'", layer=name, field="name")
        try:
            out = entry.setup(shape, self.rng)
        except (RegnetError, ValueError, TypeError, MemoryError) as exc:
            raise ConfigError(str(exc), layer=f"#{len(self.nodes)} '{name}'") from exc
        entry.name = name
        node = spec.Node(name, entry, [self.output_node.name], len(self.nodes))
        self._pending.append(entry)
        self.nodes.append(node)
        self.output_node = node
        self.output_shape = out
        self._done_after.append([node.inputs[0]])
        if self.loss is not None:  # the output activation may have changed the fused loss
            self.fused_loss = self.loss.fused_with(self.output_activation)
        return self

    def __getattr__(self, name):
        # only attributes a build sets reach here (and unknown ones)
        if name.startswith("__") or "nodes" in self.__dict__:
            raise AttributeError(name)
        raise ConfigError(
            "this Sequential model is not built yet: give input_shape, start the layer list with "
            "regnet.Input(shape), or call build(input_shape)"
        )
