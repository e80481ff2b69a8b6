"""The command line's promise: every failure is one line ``regnet: error: ...`` (usage errors
included, exit status 2), and a reader that closes the output early ends the command quietly."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regnet import Model, cli

SPEC = {"input_shape": [2], "layers": [{"type": "Dense", "name": "out", "units": 2, "activation": "softmax"}]}

USAGE_ERRORS = [
    [],
    ["frobnicate"],
    ["train"],
    ["train", "spec.json", "--epochs", "x"],
    ["train", "spec.json", "--epochs", "0"],
    ["train", "spec.json", "--no-such-flag"],
    ["evaluate", "m.h5", "--split", "validation"],
    ["zoo"],
    ["zoo", "info"],
    ["zoo", "frobnicate"],
    ["predict", "m.h5"],
    ["export", "m.h5"],
    ["import"],
    ["plot", "m.h5", "--title"],
    ["--debug", "summary"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=" ".join)
def test_usage_errors_are_one_line(argv, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("regnet: error: ") and err.count("\n") == 1 and "--help" in err, err


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from(["train", "zoo", "list", "--epochs", "-x", "--out", "1", "=", "--", "info"]), max_size=5)
)
def test_any_argument_list_fails_in_one_line(argv):
    """Whatever the arguments, a failure before a command runs is one line on stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv + ["--data", "no-such-data-set"] if argv[:1] == ["train"] else argv)
        except SystemExit as exc:  # pragma: no cover - main never exits
            pytest.fail(f"main raised SystemExit({exc.code})")
    if code != 0 and "usage:" not in out.getvalue():  # --help style output goes to stdout with 0
        text = err.getvalue()
        assert text.startswith("regnet: error: ") and text.count("\n") == 1, text


def test_help_still_shows_the_usage(capsys):
    assert cli.main(["train", "--help"]) == 0
    assert "usage: regnet train" in capsys.readouterr().out


def test_a_closed_stdout_ends_the_command_quietly(tmp_path):
    path, data = tmp_path / "m.h5", tmp_path / "x.npy"
    model = Model.from_spec(SPEC, seed=0).compile()
    model.fit(np.zeros((4, 2), np.float32), np.zeros(4, np.int64), epochs=1, verbose=0)
    model.save(path)
    np.save(data, np.zeros((20000, 2), np.float32))  # far more output than a pipe holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "regnet", "predict", str(path), str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline().startswith(b"0\t")
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == cli.EXIT_PIPE_CLOSED
    assert err == "", err
