"""The progress display of ``fit``: a tqdm bar on a terminal, one line per epoch otherwise."""

import sys
import time

from tqdm import tqdm


class Progress:
    """A tqdm bar on stderr when it is a terminal; one line per epoch otherwise (verbose >= 1)."""

    def __init__(self, verbose, epochs):
        self.verbose = verbose
        self.epochs = epochs
        self.tty = verbose >= 1 and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.bar = None

    def start(self, epoch, n_batches):
        self.t0 = time.perf_counter()
        self.seen = 0
        self.last = 0.0
        if self.tty:
            self.bar = tqdm(
                total=n_batches,
                desc=f"epoch {epoch}/{self.epochs}",
                file=sys.stderr,
                unit="batch",
                leave=True,
                dynamic_ncols=True,
            )

    def batch(self, size, logs):
        self.seen += size
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.last > 0.2:
            self.last = now
            rate = self.seen / max(now - self.t0, 1e-9)
            self.bar.set_postfix({**{k: f"{v:.4f}" for k, v in logs.items()}, "img/s": f"{rate:,.0f}"}, refresh=False)

    def end(self, epoch, logs):
        dt = time.perf_counter() - self.t0
        text = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        if self.bar is not None:
            self.bar.set_postfix_str(f"{text} - {self.seen / dt:,.0f} img/s")
            self.bar.close()
        elif self.verbose >= 1:
            print(
                f"epoch {epoch}/{self.epochs} - {dt:.1f}s - {self.seen / dt:,.0f} img/s - {text}",
                file=sys.stderr,
                flush=True,
            )
