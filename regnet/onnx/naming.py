"""regnet layer names from ONNX node and initializer names (kept when regnet accepts them, else
sanitised; made unique)."""

import re

from .. import names as grammar
from ..spec import INPUT

_BAD = re.compile(r"[^A-Za-z0-9_.\-]+")
MAX_NAME = 64


def snake(type_name: str) -> str:
    """``MaxPool2D`` -> ``max_pool2d``: the stem regnet gives generated names."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", type_name).lower()


def sanitise(text: str) -> str:
    """A layer name made of ``[A-Za-z0-9_.-]``, or ``""`` when nothing usable is left."""
    return _BAD.sub("_", text).strip("_.")[:MAX_NAME]


def from_node(node_name: str, op_type: str) -> str:
    """The module path in an exporter's node name: ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``,
    ``dense/MatMul`` -> ``dense``."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) == 1 and parts[0].startswith("node_"):  # torch's dynamo exporter: node_<what>
        parts = [parts[0][5:]]
    if parts and parts[-1].split("_")[0] == op_type:  # the op type (and a counter) is no name
        parts = parts[:-1]
    path = ""
    for part in parts:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path


def from_weight(initializer_name: str) -> str:
    """``fc1.weight`` -> ``fc1``, ``dense1/kernel`` -> ``dense1``; ``""`` for generated names."""
    if initializer_name.startswith("onnx::") or initializer_name.startswith("val_"):
        return ""
    for sep in ("/", "."):
        if sep in initializer_name:
            return initializer_name.rsplit(sep, 1)[0]
    return ""


def assign(candidates: list[list[str]], types: list[str], inputs: tuple[str, ...] = (INPUT,)) -> list[str]:
    """One unique name per layer (none a model input's: ``inputs``): its first usable candidate,
    else ``<type>_<k>`` as regnet would generate it."""
    taken = set(inputs)
    lowest: dict[tuple[str, int], int] = {}  # per (base name, first number), the lowest that may be free
    names = []
    for cands, type_name in zip(candidates, types):
        stem = snake(type_name)
        chosen = ""
        for cand in cands:
            if grammar.problem(cand) is not None or len(cand) > MAX_NAME:  # "/a/b" from a node path
                cand = sanitise(cand)
            if not cand:
                continue
            if cand[0].isdigit():  # "0" from an nn.Sequential: say what it is
                cand = f"{stem}_{cand}"
            chosen = cand
            break
        if not chosen or chosen in taken:
            base = chosen or stem
            # names are only ever added, so the search resumes where the last one for this base
            # stopped: linear in the number of layers however many share a base
            first = 1 if not chosen else 2
            k = lowest.get((base, first), first)
            while f"{base}_{k}" in taken:
                k += 1
            lowest[base, first] = k + 1
            chosen = f"{base}_{k}"
        taken.add(chosen)
        names.append(chosen)
    return names
