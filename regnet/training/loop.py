"""The training loop: ``fit`` / ``evaluate`` / ``predict``, one guarded ``train_step``, and the
per-batch ``train_on_batch`` / ``test_on_batch`` / ``predict_on_batch``.

A step is split in two so that a data-parallel wrapper can combine gradients in between:
``compute_gradients`` (forward, loss, backward: fills ``model.grads``) and ``apply_gradients``
(the optimizer's update of the trainable parameters). ``train_step`` runs both under the
divergence guard (``regnet.training.divergence``).

``fit`` runs on one process unless given a ``Strategy`` (``regnet.distributed.DataParallel``
spreads it over the processes of an MPI run): the one hook point where the loop asks how a batch
becomes gradients, how logs are summed, who prints and how decisions are shared.
"""

import contextlib
import functools
import warnings

import numpy as np

from .. import checkpoint, losses
from ..errors import ConfigError, DataError, TrainingDivergedError
from ..history import History, plain_logs
from ..ops.tuning import tune
from ..text import show
from . import data, divergence, validation, weighting
from .callbacks import Callback
from .progress import Progress


def _require_compiled(model):
    if model.loss is None or model.optimizer is None:
        raise ConfigError("the model is not compiled: call model.compile(loss=..., optimizer=...) first")


def _outputs(model, logits):
    """Model outputs as the user sees them (probabilities where the loss was fused)."""
    if model.fused_loss is None:
        return logits
    return losses.probabilities(logits, model.output_activation)


def _count(value, what):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise DataError(f"{what} must be a non-negative integer, got {validation.show(value)}")
    return int(value)


def _warn_untrained(model):
    """Warn once when a model loaded from a file that was never trained is used."""
    if model.untrained_warning:
        warnings.warn(model.untrained_warning, UserWarning, stacklevel=4)
        model.untrained_warning = None


# -- where the loop runs ----------------------------------------------------------------------------
class Strategy:
    """Where ``fit`` runs. This base class, the default, is this process alone; a subclass
    (``regnet.distributed.DataParallel``) spreads the run over several. ``fit`` asks it:

    * ``scope()``: a context around the whole call (what an error on one process does);
    * ``batch_size(b)``: the rows per batch read from the data (the global batch);
    * ``begin(model, source, validation, callbacks)``: before the first epoch (checks, shared
      state); returns the callbacks this process runs; ``end(model)`` after the last one;
    * ``gradients(model, xb, yb, sample_weight)``: ``compute_gradients`` of a batch, returning
      ``(loss, outputs)`` with ``model.grads`` ready for the update (data-parallel: this
      process's shard, gradients and loss summed over the processes); also what the divergence
      guard replays, so every decision it takes is the same everywhere;
    * ``totals(model, loss, outputs, yb, sample_weight)``: the batch's ``(loss sum, samples,
      metric statistics)`` for the logs; ``step_done(model)`` after each step, and
      ``epoch_done(model)`` after an epoch's last batch;
    * ``local(xb, yb, sample_weight)``: the rows of a validation batch evaluated here, and
      ``reduce_totals(loss_sum, seen, metrics)`` the sums over every process;
    * ``chief``: whether this process prints; ``any(flag)``: a stop decision every process shares.
    """

    chief = True

    def scope(self):
        return contextlib.nullcontext()

    def batch_size(self, batch_size):
        return batch_size

    def begin(self, model, source, validation, callbacks):
        return callbacks

    def end(self, model):
        pass

    def gradients(self, model, xb, yb, sample_weight):
        return compute_gradients(model, xb, yb, sample_weight)

    def totals(self, model, loss, out, yb, sample_weight):
        return loss * len(out), len(out), batch_statistics(model, out, yb)

    def step_done(self, model):
        pass

    def epoch_done(self, model):
        pass

    def local(self, xb, yb, sample_weight):
        return xb, yb, sample_weight

    def reduce_totals(self, loss_sum, seen, metrics):
        return loss_sum, seen

    def any(self, flag):
        return bool(flag)


#: the default: everything on this process
LOCAL = Strategy()


def batch_statistics(model, out, yb):
    """Each metric's statistics of a batch (``Metric.statistics``), in ``model.metrics`` order."""
    if not model.metrics:
        return []
    shown = _outputs(model, out)
    return [m.statistics(shown, yb, None) for m in model.metrics]


# -- one step ---------------------------------------------------------------------------------------
def check_lengths(model, out, yb):
    """For a model with a variable-length output: ``yb`` fits this batch's outputs (lengths too)."""
    if None in model.output_shape:
        try:
            model.loss.check_target(yb, out.shape)
        except DataError as exc:
            raise DataError(f"y: {exc}") from None


def _forward_backward(model, xb, yb, sample_weight):
    out = model.forward(xb, training=True, logits=model.fused_loss is not None)
    check_lengths(model, out, yb)
    if sample_weight is None:
        loss, grad = model.training_loss.value_and_grad(out, yb)
    else:
        loss, grad = model.training_loss.weighted_value_and_grad(out, yb, sample_weight)
    if np.isfinite(loss):
        model.backward(grad, input_grad=False)
    return loss, out


def compute_gradients(model, xb, yb, sample_weight=None):
    """Forward, loss and backward on a batch: ``model.grads`` then hold the gradient of the
    (weighted) mean loss. Returns ``(loss, outputs)``; when the loss is not finite nothing is
    backpropagated (the gradients are stale) and the caller must not apply them."""
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite result is reported by the caller
        return _forward_backward(model, xb, yb, sample_weight)


def apply_gradients(model):
    """The optimizer's update of every trainable parameter from ``model.grads``."""
    with np.errstate(over="ignore", invalid="ignore"):
        model.optimizer.step(model.trainable_params, model.trainable_grads)


def _step(model, xb, yb, sample_weight=None, strategy=None):
    """The strategy's ``compute_gradients`` then, if the loss is finite, ``apply_gradients`` (in one
    step)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if strategy is None:
            loss, out = _forward_backward(model, xb, yb, sample_weight)
        else:
            loss, out = strategy.gradients(model, xb, yb, sample_weight)
        if np.isfinite(loss):
            model.optimizer.step(model.trainable_params, model.trainable_grads)
    return loss, out


def train_step(model, xb, yb, guard=None, *, sample_weight=None, strategy=LOCAL):
    """One optimisation step on a batch; returns ``(loss, outputs)``.

    A loss that is not finite stops before the update; an update that leaves a weight NaN or
    infinite (a gradient that is not finite, or a learning rate far too large) is undone. Either
    way the model is rewound to where the step began (weights, BatchNorm statistics, optimizer
    state, generator) and ``TrainingDivergedError`` names the offending tensors.

    ``guard`` (a ``divergence.Guard`` of this model, as ``fit`` keeps one) must hold a checkpoint
    taken since the weights last changed outside ``train_step``; without it, one is taken here.
    ``strategy`` (see ``Strategy``) computes the gradients, in the step and in its replays.
    """
    step = _step if strategy is LOCAL else functools.partial(_step, strategy=strategy)
    if guard is None:
        guard = divergence.Guard(model, interval=1)
        guard.checkpoint()
    hyper = divergence.hyperparameters(model.optimizer)
    try:
        loss, out = step(model, xb, yb, sample_weight)
    except TrainingDivergedError:  # the optimizer refused the step (a schedule that overflowed)
        guard.rewind(step)
        raise
    if not np.isfinite(loss):
        guard.rewind(step)  # the forward pass moved BatchNorm's running statistics
        raise TrainingDivergedError(f"the loss is {loss}")
    bad = divergence.non_finite(model.state_dict())
    if bad:
        bad_grads = divergence.non_finite(model.grads)
        guard.rewind(step)
        cause = (
            f"the gradients of {', '.join(bad_grads)} are not finite"
            if bad_grads
            else f"{', '.join(bad)} became non-finite (the loss and gradients were finite)"
        )
        raise TrainingDivergedError(f"{cause}; the step was undone")
    guard.record(xb, yb, hyper, sample_weight)
    model.initial_weights = False
    return loss, out


# -- fit --------------------------------------------------------------------------------------------
def _validation_split(value):
    if value is None:
        return None
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not ok or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"expected a fraction strictly between 0 and 1, got {show(value)}", field="validation_split")
    return float(value)


def _initial_epoch(value, resume_from):
    if value is None:
        return None
    if resume_from is not None:
        raise ConfigError(
            "give initial_epoch or resume_from, not both (the file says the epoch)", field="initial_epoch"
        )
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"expected an integer >= 0, got {show(value)}", field="initial_epoch")
    return int(value)


def _changes_weights_between_steps(callbacks):
    """True when a callback has its own ``on_batch_end`` and does not declare that it leaves the
    weights alone (then the divergence guard checkpoints after every step)."""
    return any(
        getattr(type(cb), "on_batch_end", None) is not Callback.on_batch_end and getattr(cb, "changes_weights", True)
        for cb in callbacks
    )


def _in_strategy_scope(fit):
    """Run ``fit`` inside its strategy's ``scope()`` (what an error on one process does)."""

    @functools.wraps(fit)
    def scoped(model, x=None, y=None, **options):
        strategy = options.get("strategy") or LOCAL
        with strategy.scope():
            return fit(model, x, y, **options)

    return scoped


@_in_strategy_scope
def fit(
    model,
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
    shuffled chunks; or, with ``y=None``, a ``regnet.Dataset`` or an iterable of ``(x, y)``
    / ``(x, y, sample_weight)`` batches (``steps_per_epoch`` batches per epoch, required when
    it has no ``len()``). See ``regnet.training.data``.

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
    ``regnet.distributed.DataParallel()`` spreads it over the processes of an MPI run (see
    ``Strategy``).
    """
    tune()
    strategy = LOCAL if strategy is None else strategy
    initial_epoch = _initial_epoch(initial_epoch, resume_from)
    callback_states = {}
    if resume_from is not None:
        callback_states = checkpoint.restore_training(model, resume_from)
    _require_compiled(model)
    batch_size = validation.batch_size(batch_size)
    epochs = _count(epochs, "epochs")
    split = _validation_split(validation_split)
    if split is not None and validation_data is not None:
        raise ConfigError("give validation_split or validation_data, not both", field="validation_split")
    seed, shuffle = validation.seed(seed), validation.flag(shuffle, "shuffle")
    verbose = validation.verbosity(verbose)
    callbacks = validation.callbacks(callbacks)
    table = weighting.class_table(class_weight, tuple(model.output_shape))
    steps = data.steps(steps_per_epoch)
    batch_size = strategy.batch_size(batch_size)
    source = data.open_source(model, x, y, batch_size=batch_size, sample_weight=sample_weight, steps=steps)
    val = None
    try:
        if split is not None:
            whole = source
            try:
                source, val = whole.split(split, max(batch_size, 256))
            finally:
                whole.close()  # the parts read the files through readers of their own
        elif validation_data is not None:
            if isinstance(validation_data, (list, tuple)) and data.kind(validation_data) == "dataset":
                vx, vy, vw = validation_data, None, None  # a list of (x, y) batches
            else:
                vx, vy, vw = validation.validation_parts(validation_data)
            val = data.open_source(
                model,
                vx,
                vy,
                batch_size=max(batch_size, 256),
                sample_weight=vw,
                steps=data.steps(validation_steps, "validation_steps"),
                what="validation x",
                steps_field="validation_steps",
            )
        source.weigh(table)
        if resume_from is not None:
            epochs = max(0, epochs - model.epoch)  # the total to reach
        elif initial_epoch is not None:
            model.epoch = initial_epoch
            epochs = max(0, epochs - initial_epoch)
        if seed is not None and resume_from is None:
            model.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        return _train(model, source, val, epochs, shuffle, verbose, callbacks, callback_states, strategy)
    finally:
        source.close()
        if val is not None:
            val.close()


def _train(model, source, val, epochs, shuffle, verbose, callbacks, callback_states, strategy):
    """The epoch loop of ``fit`` on checked sources."""
    callbacks = strategy.begin(model, source, val, callbacks)
    verbose = verbose if strategy.chief else 0
    model.untrained_warning = None
    if not isinstance(model.history, History):
        model.history = History(model.history)
    history = History()
    for cb in callbacks:
        cb.model = model
    model.training_callbacks = callbacks
    model.stop_training = False
    progress = Progress(verbose, epochs, model.epoch)
    guard = divergence.Guard(model)
    resave = _changes_weights_between_steps(callbacks)
    # running logs are made only for a progress bar or a callback with its own on_batch_end
    batch_logs = progress.tty or any(
        getattr(type(cb), "on_batch_end", None) is not Callback.on_batch_end for cb in callbacks
    )
    # callbacks that save the model run their epoch end last: a checkpoint holds every state
    at_epoch_end = sorted(callbacks, key=lambda cb: bool(getattr(cb, "saves_model", False)))
    for cb in callbacks:
        cb.on_train_begin()
    checkpoint.apply_callback_states(callbacks, callback_states)
    for _ in range(epochs):
        if model.stop_training:  # a callback restored from a checkpoint had stopped training
            break
        epoch = model.epoch + 1
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        batches = source.epoch(model.rng, shuffle)  # draws its shuffle before the checkpoint
        progress.start(epoch, source.n_batches)
        guard.checkpoint()
        loss_sum, seen = 0.0, 0
        for m in model.metrics:
            m.reset()
        b = 0
        try:
            for b, (xb, yb, wb) in enumerate(batches, start=1):
                if guard.due():
                    guard.checkpoint()
                loss, out = train_step(model, xb, yb, guard, sample_weight=wb, strategy=strategy)
                batch_loss, n, statistics = strategy.totals(model, loss, out, yb, wb)
                loss_sum += batch_loss
                seen += n
                for m, stats in zip(model.metrics, statistics):
                    m.merge(stats)
                strategy.step_done(model)
                if batch_logs:
                    logs = {"loss": loss_sum / seen, **{m.name: m.result() for m in model.metrics}}
                    progress.batch(n, logs)
                    for cb in callbacks:
                        cb.on_batch_end(b - 1, logs)
                else:
                    progress.count(n)
                if resave:
                    guard.checkpoint()
        except TrainingDivergedError as exc:
            progress.end(epoch, {})
            raise TrainingDivergedError(
                f"training diverged at epoch {epoch}, batch {b}/{source.n_batches}: {exc}; the model is "
                f"left as it was before that batch (try a lower learning rate)",
                epoch=epoch,
                batch=b,
            ) from None
        except DataError as exc:
            progress.end(epoch, {})
            raise DataError(f"epoch {epoch}: {exc}; the model is left as it was after the previous batch") from None
        strategy.epoch_done(model)
        if seen == 0:  # an iterator that ran out exactly at the end of the previous epoch
            break
        logs = {"loss": loss_sum / seen, **{m.name: m.result() for m in model.metrics}}
        if val is not None:
            logs.update({f"val_{k}": v for k, v in _evaluate(model, val, strategy).items()})
        logs = plain_logs(logs)
        model.epoch = epoch
        model.history.append(epoch, logs)
        history.append(epoch, logs)
        progress.end(epoch, logs)
        for cb in at_epoch_end:
            cb.on_epoch_end(epoch, logs)
        if strategy.any(model.stop_training or source.exhausted):
            break
    strategy.end(model)
    for cb in callbacks:
        cb.on_train_end()
    return history


# -- evaluate and predict ---------------------------------------------------------------------------
def _evaluate(model, source, strategy=LOCAL):
    """``{"loss", <metric>: ...}`` over a source (inference mode; the loss weighted when the
    batches carry weights), shared among processes as ``strategy`` says."""
    fused = model.fused_loss is not None
    loss_sum, seen = 0.0, 0
    for m in model.metrics:
        m.reset()
    for batch in source.epoch(model.rng, False):
        xb, yb, wb = strategy.local(*batch)
        if not len(xb):
            continue
        out = model.forward(xb, training=False, logits=fused, release=True)
        check_lengths(model, out, yb)
        if wb is None:
            loss = model.training_loss.value(out, yb)
        else:
            loss = model.training_loss.weighted_value(out, yb, wb)
        loss_sum += loss * len(xb)
        seen += len(xb)
        if model.metrics:
            shown = _outputs(model, out)
            for m in model.metrics:
                m.update(shown, yb)
    loss_sum, seen = strategy.reduce_totals(loss_sum, seen, model.metrics)
    if seen == 0:
        raise DataError("the data yielded no batch to evaluate")
    return {"loss": loss_sum / seen, **{m.name: m.result() for m in model.metrics}}


def evaluate(model, x=None, y=None, *, batch_size=256, sample_weight=None, steps=None, verbose=0):
    """``{"loss": ..., <metric>: ...}`` over the whole set, in inference mode. ``x``, ``y`` as
    for ``fit`` (``steps``: batches to take from an unsized iterable); ``sample_weight``
    weights the loss."""
    tune()
    _require_compiled(model)
    batch_size = validation.batch_size(batch_size)
    validation.verbosity(verbose)
    source = data.open_source(
        model,
        x,
        y,
        batch_size=batch_size,
        sample_weight=sample_weight,
        steps=data.steps(steps, "steps"),
        steps_field="steps",
    )
    _warn_untrained(model)
    try:
        return _evaluate(model, source)
    finally:
        source.close()


def _batched(model, x):
    """``x[None]`` for one sample without its batch axis (shape exactly ``input_shape``), else ``x``."""
    if isinstance(x, np.ndarray) and x.shape == tuple(model.input_shape):
        return x[None]
    return x


def predict(model, x, *, batch_size=256, steps=None):
    """Outputs for the inputs ``x`` (an array, an array on disk, a dataset or an iterable of
    batches: ``x`` or ``(x, ...)``), computed in batches in inference mode; float32 of shape
    ``(N, *output_shape)``. A single sample without the batch axis (an array whose shape is
    exactly ``input_shape``, e.g. ``(1, 28, 28)``) gives a batch of one, ``(1, *output_shape)``.
    Integer image data (uint8) is taken as it is, with a warning: divide by 255 for a model
    trained on [0, 1]."""
    tune()
    x = _batched(model, x)
    batch_size = validation.batch_size(batch_size)
    source = data.open_source(
        model, x, batch_size=batch_size, steps=data.steps(steps, "steps"), targets=False, steps_field="steps"
    )
    _warn_untrained(model)
    try:
        if isinstance(source, data.ArraySource) and None not in model.output_shape:
            out = np.empty((source.n_samples, *model.output_shape), dtype=np.float32)
            start = 0
            for xb, _, _ in source.epoch(model.rng, False):
                out[start : start + len(xb)] = model.forward(xb, training=False, release=True)
                start += len(xb)
            return out
        parts = []
        for xb, _, _ in source.epoch(model.rng, False):
            parts.append(model.forward(xb, training=False, release=True).copy())
        if parts:
            return np.concatenate(parts)
        return np.empty((0, *(0 if d is None else d for d in model.output_shape)), np.float32)
    finally:
        source.close()


# -- one batch at a time ----------------------------------------------------------------------------
def loss_and_grad(model, outputs, y, *, sample_weight=None):
    """``(loss, grad)`` of the compiled loss for a batch: ``outputs`` from the latest
    ``forward`` and the targets ``y`` (checked as ``fit`` checks them). ``loss`` is the mean
    over the batch (weighted by ``sample_weight``), a float; ``grad`` is its gradient with
    respect to ``outputs``, what ``backward`` takes. After ``forward(x, logits=True)`` (the
    output activation skipped) the loss fused with that activation is used, as ``fit`` does.
    A custom loop: ``out = model.forward(x, training=True)``, ``loss, grad =
    model.loss_and_grad(out, y)``, ``model.backward(grad)``, then
    ``model.optimizer.step(model.trainable_params, model.trainable_grads)``."""
    if model.loss is None:
        raise ConfigError("the model is not compiled: call model.compile(loss=..., optimizer=...) first")
    outputs = np.asarray(outputs)
    if outputs.ndim == 0 or outputs.shape[1:] != tuple(model.output_shape):
        raise ConfigError(
            f"outputs of shape {list(outputs.shape)} are not a batch of the model's outputs "
            f"{[None, *model.output_shape]}: pass what forward returned",
            field="outputs",
        )
    loss = model.loss
    if model.output_logits:  # the latest forward skipped the output activation
        if model.fused_loss is None:
            raise ConfigError(
                f"the outputs are logits (forward(..., logits=True)), which the loss cannot take with the "
                f"output activation '{model.output_activation}': call forward without logits",
                field="outputs",
            )
        loss = model.fused_loss
    y = validation.targets(model, y, len(outputs))
    if sample_weight is None:
        value, grad = loss.value_and_grad(outputs, y)
    else:
        value, grad = loss.weighted_value_and_grad(outputs, y, weighting.sample_weights(sample_weight, len(outputs)))
    return float(value), grad


def _one_batch(model, x, y, sample_weight, class_weight=None):
    xb = validation.inputs(model, x)
    yb = validation.targets(model, y, len(xb))
    wb = None if sample_weight is None else weighting.sample_weights(sample_weight, len(xb))
    table = weighting.class_table(class_weight, tuple(model.output_shape))
    if isinstance(table, str):
        k = weighting.n_classes(tuple(model.output_shape))
        assert k is not None  # class_table accepts "balanced" only for class scores
        table = weighting.balanced(np.bincount(weighting.class_indices(yb, k), minlength=k))
    return xb, yb, weighting.combine(table, yb, wb)


def _batch_logs(model, loss, out, yb):
    logs = {"loss": float(loss)}
    if model.metrics:
        shown = _outputs(model, out)
        for m in model.metrics:
            logs[m.name] = m(shown, yb)
    return logs


def train_on_batch(model, x, y, *, sample_weight=None, class_weight=None):
    """One optimisation step on one batch, under the divergence guard; returns ``{"loss":
    ..., <metric>: ...}`` of that batch (computed during the step)."""
    tune()
    _require_compiled(model)
    xb, yb, wb = _one_batch(model, x, y, sample_weight, class_weight)
    loss, out = train_step(model, xb, yb, sample_weight=wb)
    return _batch_logs(model, loss, out, yb)


def test_on_batch(model, x, y, *, sample_weight=None):
    """``{"loss": ..., <metric>: ...}`` of one batch in inference mode."""
    tune()
    _require_compiled(model)
    xb, yb, wb = _one_batch(model, x, y, sample_weight)
    _warn_untrained(model)
    out = model.forward(xb, training=False, logits=model.fused_loss is not None, release=True)
    check_lengths(model, out, yb)
    loss = model.training_loss.value(out, yb) if wb is None else model.training_loss.weighted_value(out, yb, wb)
    return _batch_logs(model, loss, out, yb)


def predict_on_batch(model, x):
    """The outputs for one batch, in inference mode (one sample without the batch axis gives a
    batch of one, as for ``predict``)."""
    tune()
    xb = validation.inputs(model, _batched(model, x))
    _warn_untrained(model)
    return model.forward(xb, training=False, release=True)
