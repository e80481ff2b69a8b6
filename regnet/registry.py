"""One registry per component kind, fed by decorators (built-ins) and entry points (plugins).

Policy
------
* Entry points are *listed* once, on first lookup, and *loaded* only when one of their names is
  asked for.
* A plugin name that clashes with a built-in or with another plugin never shadows anything
  silently: the clash is recorded as a broken entry naming both providers. A built-in name keeps
  resolving to the built-in; a name two plugins claim raises ``PluginError`` naming both.
* A plugin that fails to import or is not a valid component is recorded, not fatal: every other
  name still works and asking for its name raises ``PluginError`` naming the distribution, the
  entry point and the original exception.
* ``REGNET_DISABLE_PLUGIN_AUTOLOAD=1`` loads built-ins only, plus the distributions named in
  ``REGNET_PLUGINS`` (comma separated): the safe mode for opening files from strangers.
"""

import difflib
import fnmatch
import functools
import importlib.metadata as metadata
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from packaging.version import InvalidVersion, Version

from .errors import ConfigError, PluginError, UnknownComponentError
from .text import escape, show

T = TypeVar("T")
BUILTIN = "regnet"
KINDS = ("layers", "activations", "losses", "optimizers", "initializers", "schedules", "metrics")


@attrs.frozen
class Provider:
    """Who provides a component: ``regnet`` for built-ins, else the plugin's distribution."""

    distribution: str = BUILTIN
    version: str | None = None
    entry_point: str | None = None

    @property
    def builtin(self):
        return self.distribution == BUILTIN


@attrs.define
class Broken:
    """A plugin entry that could not be used, with the reason."""

    name: str
    provider: Provider
    error: str


def _regnet_version():
    try:
        return metadata.version("regnet")
    except metadata.PackageNotFoundError:
        return None


class Registry:
    """Names to components of one kind (``layers``, ``losses``, ...)."""

    def __init__(self, kind: str, noun: str | None = None) -> None:
        self.kind = kind
        self.noun = noun or ("loss" if kind == "losses" else kind[:-1])  # singular, for messages
        self.a_noun = ("an " if self.noun[0] in "aeiou" else "a ") + self.noun
        self.group = f"regnet.{kind}"
        self.base: type | None = None  # the class every component must subclass (bound by its module)
        self._items: dict[str, Any] = {}  # name -> component
        self._providers: dict[str, Provider] = {}  # name -> Provider
        self._aliases: dict[str, str] = {}  # alias -> canonical name
        self._pending: dict[str, tuple[metadata.EntryPoint, Provider]] = {}  # entry points not yet loaded
        self._broken: dict[str, Broken] = {}  # name -> Broken (what a lookup of the name reports)
        self._broken_all: list[Broken] = []  # every Broken entry, one per distribution involved
        self._withheld: dict[str, Provider] = {}  # name -> Provider left out by REGNET_DISABLE_PLUGIN_AUTOLOAD
        self._discovered = False

    def bind(self, base: type) -> type:
        """Declare the base class of this kind (its module calls this once, at import)."""
        self.base = base
        return base

    def _check(self, obj: object) -> None:
        """Raise ``TypeError`` unless ``obj`` is a subclass of the kind's base class."""
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise TypeError(f"{obj!r} is not a subclass of {self.base.__module__}.{self.base.__qualname__}")
        if self.base is not None and attrs.has(self.base) and "__attrs_attrs__" not in vars(obj):
            # a plain subclass would save only its base's fields: its own would be lost on load
            raise TypeError(
                f"{getattr(obj, '__qualname__', obj)} is not an attrs class, so its fields would not be "
                "saved: declare it "
                f'with the {self.kind} decorator (e.g. @regnet.{self.kind.rstrip("s")}("Name"))'
            )

    # -- registration ---------------------------------------------------------------------------
    def register(self, obj=None, *, name=None, aliases=(), provider=None):
        """Register ``obj`` (usable as ``@register`` or ``@register(name=..., aliases=...)``)."""

        def decorate(obj):
            key = name or getattr(obj, "__name__", None)
            if not isinstance(key, str) or not key:
                raise ConfigError(f"cannot register {obj!r} in {self.kind}: it needs a name")
            self._add(key, obj, provider or Provider(BUILTIN, _regnet_version()))
            for alias in aliases:
                if alias in self._items:
                    raise PluginError(f"{self.kind} alias '{alias}' is already a registered name")
                self._aliases[alias] = key
            try:
                obj.registered_name = key
            except (AttributeError, TypeError):
                pass
            return obj

        return decorate if obj is None else decorate(obj)

    def _add(self, key, obj, provider):
        if key in self._items and self._items[key] is not obj:
            raise PluginError(
                f"{self.kind} name '{key}' is provided twice: by "
                f"{_describe(self._providers[key])} and by {_describe(provider)}"
            )
        self._check(obj)
        self._items[key] = obj
        self._providers[key] = provider

    def unregister(self, name):
        """Remove a name (tests and interactive use)."""
        self._items.pop(name, None)
        self._providers.pop(name, None)
        self._aliases = {a: n for a, n in self._aliases.items() if n != name}

    # -- plugin discovery -----------------------------------------------------------------------
    def _discover(self):
        if self._discovered:
            return
        self._discovered = True
        only = None
        if os.environ.get("REGNET_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
            only = {normalize_distribution(d) for d in os.environ.get("REGNET_PLUGINS", "").split(",") if d.strip()}
        claims: dict[str, list[tuple[metadata.EntryPoint, Provider]]] = {}
        try:
            eps = list(metadata.entry_points(group=self.group))
        except Exception as exc:  # unreadable metadata of some installed distribution
            warnings.warn(f"cannot list {self.group} entry points: {exc}", RuntimeWarning, stacklevel=3)
            eps = []
        for ep in eps:
            dist = getattr(ep, "dist", None)
            dist_name = (dist.metadata["Name"] if dist is not None else None) or "<unknown distribution>"
            if only is not None and normalize_distribution(dist_name) not in only:
                self._withheld[ep.name] = Provider(dist_name, dist.version if dist is not None else None, ep.value)
                continue
            prov = Provider(dist_name, dist.version if dist is not None else None, ep.value)
            claims.setdefault(ep.name, []).append((ep, prov))
        for name, claimants in claims.items():
            if len(claimants) > 1:
                who = " and ".join(_describe(p) for _, p in claimants)
                for _, prov in claimants:
                    self._mark_broken(name, prov, f"name clash: {self.kind} '{name}' is provided by {who}")
                continue
            ep, prov = claimants[0]
            taken = self._builtin_match(name)
            if taken is not None:
                how, key = taken
                msg = (
                    f"name clash: {self.kind} '{name}' of {_describe(prov)} (entry point "
                    f"'{name} = {ep.value}') is already {how} of {_describe(self._providers[key])}; "
                    f"the built-in is kept"
                )
                self._mark_broken(name, prov, msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                continue
            self._pending[name] = (ep, prov)

    def _builtin_match(self, name):
        """``(how, registered name)`` if ``name`` is taken (names and aliases, any case), else None."""
        low = name.lower()
        for key in self._items:
            if key.lower() == low:
                return f"the name '{key}'", key
        for alias, key in self._aliases.items():
            if alias.lower() == low:
                return f"an alias of '{key}'", key
        return None

    def _mark_broken(self, name, prov, error):
        entry = Broken(name, prov, error)
        self._broken_all.append(entry)
        self._broken.setdefault(name, entry)
        return entry

    def _load(self, name):
        ep, prov = self._pending.pop(name)
        try:
            obj = ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a plugin's import may fail in any way, sys.exit() included
            self._mark_broken(name, prov, f"{type(exc).__name__}: {exc}")
            raise PluginError(
                f"{self.kind} '{name}' could not be loaded: entry point '{name} = {ep.value}' "
                f"(group {self.group}) of distribution {_describe(prov)} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            self._add(name, obj, prov)
        except (TypeError, PluginError) as exc:
            self._mark_broken(name, prov, str(exc))
            raise PluginError(
                f"{self.kind} '{name}' from distribution {_describe(prov)} "
                f"(entry point '{name} = {ep.value}') is not a valid component: {exc}"
            ) from exc
        try:
            obj.registered_name = name
        except (AttributeError, TypeError):
            pass
        return obj

    # -- lookup ---------------------------------------------------------------------------------
    def canonical(self, name):
        """The registered name behind ``name`` (resolving aliases and case-insensitive matches)."""
        if not isinstance(name, str):
            raise ConfigError(f"{self.a_noun} name must be a string, got {type(name).__name__}")
        self._discover()
        if name in self._items or name in self._pending:
            return name
        if name in self._aliases:
            return self._aliases[name]
        folded = {k.lower(): k for k in [*self._items, *self._pending, *self._aliases]}
        if name.lower() in folded:
            return self.canonical(folded[name.lower()])
        # a broken plugin entry never shadows a working name (that is the clash it lost)
        broken = {k.lower(): k for k in self._broken}
        return broken.get(name.lower(), name)

    def get(self, name):
        """The component registered as ``name``; raises a ``RegnetError`` explaining any failure."""
        key = self.canonical(name)
        if key in self._items:
            return self._items[key]
        if key in self._pending:
            return self._load(key)
        if key in self._broken:
            b = self._broken[key]
            raise PluginError(f"{self.kind} '{key}' from distribution {_describe(b.provider)} is broken: {b.error}")
        if key in self._withheld:
            prov = self._withheld[key]
            raise UnknownComponentError(
                f"{self.kind} entry '{key}' of {_describe(prov)} (entry point '{key} = {prov.entry_point}', "
                f"group {self.group}) is installed but not loaded: {autoload_hint(prov)}"
            )
        names = sorted([*self._items, *self._pending, *self._aliases])
        close = difflib.get_close_matches(name, names, n=6, cutoff=0.6) if len(name) <= 100 else []
        close = list(dict.fromkeys(self._aliases.get(c, c) for c in close))[:3]  # aliases as their names
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownComponentError(
            f"unknown {self.noun} {show(name)}{hint} (known: {', '.join(self.list())}; plugins "
            f"add names through the entry-point group '{self.group}')"
        )

    def withheld(self, name: str) -> Provider | None:
        """Who provides ``name`` when it is installed but left out because plugin autoload is
        disabled (``REGNET_DISABLE_PLUGIN_AUTOLOAD``), else ``None``."""
        self._discover()
        key = self.canonical(name)
        if key in self._withheld:
            return self._withheld[key]
        folded = {k.lower(): p for k, p in self._withheld.items()}
        return folded.get(key.lower())

    def claims(self, name: str) -> bool:
        """Whether exactly ``name`` (no alias, no case folding) has an entry: registered, not yet
        loaded, broken or withheld by ``REGNET_DISABLE_PLUGIN_AUTOLOAD`` (for hooks keyed by names
        that are case-sensitive, like ONNX operator types)."""
        self._discover()
        return any(name in table for table in (self._items, self._pending, self._broken, self._withheld))

    def __contains__(self, name):
        key = self.canonical(name)
        return key in self._items or key in self._pending

    def create(self, spec, **config):
        """Build a component from a name, a ``{"type": name, **config}`` dict or an instance."""
        if isinstance(spec, dict):
            spec = dict(spec)
            if "type" not in spec:
                raise ConfigError(f"{self.a_noun} given as a dict needs a 'type' field", field="type")
            config = {**spec, **config}
            spec = config.pop("type")
        if not isinstance(spec, str):
            if isinstance(spec, type):
                raise ConfigError(f"give {self.a_noun} as a name, dict or instance, not a class")
            try:
                self._check(type(spec))
            except TypeError:
                raise ConfigError(f"expected {self.a_noun} name, dict or instance, got {type(spec).__name__}") from None
            return spec  # already an instance
        cls = self.get(spec)
        return construct(cls, config, what=f"{self.noun} '{spec}'")

    def list(self, pattern="*"):
        """Sorted registered names (built-in and plugin) matching a glob ``pattern``."""
        self._discover()
        names = set(self._items) | set(self._pending)
        return sorted(n for n in names if fnmatch.fnmatchcase(n.lower(), pattern.lower()))

    def aliases(self, name):
        """The other names of the component ``name`` (its aliases), sorted."""
        key = self.canonical(name)
        return sorted(a for a, k in self._aliases.items() if k == key)

    def provider(self, name):
        key = self.canonical(name)
        if key in self._providers:
            return self._providers[key]
        if key in self._pending:
            return self._pending[key][1]
        if key in self._broken:
            return self._broken[key].provider
        raise UnknownComponentError(f"unknown {self.noun} {show(name)}")

    def broken(self):
        """Every unusable plugin entry (a clash between two plugins lists both)."""
        self._discover()
        return list(self._broken_all)

    def load_all(self):
        """Load every pending plugin entry (for ``regnet plugins``); failures are recorded."""
        self._discover()
        for name in list(self._pending):
            try:
                self._load(name)
            except PluginError:
                pass

    def reset_plugins(self):
        """Forget discovered plugins (tests that install/uninstall plugins use this)."""
        for name, prov in list(self._providers.items()):
            if not prov.builtin:
                self.unregister(name)
        self._pending.clear()
        self._broken.clear()
        self._broken_all.clear()
        self._withheld.clear()
        self._discovered = False


def normalize_distribution(distribution: str) -> str:
    """Distribution names compare like pip compares them: case and ``-_.`` runs do not matter."""
    return re.sub(r"[-_.]+", "-", distribution.strip()).lower()


#: a distribution name as PEP 508 defines it
DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


def install_command(distribution: object, version: object = None) -> str | None:
    """``pip install 'name==version'`` for a distribution named in a file, or ``None`` unless the
    name matches the PEP 508 name grammar; the pin is added only for a valid PEP 440 version. Text
    from a file never becomes a command otherwise."""
    if not isinstance(distribution, str) or not DISTRIBUTION_NAME.fullmatch(distribution):
        return None
    pin = ""
    if isinstance(version, str):
        try:
            pin = f"=={Version(version)}"
        except InvalidVersion:
            pin = ""
    return f"pip install '{distribution}{pin}'"


def autoload_hint(provider: Provider) -> str:
    """How to allow a plugin that ``REGNET_DISABLE_PLUGIN_AUTOLOAD`` leaves out."""
    name = provider.distribution
    allow = normalize_distribution(name) if DISTRIBUTION_NAME.fullmatch(name) else show(name)
    return (
        "plugin autoload is disabled (REGNET_DISABLE_PLUGIN_AUTOLOAD is set) and REGNET_PLUGINS does not "
        f"name it; allow it with REGNET_PLUGINS={allow}"
    )


def _describe(provider):
    if provider.builtin:
        return "regnet (built-in)"
    return escape(f"{provider.distribution} {provider.version or ''}".strip(), 200)


def apply_synonyms(cls: type, config: dict, *, what: str) -> dict:
    """``config`` with the class's ``field_synonyms`` renamed to the fields they stand for."""
    synonyms = getattr(cls, "field_synonyms", None) or {}
    if not any(other in config for other in synonyms):
        return config
    config = dict(config)
    for other, own in synonyms.items():
        if other in config:
            if own in config:
                raise ConfigError(f"{what}: give '{own}' or its synonym '{other}', not both", field=own)
            config[own] = config.pop(other)
    return config


def check_arguments(cls: type, config: dict, *, what: str) -> None:
    """Raise ``ConfigError`` for fields ``cls`` does not have (naming the closest one) or for
    required fields ``config`` lacks."""
    if not attrs.has(cls):
        return
    known = {a.alias or a.name for a in attrs.fields(cls) if a.init}
    unknown = sorted(set(config) - known, key=str)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0])[:100], sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        synonyms = getattr(cls, "field_synonyms", None) or {}
        also = f" (also {', '.join(f'{o} for {n}' for o, n in synonyms.items())})" if synonyms else ""
        raise ConfigError(
            f"{what} has no field {', '.join(show(u) for u in unknown[:5])}{hint}; "
            f"its fields are {', '.join(sorted(known)) or 'none'}{also}",
            field=unknown[0],
        )
    missing = [
        a.name for a in attrs.fields(cls) if a.init and a.default is attrs.NOTHING and (a.alias or a.name) not in config
    ]
    if missing:
        raise ConfigError(f"{what} needs field(s) {', '.join(missing)}", field=missing[0])


def construct(cls, config, *, what):
    """``cls(**config)`` with unknown or missing fields reported as ``ConfigError``. A class's
    ``field_synonyms`` (``{"other name": "field"}``, e.g. Keras's ``initial_learning_rate`` for a
    schedule's ``initial``) are accepted in place of the fields they name."""
    config = apply_synonyms(cls, config, what=what)
    check_arguments(cls, config, what=what)
    try:
        return cls(**config)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from exc


def _checked_init(cls: type, what: str) -> None:
    """Make ``cls(...)`` with a wrong keyword, a missing field or too many positional values raise
    ``ConfigError`` naming the field (not attrs' bare ``TypeError``)."""
    init = cls.__init__  # type: ignore[misc]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs = apply_synonyms(cls, kwargs, what=what)
        try:
            init(self, *args, **kwargs)
        except TypeError:
            positional = [a.alias or a.name for a in attrs.fields(cls) if a.init and not a.kw_only]
            if len(args) > len(positional):
                raise ConfigError(
                    f"{what} takes at most {len(positional)} positional value(s) "
                    f"({', '.join(positional) or 'none'}), got {len(args)}; name the others"
                ) from None
            check_arguments(cls, {**dict(zip(positional, args)), **kwargs}, what=what)
            raise

    cls.__init__ = __init__  # type: ignore[misc]


layers = Registry("layers")
activations = Registry("activations")
losses = Registry("losses")
optimizers = Registry("optimizers")
initializers = Registry("initializers")
schedules = Registry("schedules")
metrics = Registry("metrics")

REGISTRIES = {r.kind: r for r in (layers, activations, losses, optimizers, initializers, schedules, metrics)}

#: ONNX operator -> import handler of a plugin (group ``regnet.onnx_import``; see
#: ``regnet.onnx.hooks``): a hook, not a component kind, so it is not in ``REGISTRIES``
onnx_import = Registry("onnx_import", noun="ONNX import handler")
#: the registries of plugin hooks (functions, not components): ``plugin_report`` lists them too
HOOKS = {onnx_import.kind: onnx_import}


if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - type checkers run on 3.11+

    def dataclass_transform(**_: object) -> Callable[[T], T]:
        return lambda f: f


def define(
    registry: Registry,
    name: "str | type | None" = None,
    *,
    aliases: tuple[str, ...] = (),
    register: bool = True,
    **define_options: Any,
) -> Any:
    """What each kind's decorator does (``@layer("Dense", aliases=("Linear",))``): make the class
    an attrs class (with the kind's ``define_options``), set ``registered_name`` and register it.

    Plugins pass ``register=False``: their entry point registers the class, which is how the
    registry learns the distribution that provides it. Used bare (``@layer``), the class name is
    the registered name.
    """

    def wrap(cls: type) -> type:
        cls = attrs.define(cls, **define_options)
        key = name if isinstance(name, str) else cls.__name__
        cls.registered_name = key  # type: ignore[attr-defined]
        _checked_init(cls, f"{registry.kind.rstrip('s')} type '{key}'")
        if register:
            registry.register(cls, name=key, aliases=aliases)
        return cls

    return wrap(name) if isinstance(name, type) else wrap


def registered_name(obj):
    """The registry name of a component instance or class."""
    return getattr(obj, "registered_name", None) or type(obj).__name__


def get_config(obj):
    """Plain-JSON config of an attrs component: ``{"type": name, **fields}``."""
    out = {"type": registered_name(obj)}
    for a in attrs.fields(type(obj)):
        if a.init and not a.name.startswith("_"):
            out[a.alias or a.name] = to_plain(getattr(obj, a.name))
    return out


def to_plain(value):
    """Convert tuples, numpy scalars and attrs components to JSON-ready data."""
    import numpy as np

    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if attrs.has(type(value)):
        own = getattr(value, "get_config", None)
        return own() if callable(own) else get_config(value)
    return value


def plugin_report(*, load=True):
    """What every registry holds, for ``regnet plugins``: plain JSON-ready data.

    ``{kind: {"group": "regnet.<kind>", "components": [...], "broken": [...]}}`` where each
    component is ``{"name", "aliases", "distribution", "version", "entry_point", "builtin", "loaded"}`` and
    each broken entry is ``{"name", "distribution", "version", "entry_point", "error"}``. With
    ``load`` (the default) every plugin is imported first, so import failures show up as broken.
    """
    report = {}
    for kind, reg in {**REGISTRIES, **HOOKS}.items():
        if load:
            reg.load_all()
        components = []
        for name in reg.list():
            prov = reg.provider(name)
            components.append(
                {
                    "name": name,
                    "aliases": reg.aliases(name),
                    "distribution": prov.distribution,
                    "version": prov.version,
                    "entry_point": prov.entry_point,
                    "builtin": prov.builtin,
                    "loaded": name in reg._items,
                }
            )
        broken = [
            {
                "name": b.name,
                "distribution": b.provider.distribution,
                "version": b.provider.version,
                "entry_point": b.provider.entry_point,
                "error": b.error,
            }
            for b in reg.broken()
        ]
        report[kind] = {"group": reg.group, "components": components, "broken": broken}
    return report
