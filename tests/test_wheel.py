"""A normal, non-editable install works offline: an sdist is built from a copy of the repository, a
wheel from that sdist, and the wheel installed into a throw-away venv that sees only regnet's
dependencies (no editable regnet, no plugins). From a folder outside the repository, the
``regnet`` command and the Python API then reach every zoo model shipped in the wheel."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((ROOT / "model_zoo" / "manifest.json").read_text())
DEPENDENCIES = ("numpy", "h5py", "attrs", "tqdm", "packaging")
#: what the build copies of the repository (the rest is neither in the sdist nor needed by it)
LEFT_OUT = (".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")
LEFT_OUT += ("tests", "plugins", "benchmarks", "tools", "runs")


def run(argv, cwd, env=None, timeout=300):
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def link_dependencies(folder):
    """``folder`` with links to the installed files of regnet's dependencies only."""
    folder.mkdir()
    for name in DEPENDENCIES:
        dist = metadata.distribution(name)
        tops = {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}
        base = Path(dist.locate_file(""))
        for top in tops:
            if (base / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(base / top)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(python, regnet script, site-packages, work folder, environment)`` of the throw-away venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LEFT_OUT), symlinks=True)
    build = (
        "import sys; from setuptools import build_meta as backend; "
        "print(backend.build_sdist(sys.argv[1]) if sys.argv[2] == 'sdist' else '')"
    )
    sdist = run([sys.executable, "-c", build, str(tmp / "dist"), "sdist"], cwd=source).stdout.split()[-1]
    sdist_path = tmp / "dist" / sdist
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
        + ["-w", str(tmp / "dist"), str(sdist_path)],
        cwd=tmp,
    )
    [wheel] = (tmp / "dist").glob("regnet-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip()
    )
    # the dependencies come from this environment, after the venv's own site-packages
    (site / "_regnet_test_dependencies.pth").write_text(str(link_dependencies(tmp / "deps")) + "\n")
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        cwd=tmp,
    )
    work = tmp / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "REGNET_")) and k != "VIRTUAL_ENV"}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    script = python.parent / ("regnet.exe" if os.name == "nt" else "regnet")
    return python, script, site, work, env, sdist_path, wheel


def test_the_sdist_and_the_wheel_carry_the_zoo(installed):
    *_, sdist, wheel = installed
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    with zipfile.ZipFile(wheel) as whl:
        packed = set(whl.namelist())
    for entry in MANIFEST["models"]:
        assert f"model_zoo/{entry['weights']}" in names and f"model_zoo/{entry['spec']}" in names
        assert f"regnet/zoo/models/{entry['weights']}" in packed and f"regnet/zoo/models/{entry['spec']}" in packed
    assert "regnet/zoo/models/manifest.json" in packed and "regnet/datasets/mnist_sample.npz" in packed


def test_the_installed_package_is_the_wheel(installed):
    python, _, site, work, env, *_ = installed
    code = "import regnet, regnet.zoo as z; print(regnet.__file__); print(z.root())"
    where, root = run([str(python), "-c", code], cwd=work, env=env).stdout.split()
    assert Path(where).is_relative_to(site) and Path(root) == site / "regnet" / "zoo" / "models"
    assert not Path(where).is_relative_to(ROOT)


def test_zoo_list_from_the_wheel(installed):
    _, regnet, _, work, env, *_ = installed
    text = run([str(regnet), "zoo", "list"], cwd=work, env=env).stdout
    for entry in MANIFEST["models"]:
        row = next(line for line in text.splitlines() if line.startswith(entry["name"] + " "))
        assert f"{100 * entry['test_accuracy']:.2f} %" in row and row.endswith("regnet 0.1.0")
    assert "BROKEN" not in text


@pytest.mark.parametrize("entry", MANIFEST["models"], ids=lambda e: e["name"])
def test_zoo_evaluate_every_model_from_the_wheel(installed, entry):
    _, regnet, _, work, env, *_ = installed
    mnist = entry["dataset"] == "mnist"
    extra = ["--data", "mnist-sample"] if mnist else []  # the full test set is not shipped
    out = run([str(regnet), "zoo", "evaluate", entry["name"], *extra], cwd=work, env=env)
    assert f"model: {entry['name']} (sha256 verified" in out.stdout
    accuracy = float(re.search(r"^accuracy: ([0-9.]+)", out.stdout, re.M).group(1))
    if mnist:
        assert accuracy >= entry["test_accuracy"] - 0.01  # 2 000 images of the test split
    else:
        assert f"{accuracy:.4f}" == f"{entry['test_accuracy']:.4f}"  # the very test split of the manifest


def test_python_api_from_the_wheel(installed):
    python, _, site, work, env, *_ = installed
    code = """
import json, regnet
out = {}
for name in regnet.zoo.list():
    model = regnet.zoo.load(name)
    out[name] = [model.count_params(), regnet.zoo.info(name)["weights_path"]]
out["moons"] = regnet.zoo.evaluate("mlp-moons")["accuracy"]
print(json.dumps(out))
"""
    got = json.loads(run([str(python), "-c", code], cwd=work, env=env).stdout)
    assert got.pop("moons") == next(e["test_accuracy"] for e in MANIFEST["models"] if e["name"] == "mlp-moons")
    assert sorted(got) == sorted(e["name"] for e in MANIFEST["models"])
    for entry in MANIFEST["models"]:
        params, path = got[entry["name"]]
        assert params == entry["params"] and Path(path).is_relative_to(site)


def test_readme_modules_from_the_wheel(installed):
    python, _, _, work, env, *_ = installed
    names = sorted(
        set(re.findall(r"\bregnet\.([a-z_][a-z_0-9]*)\b(?!\.h5)", (ROOT / "README.md").read_text())) - {"onnx"}
    )
    code = f"import regnet; print([n for n in {names!r} if not hasattr(regnet, n)])"
    assert run([str(python), "-c", code], cwd=work, env=env).stdout.strip() == "[]"


def test_the_build_environment_is_what_it_claims():
    """The dependencies linked into the venv are regnet's declared ones."""
    declared = {re.split(r"[<>=!~\[; ]", r)[0].lower() for r in metadata.requires("regnet") or () if "extra" not in r}
    assert declared == set(DEPENDENCIES)


def readme_python_tour():
    """The Python block of the README's API tour, as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The Python API in ten lines") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_tour_from_the_wheel(installed):
    """The README's ten-line tour (train, evaluate, save, load, resume, predict) runs as written
    from the non-editable install, outside the repository, offline (on the bundled MNIST sample)."""
    python, _, _, work, env, *_ = installed
    code = readme_python_tour() + "\nprint('PROBABILITIES', probabilities.shape, float(probabilities.sum()))\n"
    result = run([str(python), "-c", code], cwd=work, env=env)
    out = result.stdout
    assert "epoch 4 (1/1)" in result.stderr, result.stderr  # the reloaded model resumed where it stopped
    metrics = ast.literal_eval(re.search(r"^\{'loss'.*\}$", out, re.M).group(0))  # the dict the tour prints
    assert metrics["accuracy"] > 0.8, out
    total = re.search(r"PROBABILITIES \(10, 10\) (\S+)", out)
    assert total and abs(float(total.group(1)) - 10) < 1e-4, out  # ten rows of probabilities (float32 sums)
    assert (work / "lenet5.h5").is_file()
