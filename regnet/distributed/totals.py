"""Metric statistics laid out as one vector, so that they travel in a buffer with the gradients
(or with the validation sums) and come back as the same dicts."""

import numpy as np


class Layout:
    """The order and shapes of ``{metric: {statistic: array}}`` (the same on every process: the
    shapes depend only on the metric's configuration and the model's outputs)."""

    def __init__(self, stats: dict[str, dict[str, np.ndarray]]) -> None:
        self.metrics = list(stats)
        self.entries = [(m, k, np.shape(v)) for m in stats for k, v in sorted(stats[m].items())]
        self.size = sum(int(np.prod(s, dtype=np.int64)) for _, _, s in self.entries)

    def flatten(self, stats: dict[str, dict[str, np.ndarray]], out: np.ndarray) -> None:
        """Write ``stats`` into ``out`` (``size`` values)."""
        at = 0
        for m, k, shape in self.entries:
            n = int(np.prod(shape, dtype=np.int64))
            out[at : at + n] = np.reshape(stats[m][k], -1)
            at += n

    def unflatten(self, values: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """The dicts back from ``values`` (float64 arrays)."""
        out: dict[str, dict[str, np.ndarray]] = {m: {} for m in self.metrics}
        at = 0
        for m, k, shape in self.entries:
            n = int(np.prod(shape, dtype=np.int64))
            out[m][k] = np.asarray(values[at : at + n], dtype=np.float64).reshape(shape)
            at += n
        return out
