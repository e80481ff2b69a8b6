"""The Python examples of docs/training.md and of the README's training section run as written
(each document as one session, in a fresh folder)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda: (ROOT / "docs" / "training.md").read_text(), id="docs/training.md"),
        pytest.param(lambda: section((ROOT / "README.md").read_text(), "## Training toolkit"), id="README"),
    ],
)
def test_examples_run(source, tmp_path, monkeypatch, capsys):
    code = blocks(source())
    assert code
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(code):
        try:
            exec(compile(block, f"<example {i + 1}>", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"example {i + 1} fails: {type(exc).__name__}: {exc}\n{block}") from exc
