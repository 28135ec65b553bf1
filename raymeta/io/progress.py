"""Progress lines: one per event, with the elapsed time, flushed so that the logs of long runs stream."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints one line per event with the elapsed time; flushes so that logs of long runs stream."""

    def __init__(self, stream=None):
        self.start = time.perf_counter()
        self.stream = stream  # None: whatever sys.stdout is at print time

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        print(f"[{self.elapsed():7.1f}s] {message}", file=self.stream or sys.stdout, flush=True)
