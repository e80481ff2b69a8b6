"""Learning-rate schedules: values, configs, the optimizer evaluating them per step, and exact resume."""

import json
import math

import numpy as np
import pytest

import regnet
from regnet import ConfigError, Model, UnknownComponentError, schedules
from regnet.optimizers import SGD

# -- values -----------------------------------------------------------------------------------------


def test_constant_step_multi_step_exponential_linear():
    assert schedules.get(0.3)(10**9) == 0.3
    step = schedules.get({"type": "step", "initial": 1.0, "step_size": 3, "gamma": 0.5})
    assert [step(i) for i in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    multi = schedules.get({"type": "multi_step", "initial": 2.0, "milestones": [2, 5], "gamma": 0.1})
    assert [multi(i) for i in range(7)] == pytest.approx([2, 2, 0.2, 0.2, 0.2, 0.02, 0.02])
    exp = schedules.get({"type": "exponential", "initial": 1.0, "decay_rate": 0.5, "decay_steps": 4})
    assert exp(2) == pytest.approx(0.5**0.5) and exp(8) == pytest.approx(0.25)
    stairs = {"type": "exponential", "initial": 1.0, "decay_rate": 0.5, "decay_steps": 4, "staircase": True}
    stairs = schedules.get(stairs)
    assert [stairs(i) for i in (0, 3, 4, 7, 8)] == [1, 1, 0.5, 0.5, 0.25]
    lin = schedules.get({"type": "linear", "initial": 1.0, "decay_steps": 4, "final": 0.2})
    assert [lin(i) for i in range(6)] == pytest.approx([1, 0.8, 0.6, 0.4, 0.2, 0.2])


def test_cosine_decays_to_alpha_and_stays():
    cos = schedules.get({"type": "cosine", "initial": 0.1, "decay_steps": 100, "alpha": 0.1})
    assert cos(0) == pytest.approx(0.1)
    assert cos(50) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))
    assert cos(100) == pytest.approx(0.01) and cos(10**6) == pytest.approx(0.01)
    values = [cos(i) for i in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def sgdr_by_walking(step, initial, first, t_mul, m_mul, alpha):
    """SGDR by walking the periods one by one (an independent reference)."""
    start, length, i = 0, first, 0
    while step >= start + length:
        start, length, i = start + length, length * t_mul, i + 1
    t = (step - start) / length
    return initial * m_mul**i * (alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * t)))


@pytest.mark.parametrize(("t_mul", "m_mul"), [(1.0, 1.0), (2.0, 1.0), (2.0, 0.5), (3.0, 0.9), (1.5, 1.0)])
def test_cosine_restarts_matches_walking_the_periods(t_mul, m_mul):
    config = {"type": "cosine_restarts", "initial": 0.5, "first_decay_steps": 10, "alpha": 0.05}
    sgdr = schedules.get({**config, "t_mul": t_mul, "m_mul": m_mul})
    for step in range(0, 2000, 3):
        assert sgdr(step) == pytest.approx(sgdr_by_walking(step, 0.5, 10, t_mul, m_mul, 0.05), rel=1e-9, abs=1e-12)
    restarts = [10, 30, 70] if t_mul == 2.0 else []
    for k, step in enumerate(restarts, start=1):  # a restart jumps back up
        assert sgdr(step) == pytest.approx(0.5 * m_mul**k) and sgdr(step - 1) < 0.1


def test_warmup_wraps_any_schedule_and_shifts_it():
    inner = {"type": "cosine", "initial": 1.0, "decay_steps": 10}
    warm = schedules.get({"type": "warmup", "warmup_steps": 4, "schedule": inner})
    assert [warm(i) for i in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    cos = schedules.get(inner)
    assert [warm(4 + i) for i in range(12)] == [cos(i) for i in range(12)]
    from_start = schedules.get({"type": "warmup", "warmup_steps": 2, "schedule": 0.4, "start": 0.2})
    assert [from_start(i) for i in range(4)] == pytest.approx([0.3, 0.4, 0.4, 0.4])


def test_one_cycle_follows_the_pytorch_definition():
    oc = schedules.get({"type": "one_cycle", "max_lr": 1.0, "total_steps": 100})
    assert oc(0) == pytest.approx(1 / 25)
    assert oc(29) == pytest.approx(1.0)  # the peak at pct_start * total_steps - 1
    assert oc(99) == pytest.approx(1 / 25 / 1e4) and oc(500) == pytest.approx(1 / 25 / 1e4)
    values = [oc(i) for i in range(100)]
    assert np.all(np.diff(values[:30]) > 0) and np.all(np.diff(values[29:]) < 0)
    lin = schedules.get({"type": "one_cycle", "max_lr": 1.0, "total_steps": 11, "pct_start": 0.5, "anneal": "linear"})
    assert lin(2) == pytest.approx(0.04 + 0.96 * 2 / 4.5)


# -- configs and errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"type": "constant", "value": 0.1},
        {"type": "step", "initial": 0.1, "step_size": 5},
        {"type": "multi_step", "initial": 0.1, "milestones": [3, 9]},
        {"type": "exponential", "initial": 0.1, "decay_rate": 0.9},
        {"type": "linear", "initial": 0.1, "decay_steps": 10},
        {"type": "cosine", "initial": 0.1, "decay_steps": 10},
        {"type": "cosine_restarts", "initial": 0.1, "first_decay_steps": 10},
        {"type": "warmup", "warmup_steps": 3, "schedule": {"type": "cosine", "initial": 0.1, "decay_steps": 10}},
        {"type": "one_cycle", "max_lr": 0.1, "total_steps": 10},
    ],
    ids=lambda c: c["type"],
)
def test_config_round_trips_through_json(config):
    s = schedules.get(config)
    again = schedules.get(json.loads(json.dumps(s.get_config())))
    assert again == s and again.get_config() == s.get_config()
    assert [again(i) for i in range(0, 40, 3)] == [s(i) for i in range(0, 40, 3)]


def test_unknown_schedule_names_get_did_you_mean():
    with pytest.raises(UnknownComponentError, match="did you mean 'cosine'"):
        schedules.get({"type": "cosin", "initial": 0.1})
    with pytest.raises(ConfigError, match="did you mean 'cosine'") as info:
        regnet.optimizers.get({"type": "sgd", "learning_rate": {"type": "cosin"}})
    assert info.value.field == "learning_rate"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"type": "cosine", "initial": -0.1, "decay_steps": 10}, "initial"),
        ({"type": "cosine", "initial": 0.1, "decay_steps": 0}, "decay_steps"),
        ({"type": "cosine", "initial": 0.1, "decay_steps": 10, "alpha": 2}, "alpha"),
        ({"type": "multi_step", "initial": 0.1, "milestones": [5, 3]}, "milestones"),
        ({"type": "cosine", "initial": float("nan"), "decay_steps": 10}, "initial"),
        ({"type": "cosine", "initial": 0.1, "decay_step": 10}, "decay_step"),
    ],
)
def test_bad_schedule_configs_name_the_field(config, field):
    with pytest.raises(ConfigError) as info:
        regnet.optimizers.get({"type": "sgd", "learning_rate": config})
    assert info.value.field == f"learning_rate.{field}"


def test_nested_errors_name_the_path():
    bad = {"type": "warmup", "warmup_steps": 3, "schedule": {"type": "cosine", "initial": 0.1, "decay_steps": -1}}
    with pytest.raises(ConfigError) as info:
        regnet.optimizers.get({"type": "adam", "learning_rate": bad})
    assert info.value.field == "learning_rate.schedule.decay_steps"


# -- the optimizer evaluates the schedule on its step count -----------------------------------------


def test_each_update_uses_the_schedule_at_its_step():
    rate = {"type": "multi_step", "initial": 1.0, "milestones": [2, 4], "gamma": 0.5}
    opt = SGD(learning_rate=rate)
    assert opt.learning_rate == 1.0 and opt.schedule(4) == 0.25
    p = {"w": np.zeros(1, np.float32)}
    used = []
    for _ in range(6):
        before = p["w"].copy()
        opt.step(p, {"w": np.ones(1, np.float32)})
        used.append(float(before[0] - p["w"][0]))
        assert opt.learning_rate == used[-1]
    assert used == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert opt.get_config()["learning_rate"] == opt.schedule.get_config()


def test_schedule_is_saved_in_the_training_config_and_restored(tmp_path):
    x = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    spec = {"input_shape": [3], "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}]}
    rate = {"type": "cosine", "initial": 0.05, "decay_steps": 20}
    model = Model.from_spec(spec, seed=0).compile(optimizer={"type": "adam", "learning_rate": rate})
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.h5")
    config = regnet.load(tmp_path / "m.h5").training_config()
    assert config["optimizer"]["learning_rate"] == {"type": "cosine", "initial": 0.05, "decay_steps": 20, "alpha": 0.0}
    loaded = regnet.load(tmp_path / "m.h5")
    assert loaded.optimizer.schedule == model.optimizer.schedule
    assert loaded.optimizer.iterations == 10 and loaded.optimizer.learning_rate == model.optimizer.learning_rate


def test_a_schedule_that_overflows_stops_training_like_a_divergence():
    x = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    spec = {
        "input_shape": [3],
        "layers": [{"type": "BatchNorm", "name": "bn"}, {"type": "Dense", "units": 2, "activation": "softmax"}],
    }
    growth = {"type": "exponential", "initial": 0.0, "decay_rate": 1e200, "decay_steps": 1}  # 1e400 overflows

    def build():
        return Model.from_spec(spec, seed=0).compile(optimizer={"type": "sgd", "learning_rate": growth})

    model = build()
    with pytest.raises(regnet.TrainingDivergedError, match="learning-rate schedule fails at step 2") as info:
        model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert info.value.batch == 3 and model.optimizer.iterations == 2
    two_steps = build()
    two_steps.fit(x[:16], y[:16], epochs=1, batch_size=8, shuffle=False, verbose=0)
    for k, v in two_steps.state_dict().items():  # BatchNorm statistics included: the failed step left no trace
        assert v.tobytes() == model.state_dict()[k].tobytes(), k
