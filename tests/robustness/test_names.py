"""Names that become paths in a model file: one grammar (``regnet.names``), enforced when the spec
is built, and every name it accepts survives save and load unchanged.

Layer names, tensor names (``add_weight``) and optimizer slot names are each generated with
hypothesis (arbitrary text, printable text and a list of edge cases); an accepted name must
round-trip through save/load byte for byte, a refused one must raise ``ConfigError`` before
anything is saved. Counts are recorded with ``fuzz_cases``.
"""

import tempfile
import unicodedata
from pathlib import Path

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regnet
from regnet import ConfigError, Model, io, names, registry
from regnet.layers import Layer, layer
from regnet.optimizers import Optimizer, optimizer


@layer("NamedWeightProbe", register=False)  # registered only while this module runs
class NamedWeightProbe(Layer):
    """``y = x * w`` with one weight whose name is a config field."""

    weight: str = attrs.field(default="w")

    def build(self, input_shape, rng):
        self.add_weight(self.weight, (input_shape[0],), "ones", rng)
        return tuple(input_shape)

    def forward(self, x, training=False):
        self.cache.x = x
        return x * self.params[self.weight]

    def backward(self, grad, *, need_input_grad=True):
        self.grads[self.weight][...] = (grad * self.cache.x).sum(axis=0)
        return grad * self.params[self.weight]


@optimizer("NamedSlotProbe", register=False)
class NamedSlotProbe(Optimizer):
    """Plain SGD that also sums the gradients in one slot whose name is a config field."""

    slot: str = attrs.field(default="total")

    @property
    def slot_names(self):
        return (self.slot,)

    def update(self, p, g, state):
        state[self.slot] += g
        p -= np.float32(self.learning_rate) * g


@pytest.fixture(scope="module", autouse=True)
def _probes():
    registry.layers.register(NamedWeightProbe, name="NamedWeightProbe")
    registry.optimizers.register(NamedSlotProbe, name="NamedSlotProbe")
    yield
    registry.layers.unregister("NamedWeightProbe")
    registry.optimizers.unregister("NamedSlotProbe")


#: one example per refused class (and the boundary cases the grammar accepts)
REFUSED = {
    "empty": "",
    "NUL": "a\0b",
    "control character": "a\x1b[2Jb",
    "newline": "line\nbreak",
    "DEL": "a\x7f",
    "C1 control": "a\x85b",
    "lone surrogate": "a\ud800b",
    "slash": "a/b",
    "dot": ".",
    "dot dot": "..",
    "blank": "   ",
    "no-break space only": "\u00a0",
    "fullwidth solidus": "a\uff0fb",
    "one dot leader (NFKC '.')": "\u2024",
    "bidirectional override": "abc\u202edef",
    "zero-width joiner": "a\u200db",
    "private use": "a\ue000",
    "unassigned": "a\U000e0080",
    "line separator": "a\u2028b",
    "not NFC": "e\u0301",
    "256 bytes": "x" * 256,
    "256 bytes of UTF-8": "é" * 128,
    "not a string": 7,
}
ACCEPTED = ["a", "dense_1", "Layer 1", ".hidden", "a.b", "…", "é", "层", "🙂", "x" * 255, "é" * 127, "a\\b", "'\""]

EDGES = st.sampled_from([*[v for v in REFUSED.values() if isinstance(v, str)], *ACCEPTED])
PRINTABLE = st.text(st.characters(categories=("L", "M", "N", "P", "S")), min_size=1, max_size=24)
ANY_TEXT = st.text(st.characters(), max_size=24) | st.text(
    st.characters() | st.sampled_from(["\0", "\ud800", "\udfff", "/", ".", " ", "\u0301"]), max_size=8
)
NAMES = EDGES | PRINTABLE | ANY_TEXT


def fuzz(n):
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def dense_spec(name):
    return {
        "input_shape": [3],
        "layers": [
            {"type": "Dense", "name": name, "units": 4, "activation": "relu"},
            {"type": "Dense", "name": "head", "units": 2, "inputs": [name]},
        ],
    }


def train_once(model):
    x = np.random.default_rng(0).standard_normal((8, *model.input_shape)).astype(np.float32)
    y = np.arange(8) % model.output_shape[-1]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    return model


def round_trip(model):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.h5"
        model.save(path)
        return regnet.load(path)


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])
    oa, ob = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sorted(oa) == sorted(ob)
    for k in oa:
        np.testing.assert_array_equal(oa[k], ob[k])


# -- the grammar itself -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", REFUSED)
def test_every_refused_class_is_refused_for_layers_weights_and_slots(case):
    name = REFUSED[case]
    assert names.problem(name) is not None
    with pytest.raises(ConfigError) as info:
        Model.from_spec(dense_spec(name))
    assert info.value.field == "name" and "\x1b" not in str(info.value)
    with pytest.raises(ConfigError):
        Model.from_spec({"input_shape": [3], "layers": [{"type": "NamedWeightProbe", "weight": name}]})
    with pytest.raises(ConfigError):
        NamedSlotProbe(slot=name)


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_edge_names_round_trip(name):
    assert names.problem(name) is None
    model = train_once(Model.from_spec(dense_spec(name), seed=0).compile(optimizer="adam"))
    again = round_trip(model)
    assert [n.name for n in again.nodes] == [name, "head"]
    assert_same_state(model, again)


def test_generated_layer_names_round_trip_or_are_refused_when_built(fuzz_cases):
    @fuzz(150)
    @given(name=NAMES)
    def check(name):
        fuzz_cases("layer names")
        if name in ("input", "head"):  # reserved / taken by the second layer
            return
        if names.problem(name) is not None:
            fuzz_cases("layer names, refused")
            with pytest.raises(ConfigError):
                Model.from_spec(dense_spec(name))
            return
        fuzz_cases("layer names, accepted")
        model = train_once(Model.from_spec(dense_spec(name), seed=1).compile(optimizer="adam"))
        again = round_trip(model)
        assert again.nodes[0].name == name  # byte for byte: never normalised
        assert_same_state(model, again)

    check()


def test_generated_weight_names_round_trip_or_are_refused_when_built(fuzz_cases):
    @fuzz(120)
    @given(name=NAMES)
    def check(name):
        fuzz_cases("weight names")
        spec = {
            "input_shape": [3],
            "layers": [{"type": "NamedWeightProbe", "name": "probe", "weight": name}, {"type": "Dense", "units": 2}],
        }
        if names.problem(name) is not None:
            fuzz_cases("weight names, refused")
            with pytest.raises(ConfigError):
                Model.from_spec(spec)
            return
        fuzz_cases("weight names, accepted")
        model = train_once(Model.from_spec(spec, seed=2).compile(optimizer="adam"))
        assert f"probe/{name}" in model.state_dict()
        assert_same_state(model, round_trip(model))

    check()


def test_generated_slot_names_round_trip_or_are_refused_when_built(fuzz_cases):
    @fuzz(120)
    @given(name=NAMES)
    def check(name):
        fuzz_cases("slot names")
        if names.problem(name) is not None:
            fuzz_cases("slot names, refused")
            with pytest.raises(ConfigError):
                NamedSlotProbe(slot=name)
            return
        fuzz_cases("slot names, accepted")
        model = Model.from_spec(dense_spec("d"), seed=3)
        model = train_once(model.compile(optimizer=NamedSlotProbe(slot=name, learning_rate=0.1)))
        again = round_trip(model)
        assert again.optimizer.slot == name
        assert_same_state(model, again)

    check()


def test_grammar_is_consistent_with_its_documented_rules(fuzz_cases):
    @fuzz(500)
    @given(name=NAMES)
    def check(name):
        fuzz_cases("grammar")
        ok = names.problem(name) is None
        folded = unicodedata.normalize("NFKC", name) if name.isprintable() else name
        expected = (
            0 < len(name)
            and name.isprintable()
            and len(name.encode("utf-8")) <= names.MAX_NAME_BYTES
            and "/" not in folded
            and unicodedata.is_normalized("NFC", name)
            and folded.strip() not in ("", ".", "..")
        )
        assert ok == expected, name

    check()


# -- what the file writer accepts ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    ["dense/a/b", "dense", "dense/", "/kernel", "dense/\0", "./kernel", "dense/..", "dense/\ud800"],
)
def test_the_writer_refuses_keys_that_are_not_layer_slash_valid_name(tmp_path, key):
    record = io.ModelRecord(spec={}, weights={key: np.zeros(2, np.float32)})
    with pytest.raises(ConfigError, match="cannot be stored"):
        io.write(tmp_path / "m.h5", record)
    with pytest.raises(ConfigError, match="cannot be stored"):
        io.write_weights(tmp_path / "w.h5", {}, {key: np.zeros(2, np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_a_layer_that_bypasses_add_weight_cannot_save_a_name_the_file_would_mangle(tmp_path):
    model = Model.from_spec(dense_spec("d"), seed=0)
    model.get_layer("d").params["odd/name"] = np.zeros(2, np.float32)
    with pytest.raises(ConfigError, match="cannot be stored"):
        model.save(tmp_path / "m.h5")
    assert list(tmp_path.iterdir()) == []
