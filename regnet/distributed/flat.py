"""One flat float32 vector that holds every gradient of a model end to end, plus a few extra
numbers, so that a step's whole exchange is a single ``Allreduce``.

A collective has a fixed cost (latency, synchronisation) besides its bytes, so one call per
tensor would pay it once per tensor. Packing costs one pass over the gradients, which is also
where each process's gradient is weighted by its share of the global batch.
"""

import numpy as np

from ..errors import DistributedError


class FlatBuffer:
    """Named arrays of fixed shapes laid end to end in one float32 vector, followed by ``extra``
    float32 slots (loss sums, sample counts, metric statistics)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], extra: int = 0) -> None:
        self.names = list(shapes)
        self.shapes = {k: tuple(int(d) for d in shapes[k]) for k in self.names}
        self.offsets: dict[str, tuple[int, int]] = {}
        at = 0
        for k in self.names:
            n = int(np.prod(self.shapes[k], dtype=np.int64))
            self.offsets[k] = (at, at + n)
            at += n
        self.n_values = at
        self.data = np.zeros(at + extra, dtype=np.float32)
        self.extra = self.data[at:]

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """Names and shapes in order (equal on every process, or the sums mix tensors up)."""
        return [(k, self.shapes[k]) for k in self.names]

    def view(self, name: str) -> np.ndarray:
        a, b = self.offsets[name]
        return self.data[a:b].reshape(self.shapes[name])

    def pack(self, arrays: dict[str, np.ndarray], scale: float = 1.0) -> np.ndarray:
        """Copy ``scale * arrays[name]`` into the vector (every name of the layout)."""
        if len(arrays) != len(self.names):
            raise DistributedError(
                f"the model has {len(arrays)} gradients, the exchange buffer was laid out for {len(self.names)}"
            )
        s = np.float32(scale)
        for k in self.names:
            a, b = self.offsets[k]
            out = self.data[a:b]
            g = arrays[k].reshape(-1)
            if s == 1:
                np.copyto(out, g, casting="same_kind")
            else:
                np.multiply(g, s, out=out, casting="same_kind")
        return self.data

    def unpack(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy the vector back into ``arrays`` (in place)."""
        for k in self.names:
            a, b = self.offsets[k]
            np.copyto(arrays[k], self.data[a:b].reshape(self.shapes[k]))
