"""The progress display of ``fit``: a tqdm bar on a terminal, one line per epoch otherwise."""

import numbers
import sys
import time

from tqdm import tqdm


def scalars(logs: dict) -> dict:
    """The entries of ``logs`` that are single numbers (per-class arrays are not displayed)."""
    return {k: v for k, v in logs.items() if isinstance(v, numbers.Real)}


class Progress:
    """A tqdm bar on stderr when it is a terminal; one line per epoch otherwise (verbose >= 1).

    Epochs are shown as ``epoch 2/3`` when training starts from scratch and as ``epoch 5 (2/3)``
    (the model's epoch, then the position in this ``fit`` call) when it continues a model trained
    before."""

    def __init__(self, verbose: int, epochs: int, first_epoch: int = 0) -> None:
        self.verbose = verbose
        self.epochs = epochs
        self.first_epoch = first_epoch
        self.tty = verbose >= 1 and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.bar = None

    def label(self, epoch: int) -> str:
        if self.first_epoch == 0:
            return f"epoch {epoch}/{self.epochs}"
        return f"epoch {epoch} ({epoch - self.first_epoch}/{self.epochs})"

    def start(self, epoch: int, n_batches: "int | None") -> None:
        self.t0 = time.perf_counter()
        self.seen = 0
        self.last = 0.0
        if self.tty:
            self.bar = tqdm(
                total=n_batches,
                desc=self.label(epoch),
                file=sys.stderr,
                unit="batch",
                leave=True,
                dynamic_ncols=True,
            )

    def count(self, size: int) -> None:
        """A batch of ``size`` samples was trained (no display)."""
        self.seen += size

    def batch(self, size: int, logs: dict) -> None:
        self.seen += size
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.last > 0.2:
            self.last = now
            rate = self.seen / max(now - self.t0, 1e-9)
            shown = {k: f"{v:.4f}" for k, v in scalars(logs).items()}
            self.bar.set_postfix({**shown, "img/s": f"{rate:,.0f}"}, refresh=False)

    def end(self, epoch: int, logs: dict) -> None:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        text = " - ".join(f"{k}: {v:.4f}" for k, v in scalars(logs).items())
        if self.bar is not None:
            self.bar.set_postfix_str(f"{text} - {self.seen / dt:,.0f} img/s")
            self.bar.close()
        elif self.verbose >= 1:
            print(
                f"{self.label(epoch)} - {dt:.1f}s - {self.seen / dt:,.0f} img/s - {text}",
                file=sys.stderr,
                flush=True,
            )
