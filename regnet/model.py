"""Model: a spec built into a graph of layers, with forward/backward over whole batches.

A model's state is ``state_dict()`` (every weight and buffer by ``"layer/tensor"``), the
optimizer's own ``state_dict()``, the generator ``rng``, ``epoch`` and ``history``; files are
``regnet.checkpoint``'s business and training is ``regnet.runtime``'s.
"""

import difflib
import json

import numpy as np

from . import activations, checkpoint, losses, optimizers, runtime, spec
from . import metrics as _metrics
from .errors import ConfigError, RegnetError, WeightsMismatchError
from .history import History
from .io import Mismatch, WeightsReport
from .ops import blas, memory
from .registry import registered_name, to_plain
from .text import shape as shape_text
from .text import show


class Text(str):
    """A string that shows as itself (``summary()`` in an interactive session prints the table once)."""

    def __repr__(self) -> str:
        return str(self)


class Model:
    """A directed acyclic graph of layers with one input and one output (the last layer).

    ``layers`` is a list of ``Layer`` instances and/or spec entries (dicts with ``type``, and
    optionally ``name`` and ``inputs``). ``seed`` fixes weight initialisation, dropout and
    shuffling: the same seed gives the same weights, bit for bit.
    """

    def __init__(self, layers, input_shape, *, seed=None, name=None):
        self.input_shape = spec._input_shape(list(input_shape) if isinstance(input_shape, tuple) else input_shape)
        self.name = name
        self.nodes = spec.build_nodes(list(layers))
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
        self._fused_loss = None
        self._build()
        memory.steady_heap()  # per-step arrays reused from the heap, not faulted in afresh
        blas.short_spin()  # BLAS helper threads that sleep between products instead of spinning

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

    from_json = from_spec

    @classmethod
    def load(cls, path, compile=True, *, allow_non_finite=False):
        """The model saved at ``path`` by ``save`` (see ``regnet.checkpoint.load``)."""
        return checkpoint.load(cls, path, compile=compile, allow_non_finite=allow_non_finite)

    def _build(self):
        shapes = {spec.INPUT: self.input_shape}
        for node in self.nodes:
            in_shapes = [shapes[s] for s in node.inputs]
            arg = in_shapes if node.layer.n_inputs is None else in_shapes[0]
            try:
                shapes[node.name] = node.layer.setup(arg, self.rng)
            except (RegnetError, ValueError, TypeError, MemoryError) as exc:
                raise spec.with_layer_context(exc, node) from exc
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
            default = [spec.INPUT] if node.index == 0 else [ordered[node.index - 1].name]
            if node.inputs != default:
                cfg["inputs"] = list(node.inputs)
            layers.append(cfg)
        out = {"format": spec.FORMAT, "version": spec.VERSION, "input_shape": list(self.input_shape), "layers": layers}
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

    get_weights = state_dict  # the earlier name

    def load_state_dict(self, state, strict=True):
        """Copy tensors from ``{"layer/tensor": array}`` into the model's weights, by name.

        Every name, shape and dtype (a real floating-point type) is checked before anything is
        assigned. ``strict`` raises ``WeightsMismatchError`` listing every missing, unexpected
        and mismatched tensor; otherwise the matching ones are copied and the returned
        ``WeightsReport`` lists the rest."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        loaded, mismatched = [], []
        for key in sorted(set(own) & set(state)):
            value = np.asarray(state[key])
            if value.shape != own[key].shape or value.dtype.kind != "f":
                mismatched.append(Mismatch(key, value.shape, str(value.dtype), own[key].shape))
            else:
                loaded.append(key)
        report = WeightsReport(loaded, missing, unexpected, mismatched)
        if strict and not report.ok:
            raise WeightsMismatchError(
                f"the state does not fit the model ({len(report.problems())} problem(s)): "
                + "; ".join(report.problems())
            )
        for key in loaded:
            np.copyto(own[key], state[key], casting="same_kind")
        if loaded:
            self.initial_weights = False
        return report

    def count_params(self):
        return sum(int(v.size) for v in self.state_dict().values())

    # -- passes ---------------------------------------------------------------------------------
    def forward(self, x, training=False, logits=False, release=False):
        """Output for a batch ``x``; with ``logits`` the output layer's activation is skipped.
        With ``release`` (inference loops that call no ``backward``) each layer drops what it
        kept for ``backward`` as soon as it has run, so that every intermediate array is freed
        once its last reader has run (peak memory: a few activations, not all of them)."""
        values = {spec.INPUT: x}
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
        self._logits = logits
        return values[self.output_node.name]

    def backward(self, grad, input_grad=True):
        """Backpropagate ``dL/doutput`` through the graph; returns ``dL/dinput``.

        With ``input_grad=False`` (training) returns ``None``, and a layer whose inputs lead back
        to no parameter (only to the model input) is called with ``need_input_grad=False``: it
        may skip computing that gradient (the first Dense or Conv2D does).
        """
        wanted = {spec.INPUT: input_grad}  # does anything upstream of this tensor need a gradient?
        for node in self.nodes:
            learns = node.layer.trainable and bool(node.layer.params)
            wanted[node.name] = learns or any(wanted[s] for s in node.inputs)
        grads = {self.output_node.name: grad}
        for node in reversed(self.nodes):
            g = grads.pop(node.name, None)
            if g is None or not wanted[node.name]:
                continue
            need = any(wanted[s] for s in node.inputs)
            if self._logits and node is self.output_node:  # the loss took the activation's place
                gin = node.layer.backward_only(g, need_input_grad=need)
            else:
                gin = node.layer.call_backward(g, need_input_grad=need)
            gin = gin if node.layer.n_inputs is None else [gin]
            for s, gi in zip(node.inputs, gin):
                if not wanted[s]:
                    continue
                grads[s] = grads[s] + gi if s in grads else gi
        return grads.get(spec.INPUT)

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
        self._fused_loss = self.loss.fused_with(act)
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
        return self._fused_loss or self.loss

    def loss_and_grad(self, outputs, y, *, sample_weight=None):
        """``(loss, grad)`` of the compiled loss for a batch: ``outputs`` from the latest
        ``forward`` and the targets ``y`` (checked as ``fit`` checks them). ``loss`` is the mean
        over the batch (weighted by ``sample_weight``), a float; ``grad`` is its gradient with
        respect to ``outputs``, what ``backward`` takes. After ``forward(x, logits=True)`` (the
        output activation skipped) the loss fused with that activation is used, as ``fit`` does.
        A custom loop: ``out = model.forward(x, training=True)``, ``loss, grad =
        model.loss_and_grad(out, y)``, ``model.backward(grad)``, then
        ``model.optimizer.step(model.trainable_params, model.trainable_grads)``."""
        return runtime.loss_and_grad(self, outputs, y, sample_weight=sample_weight)

    # -- runtime (see runtime.py) ---------------------------------------------------------------
    def fit(
        self,
        x=None,
        y=None,
        *,
        batch_size=32,
        epochs=1,
        verbose=1,
        callbacks=(),
        validation_split=None,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        initial_epoch=None,
        steps_per_epoch=None,
        validation_steps=None,
        seed=None,
        resume_from=None,
        strategy=None,
    ):
        """Train for ``epochs`` more epochs; returns the ``History`` of the epochs run (also
        appended to ``model.history``).

        ``x``, ``y``: arrays; an array on disk (``numpy.memmap``, ``h5py.Dataset``) read in
        shuffled chunks; or, with ``y=None``, a ``regnet.data.Dataset`` or an iterable of ``(x, y)``
        / ``(x, y, sample_weight)`` batches (``steps_per_epoch`` batches per epoch, required when
        it has no ``len()``). See ``regnet.data``.

        ``validation_data``: ``(x, y)``, ``(x, y, sample_weight)``, or a dataset / iterable
        (``validation_steps``); or ``validation_split``: the last fraction of ``x`` and ``y``
        (taken before shuffling), in (0, 1). Validation logs are prefixed ``val_``.

        ``class_weight``: ``{class: weight}`` or ``"balanced"``; ``sample_weight``: one weight >= 0
        per sample. The loss of a batch becomes ``sum w_i loss_i / N`` (metrics stay unweighted).

        ``seed`` resets the model's generator (shuffling, dropout): the same seed on the same model
        gives bit-identical weights; without it the generator goes on from its state, which
        ``regnet.save`` stores. ``initial_epoch`` sets the epoch counter first and makes
        ``epochs`` the total to reach, as in Keras. ``resume_from`` (a file written by
        ``regnet.save`` or ``ModelCheckpoint``) first restores weights, optimizer state,
        generator, epoch, history and the state of the callbacks it saved; ``epochs`` is then the
        total to reach and ``seed`` is ignored, so re-running the same call after an interruption
        continues bit-identically.

        ``callbacks``: ``regnet.Callback`` objects (``EarlyStopping``, ``ModelCheckpoint``, ...).
        ``verbose``: 0 silent, 1 a progress bar (one line per epoch when not on a terminal).
        ``strategy``: where training runs, this process by default;
        ``regnet.distributed.DataParallel()`` spreads it over the processes of an MPI run.
        """
        return runtime.fit(
            self,
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            class_weight=class_weight,
            sample_weight=sample_weight,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            seed=seed,
            resume_from=resume_from,
            strategy=strategy,
        )

    def evaluate(self, x=None, y=None, *, batch_size=256, sample_weight=None, steps=None, verbose=0):
        """``{"loss": ..., <metric>: ...}`` over the whole set, in inference mode. ``x``, ``y`` as
        for ``fit`` (``steps``: batches to take from an unsized iterable); ``sample_weight``
        weights the loss."""
        return runtime.evaluate(
            self, x, y, batch_size=batch_size, sample_weight=sample_weight, steps=steps, verbose=verbose
        )

    def predict(self, x, *, batch_size=256, steps=None):
        """Outputs for the inputs ``x`` (an array, an array on disk, a dataset or an iterable of
        batches: ``x`` or ``(x, ...)``), computed in batches in inference mode; float32 of shape
        ``(N, *output_shape)``. A single sample without the batch axis (an array whose shape is
        exactly ``input_shape``, e.g. ``(1, 28, 28)``) gives a batch of one, ``(1, *output_shape)``.
        Integer image data (uint8) is taken as it is, with a warning: divide by 255 for a model
        trained on [0, 1]."""
        return runtime.predict(self, self._batched(x), batch_size=batch_size, steps=steps)

    def _batched(self, x):
        """``x[None]`` for one sample without its batch axis (shape exactly ``input_shape``), else ``x``."""
        if isinstance(x, np.ndarray) and x.shape == tuple(self.input_shape):
            return x[None]
        return x

    def train_on_batch(self, x, y, *, sample_weight=None, class_weight=None):
        """One optimisation step on one batch, under the divergence guard; returns ``{"loss":
        ..., <metric>: ...}`` of that batch (computed during the step)."""
        return runtime.train_on_batch(self, x, y, sample_weight=sample_weight, class_weight=class_weight)

    def test_on_batch(self, x, y, *, sample_weight=None):
        """``{"loss": ..., <metric>: ...}`` of one batch in inference mode."""
        return runtime.test_on_batch(self, x, y, sample_weight=sample_weight)

    def predict_on_batch(self, x):
        """The outputs for one batch, in inference mode (one sample without the batch axis gives a
        batch of one, as for ``predict``)."""
        return runtime.predict_on_batch(self, self._batched(x))

    def summary(self, print_fn=None):
        """A table of layers, output shapes and parameter counts, returned as text (it shows as
        the table in an interactive session); ``print_fn`` (e.g. ``print``) also receives it."""
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
            f"Input shape: {shape_text(self.input_shape)}",
            f"Total params: {total:,} (trainable {trainable:,}, non-trainable {total - trainable:,})",
        ]
        text = Text("\n".join(out))
        if print_fn is not None:
            print_fn(text)
        return text

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
