"""Conformance checks for regnet components, built-in or from plugins.

Each ``check_*`` function builds fresh components from a configuration, runs the requested
properties on them and returns a ``Report`` of what ran, passed and was skipped (with the
reason); if any property fails it raises ``ConformanceError`` naming every failed property, the
component and the numbers (its ``report`` holds the rest)::

    from regnet.testing import check_layer
    check_layer({"type": "LayerNormalization"}, input_shape=(6,))

Properties checked (``PROPERTIES``)
-----------------------------------
layers        config, shape, dtype, inputs_unchanged, gradient, batch_independence, determinism, hdf5
activations   config, shape, dtype, inputs_unchanged, gradient, batch_independence
losses        config, targets, value, dtype, inputs_unchanged, gradient, fusion
optimizers    config, dtype, descent, state, determinism
initializers  config, shape, dtype, determinism, global_state, variance
schedules     config, values, pure, resume
metrics       config, outputs, streaming, totals, weights, inputs_unchanged, determinism

``checks=("gradient", ...)`` restricts a run to some properties; a name the kind does not know
is a ``ConfigError`` listing the valid ones. Every requested property either runs or appears in
``report.skipped`` with the reason it does not apply. Gradients are compared with central
differences in float64 (parameters, gradients and buffers are converted for the check); a
layer's parameter gradients must also stay the same when a model calls its backward with
``need_input_grad=False``.

A plugin test suite checks everything its distribution provides with::

    from regnet.testing import parametrize_components

    @parametrize_components(distribution="my-plugin")
    def test_conformance(case):
        case.check()

Components describe how to test them with optional class attributes (never annotated, so they
are not config fields): ``test_config`` (a config for required fields), ``test_input_shape``
(layers; a list of shapes for merge layers), ``test_cases`` (a list of
``{"config": {...}, **options}`` dicts; options are keyword arguments of the check function),
``test_input_range`` (activations) and ``test_pred_shape`` (losses).

A layer that reads integers (token ids, as ``Embedding`` does) declares ``test_input_dtype``
(e.g. ``"int64"``) and ``test_input_range`` (``(low, high)``, high excluded; ``(0, 2)`` if not
given): the layer checks then feed it random integers in that range, the gradient property checks
its parameter gradients but not the input gradient (integers have none), and the hdf5 round trip
feeds the model the same integers.

Modules: ``report`` (outcomes), ``gradients`` (central differences), ``subjects`` (the component
under test, the ``config`` property), one per kind (``layers``, ``activations``, ``losses``,
``optimizers``, ``initializers``, ``schedules``, ``metrics``), ``cases`` (the registry as test
cases), ``plugins`` (simulated distributions).
"""

from .activations import check_activation
from .cases import (
    BUILTIN_CONFIGS,
    BUILTIN_EXTRA_CASES,
    CHECKS,
    KINDS,
    PROPERTIES,
    Case,
    check_component,
    component_cases,
    parametrize_components,
)
from .gradients import gradient_error, numerical_gradient
from .initializers import check_initializer
from .layers import BUILTIN_INPUT_SHAPES, FALLBACK_INPUT_SHAPES, check_layer, default_input_shape
from .losses import TARGET_KINDS, check_loss
from .metrics import OUTPUT_KINDS, check_metric
from .optimizers import check_optimizer
from .plugins import plugin_distribution, reset_registries
from .report import ConformanceError, Report
from .schedules import check_schedule

__all__ = [
    "BUILTIN_CONFIGS",
    "BUILTIN_EXTRA_CASES",
    "BUILTIN_INPUT_SHAPES",
    "CHECKS",
    "FALLBACK_INPUT_SHAPES",
    "KINDS",
    "OUTPUT_KINDS",
    "PROPERTIES",
    "TARGET_KINDS",
    "Case",
    "ConformanceError",
    "Report",
    "check_activation",
    "check_component",
    "check_initializer",
    "check_layer",
    "check_loss",
    "check_metric",
    "check_optimizer",
    "check_schedule",
    "component_cases",
    "default_input_shape",
    "gradient_error",
    "numerical_gradient",
    "parametrize_components",
    "plugin_distribution",
    "reset_registries",
]
