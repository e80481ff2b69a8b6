"""Build ``mnist_sample.npz``, the class-balanced MNIST sample bundled with regnet.

    python -m regnet.datasets._make_sample [MNIST_DIR]

Takes ``PER_CLASS_TRAIN`` train and ``PER_CLASS_TEST`` test images of each digit, chosen by a
fixed seed from the full set, and stores them as uint8 with their indices in the full set.
"""

import sys
from pathlib import Path

import numpy as np

from . import idx
from .mnist import FILES, SAMPLE, find, search_path

PER_CLASS_TRAIN = 500
PER_CLASS_TEST = 200
SEED = 20240601


def balanced_indices(labels, per_class, rng):
    """``per_class`` indices of each label value, chosen at random, in ascending order."""
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(picks))


def build(folder=None):
    paths = find(search_path(folder))
    if paths is None:
        raise SystemExit(f"no MNIST files found (searched {search_path(folder)}); give the folder as argument")
    rng = np.random.default_rng(SEED)
    out = {}
    for split, per_class in (("train", PER_CLASS_TRAIN), ("test", PER_CLASS_TEST)):
        images = idx.read(paths[f"{split}_images"])
        labels = idx.read(paths[f"{split}_labels"])
        chosen = balanced_indices(labels, per_class, rng)
        out[f"x_{split}"] = images[chosen]
        out[f"y_{split}"] = labels[chosen]
        out[f"{split}_index"] = chosen.astype(np.uint16)
    target = Path(__file__).with_name(SAMPLE)
    np.savez_compressed(target, **out)
    print(f"wrote {target} ({target.stat().st_size:,} bytes) from {paths[next(iter(FILES))]}")


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else None)
