"""The parts of regnet.distributed that need no MPI run: batch shards, the flat buffer, metric
layouts, the watchdog, the collective mark, the timeout setting, the missing-mpi4py error, and the
synchronised BatchNorm and global-mask Dropout (simulated with threads standing for processes)."""

import sys
import threading
import time

import numpy as np
import pytest

import regnet
from regnet import sharding
from regnet.distributed import batches, faults, mpi
from regnet.distributed.flat import FlatBuffer
from regnet.distributed.totals import Layout, add
from regnet.distributed.watchdog import Watchdog
from regnet.errors import ConfigError, DataError, MissingDependencyError


# -- shards of a batch ------------------------------------------------------------------------------
@pytest.mark.parametrize(("total", "ranks"), [(8, 2), (9, 2), (10, 4), (7, 7), (130, 3)])
def test_shards_cover_the_batch_once_in_order(total, ranks):
    parts = [batches.bounds(total, r, ranks) for r in range(ranks)]
    assert parts[0][0] == 0 and parts[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [b - a for a, b in parts]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_global_batch_per_rank_and_global():
    assert batches.global_size(32, 4, "per_rank") == 128
    assert batches.global_size(32, 4, "global") == 32
    with pytest.raises(ConfigError, match="cannot be shared by 4 processes") as info:
        batches.global_size(3, 4, "global")
    assert info.value.field == "batch_size"
    with pytest.raises(ConfigError, match="positive integer"):
        batches.global_size(0, 2, "per_rank")
    with pytest.raises(ConfigError, match="per_rank, global") as info:
        batches.mode("local")
    assert info.value.field == "batch"


def test_a_last_batch_smaller_than_the_ranks_is_refused():
    batches.check_last_batch(1000, 8, 128, 4)  # last batch 104
    batches.check_last_batch(1024, 8, 128, 4)  # no partial batch
    batches.check_last_batch(1001, 4, 128, 4)  # steps_per_epoch cut the epoch before the partial batch
    with pytest.raises(DataError, match="the last one holds 2 sample"):
        batches.check_last_batch(1026, 9, 128, 4)


# -- one vector for every gradient ------------------------------------------------------------------
def test_flat_buffer_packs_scaled_and_unpacks_in_place():
    rng = np.random.default_rng(0)
    grads = {"a/kernel": rng.normal(size=(3, 4)).astype(np.float32), "a/bias": rng.normal(size=4).astype(np.float32)}
    buf = FlatBuffer({k: v.shape for k, v in grads.items()}, extra=3)
    assert buf.data.shape == (19,) and buf.extra.shape == (3,) and buf.nbytes == 76
    buf.pack(grads, 0.25)
    np.testing.assert_array_equal(buf.view("a/kernel"), grads["a/kernel"] * np.float32(0.25))
    buf.data[:16] *= 2
    targets = {k: np.zeros_like(v) for k, v in grads.items()}
    buf.unpack(targets)
    np.testing.assert_array_equal(targets["a/bias"], grads["a/bias"] * np.float32(0.5))
    assert buf.layout() == [("a/kernel", (3, 4)), ("a/bias", (4,))]


def test_metric_statistics_round_trip_through_a_vector():
    stats = [{"correct": np.float64(3), "count": np.float64(4)}, {"matrix": np.eye(3)}, {}]
    layout = Layout(stats)
    out = np.zeros(layout.size + 1)
    layout.flatten(stats, out[1:])
    back = layout.unflatten(out[1:] * 2)
    assert back[0]["correct"] == 6 and back[0]["count"] == 8 and back[2] == {}
    np.testing.assert_array_equal(back[1]["matrix"], 2 * np.eye(3))


def test_totals_add_in_rank_order_and_skip_empty_processes():
    parts = [(1.5, 3, [{"n": np.array([1.0, 2.0])}]), (0.0, 0, [{}]), (2.5, 2, [{"n": np.array([3.0, 0.5])}])]
    loss_sum, seen, totals = add(parts)
    assert (loss_sum, seen) == (4.0, 5)
    np.testing.assert_array_equal(totals[0]["n"], [4.0, 2.5])


# -- failure handling -------------------------------------------------------------------------------
def test_watchdog_fires_on_a_long_block_only():
    fired = []
    dog = Watchdog(0.3, lambda what, waited: fired.append((what, waited)))
    with dog.watch("a quick exchange"):
        pass
    time.sleep(0.5)
    assert fired == []
    with dog.watch("the gradient exchange"):
        time.sleep(1.0)
    assert fired and fired[0][0] == "the gradient exchange" and fired[0][1] > 0.3


def test_watchdog_without_deadline_starts_no_thread():
    dog = Watchdog(0, lambda *a: None)
    with dog.watch("x"):
        pass
    assert dog._thread is None


def test_collective_mark():
    exc = faults.collective(DataError("x"))
    assert faults.is_collective(exc) and not faults.is_collective(DataError("y"))
    assert faults.describe(DataError("bad\x1b[2J  news")) == "DataError: bad\\x1b[2J news"


def test_timeout_setting(monkeypatch):
    monkeypatch.delenv("REGNET_MPI_TIMEOUT", raising=False)
    assert mpi.timeout_setting() == mpi.DEFAULT_TIMEOUT
    assert mpi.timeout_setting(0) is None and mpi.timeout_setting(2.5) == 2.5
    monkeypatch.setenv("REGNET_MPI_TIMEOUT", "12")
    assert mpi.timeout_setting() == 12.0
    monkeypatch.setenv("REGNET_MPI_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="REGNET_MPI_TIMEOUT"):
        mpi.timeout_setting()
    for bad in (-1, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ConfigError, match="seconds"):
            mpi.timeout_setting(bad)


def test_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'regnet\[mpi\]'"):
        mpi.Communicator()


# -- layers over a shared batch, with threads standing for processes ---------------------------------
class _Threads:
    """``ranks`` threads that sum arrays among themselves (what MPI_Allreduce does)."""

    def __init__(self, ranks):
        self.ranks = ranks
        self.barrier = threading.Barrier(ranks)
        self.slots = [None] * ranks

    def summer(self, rank):
        def total(values):
            self.slots[rank] = np.array(values)
            self.barrier.wait()
            out = self.slots[0].copy()
            for other in self.slots[1:]:
                out = out + other
            self.barrier.wait()
            return out

        return total

    def run(self, work):
        results = [None] * self.ranks
        errors = []

        def target(rank):
            try:
                results[rank] = work(rank)
            except BaseException as exc:  # surfaced in the main thread
                errors.append(exc)
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.ranks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


def _layer(spec, shape, seed=0):
    model = regnet.Model([spec], shape, seed=seed)
    return model.layers[0]


@pytest.mark.parametrize("shape", [(6,), (3, 5, 4)])
@pytest.mark.parametrize(("total", "ranks"), [(8, 2), (11, 3)])
def test_sharded_batchnorm_equals_batchnorm_on_the_whole_batch(shape, total, ranks):
    """Forward and backward of shards with global statistics give the rows of the whole batch's
    pass, with each shard's gradient in its own ``1 / rows`` scale (as a shard's mean loss gives)."""
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(total, *shape)) * 3 + 1).astype(np.float32)
    up = rng.normal(size=x.shape).astype(np.float32)  # dL/dy of a sum loss
    whole = _layer({"type": "BatchNorm", "momentum": 0.5}, shape)
    y_all = whole.forward(x, training=True)
    dx_all = whole.backward(up / total)
    group = _Threads(ranks)
    layers = [_layer({"type": "BatchNorm", "momentum": 0.5}, shape) for _ in range(ranks)]

    def work(rank):
        start, stop = batches.bounds(total, rank, ranks)
        layer = layers[rank]
        with sharding.active(sharding.BatchShard(start, stop, total, group.summer(rank))):
            y = layer.forward(x[start:stop], training=True)
            dx = layer.backward(up[start:stop] / (stop - start))
        return start, stop, y, dx

    for start, stop, y, dx in group.run(work):
        np.testing.assert_allclose(y, y_all[start:stop], rtol=1e-5, atol=1e-5)
        share = (stop - start) / total
        np.testing.assert_allclose(dx * share, dx_all[start:stop], rtol=1e-4, atol=1e-6)
    for layer in layers:  # running statistics are the whole batch's, on every replica
        np.testing.assert_allclose(layer.buffers["moving_mean"], whole.buffers["moving_mean"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.buffers["moving_variance"], whole.buffers["moving_variance"], rtol=1e-5)


def test_sharded_dropout_draws_the_rows_of_the_whole_batch_mask():
    x = np.ones((10, 3, 4), np.float32)
    whole = regnet.Model([{"type": "Dropout", "rate": 0.5}], (3, 4), seed=7)
    expected = whole.forward(x, training=True)
    for start, stop in [(0, 5), (5, 10), (3, 7)]:
        part = regnet.Model([{"type": "Dropout", "rate": 0.5}], (3, 4), seed=7)
        with sharding.active(sharding.BatchShard(start, stop, 10, lambda v: v)):
            got = part.forward(x[start:stop], training=True)
        np.testing.assert_array_equal(got, expected[start:stop])
        assert part.rng.bit_generator.state == whole.rng.bit_generator.state  # the same numbers drawn


def test_no_shard_outside_data_parallel_training():
    assert sharding.current() is None
    with sharding.active(sharding.BatchShard(0, 2, 4, lambda v: v)):
        assert sharding.current().share == 0.5
    assert sharding.current() is None
