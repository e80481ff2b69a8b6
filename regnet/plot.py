"""Pictures of training: the per-epoch curves of a history, and a confusion matrix as a heatmap.

Drawn with matplotlib's Agg canvas (no display, no pyplot state); the optional extra
``regnet[plot]`` installs it. Each function returns the matplotlib ``Figure`` and, given a
``path``, writes it there atomically (PNG, or SVG/PDF by the file's ending).
"""

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from . import io
from .errors import DataError, MissingDependencyError
from .text import escape, show
from .training.callbacks import History

#: one panel of ``history``: inches; a figure is ``PANEL_WIDTH`` per metric by ``PANEL_HEIGHT``
PANEL_WIDTH, PANEL_HEIGHT = 4.8, 3.6
#: the confusion matrix's figure, inches
MATRIX_SIZE = (6.4, 5.6)
DPI = 100
FORMATS = ("png", "svg", "pdf")


def _matplotlib():
    try:  # an optional dependency: imported when a picture is drawn
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise MissingDependencyError("drawing pictures needs matplotlib: pip install 'regnet[plot]'") from None
    return Figure, FigureCanvasAgg, MaxNLocator


def curves(history_or_model: object) -> "tuple[list[int], dict[str, list[float]]]":
    """``(epochs, {key: values})`` from a ``Model``, a ``History``, a list of per-epoch dicts (as
    ``model.history`` and model files hold) or a dict of per-epoch lists; missing values are NaN,
    and per-class values (lists) are left out."""
    source = getattr(history_or_model, "history", history_or_model)
    if isinstance(history_or_model, History):
        epochs, columns = list(history_or_model.epoch), dict(history_or_model.history)
    elif isinstance(source, Mapping):
        columns = dict(source)
        n = max((len(v) for v in columns.values()), default=0)
        epochs = list(range(1, n + 1))
    elif isinstance(source, Sequence) and all(isinstance(row, Mapping) for row in source):
        epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(source)]
        keys = dict.fromkeys(k for row in source for k in row if k != "epoch")
        columns = {k: [row.get(k) for row in source] for k in keys}
    else:
        raise DataError(
            f"expected a model, a History, a list of per-epoch logs or a dict of lists, got {show(history_or_model)}"
        )
    out = {}
    for key, values in columns.items():
        if any(isinstance(v, (list, tuple, dict)) for v in values):
            continue  # a per-class metric or a confusion matrix: not a curve
        if len(values) != len(epochs):
            raise DataError(f"history key {show(key)} has {len(values)} values for {len(epochs)} epochs")
        out[str(key)] = [_number(v) for v in values]
    return epochs, out


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def panels(keys: "list[str]") -> "list[tuple[str, str | None, str | None]]":
    """``(metric, training key, validation key)`` per panel: loss first, then the other metrics."""
    names = dict.fromkeys(k[4:] if k.startswith("val_") else k for k in keys)
    order = sorted(names, key=lambda name: (name != "loss", list(names).index(name)))
    return [(name, name if name in keys else None, f"val_{name}" if f"val_{name}" in keys else None) for name in order]


def history(history_or_model: object, path: "str | os.PathLike[str] | None" = None, *, title: str | None = None):
    """Loss and every metric per epoch, training against validation, one panel per metric."""
    epochs, columns = curves(history_or_model)
    if not epochs or not columns:
        raise DataError("the history is empty: nothing to plot (the model was never trained)")
    Figure, FigureCanvasAgg, MaxNLocator = _matplotlib()
    rows = panels(list(columns))
    fig = Figure(figsize=(PANEL_WIDTH * len(rows), PANEL_HEIGHT), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (name, train, val) in zip(fig.subplots(1, len(rows), squeeze=False)[0], rows):
        for key, label, style in ((train, "training", "-o"), (val, "validation", "--s")):
            if key is not None:
                ax.plot(epochs, columns[key], style, label=label, markersize=3)
        ax.set_title(escape(name, 60))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(escape(title, 100))
    return _save(fig, path)


def confusion_matrix(
    matrix: np.ndarray,
    path: "str | os.PathLike[str] | None" = None,
    labels: "Sequence[object] | None" = None,
    *,
    title: str | None = None,
):
    """A confusion matrix (rows: true class, columns: predicted class) as a labelled heatmap."""
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise DataError(f"a confusion matrix is square, got shape {counts.shape}")
    if not np.issubdtype(counts.dtype, np.number) or not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise DataError("a confusion matrix holds counts (finite numbers >= 0)")
    k = counts.shape[0]
    labels = [str(i) for i in range(k)] if labels is None else [escape(label, 20) for label in labels]
    if len(labels) != k:
        raise DataError(f"{len(labels)} labels for a {k} x {k} confusion matrix")
    Figure, FigureCanvasAgg, _ = _matplotlib()
    fig = Figure(figsize=MATRIX_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, label="count")
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 20:
        high = counts.max() / 2 if counts.max() > 0 else 1
        for (i, j), value in np.ndenumerate(counts):
            text = f"{value:g}" if not np.issubdtype(counts.dtype, np.integer) else str(int(value))
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if value > high else "black")
    total = counts.sum()
    accuracy = f" (accuracy {np.trace(counts) / total:.4f})" if total > 0 else ""
    ax.set_title(escape(title or "confusion matrix", 100) + accuracy)
    return _save(fig, path)


def _save(fig, path):
    if path is None:
        return fig
    path = os.fspath(path)
    ending = os.path.splitext(path)[1].lower().lstrip(".") or "png"
    if ending not in FORMATS:
        raise DataError(f"cannot write a picture as {escape(path)}: give a file ending in .png, .svg or .pdf")
    with io.atomic_write(path) as tmp:
        fig.savefig(tmp, format=ending, dpi=DPI)
    return fig


def history_of_file(path: "str | os.PathLike[str] | io.FileData") -> "list[dict]":
    """The per-epoch logs saved in a model file, read through the checked reader (no model is built)."""
    with io.open_file(path) as f:
        _, logs = f.progress()
        shown = f.shown
    if not logs:
        raise DataError(f"{shown} holds no training history (it was saved before any training)")
    return logs
