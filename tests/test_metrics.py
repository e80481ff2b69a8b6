"""Metrics: hand counts, streaming over batches equals the whole set, totals that add up across
parts, weights, configs, errors, and metrics through fit / evaluate / save / load."""

import json

import numpy as np
import pytest

import regnet
from regnet import ConfigError, Model, UnknownComponentError, metrics

# A fixed confusion matrix (rows: true class, columns: predicted class)
C = np.array([[5, 1, 0], [2, 3, 1], [0, 2, 6]])


def from_confusion(confusion):
    """Labels and one-hot-ish outputs whose confusion matrix is ``confusion`` (shuffled)."""
    truth, guess = [], []
    for t, row in enumerate(confusion):
        for p, count in enumerate(row):
            truth += [t] * count
            guess += [p] * count
    order = np.random.default_rng(0).permutation(len(truth))
    truth, guess = np.array(truth)[order], np.array(guess)[order]
    pred = np.full((len(guess), len(confusion)), 0.1, np.float32)
    pred[np.arange(len(guess)), guess] = 0.8
    return pred, truth


def test_f1_precision_recall_match_a_hand_count():
    pred, y = from_confusion(C)
    # by hand: tp = 5, 3, 6; predicted = 7, 6, 7; actual = 6, 6, 8
    f1 = [10 / 13, 6 / 12, 12 / 15]
    precision, recall = [5 / 7, 3 / 6, 6 / 7], [5 / 6, 3 / 6, 6 / 8]
    value = lambda config: metrics.get(config)(pred, y)
    np.testing.assert_allclose(value({"type": "f1", "average": "per_class"}), f1)
    np.testing.assert_allclose(value({"type": "precision", "average": "per_class"}), precision)
    np.testing.assert_allclose(value({"type": "recall", "average": "per_class"}), recall)
    assert value("f1") == pytest.approx(sum(f1) / 3)
    assert value({"type": "f1", "average": "weighted"}) == pytest.approx((6 * f1[0] + 6 * f1[1] + 8 * f1[2]) / 20)
    assert value({"type": "f1", "average": "micro"}) == pytest.approx(14 / 20)
    assert value("precision") == pytest.approx(sum(precision) / 3)
    np.testing.assert_array_equal(value("confusion_matrix"), C)
    assert value("accuracy") == pytest.approx(14 / 20)


def test_the_classification_report_has_precision_recall_and_f1():
    _, y = from_confusion(C)
    pred = from_confusion(C)[0].argmax(axis=1)
    report = metrics.classification_report(y, pred)
    np.testing.assert_array_equal(report["confusion"], C)
    assert [r["f1"] for r in report["per_class"]] == pytest.approx([10 / 13, 6 / 12, 12 / 15])
    assert [r["precision"] for r in report["per_class"]] == pytest.approx([5 / 7, 3 / 6, 6 / 7])
    assert [r["accuracy"] for r in report["per_class"]] == [r["recall"] for r in report["per_class"]]
    assert report["macro"]["f1"] == pytest.approx((10 / 13 + 0.5 + 0.8) / 3)
    assert report["micro"]["f1"] == pytest.approx(0.7) == report["accuracy"]
    text = metrics.format_report(report, "test")
    assert "macro average: precision" in text and "precision 0.7143" in text


def test_binary_and_absent_classes():
    # class 2 never occurs, neither as target nor as prediction: macro averages over classes 0 and 1
    pred, y = from_confusion(np.array([[3, 1, 0], [1, 3, 0], [0, 0, 0]]))
    assert metrics.get("f1")(pred, y) == pytest.approx(0.75)
    sigmoid = np.array([[0.9], [0.2], [0.7], [0.4]], np.float32)
    target = np.array([1, 0, 0, 1])
    np.testing.assert_array_equal(metrics.get("confusion_matrix")(sigmoid, target), [[1, 1], [1, 1]])
    assert metrics.get({"type": "precision", "average": "binary"})(sigmoid, target) == 0.5
    assert metrics.get({"type": "recall", "average": "binary", "threshold": 0.3})(sigmoid, target) == 1.0


REGRESSION = ("mae", "mse")
CLASSIFICATION = (
    "accuracy",
    {"type": "top_k_accuracy", "k": 2},
    "precision",
    {"type": "recall", "average": "weighted"},
    {"type": "f1", "average": "per_class"},
    "confusion_matrix",
    "mae",
    "mse",
)


def outputs(n=101, k=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, k)).astype(np.float32)
    pred = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.where(rng.random(n) < 0.6, pred.argmax(axis=1), rng.integers(0, k, n))
    return pred.astype(np.float32), y


@pytest.mark.parametrize("config", CLASSIFICATION, ids=str)
def test_streaming_over_batches_equals_the_whole_set_and_totals_add_up(config):
    pred, y = outputs()
    whole = metrics.get(config)(pred, y)
    m = metrics.get(config)
    for s in range(0, len(y), 16):
        m.update(pred[s : s + 16], y[s : s + 16])
    np.testing.assert_allclose(m.result(), whole, rtol=1e-9)
    # two parts (say two processes) merged by summing their totals
    a, b = metrics.get(config), metrics.get(config)
    a.update(pred[:40], y[:40])
    b.update(pred[40:], y[40:])
    a.merge(b.totals)
    np.testing.assert_allclose(a.result(), whole, rtol=1e-9)
    m.reset()
    assert m.totals == {} and np.isnan(m.result())


def test_values_against_direct_formulas():
    pred, y = outputs()
    onehot = np.eye(4)[y]
    assert metrics.get("accuracy")(pred, y) == pytest.approx(np.mean(pred.argmax(1) == y))
    assert metrics.get("mae")(pred, y) == pytest.approx(np.mean(np.abs(pred - onehot)))
    assert metrics.get("mse")(pred, onehot) == pytest.approx(np.mean((pred - onehot) ** 2))
    top2 = np.argsort(-pred, axis=1)[:, :2]
    top_2 = metrics.get({"type": "top_k_accuracy", "k": 2})
    assert top_2(pred, y) == pytest.approx(np.mean((top2 == y[:, None]).any(1)))
    assert metrics.get({"type": "top_k_accuracy", "k": 4})(pred, y) == 1.0


@pytest.mark.parametrize("config", CLASSIFICATION + ("auc",), ids=str)
def test_integer_weights_equal_repeating_samples(config):
    pred, y = outputs(n=30, k=2) if config == "auc" else outputs(n=30)
    w = np.random.default_rng(1).integers(0, 4, len(y))
    repeated = np.repeat(np.arange(len(y)), w)
    np.testing.assert_allclose(metrics.get(config)(pred, y, w), metrics.get(config)(pred[repeated], y[repeated]))
    np.testing.assert_allclose(metrics.get(config)(pred, y, np.ones(len(y))), metrics.get(config)(pred, y))


def exact_auc(score, truth):
    pos, neg = score[truth == 1], score[truth == 0]
    return np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))


def test_auc_is_exact_when_no_bin_is_shared_and_close_otherwise():
    truth = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    score = np.array([0.05, 0.9, 0.33, 0.61, 0.12, 0.47, 0.78, 0.85])  # all in different bins of 200
    auc = metrics.get("auc")(score[:, None].astype(np.float32), truth)
    assert auc == pytest.approx(exact_auc(score, truth)) and auc == pytest.approx(11 / 16)  # 4 + 3 + 1 + 3 of 16 pairs
    two_outputs = np.stack([1 - score, score], axis=1).astype(np.float32)
    assert metrics.get("auc")(two_outputs, truth) == pytest.approx(auc)
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 5000)
    score = np.clip(rng.normal(0.4 + 0.2 * truth, 0.2), 0, 1).astype(np.float32)
    m = metrics.get({"type": "auc", "num_bins": 100})
    for s in range(0, 5000, 512):
        m.update(score[s : s + 512, None], truth[s : s + 512])
    assert abs(m.result() - exact_auc(score, truth)) < 0.5 / 100


def test_configs_round_trip_and_default_names():
    for config in CLASSIFICATION + ("auc", {"type": "f1", "average": "micro", "name": "f1m"}):
        m = metrics.get(config)
        again = metrics.get(json.loads(json.dumps(m.get_config())))
        assert again == m and again.name == m.name
    assert metrics.get({"type": "top_k_accuracy", "k": 3}).name == "top_3_accuracy"
    assert metrics.get({"type": "f1", "average": "per_class"}).name == "f1_per_class"
    assert metrics.get("acc").name == "accuracy" and metrics.to_plain(metrics.get("acc")) == "accuracy"
    micro = {"type": "f1", "average": "micro"}
    assert metrics.to_plain(metrics.get(micro)) == {**micro, "threshold": 0.5}


SPEC = {"input_shape": [4], "layers": [{"type": "Dense", "units": 3, "activation": "softmax"}]}


@pytest.mark.parametrize(
    ("metric", "fragment"),
    [
        ("f11", "did you mean 'f1'"),
        ({"type": "top_k_accuracy", "k": 5}, "k=5 but the model has 3 outputs"),
        ("auc", "needs a binary classifier"),
        ({"type": "f1", "average": "binary"}, "needs two classes"),
        ({"type": "f1", "average": "mean"}, "expected one of 'macro'"),
        ({"type": "accuracy", "name": "loss"}, "other than 'loss'"),
    ],
)
def test_bad_metrics_are_refused_by_compile(metric, fragment):
    model = Model.from_spec(SPEC)
    with pytest.raises(ConfigError, match=fragment):
        model.compile(metrics=[metric])
    assert model.loss is None


def test_unknown_metric_is_an_unknown_component_and_duplicates_are_refused():
    with pytest.raises(UnknownComponentError, match="regnet.metrics"):
        metrics.get("precission")
    with pytest.raises(ConfigError, match="two metrics are named 'f1'"):
        Model.from_spec(SPEC).compile(metrics=["f1", {"type": "f1", "threshold": 0.2}])


def test_metrics_are_reported_by_fit_and_evaluate_and_restored_from_the_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)
    chosen = ["accuracy", {"type": "f1", "average": "micro"}, {"type": "precision", "average": "per_class"}, "mae"]
    model = Model.from_spec(SPEC, seed=0).compile(metrics=chosen)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x[:20], y[:20]))
    keys = {"accuracy", "f1_micro", "precision_per_class", "mae"}
    assert keys | {"loss"} | {f"val_{k}" for k in keys | {"loss"}} == set(history.history)
    assert history.history["f1_micro"][-1] == pytest.approx(history.history["accuracy"][-1])
    scores = model.evaluate(x, y)
    pred = model.predict(x)
    assert scores["accuracy"] == pytest.approx(np.mean(pred.argmax(1) == y))
    assert len(scores["precision_per_class"]) == 3
    model.save(tmp_path / "m.h5")
    loaded = regnet.load(tmp_path / "m.h5")
    assert loaded.metrics == model.metrics
    assert loaded.history == model.history
    again = loaded.evaluate(x, y)
    assert again["f1_micro"] == pytest.approx(scores["f1_micro"])
    np.testing.assert_allclose(again["precision_per_class"], scores["precision_per_class"])
