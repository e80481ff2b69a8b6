"""Test cases over the registry: every registered component (built-in or plugin) as a ``Case``,
the built-ins' further configurations, and a pytest parametrisation over them."""

from collections.abc import Callable
from typing import Any

import attrs

from .. import registry
from ..errors import ConfigError, PluginError, RegnetError
from . import activations, initializers, layers, losses, metrics, optimizers, schedules
from .report import Report

KINDS = registry.KINDS

#: the check of each kind
CHECKS: dict[str, Callable[..., Report]] = {
    "layers": layers.check_layer,
    "activations": activations.check_activation,
    "losses": losses.check_loss,
    "optimizers": optimizers.check_optimizer,
    "initializers": initializers.check_initializer,
    "schedules": schedules.check_schedule,
    "metrics": metrics.check_metric,
}
#: the properties each kind's check knows, in the order it runs them
PROPERTIES: dict[str, tuple[str, ...]] = {
    "layers": layers.PROPERTIES,
    "activations": activations.PROPERTIES,
    "losses": losses.PROPERTIES,
    "optimizers": optimizers.PROPERTIES,
    "initializers": initializers.PROPERTIES,
    "schedules": schedules.PROPERTIES,
    "metrics": metrics.PROPERTIES,
}

#: configs for the built-in components' required fields
BUILTIN_CONFIGS: dict[str, dict[str, dict]] = {
    "layers": {
        "Dense": {"units": 3},
        "Reshape": {"target_shape": [3, -1]},
        "Activation": {"activation": "tanh"},
        "Dropout": {"rate": 0.3},
        "Conv2D": {"filters": 3, "kernel_size": 3},
    },
    "schedules": {
        "constant": {"value": 0.1},
        "step": {"initial": 0.1, "step_size": 30},
        "multi_step": {"initial": 0.1, "milestones": [50, 120]},
        "exponential": {"initial": 0.1, "decay_rate": 0.5, "decay_steps": 40},
        "linear": {"initial": 0.1, "decay_steps": 100},
        "cosine": {"initial": 0.1, "decay_steps": 100},
        "cosine_restarts": {"initial": 0.1, "first_decay_steps": 20},
        "warmup": {"warmup_steps": 10, "schedule": {"type": "cosine", "initial": 0.1, "decay_steps": 100}},
        "one_cycle": {"max_lr": 0.1, "total_steps": 200},
    },
    "metrics": {"top_k_accuracy": {"k": 2}},
}
#: further configurations of the built-ins, each ``(config, options)``: the options that take
#: other code paths (``component_cases(extra=True)`` adds them)
BUILTIN_EXTRA_CASES: dict[str, list[tuple[dict, dict]]] = {
    "layers": [
        ({"type": t, **c}, {"input_shape": s})
        for t, c, s in [
            ("Dense", {"units": 3, "use_bias": False}, (4,)),
            ("Dense", {"units": 4, "activation": "relu"}, (5,)),
            ("Dense", {"units": 3, "activation": "softmax"}, (4,)),
            ("Dense", {"units": 2, "activation": {"type": "leaky_relu", "alpha": 0.2}}, (3,)),
            ("Conv2D", {"filters": 2, "kernel_size": 3, "strides": 2}, (2, 7, 7)),
            ("Conv2D", {"filters": 2, "kernel_size": 3, "padding": "same"}, (2, 5, 5)),
            ("Conv2D", {"filters": 2, "kernel_size": [2, 3], "padding": 1}, (3, 4, 5)),
            ("Conv2D", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same", "use_bias": False}, (2, 6, 6)),
            ("Conv2D", {"filters": 2, "kernel_size": 1, "activation": "tanh"}, (3, 3, 3)),
            # enough channels for the shifted products (ops.shift) where direct BLAS calls work
            ("Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}, (8, 4, 5)),
            ("Conv2D", {"filters": 8, "kernel_size": [2, 3], "padding": "same", "use_bias": False}, (9, 3, 4)),
            ("MaxPool2D", {"pool_size": 3, "strides": 2, "padding": "same"}, (2, 5, 5)),
            ("MaxPool2D", {"pool_size": 3, "strides": 1}, (1, 5, 5)),
            ("MaxPool2D", {"pool_size": 2, "padding": 1}, (2, 5, 5)),
            ("AvgPool2D", {"pool_size": 3, "strides": 2, "padding": "same"}, (2, 5, 5)),
            ("AvgPool2D", {"pool_size": [2, 3], "strides": [1, 2]}, (2, 4, 6)),
            ("AvgPool2D", {"pool_size": 2, "padding": 1}, (1, 4, 4)),
            ("BatchNorm", {}, (3, 4, 4)),
            ("BatchNorm", {"center": False, "momentum": 0.5}, (3, 2, 2)),
            ("BatchNorm", {"scale": False, "activation": "relu"}, (5,)),
            ("Dropout", {"rate": 0.5}, (3, 2, 2)),
            ("Dropout", {"rate": 0.0}, (4,)),
            ("Concatenate", {"axis": 1}, [(3, 2, 2), (3, 2, 2)]),
            ("Concatenate", {"axis": -1}, [(2, 3, 2), (2, 3, 4)]),
            ("Concatenate", {}, [(3,), (2,), (4,)]),
            ("Add", {"activation": "relu"}, [(4,), (4,), (4,)]),
            ("Activation", {"activation": "softmax"}, (6,)),
            ("Activation", {"activation": {"type": "softmax", "axis": 1}}, (3, 2, 2)),
            ("Activation", {"activation": {"type": "leaky_relu", "alpha": 0.3}}, (2, 3, 3)),
            ("Flatten", {}, (2, 2, 3)),
            ("Reshape", {"target_shape": [2, 2, 3]}, (12,)),
        ]
    ],
    "activations": [
        ({"type": t, **c}, {})
        for t, c in [
            ("leaky_relu", {"alpha": 0.3}),
            ("elu", {"alpha": 0.5}),
            ("softmax", {"axis": 1}),
            ("log_softmax", {"axis": 1}),
            ("gelu", {"approximate": True}),
        ]
    ],
    "losses": [
        ({"type": t, "from_logits": f}, {"targets": [k]})
        for t, ks in [
            ("categorical_crossentropy", ("integer_labels", "one_hot")),
            ("binary_crossentropy", ("binary", "probabilities")),
        ]
        for f in (False, True)
        for k in ks
    ],
    "optimizers": [
        ({"type": t, **c}, {})
        for t, c in [
            ("SGD", {"momentum": 0.9}),
            ("SGD", {"momentum": 0.9, "nesterov": True}),
            ("SGD", {"weight_decay": 0.01}),
            ("AdaGrad", {"initial_accumulator_value": 0.1}),
            ("RMSprop", {"learning_rate": 0.01}),
            ("AdamW", {"weight_decay": 0.1}),
            ("Adamax", {"weight_decay": 0.01}),
            ("Nadam", {"weight_decay": 0.01, "momentum_decay": 0.01}),
            ("Adadelta", {"epsilon": 1e-4, "rho": 0.95, "weight_decay": 0.01}),
            ("Lion", {"weight_decay": 0.1}),
            ("Adafactor", {"weight_decay": 0.01, "epsilon_1": 1e-30, "clip_threshold": 2.0}),
        ]
    ],
    "initializers": [({"type": "constant", "value": 0.5}, {})],
    "schedules": [
        ({"type": t, **c}, {})
        for t, c in [
            ("exponential", {"initial": 0.1, "decay_rate": 0.5, "decay_steps": 40, "staircase": True}),
            ("cosine", {"initial": 0.1, "decay_steps": 100, "alpha": 0.1}),
            ("cosine_restarts", {"initial": 0.1, "first_decay_steps": 20, "t_mul": 1.0, "m_mul": 0.8}),
            ("cosine_restarts", {"initial": 0.1, "first_decay_steps": 7, "t_mul": 3.0, "alpha": 0.2}),
            ("warmup", {"warmup_steps": 10, "schedule": 0.05, "start": 0.01}),
            ("one_cycle", {"max_lr": 0.1, "total_steps": 200, "anneal": "linear", "pct_start": 0.5}),
        ]
    ],
    "metrics": [
        ({"type": t, **c}, {})
        for t, c in [
            ("accuracy", {"threshold": 0.3}),
            ("f1", {"average": "micro"}),
            ("f1", {"average": "weighted"}),
            ("f1", {"average": "per_class"}),
            ("precision", {"average": "binary"}),
            ("recall", {"average": "per_class", "name": "recall_by_class"}),
            ("auc", {"num_bins": 17}),
        ]
    ],
}


def check_component(kind: str, spec: Any, **options: Any) -> Report:
    """Run the check of ``kind`` (``"layers"``, ``"losses"``, ...) on ``spec``."""
    if kind not in CHECKS:
        raise ConfigError(f"unknown component kind {kind!r}; expected one of {', '.join(CHECKS)}", field="kind")
    return CHECKS[kind](spec, **options)


@attrs.frozen
class Case:
    """One component configuration to check; ``error`` is set for a broken plugin entry."""

    kind: str
    name: str
    config: dict
    options: dict = attrs.Factory(dict)
    distribution: str = registry.BUILTIN
    error: str | None = None

    @property
    def id(self) -> str:
        """A readable pytest id: ``kind/name[field=value,...]``."""
        extra = {k: v for k, v in self.config.items() if k != "type"}
        extra.update({k: v for k, v in self.options.items() if k != "checks"})
        args = ",".join(f"{k}={_id_value(v)}" for k, v in extra.items())
        return f"{self.kind}/{self.name}" + (f"[{args}]" if args else "")

    def check(self, **overrides: Any) -> Report:
        """Run the kit on this case; a broken plugin entry raises ``PluginError``."""
        if self.error is not None:
            raise PluginError(f"{self.kind} '{self.name}' of {self.distribution} is broken: {self.error}")
        return check_component(self.kind, self.config, **{**self.options, **overrides})


def _id_value(v):
    if isinstance(v, (list, tuple)):
        joiner = "x" if all(isinstance(x, int) for x in v) else "+"
        return joiner.join(_id_value(x) for x in v)
    if isinstance(v, dict):
        return v.get("type", "dict")
    return str(v)


def _declared_cases(kind, name, cls, builtin):
    """``(config, options)`` pairs: the class's ``test_cases``, or one config from the built-in
    table and ``test_config`` (two for a loss with ``from_logits``: off and on)."""
    declared = getattr(cls, "test_cases", None)
    if declared is not None:
        for entry in declared:
            entry = dict(entry)
            yield {"type": name, **entry.pop("config", {})}, entry
        return
    config = {
        "type": name,
        **(BUILTIN_CONFIGS.get(kind, {}).get(name, {}) if builtin else {}),
        **getattr(cls, "test_config", {}),
    }
    if kind == "losses" and attrs.has(cls) and "from_logits" in attrs.fields_dict(cls) and "from_logits" not in config:
        yield {**config, "from_logits": False}, {}
        yield {**config, "from_logits": True}, {}
        return
    yield config, {}


def component_cases(distribution: str | None = None, kinds: Any = KINDS, *, extra: bool = False) -> list[Case]:
    """Cases for every registered component of ``kinds`` (provided by ``distribution``, if given;
    ``"regnet"`` selects the built-ins), broken plugin entries included as failing cases. With
    ``extra``, the built-ins' further configurations (``BUILTIN_EXTRA_CASES``) are added."""
    want = None if distribution is None else registry.normalize_distribution(distribution)
    cases = []
    for kind in kinds:
        if extra and want in (None, registry.BUILTIN):
            cases += [Case(kind, cfg["type"], cfg, options) for cfg, options in BUILTIN_EXTRA_CASES.get(kind, [])]
        cases += _registered_cases(kind, want)
        cases += _broken_cases(kind, want)
    return cases


def _from(distribution, want):
    return want is None or registry.normalize_distribution(distribution) == want


def _registered_cases(kind, want):
    reg = registry.REGISTRIES[kind]
    cases = []
    for name in reg.list():
        prov = reg.provider(name)
        if not _from(prov.distribution, want):
            continue
        try:
            cls = reg.get(name)
        except RegnetError as exc:
            cases.append(Case(kind, name, {"type": name}, distribution=prov.distribution, error=str(exc)))
            continue
        for config, options in _declared_cases(kind, name, cls, prov.builtin):
            cases.append(Case(kind, name, config, options, distribution=prov.distribution))
    return cases


def _broken_cases(kind, want):
    return [
        Case(kind, b.name, {"type": b.name}, distribution=b.provider.distribution, error=b.error)
        for b in registry.REGISTRIES[kind].broken()
        if _from(b.provider.distribution, want)
    ]


def parametrize_components(
    distribution: str | None = None, kinds: Any = KINDS, *, extra: bool = False, argname: str = "case"
) -> Any:
    """A ``pytest.mark.parametrize`` over ``component_cases(distribution, kinds, extra=extra)``."""
    import pytest  # optional: only test suites call this

    cases = component_cases(distribution, kinds, extra=extra)
    return pytest.mark.parametrize(argname, [pytest.param(c, id=c.id) for c in cases])
