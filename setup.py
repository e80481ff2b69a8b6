"""Packages ``model_zoo/`` (the zoo's source of truth) into built distributions.

``model_zoo/manifest.json``, ``specs/*.json`` and ``weights/*.h5`` are copied into the built
package as ``regnet/zoo/models/``, so a wheel carries the pretrained models; an editable install
leaves them where they are and ``regnet.zoo`` reads ``model_zoo/`` directly. Everything else is
declared in ``pyproject.toml``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
ZOO = HERE / "model_zoo"
SHIPPED = ("manifest.json", "specs/*.json", "weights/*.h5")


class BuildPyWithZoo(build_py):
    """``build_py`` that also copies the zoo's manifest, specs and weights into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "regnet" / "zoo" / "models"
        files = [path for pattern in SHIPPED for path in sorted(ZOO.glob(pattern))]
        if not (ZOO / "manifest.json").is_file():
            raise SystemExit(f"cannot package the model zoo: {ZOO / 'manifest.json'} is missing")
        for path in files:
            dest = target / path.relative_to(ZOO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)


setup(cmdclass={"build_py": BuildPyWithZoo})
