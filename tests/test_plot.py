"""Pictures of training: the curves drawn are the history's numbers, the files are valid PNGs of the
documented size, and the command line draws them from a model file."""

import json
import math
import struct

import numpy as np
import pytest

import regnet
from regnet import plot
from regnet.cli import main
from regnet.errors import DataError, FileFormatError

pytest.importorskip("matplotlib", reason="regnet[plot] (matplotlib) is not installed")

MLP_2D = {
    "input_shape": [2],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 8, "activation": "relu"},
        {"type": "Dense", "name": "out", "units": 2, "activation": "softmax"},
    ],
}


def png_size(path):
    """``(width, height)`` from a PNG's header, after checking its signature and first chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    (x, y), (xt, yt) = regnet.datasets.moons(n=300, seed=0)
    model = regnet.Model.from_spec(MLP_2D, seed=0).compile("categorical_crossentropy", "adam", metrics=["accuracy"])
    model.fit(x, y, epochs=4, batch_size=32, validation_data=(xt, yt), seed=0, verbose=0)
    path = tmp_path_factory.mktemp("plot") / "moons.h5"
    regnet.save(model, path)
    return model, path


def lines_of(fig):
    """``{panel title: {legend label: (x, y)}}`` of a figure."""
    return {
        ax.get_title(): {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}
        for ax in fig.axes
    }


def test_history_draws_the_history(trained, tmp_path):
    model, _ = trained
    fig = plot.history(model, tmp_path / "curves.png")
    drawn = lines_of(fig)
    assert list(drawn) == ["loss", "accuracy"]
    epochs = [row["epoch"] for row in model.history]
    for name in ("loss", "accuracy"):
        assert drawn[name]["training"] == (epochs, [row[name] for row in model.history])
        assert drawn[name]["validation"] == (epochs, [row[f"val_{name}"] for row in model.history])
    assert png_size(tmp_path / "curves.png") == (
        round(plot.PANEL_WIDTH * 2 * plot.DPI),
        round(plot.PANEL_HEIGHT * plot.DPI),
    )


def test_every_form_of_history_gives_the_same_curves(trained):
    model, _ = trained
    h = regnet.History()
    for row in model.history:
        h.append(row["epoch"], {k: v for k, v in row.items() if k != "epoch"})
    as_lists = {k: [row[k] for row in model.history] for k in ("loss", "val_loss")}
    assert plot.curves(model) == plot.curves(model.history) == plot.curves(h)
    assert plot.curves(as_lists) == ([1, 2, 3, 4], as_lists)


def test_missing_values_and_metric_only_in_validation():
    logs = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5, "val_loss": 0.7, "val_top5": 0.9}]
    fig = plot.history(logs)
    drawn = lines_of(fig)
    assert list(drawn) == ["loss", "top5"] and list(drawn["top5"]) == ["validation"]
    x, y = drawn["loss"]["validation"]
    assert x == [1, 2] and math.isnan(y[0]) and y[1] == 0.7


def test_confusion_matrix_picture(tmp_path):
    counts = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    fig = plot.confusion_matrix(counts, tmp_path / "m.png", labels=["cat", "dog", "eel"])
    [ax, _colorbar] = fig.axes
    np.testing.assert_array_equal(ax.images[0].get_array(), counts)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "eel"]
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(counts.ravel().tolist())
    assert "accuracy 0.8400" in ax.get_title()
    assert png_size(tmp_path / "m.png") == tuple(round(s * plot.DPI) for s in plot.MATRIX_SIZE)


@pytest.mark.parametrize(
    "matrix, labels, fragment",
    [(np.ones((2, 3)), None, "square"), (-np.ones((2, 2)), None, "counts"), (np.ones((2, 2)), ["a"], "1 labels")],
)
def test_confusion_matrix_errors(matrix, labels, fragment):
    with pytest.raises(DataError, match=fragment):
        plot.confusion_matrix(matrix, labels=labels)


def test_bad_histories_and_paths(tmp_path):
    with pytest.raises(DataError, match="empty"):
        plot.history([])
    with pytest.raises(DataError, match="per-epoch logs"):
        plot.history(42)
    with pytest.raises(DataError, match=r"\.png, \.svg or \.pdf"):
        plot.history([{"loss": 1.0}], tmp_path / "curves.gif")
    assert not list(tmp_path.iterdir())


def test_plot_command(trained, tmp_path, capsys):
    model, path = trained
    assert main(["plot", str(path), "-o", str(tmp_path / "c.png")]) == 0
    assert "loss, accuracy over 4 epoch(s)" in capsys.readouterr().out
    assert png_size(tmp_path / "c.png") == (round(plot.PANEL_WIDTH * 2 * plot.DPI), round(plot.PANEL_HEIGHT * plot.DPI))
    assert plot.history_of_file(path) == json.loads(json.dumps(model.history))


def test_plot_command_errors(tmp_path, capsys):
    untrained = tmp_path / "untrained.h5"
    regnet.save(regnet.Model.from_spec(MLP_2D, seed=0), untrained)
    assert main(["plot", str(untrained), "-o", str(tmp_path / "c.png")]) == 1
    assert "holds no training history" in capsys.readouterr().err
    (tmp_path / "spec.json").write_text(json.dumps(MLP_2D))
    with pytest.raises(FileFormatError):
        plot.history_of_file(tmp_path / "spec.json")


def test_evaluate_draws_the_confusion_matrix(trained, tmp_path, capsys):
    _, path = trained
    assert main(["evaluate", str(path), "--data", "moons:n=300,seed=0", "--plot", str(tmp_path / "m.png")]) == 0
    assert png_size(tmp_path / "m.png") == tuple(round(s * plot.DPI) for s in plot.MATRIX_SIZE)
