"""``import regnet`` alone gives every submodule the README and the docs use (``regnet.zoo.load``
right after ``import regnet``), checked in a fresh interpreter so other tests' imports cannot help."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: what a user reaches as regnet.<name> without importing it
SUBMODULES = {"datasets", "zoo", "metrics", "images", "plot", "testing", "io", "checkpoint", "registry", "layers"}
#: submodules imported on their own (``import regnet.onnx``): they need an optional extra at import time
ON_DEMAND = {"onnx"}
#: entry-point groups (``regnet.<group>``) that name no submodule: the plugin hooks
GROUPS = {"onnx_import"}


def referenced():
    """``regnet.<name>`` written in README.md and docs/*.md (lower-case names; file formats such as
    ``regnet.weights.h5`` are not names)."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {name for path in texts for name in re.findall(r"\bregnet\.([a-z_][a-z_0-9]*)\b(?!\.h5)", path.read_text())}


def test_import_regnet_exposes_every_documented_submodule():
    names = sorted((SUBMODULES | referenced()) - ON_DEMAND - GROUPS)
    code = f"import regnet, sys; print([n for n in {names!r} if not hasattr(regnet, n)])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]", names
