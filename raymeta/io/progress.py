"""Progress: one line per event with the elapsed time, flushed so that the logs of long runs stream; throughput
and time left as people read them; and progress bars for long loops (evaluation over γ × K, the deploy search,
the baselines) that draw only on a terminal, so that job logs get a plain line every so often instead."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator

BARS_ENV = "RAYMETA_PROGRESS_BARS"
"""1: draw progress bars even where the output is no terminal (inside Ray workers, through Ray's tqdm_ray);
0: never draw them. Unset: bars exactly where the output is a terminal."""
PLAIN_SECONDS = 30.0
"""Without a bar, a loop prints its count at most this often (and once at the end)."""

_open_bars = 0  # while a bar is drawn, progress lines are written above it (tqdm.write), not through it


class Progress:
    """Prints one line per event with the elapsed time; flushes so that logs of long runs stream."""

    def __init__(self, stream=None):
        self.start = time.perf_counter()
        self.stream = stream  # None: whatever sys.stdout is at print time

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        line, stream = f"[{self.elapsed():7.1f}s] {message}", self.stream or sys.stdout
        if _open_bars:
            from tqdm import tqdm

            tqdm.write(line, file=stream)
            stream.flush()
        else:
            print(line, file=stream, flush=True)


def format_duration(seconds: float) -> str:
    """A duration as people read one: ``42s``, ``3m05s``, ``2h07m`` (``?`` when not known)."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def throughput(steps: int, images: int, seconds: float) -> str:
    """``12.3 steps/s 1580 img/s``: what a training epoch (or part of one) got through per second."""
    if seconds <= 0:
        return "? steps/s ? img/s"
    return f"{steps / seconds:.3g} steps/s {images / seconds:.0f} img/s"


def bars_wanted(stream) -> bool:
    """Whether a loop draws a bar on ``stream``: ``RAYMETA_PROGRESS_BARS`` when set, else whether it is a terminal."""
    setting = os.environ.get(BARS_ENV, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _in_ray_worker() -> bool:
    """Inside a Ray worker process (a task, an actor, a Train worker): where a bar goes through ``tqdm_ray``.
    Looked up, not imported: a process that has not imported Ray is in no Ray worker."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    try:
        return ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except AttributeError:
        return False


class Bar:
    """Progress over ``total`` units of a long loop: a tqdm bar where :func:`bars_wanted` (inside a Ray worker,
    Ray's ``tqdm_ray``, drawn by the driver), else a plain line with the count, rate and time left at most every
    :data:`PLAIN_SECONDS` and at the end. A context manager; :meth:`iterate` wraps an iterable.

    ``progress`` prints the plain lines (a :class:`Progress`, or any callable taking a line; None: a new
    Progress); the bar goes to its stream (a Progress's, else standard output)."""

    def __init__(self, total: int, label: str, *, unit: str = "it", progress=None):
        global _open_bars
        self.total, self.label, self.unit, self.done = total, label, unit, 0
        self.progress = progress or Progress()
        self.stream = getattr(self.progress, "stream", None) or sys.stdout
        self.start = self.last_line = time.perf_counter()
        self.bar, self.drawn_here = None, False
        if bars_wanted(self.stream):
            if _in_ray_worker():
                from ray.experimental import tqdm_ray

                self.bar = tqdm_ray.tqdm(total=total, desc=label, unit=unit)
            else:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=label, unit=unit, file=self.stream, dynamic_ncols=True, leave=False)
                self.drawn_here = True
                _open_bars += 1

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif time.perf_counter() - self.last_line >= PLAIN_SECONDS and self.done < self.total:
            self.last_line = time.perf_counter()
            self.progress(self.line())

    def line(self) -> str:
        """``label: 12/40 batch (3.1 batch/s, ETA 9s)``: the plain line printed in place of a bar."""
        seconds = time.perf_counter() - self.start
        rate = self.done / seconds if seconds > 0 else float("nan")
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        ending = f"ETA {format_duration(left)}" if self.done < self.total else f"in {format_duration(seconds)}"
        return f"{self.label}: {self.done}/{self.total} {self.unit} ({rate:.3g} {self.unit}/s, {ending})"

    def close(self) -> None:
        global _open_bars
        if self.bar is None:
            if self.done and time.perf_counter() - self.start >= PLAIN_SECONDS:  # long enough to have said so
                self.progress(self.line())
            return
        self.bar.close()
        if self.drawn_here:
            _open_bars -= 1
        self.bar, self.drawn_here = None, False

    def iterate(self, items: Iterable) -> Iterator:
        for item in items:
            yield item
            self.update()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
