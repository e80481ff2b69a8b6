"""Metrics: streaming statistics of model outputs against targets, and the classification report.

A metric is configuration data like every other component (``"f1"`` or ``{"type": "f1",
"average": "micro"}`` in ``compile(metrics=[...])``, stored in the training config). It never
holds predictions: each batch gives a few summed statistics (counts, sums, a confusion matrix or
a score histogram), the totals are added up batch by batch, and the value is computed from the
totals. Totals of parts add up to the totals of the whole, so they can also be summed across
processes.

Built in: ``accuracy``, ``top_k_accuracy``, ``precision``, ``recall``, ``f1`` (averages
``macro``, ``micro``, ``weighted``, ``binary`` or ``per_class``), ``confusion_matrix``, ``mae``,
``mse`` and ``auc`` (binary outputs; from a histogram of scores, see ``AUC``). Plugins add metrics
through the entry-point group ``regnet.metrics``.

``classification_report(y_true, y_pred)`` gives accuracy, per-class accuracy, precision, recall
and F1 and the confusion matrix of integer predictions; ``format_report`` is what ``regnet
evaluate`` prints.
"""

from typing import Any

import attrs
import numpy as np

from . import fields, registry
from .errors import ConfigError, DataError
from .text import shape as shape_text


def _check_name(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value or value == "loss"):
        raise ConfigError(f"expected a non-empty name other than 'loss', got {fields.show(value)}", field="name")


@attrs.define(slots=False)
class Metric:
    """Base class of metrics: summed per-batch statistics and a value computed from their totals.

    A subclass declares its configuration as attrs fields and implements:

    * ``statistics(pred, target, weight) -> {name: array}``: this batch's statistics as **sums**
      over its samples (float64 arrays whose shapes depend only on the config and the output
      shape), so that the statistics of a data set are the sum of its batches'. ``pred`` are the
      model outputs (after the output activation: probabilities), ``target`` the targets as
      given to ``fit`` (integer labels or rows), ``weight`` ``None`` or per-sample weights
      ``(N,)``, float64, >= 0;
    * ``compute(totals) -> float | array``: the value from the summed statistics;
    * optionally ``check(output_shape)``, raising ``ConfigError`` when the metric cannot apply to
      a model with outputs of that shape (``compile`` calls it), and ``default_name()``.

    The base class keeps the running ``totals`` (``reset``, ``update``, ``result``, ``merge``)
    and evaluates one batch statelessly with ``metric(pred, target)``. ``name`` is the key in the
    logs and the history (default: ``default_name()``). Declare one with ``@metric("name")``.
    """

    name: str | None = fields.field(
        None,
        kw_only=True,
        validator=_check_name,
        doc="the key of the metric in logs (default: its type's name)",
        accepts="a non-empty name other than 'loss', or null",
    )

    def __attrs_post_init__(self) -> None:
        if self.name is None:
            self.name = self.default_name()
        self.totals: dict[str, np.ndarray] = {}

    # -- the contract ---------------------------------------------------------------------------
    def statistics(self, pred: np.ndarray, target: np.ndarray, weight: np.ndarray | None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def compute(self, totals: dict[str, np.ndarray]) -> "float | np.ndarray":
        raise NotImplementedError

    def check(self, output_shape: tuple[int, ...]) -> None:
        """Raise ``ConfigError`` if the metric does not apply to outputs of ``output_shape``."""

    def default_name(self) -> str:
        return registry.registered_name(self)

    # -- running totals -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the totals (``fit`` does this at each epoch start)."""
        self.totals = {}

    def update(self, pred: np.ndarray, target: np.ndarray, sample_weight: np.ndarray | None = None) -> None:
        """Add one batch's statistics to the totals."""
        weight = None if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
        self.merge(self.statistics(pred, target, weight))

    def merge(self, totals: dict[str, np.ndarray]) -> None:
        """Add statistics (another metric's ``totals``, e.g. from another process) to the totals."""
        if not self.totals:
            self.totals = {k: np.array(v, dtype=np.float64) for k, v in totals.items()}
            return
        for k, v in totals.items():
            self.totals[k] += v

    def result(self) -> "float | np.ndarray":
        """The value over everything since ``reset`` (NaN before any batch)."""
        if not self.totals:
            return float("nan")
        return _plain(self.compute(self.totals))

    def __call__(self, pred: np.ndarray, target: np.ndarray, sample_weight: np.ndarray | None = None) -> Any:
        """The value on one batch (the totals are left alone)."""
        weight = None if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
        return _plain(self.compute(self.statistics(pred, target, weight)))

    # -- configuration --------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """``{"type", **fields}``; ``name`` only when it is not the default one."""
        config = registry.get_config(self)
        if config.get("name") == self.default_name():
            del config["name"]
        return config


registry.metrics.bind(Metric)


@registry.dataclass_transform(field_specifiers=(attrs.field,))
def metric(name: str | type | None = None, *, aliases: tuple[str, ...] = (), register: bool = True) -> Any:
    """``@metric("name", aliases=(...))``: make the class an attrs metric and register it
    (``register=False`` in plugins, whose entry point registers it)."""
    return registry.define(registry.metrics, name, aliases=aliases, register=register, slots=False)


def get(spec: Any) -> Metric:
    """A metric from a name, a ``{"type": ...}`` dict or an instance."""
    return registry.metrics.create(spec)


def to_plain(m: Metric) -> "str | dict":
    """How the training config stores a metric: its registered name when every field has its
    default value (the form older files hold), else its config."""
    config = m.get_config()
    at_default = all(
        a.default is not attrs.NOTHING and getattr(m, a.name) == a.default
        for a in attrs.fields(type(m))
        if a.init and a.name != "name"
    )
    return config["type"] if at_default and "name" not in config else config


def _plain(value: Any) -> Any:
    arr = np.asarray(value)
    return float(arr) if arr.ndim == 0 else arr


def _scalar(value: float) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _weighted_count(correct: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(sum of weight * correct, sum of weight)`` over samples and their positions."""
    per_sample = correct.reshape(len(correct), -1)
    positions = per_sample.shape[1]
    if weight is None:
        return _scalar(per_sample.sum(dtype=np.float64)), _scalar(per_sample.size)
    return _scalar(weight @ per_sample.sum(axis=1, dtype=np.float64)), _scalar(weight.sum() * positions)


def _ratio(totals: dict, num: str, den: str) -> float:
    d = float(totals[den])
    return float(totals[num]) / d if d else float("nan")


def _dense_target(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``target`` shaped like ``pred``: integer class labels become one-hot rows."""
    if target.ndim == 1 and pred.ndim == 2 and pred.shape[1] > 1:
        rows = np.zeros(pred.shape, dtype=pred.dtype)
        rows[np.arange(len(target)), target.astype(np.intp)] = 1
        return rows
    if target.size != pred.size:
        raise DataError(
            f"targets of shape {shape_text(target.shape, batch=False)} do not match outputs of shape "
            f"{shape_text(pred.shape, batch=False)}"
        )
    return target.reshape(pred.shape)


def _classes(pred: np.ndarray, target: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``(predicted class, true class, number of classes)`` of each sample of a classifier:
    argmax of ``(N, K)`` outputs, ``> threshold`` of one output (two classes)."""
    n = len(pred)
    if pred.ndim == 2 and pred.shape[1] > 1:
        truth = target.astype(np.intp) if target.ndim == 1 else target.reshape(n, -1).argmax(axis=1)
        return pred.argmax(axis=1), truth, pred.shape[1]
    guess = (pred.reshape(n, -1)[:, 0] > threshold).astype(np.intp)
    return guess, (target.reshape(n, -1)[:, 0] > 0.5).astype(np.intp), 2


def _require_classifier(m: Metric, output_shape: tuple[int, ...]) -> int:
    """The number of classes of outputs of ``output_shape``, or ``ConfigError``."""
    if len(output_shape) != 1 and tuple(output_shape) != ():
        raise ConfigError(
            f"metric '{m.name}' needs class outputs of shape (N, K) or (N, 1), the model outputs "
            f"{shape_text(output_shape)}",
            field="metrics",
        )
    k = output_shape[0] if output_shape else 1
    return k if k > 1 else 2


# -- built-in metrics ------------------------------------------------------------------------------
@metric("accuracy", aliases=("acc", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy"))
class Accuracy(Metric):
    """Fraction of correct predictions: argmax over the last axis of several outputs, ``>
    threshold`` of one output."""

    threshold: float = fields.number(0.5, doc="a single output above it counts as class 1")

    def statistics(self, pred, target, weight):
        if pred.ndim >= 2 and pred.shape[-1] > 1:
            guess = pred.argmax(axis=-1)
            truth = target if target.ndim == 1 else target.argmax(axis=-1)
        else:
            guess = pred.reshape(pred.shape[0], -1)[:, 0] > self.threshold
            truth = target.reshape(target.shape[0], -1)[:, 0] > 0.5
        correct, count = _weighted_count(guess == truth, weight)
        return {"correct": correct, "count": count}

    def compute(self, totals):
        return _ratio(totals, "correct", "count")


@metric("top_k_accuracy", aliases=("top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"))
class TopKAccuracy(Metric):
    """Fraction of samples whose true class is among the ``k`` highest outputs (ties count in
    the sample's favour)."""

    k: int = fields.integer(5, min=1, doc="a hit when the label is among the k highest scores")

    def default_name(self):
        return f"top_{self.k}_accuracy"

    def check(self, output_shape):
        if len(output_shape) != 1 or output_shape[0] < 2:
            raise ConfigError(f"metric '{self.name}' needs outputs of shape (N, K) with K >= 2", field="metrics")
        if self.k > output_shape[0]:
            raise ConfigError(f"metric '{self.name}': k={self.k} but the model has {output_shape[0]} outputs")

    def statistics(self, pred, target, weight):
        _, truth, _ = _classes(pred, target, 0.5)
        score = pred[np.arange(len(pred)), truth]
        rank = (pred > score[:, None]).sum(axis=1)
        correct, count = _weighted_count(rank < self.k, weight)
        return {"correct": correct, "count": count}

    def compute(self, totals):
        return _ratio(totals, "correct", "count")


AVERAGES = ("macro", "micro", "weighted", "binary", "per_class")


def class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` and ``support`` from a confusion matrix (rows:
    true class, columns: predicted class); a score whose denominator is 0 is 0."""
    c = np.asarray(confusion, dtype=np.float64)
    tp, predicted, actual = np.diag(c), c.sum(axis=0), c.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(predicted + actual > 0, 2 * tp / (predicted + actual), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual, "present": predicted + actual > 0}


def average_scores(confusion: np.ndarray, average: str) -> dict[str, "float | np.ndarray"]:
    """``{"precision", "recall", "f1"}`` of a confusion matrix, averaged as ``average`` says:
    ``macro`` (the mean over classes that occur among the targets or the predictions), ``micro``
    (from the summed counts), ``weighted`` (by support), ``binary`` (class 1 of two) or
    ``per_class`` (arrays)."""
    s = class_scores(confusion)
    keys = ("precision", "recall", "f1")
    if average == "per_class":
        return {k: s[k] for k in keys}
    if average == "binary":
        return {k: float(s[k][1]) for k in keys}
    if average == "macro":
        present = s["present"]
        return {k: float(s[k][present].mean()) if present.any() else float("nan") for k in keys}
    if average == "weighted":
        total = s["support"].sum()
        return {k: float(s[k] @ s["support"] / total) if total else float("nan") for k in keys}
    c = np.asarray(confusion, dtype=np.float64)
    tp, predicted, actual = np.trace(c), c.sum(), c.sum()  # single-label: every sample is one of each
    p = tp / predicted if predicted else float("nan")
    r = tp / actual if actual else float("nan")
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


@attrs.define(slots=False)
class _ConfusionBased(Metric):
    """A metric computed from the confusion matrix of a classifier's outputs."""

    threshold: float = fields.number(0.5, doc="a single output above it counts as class 1")

    def check(self, output_shape):
        _require_classifier(self, output_shape)

    def statistics(self, pred, target, weight):
        guess, truth, k = _classes(pred, target, self.threshold)
        counts = np.bincount(truth * k + guess, weights=weight, minlength=k * k)
        return {"confusion": counts.astype(np.float64).reshape(k, k)}


@attrs.define(slots=False)
class _Score(_ConfusionBased):
    """Precision, recall or F1 (``score``), averaged as ``average`` says (see ``average_scores``)."""

    average: str = fields.choice("macro", *AVERAGES, doc="how per-class values combine (macro: mean over classes)")
    score = "f1"

    def default_name(self):
        base = registry.registered_name(self)
        return base if self.average == "macro" else f"{base}_{self.average}"

    def check(self, output_shape):
        k = _require_classifier(self, output_shape)
        if self.average == "binary" and k != 2:
            raise ConfigError(f"metric '{self.name}': average='binary' needs two classes, the model has {k}")

    def compute(self, totals):
        return average_scores(totals["confusion"], self.average)[self.score]


@metric("precision")
class Precision(_Score):
    """Of the samples predicted as a class, the fraction that belong to it."""

    score = "precision"


@metric("recall")
class Recall(_Score):
    """Of the samples of a class, the fraction predicted as it."""

    score = "recall"


@metric("f1", aliases=("f1_score",))
class F1(_Score):
    """The harmonic mean of precision and recall: ``2 tp / (predicted + actual)`` per class."""

    score = "f1"


@metric("confusion_matrix")
class ConfusionMatrix(_ConfusionBased):
    """The ``(K, K)`` matrix of (weighted) counts: rows are true classes, columns predicted ones."""

    def compute(self, totals):
        return totals["confusion"].copy()


@metric("mae", aliases=("mean_absolute_error",))
class MeanAbsoluteError(Metric):
    """Mean of ``|pred - target|`` over every output (integer labels count as one-hot rows)."""

    def statistics(self, pred, target, weight):
        err = np.abs(pred - _dense_target(pred, target))
        total, count = _weighted_count(err, weight)
        return {"total": total, "count": count}

    def compute(self, totals):
        return _ratio(totals, "total", "count")


@metric("mse", aliases=("mean_squared_error",))
class MeanSquaredError(Metric):
    """Mean of ``(pred - target)**2`` over every output (integer labels count as one-hot rows)."""

    def statistics(self, pred, target, weight):
        d = pred - _dense_target(pred, target)
        total, count = _weighted_count(d * d, weight)
        return {"total": total, "count": count}

    def compute(self, totals):
        return _ratio(totals, "total", "count")


@metric("auc", aliases=("roc_auc",))
class AUC(Metric):
    """Area under the ROC curve of a binary classifier (one sigmoid output, or the second of two).

    Streaming and therefore approximate: scores in ``[0, 1]`` are counted in ``num_bins`` equal
    bins per class, and the area is the probability that a positive sample scores in a higher bin
    than a negative one, ties within a bin counting one half. It equals the exact AUC when no
    positive and negative sample share a bin, and is off by at most half the fraction of
    positive-negative pairs that do (1/num_bins for scores spread evenly).
    """

    num_bins: int = fields.integer(200, min=2, max=1 << 20, doc="score bins of the ROC curve")

    def check(self, output_shape):
        if tuple(output_shape) not in ((), (1,), (2,)):
            raise ConfigError(
                f"metric '{self.name}' needs a binary classifier (outputs of shape (N, 1) or (N, 2)), "
                f"the model outputs {shape_text(output_shape)}",
                field="metrics",
            )

    def statistics(self, pred, target, weight):
        n = len(pred)
        flat = pred.reshape(n, -1)
        score = flat[:, 1] if flat.shape[1] == 2 else flat[:, 0]
        _, truth, _ = _classes(pred, target, 0.5)
        bins = np.clip((score * self.num_bins).astype(np.intp), 0, self.num_bins - 1)
        w = np.ones(n) if weight is None else weight
        positive = np.bincount(bins, weights=w * (truth == 1), minlength=self.num_bins)
        negative = np.bincount(bins, weights=w * (truth != 1), minlength=self.num_bins)
        return {"positive": positive, "negative": negative}

    def compute(self, totals):
        pos, neg = totals["positive"], totals["negative"]
        n_pos, n_neg = pos.sum(), neg.sum()
        if not n_pos or not n_neg:
            return float("nan")
        below = np.cumsum(neg) - neg
        return float(pos @ (below + 0.5 * neg) / (n_pos * n_neg))


# -- the classification report ----------------------------------------------------------------------
def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """Class indices from model outputs: the argmax of several outputs, ``> 0.5`` of one."""
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return outputs.argmax(axis=1)
    return (outputs.reshape(len(outputs), -1)[:, 0] > 0.5).astype(np.int64)


def class_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels from integer labels or one-hot rows."""
    y = np.asarray(y)
    return y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """``(K, K)`` counts: rows are true classes, columns predicted classes."""
    truth, pred = class_labels(y_true), np.asarray(y_pred).astype(np.int64)
    k = int(max(pred.max(initial=0), truth.max(initial=0)) + 1)
    k = max(k, num_classes or 0)
    return np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> dict:
    """The figures of integer predictions ``y_pred`` against labels or one-hot rows ``y_true``:
    ``{"accuracy", "n", "correct", "confusion", "per_class": [{"class", "support", "correct",
    "accuracy", "precision", "recall", "f1"}], "macro", "micro", "weighted": {"precision",
    "recall", "f1"}}`` (a class's accuracy is its recall; ``None`` without samples)."""
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    n, correct = int(confusion.sum()), int(np.trace(confusion))
    support = confusion.sum(axis=1)
    scores = class_scores(confusion)
    per_class = [
        {
            "class": k,
            "support": int(support[k]),
            "correct": int(confusion[k, k]),
            "accuracy": float(confusion[k, k] / support[k]) if support[k] else None,
            "precision": float(scores["precision"][k]),
            "recall": float(scores["recall"][k]),
            "f1": float(scores["f1"][k]),
        }
        for k in range(len(confusion))
    ]
    return {
        "accuracy": correct / n if n else 0.0,
        "n": n,
        "correct": correct,
        "confusion": confusion,
        "per_class": per_class,
        **{avg: average_scores(confusion, avg) for avg in ("macro", "micro", "weighted")},
    }


def format_report(report: dict, label: str) -> str:
    """A classification report (with an optional ``loss``) as the text ``regnet evaluate`` prints."""
    c = report["confusion"]
    lines = [f"data: {label} ({report['n']} samples)"]
    if "loss" in report:
        lines.append(f"loss: {report['loss']:.4f}")
    lines += [
        f"accuracy: {report['accuracy']:.4f} ({report['correct']}/{report['n']})",
        "per-class accuracy (= recall), precision and F1:",
    ]
    for row in report["per_class"]:
        acc = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "  n/a "
        count = f"({row['correct']}/{row['support']})"
        lines.append(f"  {row['class']:>3}: {acc} {count:<13} precision {row['precision']:.4f}  f1 {row['f1']:.4f}")
    for avg in ("macro", "weighted"):
        if avg in report:
            s = report[avg]
            lines.append(f"{avg} average: precision {s['precision']:.4f}  recall {s['recall']:.4f}  f1 {s['f1']:.4f}")
    width = max(4, len(str(int(c.max(initial=0)))) + 1)
    lines.append("confusion matrix (rows: true class, columns: predicted class):")
    lines.append("     " + "".join(f"{j:>{width}}" for j in range(len(c))))
    for k, row in enumerate(c):
        lines.append(f"  {k:>3}" + "".join(f"{int(v):>{width}}" for v in row))
    return "\n".join(lines)
