"""The training loop: ``fit`` / ``evaluate`` / ``predict`` and one guarded ``train_step``."""

import numpy as np

from . import checkpoint, divergence, losses, validation
from .callbacks import Callback, History
from .errors import ConfigError, DataError, TrainingDivergedError
from .progress import Progress


def _require_compiled(model):
    if model.loss is None or model.optimizer is None:
        raise ConfigError("the model is not compiled: call model.compile(loss=..., optimizer=...) first")


def _outputs(model, logits):
    """Model outputs as the user sees them (probabilities where the loss was fused)."""
    if model._fused_loss is None:
        return logits
    return losses.probabilities(logits, model.output_activation)


def _count(value, what):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise DataError(f"{what} must be a non-negative integer, got {validation.show(value)}")
    return int(value)


def _step(model, xb, yb):
    """Forward, loss, backward and update (no update when the loss is not finite)."""
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite result is reported by the caller
        out = model.forward(xb, training=True, logits=model._fused_loss is not None)
        loss, grad = model.training_loss.value_and_grad(out, yb)
        if np.isfinite(loss):
            model.backward(grad, input_grad=False)
            model.optimizer.step(model.params, model.grads)
    return loss, out


def train_step(model, xb, yb, guard=None):
    """One optimisation step on a batch; returns ``(loss, outputs)``.

    A loss that is not finite stops before the update; an update that leaves a weight NaN or
    infinite (a gradient that is not finite, or a learning rate far too large) is undone. Either
    way the model is rewound to where the step began (weights, BatchNorm statistics, optimizer
    state, generator) and ``TrainingDivergedError`` names the offending tensors.

    ``guard`` (a ``divergence.Guard`` of this model, as ``fit`` keeps one) must hold a checkpoint
    taken since the weights last changed outside ``train_step``; without it, one is taken here.
    """
    if guard is None:
        guard = divergence.Guard(model, interval=1)
        guard.checkpoint()
    hyper = divergence.hyperparameters(model.optimizer)
    loss, out = _step(model, xb, yb)
    if not np.isfinite(loss):
        guard.rewind(_step)  # the forward pass moved BatchNorm's running statistics
        raise TrainingDivergedError(f"the loss is {loss}")
    bad = divergence.non_finite(model.get_weights())
    if bad:
        bad_grads = divergence.non_finite(model.grads)
        guard.rewind(_step)
        cause = (
            f"the gradients of {', '.join(bad_grads)} are not finite"
            if bad_grads
            else f"{', '.join(bad)} became non-finite (the loss and gradients were finite)"
        )
        raise TrainingDivergedError(f"{cause}; the step was undone")
    guard.record(xb, yb, hyper)
    return loss, out


def fit(
    model,
    x,
    y,
    *,
    epochs=1,
    batch_size=32,
    validation_data=None,
    shuffle=True,
    seed=None,
    callbacks=(),
    verbose=1,
    resume_from=None,
):
    """Train for ``epochs`` more epochs; returns a ``History``.

    ``seed`` (optional) resets the model's generator, which drives shuffling and dropout: the
    same seed on the same model gives bit-identical weights. Without it the generator goes on
    from its current state (which ``regnet.save`` stores, so a reloaded model resumes exactly).

    ``resume_from`` (a file written by ``regnet.save`` or ``ModelCheckpoint``) first restores
    weights, optimizer state, generator, epoch and history; ``epochs`` is then the total to reach
    (``epochs - model.epoch`` more are run) and ``seed`` is ignored, so re-running the same call
    after an interruption continues bit-identically.
    """
    if resume_from is not None:
        checkpoint.restore(model, resume_from)
    _require_compiled(model)
    x = validation.inputs(model, x)
    y = validation.targets(model, y, len(x))
    batch_size = validation.batch_size(batch_size)
    epochs = _count(epochs, "epochs")
    if validation_data is not None:
        vx, vy = validation.validation_data(model, validation_data)
    seed, shuffle = validation.seed(seed), validation.flag(shuffle, "shuffle")
    verbose = validation.verbosity(verbose)
    if resume_from is not None:
        epochs = max(0, epochs - model.epoch)
    elif seed is not None:
        model.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
    history = History()
    callbacks = validation.callbacks(callbacks)
    for cb in callbacks:
        cb.model = model
    model.stop_training = False
    progress = Progress(verbose, model.epoch + epochs)
    n = len(x)
    n_batches = -(-n // batch_size)
    guard = divergence.Guard(model)
    # callbacks run between steps; one with its own on_batch_end may change the weights
    resave = any(
        getattr(type(cb), "on_batch_end", None) is not Callback.on_batch_end and getattr(cb, "changes_weights", True)
        for cb in callbacks
    )
    for cb in callbacks:
        cb.on_train_begin()
    for _ in range(epochs):
        epoch = model.epoch + 1
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        order = model.rng.permutation(n) if shuffle else np.arange(n)
        progress.start(epoch, n_batches)
        guard.checkpoint()
        sums = {"loss": 0.0, **{m.name: 0.0 for m in model.metrics}}
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            if guard.due():
                guard.checkpoint()
            try:
                loss, out = train_step(model, xb, yb, guard)
            except TrainingDivergedError as exc:
                progress.end(epoch, {})
                raise TrainingDivergedError(
                    f"training diverged at epoch {epoch}, batch {b + 1}/{n_batches}: {exc}; the model is "
                    f"left as it was before that batch (try a lower learning rate)",
                    epoch=epoch,
                    batch=b + 1,
                ) from None
            sums["loss"] += loss * len(idx)
            if model.metrics:
                shown = _outputs(model, out)
                for m in model.metrics:
                    sums[m.name] += m(shown, yb) * len(idx)
            seen = min((b + 1) * batch_size, n)
            logs = {k: v / seen for k, v in sums.items()}
            progress.batch(len(idx), logs)
            for cb in callbacks:
                cb.on_batch_end(b, logs)
            if resave:
                guard.checkpoint()
        logs = {k: v / n for k, v in sums.items()}
        if validation_data is not None:
            logs.update({f"val_{k}": v for k, v in evaluate(model, vx, vy, batch_size=max(batch_size, 256)).items()})
        model.epoch = epoch
        model.history.append({"epoch": epoch, **logs})
        history.append(epoch, logs)
        progress.end(epoch, logs)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end()
    return history


def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def evaluate(model, x, y, *, batch_size=256, verbose=0):
    """``{"loss": ..., <metric>: ...}`` over the whole set (inference mode)."""
    _require_compiled(model)
    x = validation.inputs(model, x)
    y = validation.targets(model, y, len(x))
    batch_size = validation.batch_size(batch_size)
    fused = model._fused_loss is not None
    sums = {"loss": 0.0, **{m.name: 0.0 for m in model.metrics}}
    for s in _batches(len(x), batch_size):
        out = model.forward(x[s], training=False, logits=fused)
        k = s.stop - s.start
        sums["loss"] += model.training_loss.value(out, y[s]) * k
        shown = _outputs(model, out)
        for m in model.metrics:
            sums[m.name] += m(shown, y[s]) * k
        model.release()
    return {k: v / len(x) for k, v in sums.items()}


def predict(model, x, *, batch_size=256):
    """Model outputs for ``x``, computed in batches (inference mode)."""
    x = validation.inputs(model, x)
    batch_size = validation.batch_size(batch_size)
    out = np.empty((len(x), *model.output_shape), dtype=np.float32)
    for s in _batches(len(x), batch_size):
        out[s] = model.forward(x[s], training=False)
        model.release()
    return out
