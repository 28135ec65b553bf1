"""Training images per second: the streamed image-folder loader against the in-memory one, on the same images.

    .venv/bin/python benchmarks/loader_throughput.py                      # 4096 Fashion-MNIST images at 64 px
    .venv/bin/python benchmarks/loader_throughput.py --images 256 --workers 0 1 --ray-data

Writes ``--images`` Fashion-MNIST training images (the idx files under ``--fashion-dir``), resized to
``--size`` px RGB, as PNGs in an ImageFolder layout in a temporary folder (or ``--folder``). Then one epoch of
training batches (``--batch`` images) through:

* in memory: the same images decoded once into a tensor, batches from ``EpochBatches`` (pad-and-crop, mirror);
* streamed: ``data.name: image_folder`` batches (random-resized crop, mirror), decoded by 0, 1, 2 … DataLoader
  worker processes (``--workers``), the loader a Ray Train worker runs;
* with ``--ray-data``: Ray Data's ``read_images`` over the same folder on a local Ray (127.0.0.1, stopped at the
  end), the same random-resized crop and mirror in ``map_batches``, read with ``iter_torch_batches``.

Each line gives images/s over the whole pass, start-up included, and per decoding process, then the seconds to
the first batch (worker processes, Ray Data's pipeline): the best of ``--repeats`` passes (epochs), the one a
shared machine's other work disturbed least. The machine's load average is printed at the end: the figures
mean little on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raymeta.io.data import (  # noqa: E402
    DEFAULT_FASHION_MNIST_DIR,
    AugmentSpec,
    TensorImageDataset,
    epoch_batches,
    load_dataset,
)
from raymeta.io.image_folder import decode_image, load_image_folder  # noqa: E402


def write_folder(root: Path, count: int, size: int, fashion_dir: str, classes: list[int] | None = None) -> float:
    """The first ``count`` Fashion-MNIST training images (of ``classes`` only, when given) as ``size`` px RGB PNGs
    under root/train/<label>/, and test/ with ``count`` / 8 test images (at least one per class of train/);
    returns the seconds it took."""
    start = time.perf_counter()
    bundle = load_dataset("fashion_mnist", fashion_dir, augment=False)
    train_index = torch.arange(len(bundle.train))
    if classes:
        train_index = torch.nonzero(torch.isin(bundle.train.labels, torch.tensor(classes))).flatten()
    train_index = train_index[:count]
    kept = sorted(set(bundle.train.labels[train_index].tolist()))
    per_class = max(count // 8 // len(kept), 1)
    test_index = [i for c in kept for i in torch.nonzero(bundle.test.labels == c).flatten()[:per_class]]
    for split, dataset, indices in (("train", bundle.train, train_index), ("test", bundle.test, test_index)):
        low, high = dataset.images.min(), dataset.images.max()
        for index in map(int, indices):
            folder = root / split / str(int(dataset.labels[index]))
            folder.mkdir(parents=True, exist_ok=True)
            pixels = ((dataset.images[index, 0] - low) / (high - low) * 255).round().to(torch.uint8).numpy()
            image = Image.fromarray(pixels).convert("RGB").resize((size, size), Image.BILINEAR)
            image.save(folder / f"{index:05d}.png")
    return time.perf_counter() - start


@dataclass
class Timing:
    """One pass: images read, the seconds to the first batch (start-up: worker processes, a pipeline) and in all."""

    images: int = 0
    start_seconds: float = 0.0
    total_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Images per second over the whole pass, start-up included: a pipeline that works ahead (Ray Data's)
        does most of its work before its first batch, so a rate after the first batch would flatter it."""
        return self.images / max(self.total_seconds, 1e-9)

    def line(self, what: str, processes: int | None = None) -> str:
        per = f" = {self.rate / processes:6.0f} per process" if processes else ""
        return (
            f"{what:<38} {self.rate:8.0f} images/s{per:<22} ({self.images} images in {self.total_seconds:.2f}s, "
            f"the first batch after {self.start_seconds:.2f}s)"
        )


def time_pass(batches: Iterable) -> Timing:
    """Read ``batches`` (of (images, ...) or {"image": ...}) to the end."""
    timing, start = Timing(), time.perf_counter()
    for batch in batches:
        count = (batch["image"] if isinstance(batch, dict) else batch[0]).shape[0]
        if timing.images == 0:
            timing.start_seconds = time.perf_counter() - start
        timing.images += count
    timing.total_seconds = time.perf_counter() - start
    return timing


def in_memory_rate(folder, batch: int) -> Timing:
    """The streamed split's images decoded once (evaluation transform: resized, centre-cropped, normalised) into
    a TensorImageDataset, then one epoch of EpochBatches with the built-in sets' augmentation."""
    split = folder.train
    images = torch.stack([split.evaluation_image(decode_image(path)) for path in split.paths])
    dataset = TensorImageDataset(images, split.labels, AugmentSpec(crop_padding=4, horizontal_flip=True))
    batches = epoch_batches(dataset, batch, seed=0, epoch=0)
    return time_pass(batches.read(range(len(batches))))


def best(timings: Iterable[Timing]) -> Timing:
    """The pass with the highest rate: the one the other users of a shared machine disturbed least."""
    return max(timings, key=lambda timing: timing.rate)


def ray_data_passes(root: Path, folder, batch: int, cpus: int, repeats: int) -> list[Timing]:
    """Passes of Ray Data over root/train, each a new pipeline on one local Ray: read_images, the same
    random-resized crop and mirror in map_batches, torch batches."""
    import ray

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        split = folder.train

        def transform(rows: dict) -> dict:
            generator = torch.Generator().manual_seed(int(rows["image"].shape[0]))
            out = [split.training_image(torch.from_numpy(image).permute(2, 0, 1), generator) for image in rows["image"]]
            return {"image": torch.stack(out).numpy()}

        timings = []
        for _ in range(repeats):
            dataset = ray.data.read_images(str(root / "train"), mode="RGB").map_batches(transform, batch_size=batch)
            timings.append(time_pass(dataset.iter_torch_batches(batch_size=batch)))
        return timings
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096, help="training images written (default 4096)")
    parser.add_argument("--size", type=int, default=64, help="their side in pixels (default 64)")
    parser.add_argument("--batch", type=int, default=128, help="training batch size (default 128)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers to time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the reading process (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per loader; the best is shown (default 3)")
    parser.add_argument("--ray-data", action="store_true", help="also time Ray Data's read_images")
    parser.add_argument("--fashion-dir", default=DEFAULT_FASHION_MNIST_DIR)
    parser.add_argument("--folder", help="write the image folder here and keep it (default: a temporary folder)")
    parser.add_argument("--classes", type=int, nargs="+", help="only these Fashion-MNIST labels (default: all)")
    parser.add_argument("--write-only", action="store_true", help="write the folder (--folder) and time nothing")
    args = parser.parse_args()
    if args.images < args.batch:
        parser.error(f"--images {args.images} is fewer than one --batch of {args.batch}")
    if args.write_only and not args.folder:
        parser.error("--write-only needs --folder: where to keep the image folder")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="loader-throughput-") as temporary:
        root = Path(args.folder) if args.folder else Path(temporary)
        seconds = write_folder(root, args.images, args.size, args.fashion_dir, args.classes)
        print(
            f"wrote {args.images} training PNGs of {args.size}x{args.size} RGB in {seconds:.1f}s ({os.cpu_count()} CPUs)"
        )
        if args.write_only:
            return
        folder = load_image_folder(str(root), image_size=args.size, resize_size=args.size, validation_fraction=0.0)
        print(f"normalisation measured on train/: mean {np.round(folder.train.transform.mean, 3).tolist()}")

        print(best(in_memory_rate(folder, args.batch) for _ in range(args.repeats)).line("in memory (EpochBatches)"))
        for workers in args.workers:
            folder.train.loader_workers = workers
            timing = best(
                time_pass(batches.read(range(len(batches))))
                for epoch in range(args.repeats)
                for batches in [epoch_batches(folder.train, args.batch, seed=0, epoch=epoch)]
            )
            what = f"streamed, {workers} DataLoader worker(s)" if workers else "streamed, in the training process"
            print(timing.line(what, workers or 1))
        if args.ray_data:
            cpus = os.cpu_count() or 1
            timing = best(ray_data_passes(root, folder, args.batch, cpus, args.repeats))
            print(timing.line(f"Ray Data read_images, {cpus} CPUs", cpus))
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
