"""Agreement with PyTorch of the activations, losses and optimizers of the first vocabulary
round: forward and input gradient of each activation, value and gradient of each loss (written
in torch ops where torch has no such loss), and 20 optimizer steps with a resume half-way."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.torch_agreement import activation_agrees, loss_agrees, optimizer_agrees  # noqa: E402

# every test here runs on both computation paths: NumPy and the compiled accelerator (regnet.accel)
pytestmark = pytest.mark.usefixtures("accel_path")

F = torch.nn.functional


@pytest.mark.parametrize(
    ("config", "torch_fn"),
    [
        ("relu6", F.relu6),
        ("silu", F.silu),
        ("swish", F.silu),
        ("hard_sigmoid", F.hardsigmoid),
        ("hard_swish", F.hardswish),
        ("hard_silu", F.hardswish),
        ("mish", F.mish),
        ("softplus", F.softplus),
        ("softsign", F.softsign),
        ("exponential", torch.exp),
        ("log_softmax", lambda x: F.log_softmax(x, dim=-1)),
        ("gelu", F.gelu),
        ({"type": "gelu", "approximate": False}, lambda x: F.gelu(x, approximate="none")),
        ({"type": "gelu", "approximate": True}, lambda x: F.gelu(x, approximate="tanh")),
        ({"type": "gelu", "approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
    ],
    ids=str,
)
def test_activation(config, torch_fn, accel_path):
    activation_agrees(config, torch_fn)


def test_activations_far_out_and_log_softmax_over_an_axis(accel_path):
    for name, fn in [("gelu", F.gelu), ("softplus", F.softplus), ("mish", F.mish), ("silu", F.silu)]:
        activation_agrees(name, fn, shape=(3, 40), scale=12.0)
    activation_agrees({"type": "log_softmax", "axis": 1}, lambda x: F.log_softmax(x, dim=1), shape=(2, 4, 3, 3))


def _data(shape=(6, 5), seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)


def _keras_hinge_targets(t):
    return torch.where((t == 0) | (t == 1), 2 * t - 1, t) if bool(((t == 0) | (t == 1)).all()) else t


def test_losses_on_real_targets():
    pred, target = _data()
    loss_agrees("mean_absolute_error", F.l1_loss, pred, target)
    loss_agrees("mae", F.l1_loss, pred, target)
    loss_agrees("huber", F.huber_loss, pred, 2 * target)
    loss_agrees({"type": "huber", "delta": 0.3}, lambda p, t: F.huber_loss(p, t, delta=0.3), pred, target)
    loss_agrees("log_cosh", lambda p, t: torch.log(torch.cosh(p - t)).mean(), pred, 3 * target)
    loss_agrees("cosine_similarity", lambda p, t: -F.cosine_similarity(p, t, dim=-1).mean(), pred, target, atol=1e-6)
    p3, t3 = _data((4, 3, 5), seed=1)
    loss_agrees({"type": "cosine_similarity", "axis": 1}, lambda p, t: -F.cosine_similarity(p, t, dim=1).mean(), p3, t3)


def test_hinge_losses_on_signed_and_binary_labels():
    pred, _ = _data()
    rng = np.random.default_rng(3)
    signed = rng.choice([-1.0, 1.0], pred.shape).astype(np.float32)
    binary = (signed > 0).astype(np.float32)

    def hinge(p, t):
        return torch.clamp(1 - _keras_hinge_targets(t) * p, min=0).mean()

    def squared(p, t):
        return (torch.clamp(1 - _keras_hinge_targets(t) * p, min=0) ** 2).mean()

    for target in (signed, binary):
        loss_agrees("hinge", hinge, pred, target)
        loss_agrees("squared_hinge", squared, pred, target)


def test_probability_and_count_losses():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(5, 4))
    pred = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    soft = rng.uniform(0.05, 1, (5, 4))
    target = (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)
    # Keras kld: sum over the last axis of y_true * log(y_true / y_pred), batch mean; torch's kl_div
    # takes log-probabilities first and the target second
    loss_agrees("kl_divergence", lambda p, t: F.kl_div(torch.log(p), t, reduction="batchmean"), pred, target)
    loss_agrees("kld", lambda p, t: F.kl_div(torch.log(p), t, reduction="batchmean"), pred, target)
    rates = rng.uniform(0.2, 3, (5, 4)).astype(np.float32)
    counts = rng.poisson(1.5, (5, 4)).astype(np.float32)
    loss_agrees("poisson", lambda p, t: F.poisson_nll_loss(p, t, log_input=False, full=False, eps=1e-7), rates, counts)


def test_weighted_per_sample_values_match_the_mean():
    from regnet import losses

    rng = np.random.default_rng(5)
    pred = rng.uniform(0.1, 1, (4, 3)).astype(np.float32)
    target = rng.uniform(0.1, 1, (4, 3)).astype(np.float32)
    target /= target.sum(axis=1, keepdims=True)
    weight = np.array([0.0, 1.0, 2.0, 0.5])
    for name in ("mae", "huber", "kld", "hinge", "squared_hinge", "log_cosh", "poisson", "cosine_similarity"):
        loss = losses.get(name)
        per = loss.per_sample(pred, target)
        assert per.shape == (4,)
        assert float(per.mean()) == pytest.approx(loss.value(pred, target), rel=1e-5)
        value, grad = loss.weighted_value_and_grad(pred, target, weight)
        assert value == pytest.approx(float((weight * per).mean()), rel=1e-5)
        _, plain = loss.value_and_grad(pred, target)
        np.testing.assert_allclose(grad, plain * weight[:, None].astype(np.float32), rtol=1e-6)


SHAPES = ((5, 3), (3,), (2, 3, 4))


@pytest.mark.parametrize(
    ("config", "torch_optimizer"),
    [
        ({"type": "Adamax"}, lambda p: torch.optim.Adamax(p)),
        (
            {"type": "Adamax", "learning_rate": 0.01, "beta_1": 0.8, "weight_decay": 0.1},
            lambda p: torch.optim.Adamax(p, lr=0.01, betas=(0.8, 0.999), weight_decay=0.1),
        ),
        ({"type": "Nadam"}, lambda p: torch.optim.NAdam(p)),
        (
            {"type": "NAdam", "learning_rate": 0.01, "momentum_decay": 0.01, "weight_decay": 0.05, "epsilon": 1e-6},
            lambda p: torch.optim.NAdam(p, lr=0.01, momentum_decay=0.01, weight_decay=0.05, eps=1e-6),
        ),
        ({"type": "Adadelta"}, lambda p: torch.optim.Adadelta(p)),
        (
            {"type": "Adadelta", "learning_rate": 0.5, "rho": 0.95, "epsilon": 1e-5, "weight_decay": 0.1},
            lambda p: torch.optim.Adadelta(p, lr=0.5, rho=0.95, eps=1e-5, weight_decay=0.1),
        ),
        ({"type": "Adafactor"}, lambda p: torch.optim.Adafactor(p)),
        (
            {
                "type": "Adafactor",
                "learning_rate": 0.05,
                "beta_2_decay": -0.5,
                "epsilon_1": 1e-3,
                "epsilon_2": 0.01,
                "clip_threshold": 1.5,
                "weight_decay": 0.1,
            },
            lambda p: torch.optim.Adafactor(p, lr=0.05, beta2_decay=-0.5, eps=(1e-3, 0.01), d=1.5, weight_decay=0.1),
        ),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_optimizer(config, torch_optimizer):
    optimizer_agrees(config, torch_optimizer, shapes=SHAPES)


class LionReference(torch.optim.Optimizer):
    """The published Lion rule (Chen et al., 2023, Algorithm 2), written out in torch."""

    def __init__(self, params, lr, beta_1, beta_2, weight_decay):
        super().__init__(params, {"lr": lr, "b1": beta_1, "b2": beta_2, "wd": weight_decay})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                c = group["b1"] * m + (1 - group["b1"]) * p.grad
                p -= group["lr"] * (torch.sign(c) + group["wd"] * p)
                m.mul_(group["b2"]).add_((1 - group["b2"]) * p.grad)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_lion_follows_the_published_rule(weight_decay):
    optimizer_agrees(
        {"type": "Lion", "learning_rate": 0.01, "beta_1": 0.8, "weight_decay": weight_decay},
        lambda p: LionReference(p, lr=0.01, beta_1=0.8, beta_2=0.99, weight_decay=weight_decay),
        shapes=SHAPES,
    )
    optimizer_agrees({"type": "Lion"}, lambda p: LionReference(p, 0.001, 0.9, 0.99, 0.0), shapes=SHAPES)


def test_adafactor_keeps_factored_state():
    from regnet import optimizers

    opt = optimizers.get("Adafactor")
    params = {"l/w": np.ones((4, 6, 5), np.float32), "l/b": np.ones(5, np.float32)}
    opt.step(params, {k: np.full_like(v, 0.5) for k, v in params.items()})
    state = opt.state_dict()
    assert {k: v.shape for k, v in state.items() if k != "iterations"} == {
        "row_var/l/w": (4, 6, 1),
        "col_var/l/w": (4, 1, 5),
        "variance/l/b": (5,),
    }
    assert opt.slot_shapes((4, 6, 5)) == {"row_var": (4, 6, 1), "col_var": (4, 1, 5)}
    assert math.isclose(float(state["variance/l/b"][0]), 0.25, rel_tol=1e-6)  # t=1: w = 1
