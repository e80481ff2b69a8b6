"""Training: everything that runs a model on data, behind the model's methods.

``Model.fit`` / ``evaluate`` / ``predict`` / ``train_on_batch`` / ``test_on_batch`` /
``predict_on_batch`` are these functions (``loop``), bound as methods: one signature, one
docstring. The package reads the model only through its public interface (``forward``,
``backward``, ``fused_loss``, ``optimizer``, ``metrics``, ``trainable_params``/``trainable_grads``,
``state_dict``, ``rng``, ``epoch``, ``history``).

Modules: ``loop`` (the epoch loop, one guarded step, the per-batch calls, ``Strategy``),
``callbacks`` (the hooks ``fit`` calls and the ones regnet provides), ``data`` (arrays, arrays on
disk, datasets and iterables served as checked batches), ``validation`` (argument checks),
``weighting`` (class and sample weights), ``divergence`` (the guard that undoes a step that went
non-finite), ``progress`` (the progress display).
"""

import functools
from collections.abc import Callable
from typing import Any

from . import callbacks, data, divergence, loop, progress, validation, weighting
from .loop import (
    LOCAL,
    Strategy,
    apply_gradients,
    compute_gradients,
    evaluate,
    fit,
    loss_and_grad,
    predict,
    predict_on_batch,
    test_on_batch,
    train_on_batch,
    train_step,
)

__all__ = [
    "callbacks",
    "data",
    "divergence",
    "loop",
    "progress",
    "validation",
    "weighting",
    "LOCAL",
    "Strategy",
    "fit",
    "evaluate",
    "predict",
    "train_on_batch",
    "test_on_batch",
    "predict_on_batch",
    "loss_and_grad",
    "train_step",
    "compute_gradients",
    "apply_gradients",
    "method",
]


def method(fn: Callable[..., Any]) -> Any:
    """``fn(model, ...)`` as a method of ``Model``, with ``fn``'s signature and docstring."""

    @functools.wraps(fn)
    def bound(self: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(self, *args, **kwargs)

    return bound
