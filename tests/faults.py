"""Fault injection, installed by the tests through training's step hook (``step_hook=``), never by production code.

Ray pickles the hook into every worker; this module is registered to be pickled by value, so the workers need
not import it from the tests folder."""

import os
from pathlib import Path

import ray.cloudpickle


class KillOnce:
    """Kill rank ``rank``'s process (``os._exit``) right after global step ``step``, once: ``marker`` is left
    behind so that the restarted worker group goes on."""

    def __init__(self, rank: int, step: int, marker: Path):
        self.rank, self.step, self.marker = rank, step, str(marker)

    def __call__(self, rank: int, step: int) -> None:
        if rank == self.rank and step == self.step and not os.path.exists(self.marker):
            Path(self.marker).write_text(f"rank {rank} killed after step {step}\n")
            os._exit(17)


ray.cloudpickle.register_pickle_by_value(__import__(__name__))
