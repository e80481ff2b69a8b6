"""Outcomes of a conformance check: the properties that ran, passed, failed or were skipped.

A property function raises ``Fail`` (the message carries the numbers) or ``Skip`` (the reason it
does not apply); ``Run`` calls the requested ones and collects every outcome in a ``Report``.
"""

from collections.abc import Callable, Iterable
from typing import Any

import attrs
import numpy as np

from ..errors import ConfigError, RegnetError
from ..text import show


@attrs.define
class Report:
    """What a check did. ``passed``: properties that ran and never failed; ``failures``:
    ``(property, message)`` pairs; ``skipped``: property -> the reason it did not apply (in at
    least one case: a property may pass in one mode and be skipped in another); ``requested``:
    the properties asked for, in the order they run."""

    component: str
    passed: list = attrs.Factory(list)
    skipped: dict = attrs.Factory(dict)
    failures: list = attrs.Factory(list)
    requested: list = attrs.Factory(list)

    @property
    def failed(self) -> list[str]:
        """The properties that failed, in order, without repeats."""
        return list(dict.fromkeys(p for p, _ in self.failures))

    @property
    def ran(self) -> list[str]:
        """The properties that ran (passed or failed) in at least one case."""
        return [*self.passed, *(p for p in self.failed if p not in self.passed)]


class ConformanceError(RegnetError, AssertionError):
    """A component breaks the contract of its kind; ``failures`` lists ``(property, message)``
    and ``report`` holds the whole outcome (what passed and was skipped as well)."""

    def __init__(self, component: str, failures: Iterable[tuple[str, str]], report: Report | None = None) -> None:
        self.component = component
        self.failures = list(failures)
        self.report = report if report is not None else Report(component, failures=list(self.failures))
        lines = [f"{component} fails {len(self.failures)} conformance check(s):"]
        lines += [f"  [{prop}] {msg}" for prop, msg in self.failures]
        super().__init__("\n".join(lines))

    @property
    def properties(self) -> list[str]:
        """The names of the failed properties, in order, without repeats."""
        return list(dict.fromkeys(p for p, _ in self.failures))


class Fail(Exception):
    """One property failed; the message carries the numbers."""


class Skip(Exception):
    """One property does not apply to this component; the message says why."""


def requested_properties(kind: str, properties: tuple[str, ...], checks: Iterable[str] | str | None) -> tuple:
    """The properties of ``properties`` named in ``checks`` (all if None), in their run order;
    a name the kind does not know is a ``ConfigError`` listing the valid ones."""
    if checks is None:
        return tuple(properties)
    names = [checks] if isinstance(checks, str) else list(checks)
    unknown = [n for n in names if n not in properties]
    if unknown:
        raise ConfigError(
            f"unknown propert{'y' if len(unknown) == 1 else 'ies'} {', '.join(show(n) for n in unknown)} for {kind}; "
            f"the {kind} check knows {', '.join(properties)}",
            field="checks",
        )
    return tuple(p for p in properties if p in names)


class Run:
    """Runs the requested properties of one component, collecting failures instead of stopping
    at the first, and reporting every requested property as run or skipped with a reason."""

    def __init__(self, component: str, requested: tuple[str, ...]) -> None:
        self.component = component
        self.requested = tuple(requested)
        self.report = Report(component, requested=list(self.requested))

    def wants(self, prop: str) -> bool:
        """Whether ``prop`` was requested."""
        return prop in self.requested

    def __call__(self, prop: str, check: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Run ``check(*args, **kwargs)`` as property ``prop`` if it was requested."""
        if not self.wants(prop):
            return
        try:
            check(*args, **kwargs)
        except Fail as exc:
            self.fail(prop, str(exc))
        except Skip as exc:
            self.skip(prop, str(exc))
        except Exception as exc:  # a component under test may fail in any way
            self.fail(prop, f"raised {type(exc).__name__}: {exc}")
        else:
            if prop not in self.report.passed:
                self.report.passed.append(prop)

    def fail(self, prop: str, message: str) -> None:
        """Record a failure of ``prop`` (or of a step such as ``build`` that others need)."""
        self.report.failures.append((prop, message))

    def skip(self, prop: str, reason: str) -> None:
        """Record that ``prop`` did not apply, keeping the first reason."""
        self.report.skipped.setdefault(prop, reason)

    def skip_rest(self, reason: str) -> None:
        """Skip every requested property that has no outcome yet."""
        for prop in self.requested:
            if prop not in self.report.passed and prop not in self.report.skipped and prop not in self.report.failed:
                self.skip(prop, reason)

    def finish(self) -> Report:
        """The report; raises ``ConformanceError`` (carrying it) if any property failed."""
        self.skip_rest("no case of this check applied to it")
        report = self.report
        report.passed = [p for p in report.passed if p not in report.failed]
        if report.failures:
            raise ConformanceError(self.component, report.failures, report)
        return report


def max_diff(a: Any, b: Any) -> str:
    """How far apart two arrays are, for a message."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return f"shapes {list(a.shape)} vs {list(b.shape)}"
    return f"max abs difference {np.max(np.abs(a - b), initial=0):.3g}"
