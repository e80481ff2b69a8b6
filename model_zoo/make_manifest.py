"""Write ``manifest.json`` from the trained files in ``weights/``.

    REGNET_DATA=/path/to/data python model_zoo/make_manifest.py

Every figure comes from the files themselves: the SHA-256 and size of each weights file, its
parameter count, its test accuracy measured now on the full test set, and the training time
and exact ``regnet train`` command recorded in the file when it was trained.
"""

import json
import sys
from pathlib import Path

import regnet
from regnet.datasets import sources
from regnet.datasets.download import sha256_file

HERE = Path(__file__).resolve().parent
MODELS = [
    # name, task, spec, description
    (
        "mlp-mnist",
        "MNIST digit classification",
        "mlp-mnist.json",
        "784-512-512-10 perceptron with ReLU and dropout, trained on images shifted by up to 2 pixels",
    ),
    (
        "lenet5-mnist",
        "MNIST digit classification",
        "lenet5-mnist.json",
        "LeNet-5 with ReLU: conv 6@5x5, max pool, conv 16@5x5, max pool, dense 120, 84, 10; "
        "trained on images shifted by up to 2 pixels",
    ),
    (
        "cnn-mnist",
        "MNIST digit classification",
        "cnn-mnist.json",
        "conv 8@5x5, BN, pool, conv 32@5x5, BN, pool, dense 128, BN, dropout 0.4, 10; "
        "trained on images shifted by up to 2 pixels",
    ),
    (
        "lstm-mnist",
        "MNIST digit classification",
        "lstm-mnist.json",
        "LSTM reading a digit row by row (28 steps of 28 pixels), 128 units, dense 10 on its last "
        "state; trained on images shifted by up to 1 pixel",
    ),
    (
        "vit-mnist",
        "MNIST digit classification",
        "vit-mnist.json",
        "vision transformer: 16 patches of 7x7 embedded to 64, learned positions, 2 pre-norm encoder "
        "blocks (4 heads, GELU MLP 128), mean of the tokens, dense 10; trained on images shifted by "
        "up to 1 pixel",
    ),
    (
        "mlp-moons",
        "two-moons classification",
        "mlp-2d.json",
        "2-32-32-2 perceptron (moons with noise 0.05: the classes do not overlap)",
    ),
    (
        "mlp-circles",
        "inside/outside a circle",
        "mlp-2d.json",
        "2-32-32-2 perceptron (no points within 0.02 of the circle)",
    ),
]


def entry(name, task, spec, description):
    weights = HERE / "weights" / f"{name}.h5"
    meta = regnet.io.read_metadata(weights)
    if "command" not in meta:
        raise SystemExit(f"{weights} records no training command")
    model = regnet.load(weights)
    data = meta["data"]
    _, (x, y) = sources.load(data, download=False)
    if data == "mnist" and len(x) != 10000:
        raise SystemExit("the full MNIST test set is needed (set REGNET_DATA)")
    result = model.evaluate(x, y)
    return {
        "name": name,
        "description": description,
        "task": task,
        "dataset": data,
        "test_samples": int(len(x)),
        "spec": f"specs/{spec}",
        "weights": f"weights/{name}.h5",
        "sha256": sha256_file(weights),
        "size": weights.stat().st_size,
        "params": model.count_params(),
        "test_accuracy": round(float(result["accuracy"]), 6),
        "test_loss": round(float(result["loss"]), 6),
        "epochs": model.epoch,
        "train_seconds": meta["train_seconds"],
        "command": meta["command"],
    }


def main(names=None):
    path = HERE / "manifest.json"
    old = json.loads(path.read_text()) if path.exists() else {"models": []}
    kept = {e["name"]: e for e in old["models"]}
    for row in MODELS:
        if (HERE / "weights" / f"{row[0]}.h5").exists() and (not names or row[0] in names):
            kept[row[0]] = entry(*row)
            print(f"{row[0]}: {kept[row[0]]['test_accuracy']:.4f}", file=sys.stderr)
    order = [r[0] for r in MODELS]
    doc = {"format": "regnet.zoo", "version": 1, "models": sorted(kept.values(), key=lambda e: order.index(e["name"]))}
    path.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
