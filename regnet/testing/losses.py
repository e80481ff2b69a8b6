"""The loss check: the kinds of target it accepts, a finite scalar value, float32 gradients,
inputs left alone, the gradient against central differences, and fusion with its activation."""

from typing import Any

import attrs
import numpy as np

from .. import activations
from ..errors import ConfigError, DataError
from ..text import show
from .gradients import gradient_error, numerical_gradient
from .report import Fail, Report, Run, Skip, requested_properties
from .subjects import config_round_trips, resolve

#: what ``check_loss`` checks, in the order it runs
PROPERTIES = ("config", "targets", "value", "dtype", "inputs_unchanged", "gradient", "fusion")

#: the kinds of target ``check_loss`` tries
TARGET_KINDS = ("integer_labels", "one_hot", "probabilities", "binary", "real")


def standard_targets(shape: tuple, rng: np.random.Generator) -> dict:
    """One target of each kind in ``TARGET_KINDS`` for predictions of ``shape`` (None where a
    kind is not defined for that shape)."""
    n, k = shape[0], shape[-1]
    labels = rng.integers(0, k, n).astype(np.int64)
    onehot = np.zeros(shape, np.float32)
    onehot.reshape(-1, k)[np.arange(onehot.size // k), rng.integers(0, k, onehot.size // k)] = 1
    soft = rng.uniform(0.05, 1, shape)
    return {
        "integer_labels": labels if len(shape) == 2 else None,
        "one_hot": onehot,
        "probabilities": (soft / soft.sum(axis=-1, keepdims=True)).astype(np.float32),
        "binary": rng.integers(0, 2, shape).astype(np.float32),
        "real": rng.standard_normal(shape).astype(np.float32),
    }


@attrs.define
class TargetKinds:
    """What ``check_target`` made of one target of each kind: ``accepted`` ``[(kind, target)]``,
    ``refused`` ``{kind: reason}`` (a ``DataError``), ``broken`` ``{kind: message}`` (any other
    exception, which breaks the contract)."""

    accepted: list = attrs.Factory(list)
    refused: dict = attrs.Factory(dict)
    broken: dict = attrs.Factory(dict)

    @classmethod
    def sort(cls, loss: Any, shape: tuple, rng: np.random.Generator) -> "TargetKinds":
        """Offer ``loss.check_target`` one target of each kind for predictions of ``shape``."""
        out = cls()
        for kind, target in standard_targets(shape, rng).items():
            if target is None:
                out.refused[kind] = f"not defined for predictions of rank {len(shape)}"
                continue
            try:
                loss.check_target(target, shape)
            except DataError as exc:
                out.refused[kind] = str(exc)
            except Exception as exc:  # the contract says DataError
                out.broken[kind] = f"raised {type(exc).__name__} instead of DataError: {exc}"
            else:
                out.accepted.append((kind, target))
        return out


def _accepts_targets(kinds, wanted):
    """``check_target`` accepts every kind in ``wanted`` (or, if None, at least one kind) and
    refuses the others with a ``DataError``."""
    if kinds.broken:
        raise Fail("check_target() " + "; ".join(f"on {k} targets {m}" for k, m in kinds.broken.items()))
    if wanted is not None:
        missing = [k for k in wanted if k in kinds.refused]
        if missing:
            raise Fail("; ".join(f"check_target() refuses {k} targets: {kinds.refused[k]}" for k in missing))
    elif not kinds.accepted:
        reasons = "; ".join(f"{k}: {v}" for k, v in kinds.refused.items())
        raise Fail(f"check_target() refuses every standard kind of target: {reasons}")


def predictions(loss: Any, shape: tuple, rng: np.random.Generator, dtype: Any) -> np.ndarray:
    """Random predictions: logits, or probabilities for a loss that fuses an activation and
    works on its outputs."""
    z = rng.standard_normal(shape)
    fuses = getattr(loss, "fuses", None)
    if fuses and not getattr(loss, "from_logits", True):
        z = activations.get(fuses).forward(z)
    return np.ascontiguousarray(z, dtype=dtype)


def _value_is_a_finite_scalar(loss, shape, kind, target, seed):
    pred = predictions(loss, shape, np.random.default_rng(seed), np.float32)
    value, _ = loss.value_and_grad(pred, target)
    v = np.asarray(value)
    if v.shape != () or not np.isfinite(v):
        raise Fail(f"{kind}: value_and_grad gave loss {value!r}, expected a finite scalar")
    other = loss.value(pred, target)
    if not np.isclose(float(other), float(value), rtol=1e-5, atol=1e-7):
        raise Fail(f"{kind}: value() = {float(other):.8g} but value_and_grad() = {float(value):.8g}")


def _gradient_is_float32(loss, shape, kind, target, seed):
    pred = predictions(loss, shape, np.random.default_rng(seed), np.float32)
    _, grad = loss.value_and_grad(pred, target)
    if np.shape(grad) != pred.shape:
        raise Fail(f"{kind}: gradient has shape {list(np.shape(grad))}, predictions {list(pred.shape)}")
    if np.asarray(grad).dtype != np.float32:
        raise Fail(f"{kind}: float32 predictions gave a {np.asarray(grad).dtype} gradient (expected float32)")


def _leaves_inputs_unchanged(loss, shape, kind, target, seed):
    pred = predictions(loss, shape, np.random.default_rng(seed), np.float32)
    p0, t0 = pred.copy(), target.copy()
    loss.value_and_grad(pred, target)
    loss.value(pred, target)
    if not np.array_equal(pred, p0) or not np.array_equal(target, t0):
        raise Fail(f"{kind}: the loss modified its predictions or targets in place")


def _gradient_matches_central_differences(loss, shape, kind, target, seed, atol, rtol, eps):
    pred = predictions(loss, shape, np.random.default_rng(seed), np.float64)
    _, analytic = loss.value_and_grad(pred.copy(), target)
    numeric = numerical_gradient(lambda: float(loss.value(pred, target)), pred, eps=eps)
    err = gradient_error(analytic, numeric, atol=atol, rtol=rtol, shape=pred.shape)
    if err:
        raise Fail(f"{kind}: gradient w.r.t. predictions disagrees with central differences (float64): {err}")


def _fusion_is_exact(loss, shape, kind, target, seed, atol, rtol):
    """The fused loss on logits gives the value and chain-rule gradient of the loss on the
    activation's outputs."""
    fuses = getattr(loss, "fuses", None)
    if not fuses:
        raise Skip("the loss absorbs no output activation")
    fused = loss.fused_with(fuses)
    if fused is None:
        raise Skip("already works on logits")
    act = activations.get(fuses)
    z = np.random.default_rng(seed).standard_normal(shape)
    p = act.forward(z)
    v_prob, g_prob = loss.value_and_grad(p, target)
    v_logit, g_logit = fused.value_and_grad(z, target)
    if not np.isclose(v_prob, v_logit, rtol=1e-6, atol=1e-9):
        raise Fail(f"{kind}: loss on {fuses}(z) is {v_prob:.10g} but the fused loss on z is {v_logit:.10g}")
    err = gradient_error(act.backward(g_prob, z, p), g_logit, atol=atol, rtol=rtol, shape=z.shape)
    if err:
        raise Fail(f"{kind}: fused gradient w.r.t. logits differs from the chain rule through {fuses}: {err}")


def _target_kinds(targets):
    if targets is None:
        return None
    targets = [targets] if isinstance(targets, str) else list(targets)
    unknown = [t for t in targets if t not in TARGET_KINDS]
    if unknown:
        raise ConfigError(
            f"unknown target kind(s) {', '.join(show(t) for t in unknown)}; expected some of {list(TARGET_KINDS)}",
            field="targets",
        )
    return targets


def check_loss(
    loss: Any,
    pred_shape: Any = None,
    *,
    targets: Any = None,
    seed: int = 0,
    checks: Any = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    eps: float = 1e-6,
) -> Report:
    """Check a loss on predictions of ``pred_shape`` (batch axis included) with every kind of
    target it accepts (``TARGET_KINDS``: integer labels, one-hot or probability rows, binary and
    real targets), or only the kinds named in ``targets``, which must then all be accepted.
    ``checks`` names the properties to run (``PROPERTIES``; all by default)."""
    requested = requested_properties("losses", PROPERTIES, checks)
    wanted = _target_kinds(targets)
    subject = resolve("losses", loss)
    obj = subject.make()
    shape = tuple(pred_shape or getattr(subject.cls, "test_pred_shape", (4, 5)))
    run = Run(f"{subject.label} on predictions {list(shape)}", requested)
    run("config", config_round_trips, subject)
    kinds = TargetKinds.sort(obj, shape, np.random.default_rng(seed))
    run("targets", _accepts_targets, kinds, wanted)
    cases = [(kind, t) for kind, t in kinds.accepted if wanted is None or kind in wanted]
    for kind, target in cases:
        run("value", _value_is_a_finite_scalar, obj, shape, kind, target, seed)
        run("dtype", _gradient_is_float32, obj, shape, kind, target, seed)
        run("inputs_unchanged", _leaves_inputs_unchanged, obj, shape, kind, target, seed)
        run("gradient", _gradient_matches_central_differences, obj, shape, kind, target, seed, atol, rtol, eps)
        run("fusion", _fusion_is_exact, obj, shape, kind, target, seed, atol, rtol)
    run.skip_rest(f"check_target() accepts none of the target kinds {wanted or list(TARGET_KINDS)}")
    return run.finish()
