"""Measured latency: a per-block-width latency table, built once per device and cached in the run folder.

The exported network is an ordinary ResNet whose only varying parts are its metamorphic blocks, so its forward
time is modelled as ``base + Σ_blocks t_block(h_block)``: ``t_block(h)`` is the measured time of that block alone
(the block of hidden width h on the block's input shape) and ``base`` the measured time of the whole network at
the prior's widths less its blocks' own times. The table holds ``t_block`` for every width a search asks for and
is written as JSON (never pickle) to ``RUN_DIR/deploy/latency-<device>-batch<B>-threads<T>.json``; a later search on
the same device reuses it and measures only widths it lacks. The estimate ranks candidates; the network that is
finally exported is measured itself (:func:`measure_network`) and checked against the budget.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from raymeta.errors import ConfigError
from raymeta.io.files import atomic_write_text
from raymeta.method.models import Architecture, ResNet, block_name, make_block

TABLE_VERSION = 2
"""Bumped when the way times are taken changes (2: lower quartile): an older table is measured anew."""
WARMUP_RUNS = 5
REPEATS = 40
MIN_SECONDS = 0.25
"""Each timing is the lower quartile of at least ``REPEATS`` forward passes and at least ``MIN_SECONDS`` of them."""
FINAL_SECONDS = 1.0
"""The network to be exported is timed longer: its measurement is the one checked against a latency budget."""


def device_key(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "cpu"


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # Linux: the CPU's model name (platform.processor() is empty there)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()}, {os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor() or 'cpu'}".strip()


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's intra-op thread count set to ``count`` inside the block and restored after: latencies are measured
    at a stated thread count, whatever the process itself uses."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_forward(
    module: torch.nn.Module, example: torch.Tensor, device: torch.device, min_seconds: float | None = None
) -> float:
    """Wall time of ``module(example)`` in milliseconds (the lower quartile of the timed passes), after a warm-up
    (settings read at call time, so that tests can shorten them)."""
    module = module.to(device).eval()
    example = example.to(device)
    for _ in range(WARMUP_RUNS):
        module(example)
    _synchronise(device)
    times: list[float] = []
    started = time.perf_counter()
    least = MIN_SECONDS if min_seconds is None else min_seconds
    while len(times) < REPEATS or time.perf_counter() - started < least:
        start = time.perf_counter()
        module(example)
        _synchronise(device)
        times.append(time.perf_counter() - start)
    # the lower quartile: on a machine shared with other work, interference only ever adds time, so the fast
    # end of the distribution is the steadier estimate of what the network itself costs
    return 1000.0 * statistics.quantiles(times, n=4)[0]


def block_input_size(arch: Architecture, stage: int, image_size: int) -> int:
    """Spatial size of the feature map a block of ``stage`` sees (stride-2 3×3 convs between stages, after
    torchvision's stem: a stride-2 7×7 conv and a stride-2 max pool)."""
    size = image_size
    if arch.torchvision:
        size = (size + 6 - 7) // 2 + 1
        size = (size + 2 - 3) // 2 + 1
    for _ in range(stage):
        size = (size + 2 - 3) // 2 + 1
    return size


def measure_network(
    model: ResNet, image_size: int, device: torch.device, batch_size: int = 1, min_seconds: float | None = None
) -> float:
    """Measured latency (ms) of one forward pass of ``model`` on a batch of ``batch_size`` images."""
    example = torch.randn(batch_size, model.arch.in_channels, image_size, image_size)
    return time_forward(model, example, device, min_seconds)


@dataclass
class LatencyTable:
    """Measured per-block times (ms) by hidden width, and the rest of the network's time, for one device."""

    device: str
    description: str
    batch_size: int
    threads: int
    image_size: int
    architecture: dict
    blocks: list[str]
    base_ms: float = float("nan")
    block_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    measurements: int = 0
    """Timings taken by this process (0: everything came from the cache)."""

    def estimate(self, hidden: dict[tuple[int, int], int]) -> float:
        """Estimated latency (ms) of the network whose metamorphic blocks have these hidden widths."""
        total = self.base_ms
        for (s, b), h in hidden.items():
            total += self.block_ms[block_name(s, b)][str(h)]
        return total

    def to_json(self) -> dict:
        return {
            "format": "raymeta-latency",
            "version": TABLE_VERSION,
            "device": self.device,
            "description": self.description,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "image_size": self.image_size,
            "architecture": self.architecture,
            "blocks": self.blocks,
            "torch": torch.__version__,
            "base_ms": self.base_ms,
            "block_ms": self.block_ms,
        }


def table_path(run_dir: str | Path, device: torch.device, batch_size: int, threads: int) -> Path:
    return Path(run_dir) / "deploy" / f"latency-{device_key(device)}-batch{batch_size}-threads{threads}.json"


def _read(path: Path) -> dict | None:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and content.get("format") == "raymeta-latency" else None


def _write(path: Path, content: dict) -> None:
    atomic_write_text(path, json.dumps(content, indent=2, sort_keys=True) + "\n")


def latency_table(
    run_dir: str | Path,
    arch: Architecture,
    blocks: list[tuple[int, int]],
    image_size: int,
    device: torch.device,
    batch_size: int,
    threads: int,
    widths: dict[tuple[int, int], set[int]],
    progress=None,
) -> LatencyTable:
    """The cached table of ``run_dir`` for this device, batch size and thread count, measuring only what it lacks
    (every width in ``widths`` of each block, and the base); written back when anything was measured.

    A cached table of another architecture, image size, block list or torch version is measured anew."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size={batch_size} is not allowed: a positive integer")
    if threads < 1:
        raise ConfigError(f"--threads={threads} is not allowed: a positive integer")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda is not available on this machine: use cpu")
    path = table_path(run_dir, device, batch_size, threads)
    names = [block_name(s, b) for s, b in blocks]
    arch_record = {
        "depth": arch.depth,
        "widths": list(arch.widths),
        "in_channels": arch.in_channels,
        "num_classes": arch.num_classes,
    }
    if arch.torchvision:  # a CIFAR ResNet's record stays as it was, so its cached tables stay valid
        arch_record.update(family=arch.family, stage_blocks=list(arch.stage_blocks))
    table = LatencyTable(
        device_key(device), device_description(device), batch_size, threads, image_size, arch_record, names
    )
    cached = _read(path)
    if cached and all(
        cached.get(key) == value
        for key, value in (
            ("version", TABLE_VERSION),
            ("architecture", arch_record),
            ("image_size", image_size),
            ("blocks", names),
            ("torch", torch.__version__),
            ("description", table.description),
        )
    ):
        table.base_ms = float(cached["base_ms"])
        table.block_ms = {
            name: {str(h): float(ms) for h, ms in cached["block_ms"].get(name, {}).items()} for name in names
        }
    else:
        table.block_ms = {name: {} for name in names}
    with torch_threads(threads):
        missing = [
            ((s, b), h)
            for s, b in blocks
            for h in sorted(widths.get((s, b), set()) | {arch.widths[s]})
            if str(h) not in table.block_ms[block_name(s, b)]
        ]
        if missing and progress:
            progress(
                f"deploy: measuring the latency of {len(missing)} block width(s) on {table.description} "
                f"(batch {batch_size}, {threads} thread(s)) → {path}"
            )
        for (s, b), h in missing:
            size = block_input_size(arch, s, image_size)
            block = make_block(arch, s, b, h, batchnorm=False)
            example = torch.randn(batch_size, arch.out_width(s), size, size)
            table.block_ms[block_name(s, b)][str(h)] = time_forward(block, example, device)
            table.measurements += 1
        if not table.base_ms == table.base_ms or missing:  # NaN (new table), or block times changed: re-measure base
            full = measure_network(ResNet(arch, batchnorm=False), image_size, device, batch_size)
            table.measurements += 1
            table.base_ms = full - sum(table.block_ms[block_name(s, b)][str(arch.widths[s])] for s, b in blocks)
    if table.measurements:
        _write(path, table.to_json())
    elif progress:
        progress(f"deploy: latency table reused from {path} (no measurement)")
    return table
