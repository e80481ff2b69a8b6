"""Simulated plugin distributions: entry points without installing anything."""

import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from .. import registry


def reset_registries() -> None:
    """Forget discovered plugins in every registry (built-ins stay)."""
    for reg in (*registry.REGISTRIES.values(), *registry.HOOKS.values()):
        reg.reset_plugins()


@contextlib.contextmanager
def plugin_distribution(
    name: str, entry_points: dict, *, modules: dict | None = None, version: str = "1.0", root: Any = None
) -> Iterator[str]:
    """Make a distribution look installed while the block runs.

    ``entry_points`` maps a kind (``"layers"``) or group (``"regnet.layers"``) to
    ``{entry-point name: "module:attribute"}``; ``modules`` maps module names to source text,
    written next to the ``*.dist-info`` directory. Registries are reset on entry and exit, and
    the modules are removed from ``sys.modules`` on exit.
    """
    own = root is None
    root = tempfile.mkdtemp(prefix="regnet-plugin-") if own else os.fspath(root)
    _write_dist_info(root, name, version, entry_points)
    _write_modules(root, modules or {})
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    reset_registries()
    try:
        yield root
    finally:
        if root in sys.path:
            sys.path.remove(root)
        _forget_modules(modules or {})
        importlib.invalidate_caches()
        reset_registries()
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _write_dist_info(root, name, version, entry_points):
    info = os.path.join(root, f"{name.replace('-', '_')}-{version}.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w", encoding="utf-8") as fh:
        fh.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    with open(os.path.join(info, "entry_points.txt"), "w", encoding="utf-8") as fh:
        for group, eps in entry_points.items():
            group = group if group.startswith("regnet.") else f"regnet.{group}"
            fh.write(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n")


def _write_modules(root, modules):
    for mod, source in modules.items():
        path = os.path.join(root, *mod.split(".")) + ".py"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(source)


def _forget_modules(modules):
    for mod in list(sys.modules):
        if any(mod == m or mod.startswith(m + ".") for m in modules):
            del sys.modules[mod]
