"""Weights that cannot be right: NaN or infinite values in a file whose checksums are valid.

hypothesis picks tensors (weights and optimizer slots), positions and values (NaN, +inf, -inf);
the file is rewritten with matching sha256 attributes, as a writer that saved a diverged model
would. Every loader refuses it by default, naming each bad tensor and leaving the model as it
was; ``allow_non_finite=True`` loads it exactly. Counts are recorded with ``fuzz_cases``.
"""

import re

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regnet
from regnet import FileFormatError, Model, io
from tests.specs import trained_sgd_file

SPEC = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 8, "activation": "relu"},
        {"type": "BatchNorm", "name": "norm"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}
BAD = {"NaN": np.nan, "+inf": np.inf, "-inf": -np.inf}


def fresh():
    return Model.from_spec(SPEC, seed=1).compile(optimizer={"type": "SGD", "momentum": 0.9})


@pytest.fixture
def saved(tmp_path):
    path = trained_sgd_file(SPEC, tmp_path / "model.h5")
    with h5py.File(path, "r") as f:
        tensors = [f"weights/{k}" for k in io.ModelFile(f, str(path)).tensors("weights")]
        tensors += [f"optimizer/{k}" for k in io.ModelFile(f, str(path)).tensors("optimizer")]
    return path, sorted(tensors)


def spoil(path, where, flat_positions, value):
    """Put ``value`` at ``flat_positions`` of dataset ``where``, with a matching checksum."""
    with h5py.File(path, "r+") as f:
        data = f[where][()]
        flat = data.reshape(-1)
        flat[[p % flat.size for p in flat_positions]] = value
        group, _, name = where.rpartition("/")
        del f[where]
        io._write_array(f[group], name, data)
    return data


def loaders(path):
    yield "load", lambda **kw: regnet.load(path, **kw), True
    yield "load(compile=False)", lambda **kw: regnet.load(path, compile=False, **kw), False
    yield "Model.load", lambda **kw: Model.load(path, **kw), True
    yield "load_weights", lambda **kw: fresh().load_weights(path, **kw), False
    yield "load_weights(strict=False)", lambda **kw: fresh().load_weights(path, strict=False, **kw), False
    yield "restore", lambda **kw: regnet.checkpoint.restore(fresh(), path, **kw), True


def test_non_finite_tensors_are_refused_by_default_and_loaded_on_request(saved, fuzz_cases):
    path, tensors = saved
    pristine = path.read_bytes()

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        spoiled=st.dictionaries(
            st.sampled_from(tensors),
            st.tuples(st.lists(st.integers(0, 10**6), min_size=1, max_size=5), st.sampled_from(sorted(BAD))),
            min_size=1,
            max_size=4,
        )
    )
    def check(spoiled):
        fuzz_cases("spoiled files")
        path.write_bytes(pristine)
        expected = {w: spoil(path, w, pos, BAD[kind]) for w, (pos, kind) in spoiled.items()}
        in_weights = any(w.startswith("weights/") for w in spoiled)
        for what, call, reads_optimizer in loaders(path):
            if not in_weights and not reads_optimizer:
                call()  # only the optimizer state is spoiled, and this loader never reads it
                continue
            with pytest.raises(FileFormatError, match="NaN or infinite") as info:
                call()
            msg = str(info.value)
            for w in spoiled:
                if w.startswith("weights/") or reads_optimizer:
                    assert f"'{w}'" in msg, (what, w, msg)
            assert "allow_non_finite=True" in msg
            fuzz_cases("refusals")
        model = regnet.load(path, allow_non_finite=True)
        state = {f"weights/{k}": v for k, v in model.state_dict().items()}
        state.update({f"optimizer/{k}": v for k, v in model.optimizer.state_dict().items()})
        for w, data in expected.items():
            np.testing.assert_array_equal(state[w], data)  # NaN where NaN, inf where inf
        fresh().load_weights(path, allow_non_finite=True)

    check()


def test_a_refused_file_leaves_the_model_untouched(saved):
    path, _ = saved
    spoil(path, "weights/out/kernel", [0, 5], np.nan)
    model = fresh()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(FileFormatError, match=re.escape("'weights/out/kernel' (2 NaN, 0 infinite of 24)")):
        model.load_weights(path)
    with pytest.raises(FileFormatError):
        regnet.checkpoint.restore(model, path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert model.epoch == 0


def test_a_diverged_model_saved_as_is_needs_the_opt_in(tmp_path):
    model = fresh()
    model.get_layer("norm").buffers["moving_variance"][:] = np.inf
    model.save(tmp_path / "diverged.h5")  # saving is not refused: the file records what happened
    with pytest.raises(FileFormatError, match="weights/norm/moving_variance"):
        regnet.load(tmp_path / "diverged.h5")
    again = regnet.load(tmp_path / "diverged.h5", allow_non_finite=True)
    assert np.isinf(again.get_layer("norm").buffers["moving_variance"]).all()
