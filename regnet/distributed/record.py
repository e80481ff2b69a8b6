"""The shape of a data-parallel run (processes, global batch), saved in its checkpoints with the
callbacks' state, so that a run resumed from one says when its global batch is not the one the
checkpoint was trained with (with ``batch="per_rank"`` it grows with the number of processes)."""

import warnings
from typing import Any

from ..training.callbacks import Callback


class RunRecord(Callback):
    """Saved as the state ``"DataParallel"`` of each checkpoint of a data-parallel run."""

    state_key = "DataParallel"
    changes_weights = False

    def __init__(self, processes: int, global_batch: int | None, batch: str, chief: bool) -> None:
        self.processes, self.global_batch, self.batch, self.chief = processes, global_batch, batch, chief
        self.resumed_from: dict | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"processes": self.processes, "global_batch": self.global_batch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.resumed_from = dict(state)
        before, processes = state.get("global_batch"), state.get("processes")
        if before == self.global_batch or before is None or not self.chief:
            return
        warnings.warn(
            f"this run resumes one trained with a global batch of {before} on {processes} process(es); it now has "
            f"a global batch of {self.global_batch} on {self.processes} (batch='{self.batch}'), so its steps are not "
            f"those the interrupted run would have taken. To continue that run exactly, on any number of "
            f"processes, use batch='global' with batch_size={before}",
            UserWarning,
            stacklevel=2,
        )
