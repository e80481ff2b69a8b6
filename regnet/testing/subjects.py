"""The component under test: resolved from a name, config or instance, rebuilt fresh from its
config for every property, and the ``config`` property (a JSON round trip of ``get_config``)."""

import json
from typing import Any

import attrs

from .. import registry
from ..errors import RegnetError
from .report import ConformanceError, Fail


def noun(kind: str) -> str:
    """The singular of a kind, for messages (``"layers"`` -> ``"layer"``)."""
    return registry.REGISTRIES[kind].noun


@attrs.define
class Subject:
    """A component class and the config the check builds fresh instances from."""

    kind: str
    cls: Any  # the component class
    config: dict
    instance: object = None  # the object the caller passed, if any

    @property
    def label(self) -> str:
        """The component as messages name it: kind and config."""
        return f"{noun(self.kind)} {json.dumps(self.config, sort_keys=True, default=str)}"

    @property
    def registered(self) -> bool:
        """Whether the registry resolves the config's type to this class."""
        try:
            return registry.REGISTRIES[self.kind].get(self.config.get("type")) is self.cls
        except RegnetError:
            return False

    def make(self) -> Any:
        """A fresh instance from the config."""
        return self.from_config(self.config)

    def from_config(self, config: dict) -> Any:
        """An instance of the class from ``config`` (its ``type`` ignored)."""
        fields = {k: v for k, v in config.items() if k != "type"}
        if self.kind == "layers":
            return self.cls.from_config(fields)
        return registry.construct(self.cls, fields, what=self.label)


def resolve(kind: str, spec: Any) -> Subject:
    """The subject for a name, ``{"type": ...}`` dict or instance; ``ConformanceError`` (property
    ``construct``) if it does not resolve."""
    try:
        return _resolve(kind, spec)
    except (Fail, RegnetError) as exc:
        raise ConformanceError(f"{noun(kind)} {spec!r}", [("construct", str(exc))]) from None


def _resolve(kind, spec):
    reg = registry.REGISTRIES[kind]
    if isinstance(spec, str):
        return Subject(kind, reg.get(spec), {"type": reg.canonical(spec)})
    if isinstance(spec, dict):
        if "type" not in spec:
            raise Fail(f"a {noun(kind)} given as a dict needs a 'type' field")
        return Subject(kind, reg.get(spec["type"]), {**spec, "type": reg.canonical(spec["type"])})
    if isinstance(spec, type):
        raise Fail(f"give a {noun(kind)} as a name, dict or instance, not a class")
    return Subject(kind, type(spec), config_of(spec), spec)


def config_of(obj: Any) -> dict:
    """``obj.get_config()``, which must be a dict."""
    config = obj.get_config()
    if not isinstance(config, dict):
        raise Fail(f"get_config() returned {type(config).__name__}, expected a dict")
    return dict(config)


def config_round_trips(subject: Subject) -> None:
    """get_config -> json.dumps -> json.loads -> from_config gives the same config and fields,
    for the instance the caller passed (if any) and for a fresh one."""
    for obj in ([subject.instance] if subject.instance is not None else []) + [subject.make()]:
        text = _config_text(obj)
        _type_resolves(subject, json.loads(text)["type"])
        rebuilt = subject.from_config(json.loads(text))
        text2 = json.dumps(config_of(rebuilt), sort_keys=True, default=repr)
        if text2 != text:
            raise Fail(f"config changed through a JSON round trip: {text} became {text2}")
        _same_fields(obj, rebuilt, text)


def _config_text(obj):
    config = config_of(obj)
    if "type" not in config:
        raise Fail(f"get_config() has no 'type' field: {config!r}")
    try:
        return json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise Fail(f"get_config() is not JSON data ({exc}): {config!r}") from None


def _type_resolves(subject, name):
    try:
        cls = registry.REGISTRIES[subject.kind].get(name)
    except RegnetError as exc:
        if subject.registered:  # an unregistered class (a local test double) may not resolve
            raise Fail(f"config type {name!r} does not resolve in the registry: {exc}") from None
        cls = subject.cls
    if cls is not subject.cls:
        raise Fail(f"config type {name!r} resolves to {cls.__name__}, not {subject.cls.__name__}")


def _same_fields(obj, rebuilt, text):
    if not attrs.has(type(obj)):
        return
    for a in attrs.fields(type(obj)):
        if not a.init or a.name == "name":
            continue
        before, after = registry.to_plain(getattr(obj, a.name)), registry.to_plain(getattr(rebuilt, a.name))
        if before != after:
            raise Fail(
                f"field '{a.name}' is {before!r} but {after!r} after a JSON round trip of get_config() "
                f"(the config is {text})"
            )
