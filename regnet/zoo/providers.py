"""Zoo models that installed distributions contribute through the entry-point group ``regnet.zoo``.

The contract: an entry point ``label = "module:ATTRIBUTE"`` in the group ``regnet.zoo`` names a
path (``str`` or ``os.PathLike``) to a manifest file in the regnet zoo format, shipped as package
data; its ``spec`` and ``weights`` paths are relative to the manifest's folder and may not leave
it. A provider that fails to import, names no readable manifest or lists a malformed entry is
recorded as broken, naming its distribution, and contributes nothing; the built-in zoo and every
other provider keep working. ``REGNET_DISABLE_PLUGIN_AUTOLOAD`` and ``REGNET_PLUGINS`` apply as
they do to components.
"""

import importlib.metadata as metadata
import os
from pathlib import Path

import attrs

from ..errors import RegnetError
from ..registry import Broken, Provider, normalize_distribution
from . import manifest

GROUP = "regnet.zoo"


@attrs.frozen
class Source:
    """One provider's manifest: who provides it, where it is, its checked model entries."""

    provider: Provider
    path: Path
    models: list


@attrs.frozen
class Discovery:
    """What the entry-point group holds: usable sources, broken providers, providers left out by
    ``REGNET_DISABLE_PLUGIN_AUTOLOAD``."""

    sources: list
    broken: list
    withheld: list


def discover() -> Discovery:
    """Load every ``regnet.zoo`` entry point and read the manifest each one names."""
    only = None
    if os.environ.get("REGNET_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        only = {normalize_distribution(d) for d in os.environ.get("REGNET_PLUGINS", "").split(",") if d.strip()}
    sources, broken, withheld = [], [], []
    try:
        eps = list(metadata.entry_points(group=GROUP))
    except Exception as exc:  # unreadable metadata of some installed distribution
        return Discovery([], [Broken("*", Provider("<unknown distribution>"), f"cannot list {GROUP}: {exc}")], [])
    for ep in eps:
        dist = getattr(ep, "dist", None)
        name = (dist.metadata["Name"] if dist is not None else None) or "<unknown distribution>"
        provider = Provider(name, dist.version if dist is not None else None, ep.value)
        if only is not None and normalize_distribution(name) not in only:
            withheld.append(provider)
            continue
        try:
            sources.append(read_source(ep, provider))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a provider's import or manifest may fail in any way, sys.exit() included
            error = str(exc) if isinstance(exc, RegnetError) else f"{type(exc).__name__}: {exc}"
            broken.append(Broken(ep.name, provider, error))
    return Discovery(sources, broken, withheld)


def read_source(ep: metadata.EntryPoint, provider: Provider) -> Source:
    """The manifest that entry point ``ep`` names, read and checked."""
    target = ep.load()
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(
            f"entry point '{ep.name} = {ep.value}' gives a {type(target).__name__}; a {GROUP} entry point "
            f"must name the path of a zoo manifest file (str or os.PathLike)"
        )
    path = Path(os.fspath(target))
    return Source(provider, path, manifest.read(path))
