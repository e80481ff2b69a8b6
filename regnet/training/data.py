"""Data in every form ``fit``, ``evaluate`` and ``predict`` take, served as checked batches.

* **NumPy arrays** (in memory): checked and converted to the input's dtype (float32, or int64
  for token ids) once; a model with several inputs takes a dict ``{input name: array}`` or a list
  of arrays in the order the inputs were declared (served as ``validation.Inputs``); each epoch visits them in
  the order of ``model.rng.permutation(n)`` (with ``shuffle``).
* **Arrays on disk**: a ``numpy.memmap``, an ``h5py.Dataset`` or any array-like with ``shape``,
  ``dtype`` and slicing. They are never loaded whole: samples are read in chunks of consecutive
  rows (about ``CHUNK_BYTES`` each), each chunk checked (numbers, finite) and converted to
  float32 as it is read. With ``shuffle`` an epoch visits the chunks in a random order and the
  samples of each chunk in a random order (samples are mixed within a chunk, not across the
  whole set). A memmap that maps its file directly is read with plain file reads, so the pages
  read do not stay mapped in the process (its resident memory stays at a few chunks). Targets
  ``y`` and ``sample_weight`` are arrays of the same length (``y`` may be on disk too); the
  targets are checked in one pass before training.
* **A batch dataset**: a ``regnet.Dataset`` or any object with ``__len__`` and
  ``__getitem__`` (a ``keras.utils.Sequence`` works): ``len(ds)`` batches per epoch, ``ds[i]``
  the ``i``-th batch ``(x, y)`` or ``(x, y, sample_weight)`` (``x`` alone for ``predict``). With
  ``shuffle`` an epoch visits the batches in a random order; ``ds.on_epoch_end()`` is called
  after each epoch when it exists.
* **Any iterable of batches** (a generator, a data loader): ``steps_per_epoch`` batches per
  epoch, required when it has no ``len()``. A one-shot iterator is read on from epoch to epoch
  and training stops (with a warning) when it runs out; an iterable that can be iterated again
  (a list, a loader) is started afresh when it runs out.

Batches from datasets and iterables are checked one by one before they are trained on: a batch
whose shapes or values do not fit raises a ``DataError`` naming the batch and the epoch, and the
model is left as it was after the previous step.
"""

import math
import mmap
import numbers
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..text import shape as shape_text
from ..text import show
from . import validation, weighting

#: bytes of samples read from disk at a time (one chunk); the working memory is a few chunks
CHUNK_BYTES = 32 << 20

Batch = tuple  # (x, y, sample_weight): y and sample_weight may be None


class Dataset:
    """Base class of batch datasets: ``len(ds)`` batches, ``ds[i]`` the ``i``-th batch, ``(x, y)``
    or ``(x, y, sample_weight)`` (``x`` alone for ``predict``), and an optional
    ``on_epoch_end()`` hook. Any object with ``__len__`` and ``__getitem__`` serves the same way;
    subclassing documents the intent."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError

    def on_epoch_end(self) -> None:
        """Called by ``fit`` after each epoch (e.g. to reshuffle files)."""


# -- what kind of data ------------------------------------------------------------------------------
def kind(x: object) -> str:
    """``"array"``, ``"disk"``, ``"dataset"`` or ``"iterable"`` (see the module docstring)."""
    if isinstance(x, np.memmap):
        return "disk"
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], (list, tuple)) and x[0]:
        first = x[0][0]
        if isinstance(first, (np.ndarray, dict)) or (
            isinstance(first, (list, tuple)) and first and all(isinstance(a, np.ndarray) for a in first)
        ):  # a list of (x, y) batches (x an array, a dict or a list of arrays: several inputs)
            return "dataset"
    if isinstance(x, (np.ndarray, np.generic, list, tuple, numbers.Number)):
        return "array"
    if x is None or isinstance(x, (dict, str, bytes, bytearray)):
        return "other"
    if all(hasattr(x, a) for a in ("shape", "dtype", "__getitem__", "__len__")):
        return "disk"  # an h5py.Dataset, a zarr array, ...
    if hasattr(x, "__len__") and hasattr(x, "__getitem__"):
        return "dataset"
    if hasattr(x, "__iter__"):
        return "iterable"
    return "other"


def _not_data(x: object, what: str) -> DataError:
    return DataError(
        f"{what} must be a NumPy array (or an array on disk, a regnet.Dataset or an iterable of "
        f"batches), got {type(x).__name__}"
    )


def steps(value: object, what: str = "steps_per_epoch") -> int | None:
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"expected None or a positive integer, got {show(value)}", field=what)
    return int(value)


def open_source(
    model: Any,
    x: object,
    y: object = None,
    *,
    batch_size: int,
    sample_weight: object = None,
    steps: int | None = None,
    targets: bool = True,
    what: str = "x",
    steps_field: str = "steps_per_epoch",
) -> "Source":
    """A checked ``Source`` of batches of ``x`` (and ``y``, ``sample_weight``) for ``model``.

    ``targets`` is False for ``predict``; ``steps_field`` is the argument ``steps`` came from
    (``steps_per_epoch``, ``validation_steps`` or ``steps``), named by errors about it. Everything
    that can be checked before training is: arrays whole, arrays on disk by shape and dtype (and
    their targets in one pass)."""
    k = "array" if isinstance(x, dict) and len(model.inputs) > 1 else kind(x)  # {input name: array}
    if targets and y is None and k in ("array", "disk"):
        where = "in memory" if k == "array" else "on disk"
        raise DataError(
            f"{_what(what, 'y')} is missing: {what} is an array {where}, so its targets must be given as "
            f"{_what(what, 'y')} (or give batches (x, y) from a dataset or an iterable)"
        )
    if k == "array":
        xs = validation.inputs(model, x, what)
        ys = validation.targets(model, y, len(xs), _what(what, "y")) if targets else None
        sw = None if sample_weight is None or not targets else weighting.sample_weights(sample_weight, len(xs))
        return ArraySource(model, xs, ys, sw, batch_size, steps, steps_field)
    if k == "disk":
        return ChunkedSource.open(model, x, y if targets else None, sample_weight, batch_size, steps, what, steps_field)
    if k == "other":
        raise _not_data(x, what)
    if y is not None:
        raise DataError(f"{what} yields batches, so y must be None (give the targets inside each batch)")
    if sample_weight is not None:
        raise DataError(f"{what} yields batches: give sample weights inside each batch, (x, y, sample_weight)")
    if k == "dataset":
        return BatchSource(model, x, steps, targets, steps_field)
    return IterableSource(model, x, steps, targets, what, steps_field)


def _classes(model: Any) -> int:
    """The number of classes of a model whose outputs ``weighting.class_table`` accepted."""
    k = weighting.n_classes(tuple(model.output_shape))
    if k is None:
        raise ConfigError("class weights need a classifier", field="class_weight")
    return k


def _what(what: str, name: str) -> str:
    """``"validation x"`` -> ``"validation y"``."""
    return what[:-1] + name if what.endswith("x") else name


def _own(checked: Any, given: object) -> Any:
    """``checked`` (made from ``given``), copied unless it holds memory of its own: a loader may
    refill the buffer it yields for the next batch, while the divergence guard keeps the batches
    it may replay after a diverged step."""
    if isinstance(checked, validation.Inputs):
        given_arrays = list(given.values()) if isinstance(given, dict) else list(given)  # type: ignore[call-overload]
        return validation.Inputs(_own(a, g) for a, g in zip(checked.arrays, given_arrays))
    shared = not checked.flags.owndata or (isinstance(given, np.ndarray) and np.may_share_memory(checked, given))
    return checked.copy() if shared else checked


def check_batch(model: Any, item: object, where: str, targets: bool = True, table: Any = None) -> Batch:
    """One batch from a dataset or an iterable, checked: ``(x, y, sample_weight)``, in arrays of
    its own (never the loader's buffers)."""
    if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
        parts = list(item) + [None] * (3 - len(item))
    elif not targets:
        parts = [item, None, None]
    else:
        got = type(item).__name__
        if isinstance(item, (tuple, list)):
            got = f"a {got} of length {len(item)}"
        raise DataError(f"{where}: expected a batch (x, y) or (x, y, sample_weight), got {got}")
    x = _own(validation.inputs(model, parts[0], f"x of {where}"), parts[0])
    if not targets:
        return x, None, None
    if parts[1] is None:
        raise DataError(f"{where}: the batch has no targets; expected (x, y) or (x, y, sample_weight)")
    y = _own(validation.targets(model, parts[1], len(x), f"y of {where}"), parts[1])
    w = None
    if parts[2] is not None:
        w = _own(weighting.sample_weights(parts[2], len(x), f"sample_weight of {where}"), parts[2])
    if isinstance(table, np.ndarray):
        w = weighting.combine(table, y, w)
    return x, y, w


# -- sources --------------------------------------------------------------------------------------
class Source:
    """Batches of one data set: ``n_batches`` per epoch and ``epoch(rng, shuffle)``."""

    n_batches: int = 0
    n_samples: int | None = None
    exhausted = False  # an iterator that ran out (training stops)

    def epoch(self, rng: np.random.Generator, shuffle: bool) -> Iterator[Batch]:
        """The batches of one epoch. Every draw from ``rng`` is made here, before the first
        batch (the divergence guard's checkpoints then hold the generator as it was)."""
        raise NotImplementedError

    def split(self, fraction: float, val_batch_size: int) -> "tuple[Source, Source]":
        """``(training, validation)``: the last ``fraction`` of the samples for validation (served
        in batches of ``val_batch_size``). The two parts open files of their own: close this
        source too."""
        raise ConfigError(
            "validation_split needs arrays (in memory or on disk); give validation_data for batch datasets "
            "and iterables",
            field="validation_split",
        )

    def weigh(self, table: "np.ndarray | str | None") -> None:
        """Apply class weights (a table, or ``"balanced"`` over this source's targets)."""
        if isinstance(table, str):
            raise ConfigError(
                "class_weight='balanced' needs the targets before training (arrays in memory or on disk); "
                "give a dict {class: weight}",
                field="class_weight",
            )
        self.table = table

    def close(self) -> None:
        """Release open files."""


def _split_point(n: int, fraction: float) -> int:
    """The first validation sample: Keras's ``split_at = floor(n * (1 - validation_split))``
    (``keras/src/trainers/data_adapters/array_slicing.py``), so validation gets ``n - split_at``
    samples (10 at 0.25: 3; 5 at 0.5: 3)."""
    n_val = n - int(math.floor(n * (1.0 - fraction)))
    if n_val < 1 or n_val >= n:
        raise ConfigError(
            f"validation_split={fraction} of {n} samples leaves {n - n_val} for training and {n_val} for "
            f"validation; both need at least one",
            field="validation_split",
        )
    return n - n_val


def _n_batches(n: int, batch_size: int, steps: int | None, field: str) -> int:
    natural = -(-n // batch_size)
    if steps is not None and steps > natural:
        raise ConfigError(
            f"{field}={steps} is more than the {natural} batches of {n} samples (batch size {batch_size})",
            field=field,
        )
    return natural if steps is None else steps


class ArraySource(Source):
    """Arrays in memory (already checked)."""

    def __init__(self, model, x, y, sample_weight, batch_size, steps, field="steps_per_epoch"):
        self.model, self.x, self.y, self.sw = model, x, y, sample_weight
        self.w = sample_weight
        self.batch_size, self.steps, self.field = batch_size, steps, field
        self.n_samples = len(x)
        self.n_batches = _n_batches(len(x), batch_size, steps, field)

    def split(self, fraction, val_batch_size):
        cut = _split_point(len(self.x), fraction)
        parts = []
        for s, bs in ((slice(0, cut), self.batch_size), (slice(cut, None), val_batch_size)):
            sw = None if self.sw is None else self.sw[s]
            y = None if self.y is None else self.y[s]
            steps = self.steps if s.start == 0 else None
            parts.append(ArraySource(self.model, self.x[s], y, sw, bs, steps, self.field))
        return parts[0], parts[1]

    def weigh(self, table):
        if table is None:
            return
        if isinstance(table, str):
            k = _classes(self.model)
            counts = np.bincount(weighting.class_indices(self.y, k), minlength=k)
            table = weighting.balanced(counts)
        self.w = weighting.combine(table, self.y, self.sw)

    def epoch(self, rng, shuffle):
        order = rng.permutation(self.n_samples) if shuffle else None
        return self._batches(order)

    def _batches(self, order):
        bs = self.batch_size
        for b in range(self.n_batches):
            idx = slice(b * bs, (b + 1) * bs) if order is None else order[b * bs : (b + 1) * bs]
            yield (
                self.x[idx],
                None if self.y is None else self.y[idx],
                None if self.w is None else self.w[idx],
            )


class _FileRows:
    """Rows of a ``numpy.memmap`` read from its file with ``pread`` (nothing stays mapped)."""

    def __init__(self, array: np.memmap) -> None:
        self.dtype, self.shape = array.dtype, array.shape[1:]
        self.row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
        self.offset = int(array.offset)
        self.fd = os.open(str(array.filename), os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self.closed = False

    def __call__(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape), self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8).data)
        done, at = 0, self.offset + start * self.row_bytes
        while done < len(view):
            if hasattr(os, "preadv"):
                got = os.preadv(self.fd, [view[done:]], at + done)
            else:  # pragma: no cover - platforms without preadv
                os.lseek(self.fd, at + done, os.SEEK_SET)
                got = os.readv(self.fd, [view[done:]])
            if got <= 0:
                raise DataError(f"the file behind the memmap ended after {at + done} bytes")
            done += got
        return out

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
            self.closed = True


def _rows(array: Any) -> Any:
    """A function ``(start, stop) -> ndarray`` reading consecutive rows of ``array``."""
    if (
        isinstance(array, np.memmap)
        and isinstance(array.base, mmap.mmap)
        and array.flags.c_contiguous
        and getattr(array, "filename", None)
    ):
        return _FileRows(array)
    return lambda start, stop: np.asarray(array[start:stop])


class ChunkedSource(Source):
    """An array on disk, read in chunks of consecutive rows (see the module docstring)."""

    n_samples: int
    _y_rows: Any

    @classmethod
    def open(cls, model, x, y, sample_weight, batch_size, steps, what, field="steps_per_epoch"):
        if len(model.inputs) > 1:
            validation.inputs(model, x, what)  # refuses one array for several inputs, naming them
        shape, dtype = tuple(x.shape), np.dtype(x.dtype)
        validation.check_dtype(dtype, what)
        validation.check_shape(model, shape, what)
        if shape[0] == 0:
            raise DataError(f"{what} is empty (0 samples)")
        validation.warn_integer_images(dtype, len(shape), what)
        sw = None
        if y is not None:
            if kind(y) not in ("array", "disk"):
                raise DataError(f"{_what(what, 'y')} must be an array (in memory or on disk) when {what} is on disk")
            if len(y) != shape[0]:
                raise DataError(
                    f"{_what(what, 'y')} holds {len(y)} samples (shape {shape_text(np.shape(y), False)}) but "
                    f"{what} holds {shape[0]}"
                )
            if sample_weight is not None:
                sw = weighting.sample_weights(sample_weight, shape[0])
        return cls(model, x, y, sw, batch_size, steps, 0, shape[0], what, field)

    def __init__(self, model, x, y, sw, batch_size, steps, lo, hi, what, field="steps_per_epoch"):
        self.model, self.x, self.y, self.sw = model, x, y, sw
        self.batch_size, self.steps, self.lo, self.hi, self.what = batch_size, steps, lo, hi, what
        self.field = field
        self.table = None
        row_bytes = max(1, np.dtype(x.dtype).itemsize * int(np.prod(x.shape[1:], dtype=np.int64)))
        self.chunk = max(1, CHUNK_BYTES // (row_bytes * batch_size)) * batch_size
        self.starts = list(range(lo, hi, self.chunk))
        self.n_samples = hi - lo
        natural = sum(-(-(min(s + self.chunk, hi) - s) // batch_size) for s in self.starts)
        if steps is not None and steps > natural:
            raise ConfigError(f"{field}={steps} is more than the {natural} batches", field=field)
        self.n_batches = natural if steps is None else steps
        self._x_rows = _rows(x)
        self._y_rows = None if y is None else (_rows(y) if kind(y) == "disk" else lambda a, b: y[a:b])
        if y is not None:
            self._check_targets()

    def _check_targets(self):
        """Every target checked (and, for ``balanced`` class weights, counted) before training."""
        for s in self.starts:
            e = min(s + self.chunk, self.hi)
            validation.targets(self.model, self._y_rows(s, e), e - s, _what(self.what, "y"))

    def split(self, fraction, val_batch_size):
        cut = self.lo + _split_point(self.n_samples, fraction)
        args = (self.model, self.x, self.y, self.sw)
        train = ChunkedSource(*args, self.batch_size, self.steps, self.lo, cut, self.what, self.field)
        try:
            val = ChunkedSource(*args, val_batch_size, None, cut, self.hi, f"validation part of {self.what}")
        except BaseException:
            train.close()
            raise
        return train, val

    def weigh(self, table):
        if isinstance(table, str):
            k = _classes(self.model)
            counts = np.zeros(k, np.int64)
            for s in self.starts:
                e = min(s + self.chunk, self.hi)
                counts += np.bincount(weighting.class_indices(np.asarray(self._y_rows(s, e)), k), minlength=k)
            table = weighting.balanced(counts)
        self.table = table

    def _read(self, start, stop):
        xs = validation.convert(self.model.inputs[0], self._x_rows(start, stop), self.what, first_index=start)
        ys = None
        if self.y is not None:
            ys = validation.targets(self.model, np.asarray(self._y_rows(start, stop)), stop - start, "y")
        w = None if self.sw is None else self.sw[start:stop]
        if self.table is not None and ys is not None:
            w = weighting.combine(self.table, ys, w)
        return xs, ys, w

    def epoch(self, rng, shuffle):
        if not shuffle:
            return self._batches(range(len(self.starts)), None)
        local = np.random.default_rng(rng.integers(2**63))
        return self._batches(local.permutation(len(self.starts)), local)

    def _batches(self, order, local):
        bs, left = self.batch_size, self.n_batches
        for ci in order:
            start = self.starts[ci]
            stop = min(start + self.chunk, self.hi)
            xs, ys, w = self._read(start, stop)
            perm = None if local is None else local.permutation(stop - start)
            for b in range(0, stop - start, bs):
                if left == 0:
                    return
                left -= 1
                idx = slice(b, b + bs) if perm is None else perm[b : b + bs]
                yield xs[idx], None if ys is None else ys[idx], None if w is None else w[idx]
            del xs, ys, w, perm  # freed before the next chunk is read

    def close(self):
        for reader in (self._x_rows, self._y_rows):
            if isinstance(reader, _FileRows):
                reader.close()


class BatchSource(Source):
    """A batch dataset: ``len(ds)`` and ``ds[i]``."""

    def __init__(self, model, ds, steps, targets, field="steps_per_epoch"):
        self.model, self.ds, self.targets = model, ds, targets
        self.table = None
        try:
            n = len(ds)
        except TypeError as exc:
            raise DataError(f"the dataset's len() failed: {exc}") from None
        if not isinstance(n, numbers.Integral) or n <= 0:
            raise DataError(f"the dataset holds no batches (len {show(n)})")
        if steps is not None and steps > n:
            raise ConfigError(f"{field}={steps} is more than the dataset's {n} batches", field=field)
        self.n_batches = n if steps is None else steps

    def epoch(self, rng, shuffle):
        order = rng.permutation(len(self.ds)) if shuffle else np.arange(len(self.ds))
        return self._batches(order[: self.n_batches])

    def _batches(self, order):
        for b, i in enumerate(order):
            where = f"batch {b + 1} (dataset item {int(i)})"
            yield check_batch(self.model, self.ds[int(i)], where, self.targets, self.table)
        hook = getattr(self.ds, "on_epoch_end", None)
        if callable(hook):
            hook()


class IterableSource(Source):
    """An iterable of batches (see the module docstring)."""

    def __init__(self, model, data, steps, targets, what, field="steps_per_epoch"):
        self.model, self.data, self.targets = model, data, targets
        self.table = None
        sized = hasattr(data, "__len__")
        if steps is None and not sized:
            raise ConfigError(
                f"{what} is an iterable without a length: give {field} (the number of batches to take from it)",
                field=field,
            )
        self.steps = steps
        self.n_batches = steps if steps is not None else len(data)
        self.one_shot = hasattr(data, "__next__")  # an iterator: read on, never restarted
        self.it = None
        self.started = False

    def epoch(self, rng, shuffle):
        return self._pass() if self.steps is None else self._steps()

    def _pass(self):
        """One pass over a sized iterable."""
        it = iter(self.data)
        for b in range(self.n_batches):
            try:
                item = next(it)
            except StopIteration:
                if b == 0:
                    self.exhausted = True
                    raise DataError("the iterable of batches is exhausted: it yields no batch") from None
                return  # a pass shorter than len(): fine
            yield check_batch(self.model, item, f"batch {b + 1}", self.targets, self.table)

    def _next(self):
        if self.it is None:
            self.it = iter(self.data)
        try:
            return next(self.it)
        except StopIteration:
            if self.one_shot:
                raise
        self.it = iter(self.data)  # an iterable that starts afresh
        try:
            return next(self.it)
        except StopIteration:
            raise DataError("the iterable of batches yields no batch") from None

    def _steps(self):
        """``steps`` batches from an iterator that goes on from epoch to epoch."""
        for b in range(self.steps):
            try:
                item = self._next()
            except StopIteration:
                self.exhausted = True
                if not self.started:
                    raise DataError("the iterable of batches is exhausted: it yields no batch") from None
                warnings.warn(
                    f"the iterable of batches ran out after batch {b} of this epoch; training stops (give a "
                    f"steps_per_epoch that fits, or an iterable that can be iterated again)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return
            self.started = True
            yield check_batch(self.model, item, f"batch {b + 1}", self.targets, self.table)
