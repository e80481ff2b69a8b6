"""Subprocess used by the kill -9 tests: saves models while the parent kills it.

python io_worker.py fit <checkpoint> <pause_epoch>
    train with ModelCheckpoint(<checkpoint>) every epoch; while writing the checkpoint of
    <pause_epoch>, after half of its tensors, print PAUSED and wait to be killed
python io_worker.py save <path> pause
    save a large model once, printing PAUSED and waiting half way through the write
python io_worker.py save <path> loop
    print READY, then save a large model over <path> again and again until killed
"""

import sys
import time

import numpy as np

import regnet
from regnet import io

SMALL = {
    "input_shape": [6],
    "layers": [
        {"type": "Dense", "name": "h", "units": 16, "activation": "relu"},
        {"type": "Dropout", "name": "drop", "rate": 0.2},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}


def large_model(seed):
    layers = [{"type": "Dense", "name": f"d{i}", "units": 400, "activation": "relu"} for i in range(8)]
    return regnet.Model(layers + [{"type": "Dense", "name": "out", "units": 10}], (400,), seed=seed)


def small_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def pause_half_way(when):
    """Patch the tensor writer to stop half way through a save for which ``when()`` is true."""
    original = io._write_array
    count = {"n": 0}

    def write(group, key, value):
        original(group, key, value)
        if when():
            count["n"] += 1
            if count["n"] == 3:
                group.file.flush()
                print("PAUSED", flush=True)
                time.sleep(120)

    io._write_array = write


def main(argv):
    mode, path = argv[0], argv[1]
    if mode == "fit":
        pause_epoch = int(argv[2])
        model = regnet.Model.from_spec(SMALL, seed=1).compile(optimizer={"type": "SGD", "momentum": 0.9})
        pause_half_way(lambda: model.epoch == pause_epoch)
        x, y = small_data()
        model.fit(
            x, y, epochs=pause_epoch + 5, batch_size=16, seed=4, verbose=0, callbacks=[regnet.ModelCheckpoint(path)]
        )
    elif argv[2] == "pause":
        pause_half_way(lambda: True)
        large_model(seed=2).save(path)
    else:
        model = large_model(seed=2)
        print("READY", flush=True)
        while True:
            model.save(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
