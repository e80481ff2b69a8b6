"""Readers and writers on one model file at once: nothing may be lost and no load may fail.

    python tools/stress_save_load.py [--seconds 60] [--writers 2] [--readers 3] [--path DIR/model.h5]

Each writer saves its own model (seeded by its index) over the same path again and again; each
reader loads the path again and again and checks that what it loaded is, tensor for tensor, one
of the writers' models (a complete file, never a mix). At the end every process reports its
counts; the run fails (exit status 1) if any load failed, any save failed, any loaded model was
none of the writers' models, or a temporary file was left behind. tests/robustness runs a few
seconds of it; run the minute by hand.
"""

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import traceback

import numpy as np

SPEC = {
    "input_shape": [32],
    "layers": [
        {"type": "Dense", "name": "a", "units": 64, "activation": "relu"},
        {"type": "Dense", "name": "b", "units": 64, "activation": "relu"},
        {"type": "Dense", "name": "out", "units": 10, "activation": "softmax"},
    ],
}


def _model(seed):
    import regnet

    return regnet.Model.from_spec(SPEC, seed=seed).compile(optimizer="adam")


def _fingerprint(weights):
    return {k: float(np.asarray(v, np.float64).sum()) for k, v in sorted(weights.items())}


def _writer(index, path, deadline, queue):
    counts = {"role": "writer", "index": index, "saves": 0, "failures": 0, "errors": []}
    try:
        model = _model(1000 + index)
        while time.monotonic() < deadline:
            try:
                model.save(path)
                counts["saves"] += 1
            except Exception as exc:  # counted and reported: the run fails
                counts["failures"] += 1
                counts["errors"].append(f"{type(exc).__name__}: {exc}"[:300])
    except Exception:
        counts["errors"].append(traceback.format_exc()[-500:])
        counts["failures"] += 1
    queue.put(counts)


def _reader(index, path, deadline, fingerprints, queue):
    import regnet

    counts = {"role": "reader", "index": index, "loads": 0, "failures": 0, "foreign": 0, "errors": []}
    while time.monotonic() < deadline:
        try:
            model = regnet.load(path)
        except Exception as exc:  # counted and reported: the run fails
            counts["failures"] += 1
            if len(counts["errors"]) < 5:
                counts["errors"].append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        counts["loads"] += 1
        if _fingerprint(model.state_dict()) not in fingerprints:
            counts["foreign"] += 1
    queue.put(counts)


def run(path, seconds, writers=2, readers=3):
    """Run the stress test on ``path``; returns the summary (a dict; ``ok`` says whether it passed)."""
    fingerprints = [_fingerprint(_model(1000 + i).state_dict()) for i in range(writers)]
    _model(1000).save(path)  # readers start on a complete file
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    deadline = time.monotonic() + 5.0 + seconds  # spawned interpreters take a moment to import regnet
    procs = [ctx.Process(target=_writer, args=(i, path, deadline, queue)) for i in range(writers)]
    procs += [ctx.Process(target=_reader, args=(i, path, deadline, fingerprints, queue)) for i in range(readers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    folder = os.path.dirname(os.path.abspath(path))
    leftovers = [n for n in os.listdir(folder) if n.endswith(".tmp")]
    summary = {
        "seconds": seconds,
        "saves": sum(r.get("saves", 0) for r in results),
        "loads": sum(r.get("loads", 0) for r in results),
        "save_failures": sum(r["failures"] for r in results if r["role"] == "writer"),
        "load_failures": sum(r["failures"] for r in results if r["role"] == "reader"),
        "foreign_loads": sum(r.get("foreign", 0) for r in results),
        "leftover_temporary_files": leftovers,
        "errors": [e for r in results for e in r["errors"]][:10],
    }
    summary["ok"] = not (
        summary["save_failures"] or summary["load_failures"] or summary["foreign_loads"] or leftovers
    ) and bool(summary["saves"] and summary["loads"])
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--writers", type=int, default=2)
    p.add_argument("--readers", type=int, default=3)
    p.add_argument("--path", help="the model file (default: one in a fresh temporary folder)")
    args = p.parse_args(argv)
    if args.path:
        summary = run(args.path, args.seconds, args.writers, args.readers)
    else:
        with tempfile.TemporaryDirectory() as folder:
            summary = run(os.path.join(folder, "model.h5"), args.seconds, args.writers, args.readers)
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
