"""The per-epoch training history: ``model.history`` and what ``fit`` returns."""

import numpy as np


def plain_logs(logs: dict) -> dict:
    """Logs as JSON data: numbers as floats, arrays (per-class metrics) as lists."""
    out = {}
    for k, v in logs.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


class History(list):
    """Per-epoch logs, readable two ways.

    Like Keras: ``history.history["loss"]`` (one value per epoch, ``None`` where an epoch lacks
    that key) and ``history.epoch``. As the list of records it is: ``history[i]`` is ``{"epoch":
    e, "loss": ..., ...}`` (JSON data), so ``len``, iteration, ``==`` with a list and
    ``json.dumps`` work as on the plain list ``model.history`` used to be. ``model.history``
    (every epoch the model was trained, kept in its file) is a ``History``, and ``fit`` returns a
    ``History`` of the epochs it ran (the last records of ``model.history``)."""

    def __init__(self, records=()):
        super().__init__(dict(r) for r in records)

    def append(self, epoch, logs=None):
        """Add an epoch: ``append(epoch, logs)`` or ``append({"epoch": epoch, **logs})``."""
        record = dict(epoch) if logs is None and isinstance(epoch, dict) else {"epoch": epoch, **(logs or {})}
        super().append(plain_logs(record))

    @property
    def epoch(self):
        return [r.get("epoch") for r in self]

    @property
    def history(self):
        keys = dict.fromkeys(k for r in self for k in r if k != "epoch")
        return {k: [r.get(k) for r in self] for k in keys}

    def to_list(self):
        """The records, as JSON data (what the model file stores)."""
        return [dict(r) for r in self]

    def __repr__(self):
        return f"History(epochs={self.epoch}, keys={sorted(self.history)})"
