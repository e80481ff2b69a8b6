"""Metric statistics laid out as one vector, so that a step's statistics travel in the buffer of
the gradients and come back as the same dicts; and the sum of whole totals over processes."""

from typing import Any

import numpy as np


class Layout:
    """The order and shapes of a list of ``{statistic: array}`` (one per metric; the same on every
    process, since the shapes depend only on the metrics' configuration and the model's outputs)."""

    def __init__(self, stats: list[dict[str, np.ndarray]]) -> None:
        self.n_metrics = len(stats)
        self.entries = [(i, k, np.shape(v)) for i, part in enumerate(stats) for k, v in sorted(part.items())]
        self.size = sum(int(np.prod(s, dtype=np.int64)) for _, _, s in self.entries)

    def flatten(self, stats: list[dict[str, np.ndarray]], out: np.ndarray) -> None:
        """Write ``stats`` into ``out`` (``size`` values)."""
        at = 0
        for i, k, shape in self.entries:
            n = int(np.prod(shape, dtype=np.int64))
            out[at : at + n] = np.reshape(stats[i][k], -1)
            at += n

    def unflatten(self, values: np.ndarray) -> list[dict[str, np.ndarray]]:
        """The dicts back from ``values`` (as float64 arrays)."""
        out: list[dict[str, np.ndarray]] = [{} for _ in range(self.n_metrics)]
        at = 0
        for i, k, shape in self.entries:
            n = int(np.prod(shape, dtype=np.int64))
            out[i][k] = np.asarray(values[at : at + n], dtype=np.float64).reshape(shape)
            at += n
        return out


def add(parts: list[Any]) -> Any:
    """The sum of ``(loss_sum, seen, [metric totals])`` from every process, in rank order (so every
    process gets the same float64 result); a process that saw no sample has empty totals."""
    loss_sum = sum(p[0] for p in parts)
    seen = sum(p[1] for p in parts)
    totals: list[dict[str, np.ndarray]] = [{} for _ in parts[0][2]]
    for _, _, metrics in parts:
        for i, part in enumerate(metrics):
            for k, v in part.items():
                totals[i][k] = totals[i][k] + v if k in totals[i] else np.array(v, dtype=np.float64)
    return loss_sum, seen, totals
