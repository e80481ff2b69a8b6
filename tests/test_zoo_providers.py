"""Zoo models from installed distributions (entry-point group ``regnet.zoo``), simulated with
``*.dist-info`` directories: listed with their distribution, hash-checked like the built-in ones,
and a broken provider is reported by name without breaking the built-in zoo."""

import json
import shutil
from pathlib import Path

import pytest

from regnet import zoo
from regnet.cli import main
from regnet.errors import FileFormatError, IntegrityError, PluginError, UnknownComponentError
from regnet.testing import plugin_distribution

ZOO = Path(__file__).resolve().parents[1] / "model_zoo"
BUILTIN = {e["name"]: e for e in json.loads((ZOO / "manifest.json").read_text())["models"]}


@pytest.fixture(autouse=True)
def real_zoo(monkeypatch):
    monkeypatch.delenv("REGNET_ZOO", raising=False)
    monkeypatch.delenv("REGNET_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("REGNET_PLUGINS", raising=False)


def provided_zoo(folder, name="toy-moons", **changes):
    """A provider's zoo folder holding a copy of the built-in mlp-moons model under ``name``."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("weights", "specs"):
        (folder / sub).mkdir(exist_ok=True)
    shutil.copy(ZOO / BUILTIN["mlp-moons"]["weights"], folder / "weights" / f"{name}.h5")
    shutil.copy(ZOO / BUILTIN["mlp-moons"]["spec"], folder / "specs" / "mlp-2d.json")
    entry = {**BUILTIN["mlp-moons"], "name": name, "weights": f"weights/{name}.h5", "spec": "specs/mlp-2d.json"}
    entry.update(changes)
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"format": "regnet.zoo", "version": 1, "models": [entry]}))
    return manifest


def provider_module(manifest):
    return f"from pathlib import Path\nMANIFEST = Path({str(manifest)!r})\n"


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_provider_adds_models_listed_with_its_distribution(tmp_path, capsys):
    manifest = provided_zoo(tmp_path / "zoo")
    with plugin_distribution(
        "toy-zoo", {"zoo": {"toy": "toy_zoo_mod:MANIFEST"}}, modules={"toy_zoo_mod": provider_module(manifest)}
    ):
        assert "toy-moons" in zoo.list() and set(BUILTIN) <= set(zoo.list())
        entry = zoo.info("toy-moons")
        assert entry["provider"] == {"distribution": "toy-zoo", "version": "1.0", "entry_point": "toy_zoo_mod:MANIFEST"}
        assert Path(entry["weights_path"]) == tmp_path / "zoo" / "weights" / "toy-moons.h5"
        assert zoo.info("mlp-moons")["provider"]["distribution"] == "regnet"
        assert zoo.load("toy-moons").count_params() == BUILTIN["mlp-moons"]["params"]
        code, text, _ = run(capsys, ["zoo", "list"])
        assert code == 0
        row = next(line for line in text.splitlines() if line.startswith("toy-moons"))
        assert row.endswith("toy-zoo 1.0")
        code, text, _ = run(capsys, ["zoo", "evaluate", "toy-moons"])
        assert code == 0 and "accuracy: 1.0000 (250/250)" in text
    assert "toy-moons" not in zoo.list()


def test_the_hash_check_applies_to_provided_models(tmp_path):
    manifest = provided_zoo(tmp_path / "zoo")
    weights = tmp_path / "zoo" / "weights" / "toy-moons.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with plugin_distribution(
        "toy-zoo", {"zoo": {"toy": "toy_zoo_mod:MANIFEST"}}, modules={"toy_zoo_mod": provider_module(manifest)}
    ):
        with pytest.raises(IntegrityError, match="toy-moons.*SHA-256.*not loaded"):
            zoo.load("toy-moons")


@pytest.mark.parametrize(
    "module, fragment",
    [
        ("raise ImportError('needs libfoo')", "ImportError: needs libfoo"),
        ("MANIFEST = 42", "gives a int"),
        ("MANIFEST = '/nonexistent/manifest.json'", "cannot read the zoo manifest"),
    ],
)
def test_a_broken_provider_is_reported_and_the_zoo_still_works(module, fragment, capsys):
    with plugin_distribution(
        "broken-zoo", {"zoo": {"bad": "broken_zoo_mod:MANIFEST"}}, modules={"broken_zoo_mod": module}
    ):
        assert set(zoo.list()) >= set(BUILTIN)
        assert zoo.load("mlp-moons").count_params() == BUILTIN["mlp-moons"]["params"]
        [b] = [b for b in zoo.broken() if b["distribution"] == "broken-zoo"]
        assert fragment in b["error"] and b["entry_point"] == "broken_zoo_mod:MANIFEST"
        code, text, _ = run(capsys, ["zoo", "list"])
        assert code == 0 and "mlp-moons" in text
        assert "BROKEN broken-zoo 1.0 (broken_zoo_mod:MANIFEST): " in text and fragment in text
        with pytest.raises(UnknownComponentError, match="broken providers: broken-zoo 1.0"):
            zoo.info("not-there")


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"sha256": None}, "field 'sha256': expected a string"),
        ({"name": "bad name\x1b[2J"}, "is not a model name"),
        ({"size": -1}, "field 'size'"),
    ],
)
def test_malformed_provided_entries_break_only_their_provider(tmp_path, changes, fragment):
    manifest = provided_zoo(tmp_path / "zoo", **changes)
    with plugin_distribution(
        "odd-zoo", {"zoo": {"odd": "odd_zoo_mod:MANIFEST"}}, modules={"odd_zoo_mod": provider_module(manifest)}
    ):
        assert set(BUILTIN) <= set(zoo.list()) and "toy-moons" not in zoo.list()
        [b] = [b for b in zoo.broken() if b["distribution"] == "odd-zoo"]
        assert fragment in b["error"]


def test_paths_may_not_leave_the_provider_folder(tmp_path):
    manifest = provided_zoo(tmp_path / "zoo", weights="../../elsewhere.h5")
    with plugin_distribution(
        "toy-zoo", {"zoo": {"toy": "toy_zoo_mod:MANIFEST"}}, modules={"toy_zoo_mod": provider_module(manifest)}
    ):
        with pytest.raises(FileFormatError, match="not a path inside the zoo folder"):
            zoo.load("toy-moons")


def test_a_built_in_name_is_kept(tmp_path):
    manifest = provided_zoo(tmp_path / "zoo", name="mlp-circles")
    with plugin_distribution(
        "toy-zoo", {"zoo": {"toy": "toy_zoo_mod:MANIFEST"}}, modules={"toy_zoo_mod": provider_module(manifest)}
    ):
        assert zoo.info("mlp-circles")["provider"]["distribution"] == "regnet"
        [b] = [b for b in zoo.broken() if b["distribution"] == "toy-zoo"]
        assert "built in" in b["error"]


def test_a_name_two_providers_claim_is_refused(tmp_path):
    one, two = provided_zoo(tmp_path / "one"), provided_zoo(tmp_path / "two")
    with plugin_distribution(
        "zoo-one", {"zoo": {"one": "zoo_one_mod:MANIFEST"}}, modules={"zoo_one_mod": provider_module(one)}
    ) as root:
        with plugin_distribution(
            "zoo-two",
            {"zoo": {"two": "zoo_two_mod:MANIFEST"}},
            modules={"zoo_two_mod": provider_module(two)},
            root=root,
        ):
            assert "toy-moons" not in zoo.list()
            with pytest.raises(PluginError, match="zoo-one 1.0 and zoo-two 1.0|zoo-two 1.0 and zoo-one 1.0"):
                zoo.info("toy-moons")


def test_safe_mode_leaves_providers_out(tmp_path, monkeypatch):
    manifest = provided_zoo(tmp_path / "zoo")
    with plugin_distribution(
        "toy-zoo", {"zoo": {"toy": "toy_zoo_mod:MANIFEST"}}, modules={"toy_zoo_mod": provider_module(manifest)}
    ):
        monkeypatch.setenv("REGNET_DISABLE_PLUGIN_AUTOLOAD", "1")
        assert "toy-moons" not in zoo.list()
        with pytest.raises(UnknownComponentError, match="REGNET_DISABLE_PLUGIN_AUTOLOAD leaves out.*toy-zoo"):
            zoo.info("toy-moons")
        monkeypatch.setenv("REGNET_PLUGINS", "Toy_Zoo")
        assert "toy-moons" in zoo.list()


# -- where the built-in zoo is found ---------------------------------------------------------------------
def test_shipped_models_come_first_and_regnet_zoo_overrides(tmp_path, monkeypatch):
    assert zoo.root() == zoo.REPOSITORY  # a source checkout reads model_zoo/ itself
    shipped = tmp_path / "shipped"
    provided_zoo(shipped, name="shipped-moons")
    monkeypatch.setattr(zoo, "SHIPPED", shipped)
    assert zoo.root() == shipped and "shipped-moons" in zoo.list() and "cnn-mnist" not in zoo.list()
    monkeypatch.setenv("REGNET_ZOO", str(ZOO))
    assert zoo.root() == ZOO and "cnn-mnist" in zoo.list()


def test_zoo_help_documents_regnet_zoo(capsys):
    code, text, _ = run(capsys, ["zoo", "--help"])
    assert code == 0 and "REGNET_ZOO" in text and "regnet.zoo" in text
