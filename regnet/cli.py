"""The ``regnet`` command: train, evaluate, predict, plot, summary, zoo, plugins and describe.

Every failure prints one line, ``regnet: error: ...``, on stderr and exits with status 1
(2 for usage errors, which name the ``--help`` to read); ``--debug`` shows the traceback instead.
A closed standard output (``regnet evaluate m.h5 | head -1``) ends the command quietly with
status 141.
"""

import argparse
import functools
import json
import math
import os
import shlex
import sys
import time

import numpy as np

from . import accel, atomic, checkpoint, images, io, metrics, plot, reference, zoo
from ._version import __version__
from .datasets import sources
from .datasets.augment import random_shift
from .datasets.inputs import read_inputs
from .distributed import cli as distributed
from .errors import ConfigError, DataError, FileFormatError, MissingDependencyError, RegnetError
from .model import Model
from .registry import plugin_report
from .schedules import CLI_KINDS as SCHEDULES
from .schedules import from_cli as schedule_from_cli
from .text import escape


def _missing_commands(error, names, sub, parents):
    """Commands of an optional extra that is not installed: each takes any arguments and raises ``error``."""

    def fail(args, argv):
        raise error

    for name in names:
        p = sub.add_parser(name, parents=parents, help=f"unavailable: {error}")
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=fail)


try:  # the optional extra regnet[onnx]
    from .onnx.cli import add_commands as add_onnx_commands
except MissingDependencyError as missing:
    add_onnx_commands = functools.partial(_missing_commands, missing, ("export", "import"))

__all__ = ["main", "build_parser"]


# -- helpers ----------------------------------------------------------------------------------------
def _is_model_file(path):
    return not str(path).lower().endswith(".json")


def _check_output(path, inputs, *, model=False):
    """Refuse, before any work, an output that is one of the command's input files (compared as
    files: any spelling, a symbolic or hard link) and, for a model file, an existing file that
    is not one; either is left untouched."""
    atomic.refuse_input(path, inputs)
    if model:
        io.check_model_target(path)


def _ensure_compiled(model):
    if model.loss is None:
        model.compile("categorical_crossentropy", "adam", metrics=["accuracy"])
    return model


def _report(model, x, y, batch_size):
    """The classification report of ``model`` on ``(x, y)``, with the loss."""
    model = _ensure_compiled(model)
    scores = model.evaluate(x, y, batch_size=batch_size)
    pred = metrics.predicted_classes(model.predict(x, batch_size=batch_size))
    k = int(model.output_shape[-1]) if model.output_shape and model.output_shape[-1] > 1 else None
    return {"loss": float(scores["loss"]), **metrics.classification_report(y, pred, k)}


def _split(data, split):
    (xtr, ytr), (xte, yte) = data
    return (xte, yte) if split == "test" else (xtr, ytr)


# -- commands ---------------------------------------------------------------------------------------
def cmd_train(args, argv, strategy=None):
    _check_output(args.out, {"the spec": args.spec, "--init-from": args.init_from, "--data": args.data}, model=True)
    if args.distributed and strategy is None:
        return distributed.train(cmd_train, args, argv)
    if strategy is None or strategy.chief:
        io.check_writable(args.out)  # before any work: a missing or read-only folder fails now
    model = Model.from_spec(args.spec, seed=args.seed, weights_from=args.init_from)
    if args.freeze:
        model.freeze(*[name.strip() for name in args.freeze.split(",") if name.strip()])
    (x, y), (xt, yt) = sources.load(args.data)
    x, y, val = _validation_split(x, y, xt, yt, args.validation, args.seed)
    steps = -(-len(x) // (args.batch_size if strategy is None else strategy.batch_size(args.batch_size)))
    rate = schedule_from_cli(args.lr_schedule, args.lr, steps, args.epochs, args.warmup, args.lr_decay)
    optimizer = {"type": args.optimizer, "learning_rate": rate}
    if args.weight_decay is not None:
        optimizer["weight_decay"] = args.weight_decay
    if args.momentum is not None:
        optimizer["momentum"] = args.momentum
    model.compile(loss=args.loss, optimizer=optimizer, metrics=["accuracy"])
    verbose = 0 if args.quiet else 1
    t0 = time.perf_counter()
    if args.augment:
        _fit_augmented(model, x, y, args, val, verbose, strategy)
    else:
        model.fit(
            x,
            y,
            epochs=args.epochs,
            batch_size=args.batch_size,
            validation_data=val,
            seed=args.seed,
            verbose=verbose,
            strategy=strategy,
        )
    seconds = time.perf_counter() - t0
    if strategy is not None and not strategy.chief:
        return 0  # rank 0 evaluates and saves
    final = model.evaluate(xt, yt, batch_size=max(256, args.batch_size))
    metadata = {
        "command": "regnet " + shlex.join(argv),
        "data": args.data,
        "validation": args.validation,
        "validation_samples": 0 if val is None else int(len(val[0])),
        "train_seconds": round(seconds, 1),
        "test_loss": float(final["loss"]),
        "test_accuracy": float(final["accuracy"]),
        "test_samples": int(len(xt)),
    }
    if args.no_optimizer_state:
        model.optimizer.slots = {slot: {} for slot in model.optimizer.slot_names}
    checkpoint.save(model, args.out, metadata=metadata)
    print(
        f"saved {args.out}: {_validation_text(model, args.validation, val)}test accuracy {final['accuracy']:.4f}, "
        f"loss {final['loss']:.4f} on {len(xt)} samples (evaluated once, after training); "
        f"{model.count_params():,} parameters; trained {args.epochs} "
        f"epoch{'s' if args.epochs != 1 else ''} in {seconds:.1f} s"
    )
    return 0


def _validation_text(model, how, val):
    """``validation accuracy 0.9712 on 500 held-out training samples; `` (empty without validation)."""
    last = model.history[-1] if model.history else {}
    if val is None or "val_accuracy" not in last:
        return ""
    where = f"the test split ({len(val[0])} samples)" if how == "test" else f"{len(val[0])} held-out training samples"
    return f"validation accuracy {last['val_accuracy']:.4f} on {where}; "


def _validation_split(x, y, xt, yt, how, seed):
    if how == "test":
        return x, y, (xt, yt)
    if how == "none":
        return x, y, None
    try:
        frac = float(how)
    except ValueError:
        frac = -1.0
    if not 0.0 < frac < 1.0:
        raise DataError(f"--validation must be 'test', 'none' or a fraction in (0, 1), got '{how}'")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(frac * len(x))))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], (x[val], y[val])


def _fit_augmented(model, x, y, args, val, verbose, strategy):
    """One ``fit`` call per epoch, each on a freshly shifted copy of the training images."""
    if np.asarray(x).ndim != 4:
        raise DataError(f"--augment shifts images and needs NCHW inputs, the data has shape {list(np.shape(x))}")
    rng = np.random.default_rng(None if args.seed is None else [args.seed, 1])
    for epoch in range(args.epochs):
        xa = random_shift(x, args.augment, rng)
        model.fit(
            xa,
            y,
            epochs=1,
            batch_size=args.batch_size,
            validation_data=val,
            seed=args.seed if epoch == 0 else None,
            verbose=verbose,
            strategy=strategy,
        )


def cmd_evaluate(args, argv):
    if args.plot:
        _check_output(args.plot, {"the model": args.model, "--data": args.data})
    source = checkpoint.source_path(args.model)  # a file, or a zoo model by name
    model = Model.load(source)
    data = args.data or io.read_metadata(source).get("data") or "mnist"
    x, y = _split(sources.load(data), args.split)
    report = _report(model, x, y, args.batch_size)
    print(metrics.format_report(report, f"{sources.describe(data)} {args.split} split"))
    if args.plot:
        plot.confusion_matrix(report["confusion"], args.plot, title=f"{sources.describe(data)} {args.split} split")
        print(f"wrote {args.plot}: the confusion matrix", file=sys.stderr)
    return 0


def cmd_plot(args, argv):
    _check_output(args.out, {"the model": args.model})
    logs = plot.history_of_file(checkpoint.source_path(args.model))
    plot.history(logs, args.out, title=args.title or os.path.basename(args.model))
    keys = ", ".join(name for name, *_ in plot.panels(list(plot.curves(logs)[1])))
    print(f"wrote {args.out}: {keys} over {len(logs)} epoch(s), training and validation")
    return 0


def cmd_predict(args, argv):
    if args.out:
        _check_output(args.out, {"the model": args.model, "the input": args.input})
        _check_npy_target(args.out)
    model = Model.load(args.model, compile=False)
    reading = images.read_digits(model, args.input) if images.is_image(args.input) else None
    if reading is None:
        if len(model.inputs) > 1:
            names = ", ".join(model.input_names)
            raise DataError(
                f"the predict command takes models with one input; this one has {names} (use Model.predict)"
            )
        x = read_inputs(args.input, model.input_shape, args.key, scale_bytes=model.inputs[0].dtype == "float32")
        out = model.predict(x, batch_size=args.batch_size)
    else:
        out = reading.probabilities
    if args.out:
        with io.atomic_write(args.out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, out)
        print(f"wrote {args.out}: outputs of shape {list(out.shape)}", file=sys.stderr)
        return 0
    if reading is not None:
        print(images.format_reading(reading))
        return 0
    classes = metrics.predicted_classes(out) if out.ndim == 2 else None
    for i, row in enumerate(out):
        if classes is not None and not args.raw:
            conf = row[classes[i]] if row.shape[0] > 1 else (row[0] if classes[i] else 1 - row[0])
            print(f"{i}\t{classes[i]}\t{conf:.4f}")
        else:
            print(f"{i}\t" + " ".join(f"{v:.6g}" for v in np.ravel(row)))
    return 0


def _check_npy_target(path):
    """``predict --out`` replaces an .npy file (or an empty one), never a file of another kind."""
    try:
        if not os.path.isfile(path):  # nothing opened: a FIFO would block (the save refuses it)
            return
        with open(path, "rb") as fh:
            head = fh.read(6)
    except (OSError, ValueError):
        return  # no file yet (the save reports any other problem)
    if head and head != b"\x93NUMPY":
        raise FileFormatError(
            f"cannot write {escape(path)}: the file exists and is not a NumPy .npy file; it is left untouched: "
            "remove it first or choose another path"
        )


def cmd_summary(args, argv):
    if not _is_model_file(args.model):
        Model.from_spec(args.model).summary()
        return 0
    source = checkpoint.source_path(args.model)  # a file, or a zoo model by name
    model = Model.load(source, compile=False)
    model.summary()
    meta = io.read_metadata(source)
    print(f"Trained epochs: {model.epoch}")
    if model.history:
        last = model.history[-1]
        print(
            "Last epoch: "
            + ", ".join(
                f"{escape(k)} {v:.4f}" if isinstance(v, float) else f"{escape(k)} {escape(v)}" for k, v in last.items()
            )
        )
    for key in ("command", "data", "train_seconds", "test_accuracy"):
        if key in meta:
            print(f"{key.replace('_', ' ').capitalize()}: {escape(meta[key], 2000)}")
    return 0


def cmd_zoo(args, argv):
    if args.zoo_command == "list":
        rows = [("name", "task", "dataset", "params", "test acc", "train s", "provider")]
        for name in zoo.list():
            e = zoo.info(name)
            rows.append(
                (
                    name,
                    escape(e["task"]),
                    escape(e["dataset"]),
                    f"{e['params']:,}",
                    f"{100 * e['test_accuracy']:.2f} %",
                    f"{e['train_seconds']:.0f}",
                    escape(" ".join(filter(None, (e["provider"]["distribution"], e["provider"]["version"])))),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        for b in zoo.broken():
            version = f" {b['version']}" if b["version"] else ""
            print(escape(f"BROKEN {b['distribution']}{version} ({b['entry_point']}): {b['error']}"))
        return 0
    if args.zoo_command == "info":
        print(json.dumps(zoo.info(args.name), indent=2))
        return 0
    entry = zoo.info(args.name)
    model = zoo.load(args.name)
    data = args.data or entry["dataset"]
    x, y = _split(sources.load(data), args.split)
    report = _report(model, x, y, args.batch_size)
    print(f"model: {args.name} (sha256 verified; manifest test accuracy {entry['test_accuracy']:.4f})")
    print(metrics.format_report(report, f"{sources.describe(data)} {args.split} split"))
    return 0


def _with_aliases(component):
    """``Conv2D (also Conv2d)``: a component's name with the other names it answers to."""
    aliases = component.get("aliases") or []
    return f"{component['name']} (also {', '.join(aliases)})" if aliases else component["name"]


def cmd_plugins(args, argv):
    report = plugin_report()
    print("names are case-insensitive; names in parentheses (also ...) are aliases of the name before them")
    for kind, part in report.items():
        comps = part["components"]
        plugins = [c for c in comps if not c["builtin"]]
        print(f"{kind} ({part['group']}): {len(comps)} available, {len(plugins)} from plugins")
        builtin = [_with_aliases(c) for c in comps if c["builtin"]]
        if builtin and not args.plugins_only:  # a hook group (onnx_import) has no built-in entries
            print(f"  built-in (regnet): {', '.join(builtin)}")
        for c in plugins:
            version = f" {c['version']}" if c["version"] else ""
            print(f"  {_with_aliases(c):<24} {c['distribution']}{version}  ({c['entry_point']})")
        for b in part["broken"]:
            version = f" {b['version']}" if b["version"] else ""
            print(f"  BROKEN {b['name']:<17} {b['distribution']}{version}  ({b['entry_point']}): {b['error']}")
    return 0


def cmd_describe(args, argv):
    if args.all == (args.name is not None):
        raise ConfigError("give one component name, or --all")
    entries = reference.builtin_entries() if args.all else reference.find(args.name)
    if args.markdown:
        print(reference.markdown(entries) if args.all else "\n".join(map(reference.markdown_entry, entries)), end="")
    else:
        print("\n\n".join(map(reference.text_entry, entries)))
    return 0


# -- parser -----------------------------------------------------------------------------------------
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _data_help(default):
    return (
        f"mnist (the full set from $REGNET_DATA, the cache or a download from $REGNET_MNIST_MIRRORS, else "
        f"the bundled sample), mnist-sample (the bundled sample: no network), moons, circles, spirals "
        f"(optionally with arguments, e.g. moons:n=2000,seed=1), a folder of MNIST IDX files or an .npz "
        f"file (default: {default})"
    )


class _Version(argparse.Action):
    """``--version``: regnet's version and the computation path in use (``regnet.accel``), found
    only when asked (telling the accelerator's version imports numba)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"regnet {__version__}\ncompute path: {accel.describe()}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, as every other failure is:
    ``regnet: error: <what>; see 'regnet train --help'`` (exit status 2)."""

    def error(self, message):
        self.exit(2, f"regnet: error: {_one_line(message)}; see '{self.prog} --help'\n")


def build_parser():
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback on errors"
    )
    p = _Parser(
        prog="regnet",
        description="Train, inspect and use regnet models. Wherever a command takes a model file "
        "(MODEL.h5), a zoo model's name works too: 'zoo:NAME', or the bare NAME when no file of that "
        "name exists (regnet zoo list shows them).",
        epilog="Data: --data mnist uses $REGNET_DATA or the user cache, else downloads MNIST from the mirrors "
        "in $REGNET_MNIST_MIRRORS (space- or comma-separated base URLs; default: three public ones, "
        "10 s timeout each, each attempt named on stderr), else falls back to the bundled sample; "
        "--data mnist-sample uses the bundled 5 000 + 2 000-image sample directly, never the network.",
        parents=[debug],
    )
    p.add_argument("--version", action=_Version, help="show the version and the compute path (numpy or fast), and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser(
        "train",
        parents=[debug],
        help="train a model from a JSON spec and save it",
        description="Train a model from a JSON spec; the HDF5 file holds weights, "
        "optimizer state, history and the command line.",
    )
    t.add_argument("spec", metavar="SPEC.json")
    t.add_argument("--data", default="mnist", help=_data_help("mnist"))
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--batch-size", type=_positive_int, default=64)
    t.add_argument("--optimizer", default="adam", help="registered optimizer name (default: adam)")
    t.add_argument("--lr", type=_non_negative_float, default=1e-3, help="(peak) learning rate")
    t.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        default="constant",
        help="per-batch schedule: constant, cosine or linear decay to 0, exponential",
    )
    t.add_argument(
        "--lr-decay",
        type=_non_negative_float,
        default=0.9,
        help="factor per epoch for --lr-schedule exponential (default: 0.9)",
    )
    t.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=0.0,
        help="epochs of linear learning-rate warm-up (may be fractional)",
    )
    t.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=None,
        help="optimizer weight decay (for optimizers that have one, e.g. adamw, sgd)",
    )
    t.add_argument("--momentum", type=_non_negative_float, default=None, help="SGD momentum")
    t.add_argument("--loss", default="categorical_crossentropy")
    t.add_argument(
        "--augment",
        type=int,
        default=0,
        metavar="PIXELS",
        help="shift training images randomly by up to PIXELS in each direction, per epoch",
    )
    t.add_argument(
        "--validation",
        default="0.1",
        help="a fraction of the training set to hold out for validation after each epoch (default: "
        "0.1, drawn at random with --seed), 'none', or 'test' (validate on the test split: it then "
        "takes part in choosing the model and its figures are no longer unbiased). The test split is "
        "evaluated once, after training, either way",
    )
    t.add_argument("--seed", type=int, default=0, help="weights, dropout, shuffling (default: 0)")
    t.add_argument("--out", default="model.h5", help="output file (default: model.h5)")
    t.add_argument(
        "--init-from",
        metavar="MODEL",
        help="start from the weights of a zoo model (by name) or a model file, layer by layer by name "
        "(layers new in SPEC keep their initial weights)",
    )
    t.add_argument("--freeze", metavar="LAYERS", help="comma-separated names of layers not to train")
    t.add_argument(
        "--no-optimizer-state",
        action="store_true",
        help="leave the optimizer's moment estimates out of the file (a smaller file; "
        "resumed training starts them afresh)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress output")
    distributed.add_argument(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", parents=[debug], help="loss, accuracy, per-class accuracy, confusion matrix")
    e.add_argument("model", metavar="MODEL.h5")
    e.add_argument("--data", default=None, help=_data_help("the data the model was trained on"))
    e.add_argument("--split", choices=("test", "train"), default="test")
    e.add_argument("--batch-size", type=_positive_int, default=256)
    e.add_argument("--plot", metavar="PICTURE.png", help="also draw the confusion matrix (needs regnet[plot])")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser(
        "plot",
        parents=[debug],
        help="draw the training curves saved in a model file",
        description="Draw loss and every metric per epoch, training against validation, from the history "
        "saved in a model file (needs regnet[plot]).",
    )
    c.add_argument("model", metavar="MODEL.h5")
    c.add_argument(
        "-o", "--out", default="curves.png", help="picture to write: .png, .svg or .pdf (default: curves.png)"
    )
    c.add_argument("--title", help="title above the curves (default: the file name)")
    c.set_defaults(func=cmd_plot)

    r = sub.add_parser(
        "predict",
        parents=[debug],
        help="outputs of a model for inputs in a file, or the digits in a photo",
        description="Outputs of a model for the inputs in a file. Given an image (.png, .jpg, ...) and an "
        "MNIST model, reads the handwritten digits in it, left to right (needs regnet[images]).",
    )
    r.add_argument("model", metavar="MODEL.h5")
    r.add_argument("input", metavar="INPUT", help=".npy, .npz or IDX (raw or .gz) file, or an image of digits")
    r.add_argument("--key", help="array name inside an .npz file")
    r.add_argument("--out", help="write the raw outputs to this .npy file instead of printing")
    r.add_argument("--raw", action="store_true", help="print output vectors instead of classes")
    r.add_argument("--batch-size", type=_positive_int, default=256)
    r.set_defaults(func=cmd_predict)

    s = sub.add_parser("summary", parents=[debug], help="layers, shapes and parameters of a model or spec")
    s.add_argument("model", metavar="MODEL.h5|SPEC.json")
    s.set_defaults(func=cmd_summary)

    z = sub.add_parser(
        "zoo",
        parents=[debug],
        help="pretrained models",
        description="Pretrained models, each checked against its SHA-256 before loading: the models shipped "
        "with regnet, then those that installed packages add through the entry-point group 'regnet.zoo'.",
        epilog="REGNET_ZOO=DIR replaces the shipped models with the manifest.json in DIR (see docs/zoo.md).",
    )
    zs = z.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)
    zs.add_parser("list", parents=[debug], help="list the zoo's models")
    zi = zs.add_parser("info", parents=[debug], help="a model's manifest entry")
    zi.add_argument("name")
    ze = zs.add_parser("evaluate", parents=[debug], help="evaluate a zoo model (hash verified)")
    ze.add_argument("name")
    ze.add_argument("--data", default=None, help=_data_help("the model's data set"))
    ze.add_argument("--split", choices=("test", "train"), default="test")
    ze.add_argument("--batch-size", type=_positive_int, default=256)
    z.set_defaults(func=cmd_zoo)

    g = sub.add_parser(
        "plugins",
        parents=[debug],
        help="every component with its aliases and distribution, and broken plugins",
        description="Every registered component of each kind, with its aliases (other names it answers to) "
        "and the distribution that provides it, and every plugin that failed to load. Names are "
        "case-insensitive in specs, compile() and the command line.",
    )
    g.add_argument("--plugins-only", action="store_true", help="leave out the built-in names")
    g.set_defaults(func=cmd_plugins)
    d = sub.add_parser(
        "describe",
        parents=[debug],
        help="a component's reference: what it is, its aliases and every field (plugins' too)",
    )
    d.add_argument("name", nargs="?", help="a component's name or alias (any kind, any case)")
    d.add_argument("--all", action="store_true", help="every built-in component (docs/components.md)")
    d.add_argument("--markdown", action="store_true", help="as Markdown")
    d.set_defaults(func=cmd_describe)
    add_onnx_commands(sub, [debug])
    return p


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return escape(text)  # messages may quote a file: no control character reaches the terminal


#: the exit status of a command whose output pipe closed (128 + SIGPIPE, as a shell reports a
#: program that signal ended)
EXIT_PIPE_CLOSED = 141


def _stdout_closed():
    """The reader of standard output went away: stop quietly (no traceback, no error line), with
    what is left to print sent nowhere so that the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file behind sys.stdout
        pass
    return EXIT_PIPE_CLOSED


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        sys.stdout.flush()
    except SystemExit as exc:  # usage error or --help
        return exc.code if isinstance(exc.code, int) else 2
    except BrokenPipeError:
        return _stdout_closed()
    debug = getattr(args, "debug", False)
    try:
        status = args.func(args, argv)
        sys.stdout.flush()  # a reader that went away is noticed here, not at exit
        return status
    except BrokenPipeError:  # `regnet ... | head -1`: the reader has all it wanted
        return _stdout_closed()
    except KeyboardInterrupt:
        if debug:
            raise
        print("regnet: interrupted", file=sys.stderr)
        return 130
    except (RegnetError, OSError, MemoryError) as exc:
        if debug:
            raise
        print(f"regnet: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything unforeseen still gets one line
        if debug:
            raise
        print(
            f"regnet: error: unexpected {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
