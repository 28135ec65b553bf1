"""Your own images: a folder in torchvision's ``ImageFolder`` layout, streamed from disk, never held in memory.

The root holds ``train/``, ``test/`` and optionally ``val/``; each holds one folder per class (the same class
names in every split), each of those its images (torchvision's image extensions; hidden files are skipped).
Without ``val/`` the validation split is held out of ``train/`` as the built-in sets do it
(:func:`raymeta.io.data.hold_out_validation`: stratified, drawn with ``VALIDATION_SEED``).

Images are decoded and transformed per batch: for training a random-resized crop to ``image_size`` and a mirror
with probability 1/2; for evaluation the shorter side resized to ``resize_size``, then the centre crop; both
normalised per channel. A training batch is, as :class:`raymeta.io.data.EpochBatches` of the in-memory sets, a
pure function of (seed, epoch, position): the epoch's order is the same seeded permutation and each batch draws
its crops and mirrors from a generator of its own, never from torch's global RNG. So whichever process decodes a
batch (the training process, one of its DataLoader workers, or another Ray Train worker) gets the same numbers:
each rank of a distributed run reads only the batches of its own configurations (its shard of the step,
:func:`raymeta.stages.collective.my_batch_positions`), decoded ahead in DataLoader worker processes, and two
workers give exactly the update of one process.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from raymeta.errors import ConfigError, DataError
from raymeta.io.data import (
    VALIDATION_SEED,
    BatchOrder,
    DatasetBundle,
    DatasetInfo,
    hold_out_validation,
)
from raymeta.seeds import derive_seed

IMAGE_FOLDER = "image_folder"
SPLIT_FOLDERS = {"train": "train", "validation": "val", "test": "test"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""torchvision's ``IMG_EXTENSIONS`` (what ``ImageFolder`` reads), compared case-insensitively."""
STATISTICS_IMAGES = 1000
"""At most this many training images (drawn with ``VALIDATION_SEED``) measure the normalisation's mean/std."""
CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratios of the random-resized crop, torchvision's default


@dataclass(frozen=True)
class FolderTransform:
    """How a split's images become tensors: sizes, the training crop's area range, the normalisation."""

    image_size: int
    resize_size: int
    crop_scale: tuple[float, float]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def scan_split(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """The class names (sorted folder names) and the (path, label) of every image of one split folder.

    Refuses, naming the path: a missing folder, a split without class folders, a file outside a class folder, an
    empty class folder, a file whose extension is not an image's, and (``classes`` given: those of train/) class
    folders that differ from them.
    """
    if not folder.is_dir():
        raise DataError(
            f"image folder split {folder} does not exist; expected a folder of class folders there "
            f"(train/ and test/ are required, val/ is optional)"
        )
    entries = sorted(os.scandir(folder), key=_name)
    names = [entry.name for entry in entries if entry.is_dir() and not entry.name.startswith(".")]
    strays = [entry.name for entry in entries if not entry.is_dir() and not entry.name.startswith(".")]
    if strays:
        raise DataError(
            f"{folder / strays[0]} is a file outside a class folder; expected only class folders in {folder} "
            f"(one folder of images per class)"
        )
    if not names:
        raise DataError(f"image folder split {folder} holds no class folders; expected one folder of images per class")
    if classes is not None and names != classes:
        missing = sorted(set(classes) - set(names))
        extra = sorted(set(names) - set(classes))
        raise DataError(
            f"the classes of {folder} differ from those of train/: missing {missing or 'none'}, not in train/ "
            f"{extra or 'none'}; every split needs the same class folders"
        )
    samples = []
    for label, name in enumerate(names):
        class_folder = folder / name
        files = sorted((entry for entry in os.scandir(class_folder) if not entry.name.startswith(".")), key=_name)
        if not files:
            raise DataError(f"class folder {class_folder} is empty; expected at least one image in it")
        for file in files:  # the directory entries' own types: no stat per image (a million on ImageNet)
            path = class_folder / file.name
            if file.is_dir() or path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise DataError(
                    f"{path} is not an image file; a class folder holds only images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            samples.append((path, label))
    return names, samples


def _name(entry: os.DirEntry) -> str:
    return entry.name


def decode_image(path: Path) -> torch.Tensor:
    """The image at ``path`` as uint8 RGB [3, H, W]; an unreadable file is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)  # a writable copy
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"cannot decode image {path}: {error}") from error


def resize_pixels(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ``pixels`` [3, H, W] resized to [3, height, width] (bilinear, antialiased when shrinking, as
    torchvision's ``Resize``), as floats in [0, 255]: rounding back to uint8 would only lose precision."""
    if pixels.shape[1:] == (height, width):
        return pixels.to(torch.float32)
    resized = F.interpolate(
        pixels[None].to(torch.float32), size=(height, width), mode="bilinear", antialias=True, align_corners=False
    )
    return resized[0].clamp_(0, 255)


def random_resized_window(
    height: int, width: int, scale: tuple[float, float], generator: torch.Generator
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop covering a ``scale`` share of the area with an aspect ratio in
    3/4..4/3 (log-uniform): torchvision's ``RandomResizedCrop.get_params``, drawn from ``generator``."""
    area = height * width
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        draws = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * draws[0])
        ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draws[1])
        crop_width = round(math.sqrt(target * ratio))
        crop_height = round(math.sqrt(target / ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = min(int(draws[2] * (height - crop_height + 1)), height - crop_height)
            left = min(int(draws[3] * (width - crop_width + 1)), width - crop_width)
            return top, left, crop_height, crop_width
    # Fallback, as torchvision's: the centre crop of the whole image at the nearest allowed ratio.
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        crop_width, crop_height = width, round(width / CROP_RATIO[0])
    elif ratio > CROP_RATIO[1]:
        crop_height, crop_width = height, round(height * CROP_RATIO[1])
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


class ImageFolderSplit(Dataset):
    """One split of an image folder: the paths and labels only; images are decoded when a batch is read.

    ``dataset[i]`` is image i with the evaluation transform (indexing never augments, as for the in-memory sets);
    training batches come from :meth:`epoch_batches`, augmented when ``augment``. ``loader_workers`` DataLoader
    processes decode ahead (0: in the calling process).
    """

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        transform: FolderTransform,
        *,
        augment: bool = False,
        loader_workers: int = 0,
    ):
        self.paths = [path for path, _ in samples]
        self.labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
        self.transform = transform
        self.augment = augment
        self.loader_workers = loader_workers

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.evaluation_image(decode_image(self.paths[index])), self.labels[index]

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixel values in [0, 255] (float) to [0, 1], then per channel (x − mean) / std."""
        mean = torch.tensor(self.transform.mean).view(3, 1, 1)
        std = torch.tensor(self.transform.std).view(3, 1, 1)
        return pixels.div(255.0).sub_(mean).div_(std)

    def evaluation_image(self, pixels: torch.Tensor, normalise: bool = True) -> torch.Tensor:
        """Decoded uint8 RGB ``pixels`` [3, H, W] resized (shorter side to resize_size), centre-cropped and
        normalised: [3, S, S] float32."""
        size, shorter = self.transform.image_size, self.transform.resize_size
        height, width = pixels.shape[1:]
        if height <= width:
            height, width = shorter, int(shorter * width / height)
        else:
            height, width = int(shorter * height / width), shorter
        pixels = resize_pixels(pixels, height, width)
        top, left = round((height - size) / 2), round((width - size) / 2)  # torchvision's centre crop
        pixels = pixels[:, top : top + size, left : left + size]
        return self._normalise(pixels) if normalise else pixels

    def training_image(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Decoded uint8 RGB ``pixels`` [3, H, W] randomly crop-resized to [3, S, S], mirrored with probability
        1/2 and normalised; the crop window, then the mirror, drawn from ``generator``."""
        size = self.transform.image_size
        top, left, height, width = random_resized_window(*pixels.shape[1:], self.transform.crop_scale, generator)
        pixels = resize_pixels(pixels[:, top : top + height, left : left + width], size, size)
        if bool(torch.rand(1, generator=generator) < 0.5):
            pixels = pixels.flip(-1)
        return self._normalise(pixels)

    def decode_batch(self, indices: list[int], generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``indices`` as one batch [B, 3, S, S]: augmented with draws from ``generator`` (image by image,
        in order), or with the evaluation transform when it is None."""
        images = []
        for index in indices:
            pixels = decode_image(self.paths[index])
            images.append(
                self.evaluation_image(pixels) if generator is None else self.training_image(pixels, generator)
            )
        return torch.stack(images), self.labels[indices]

    def subset(self, indices: torch.Tensor | list[int]) -> ImageFolderSplit:
        """The images ``indices`` of this split, in that order, with the same transform."""
        chosen = [(self.paths[i], int(self.labels[i])) for i in torch.as_tensor(indices).tolist()]
        return ImageFolderSplit(chosen, self.transform, augment=self.augment, loader_workers=self.loader_workers)

    def epoch_batches(self, batch_size: int, *, seed: int, epoch: int, drop_last: bool = True) -> FolderEpochBatches:
        return FolderEpochBatches(self, batch_size, seed=seed, epoch=epoch, drop_last=drop_last)


class FolderEpochBatches(BatchOrder):
    """The training batches of one epoch of an :class:`ImageFolderSplit`, addressable by position, decoded on
    demand: the same order and the same contract as :class:`raymeta.io.data.EpochBatches` (batch ``b`` a pure
    function of (seed, epoch, b)). :meth:`read` streams a list of positions through DataLoader workers."""

    def __init__(self, dataset: ImageFolderSplit, batch_size: int, *, seed: int, epoch: int, drop_last: bool = True):
        super().__init__(len(dataset), batch_size, seed=seed, epoch=epoch, drop_last=drop_last)
        self.dataset = dataset
        self.order = self.order.tolist()

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        indices = self.indices(position)
        return self.dataset.decode_batch(indices, self.generator(position) if self.dataset.augment else None)

    def read(self, positions: Iterable[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches at ``positions``, in that order, decoded ahead by the dataset's loader workers (each worker
        a whole batch at a time)."""
        positions = list(positions)
        workers = min(self.dataset.loader_workers, len(positions))
        if workers == 0:
            return (self[position] for position in positions)
        loader = DataLoader(
            _Positions(self),
            batch_size=None,  # an item is a whole batch
            sampler=positions,
            num_workers=workers,
            generator=torch.Generator().manual_seed(derive_seed(self.seed, self.epoch)),  # not the global RNG
        )
        return iter(loader)


class _Positions(Dataset):
    """An epoch's batches as a Dataset of positions, so that DataLoader workers decode whole batches."""

    def __init__(self, batches: FolderEpochBatches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches[position]


def load_image_folder(
    root: str | None,
    *,
    image_size: int,
    resize_size: int | None = None,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    augment: bool = True,
    validation_fraction: float = 0.0,
    limit_train: int | None = None,
    limit_validation: int | None = None,
    limit_test: int | None = None,
    loader_workers: int = 0,
) -> DatasetBundle:
    """The splits of the image folder ``root`` (see the module docstring), as streamed datasets.

    ``val/``, when present, is the validation split (``validation_fraction`` is then not used); otherwise
    ``validation_fraction`` of ``train/`` is held out as the built-in sets do. Every split's images are taken in
    one fixed shuffled order (drawn with ``VALIDATION_SEED``), so ``limit_*`` (the first N) covers every class.
    ``mean``/``std`` default to those measured on the training split (at most ``STATISTICS_IMAGES`` images,
    resized and centre-cropped as for evaluation).
    """
    if root is None:
        raise DataError(
            "data.name=image_folder needs data.data_dir: the folder holding train/, test/ and optionally val/"
        )
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", root)
    if scheme is not None:
        raise DataError(
            f"data.data_dir={root!r}: image_folder reads a folder on a local or mounted filesystem (NFS, or the "
            f"bucket mounted with s3fs, gcsfuse or the like on every node); {scheme.group(1)}:// URIs are not read "
            "directly (docs/commands.md, 'Your own images')"
        )
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(
            f"image folder root {folder} does not exist; expected a folder holding train/, test/ and optionally val/"
        )
    classes, train_samples = scan_split(folder / SPLIT_FOLDERS["train"])
    _, test_samples = scan_split(folder / SPLIT_FOLDERS["test"], classes)
    validation_folder = folder / SPLIT_FOLDERS["validation"]
    validation_samples = scan_split(validation_folder, classes)[1] if validation_folder.exists() else None

    def shuffled(samples):
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(VALIDATION_SEED))
        return [samples[i] for i in order.tolist()]

    train_samples, test_samples = shuffled(train_samples), shuffled(test_samples)
    if validation_samples is not None:
        validation_samples = shuffled(validation_samples)
    else:
        labels = torch.tensor([label for _, label in train_samples], dtype=torch.int64)
        held_out = hold_out_validation(labels, validation_fraction, IMAGE_FOLDER)
        if held_out is not None:
            validation_index, train_index = held_out
            validation_samples = [train_samples[i] for i in validation_index.tolist()]
            train_samples = [train_samples[i] for i in train_index.tolist()]

    resize_size = resize_size if resize_size is not None else round(image_size / 0.875)
    if resize_size < image_size:
        raise ConfigError(
            f"data.resize_size={resize_size} is smaller than data.image_size={image_size}: the centre crop is "
            "taken from the resized image, so resize_size must be >= image_size"
        )
    if mean is None or std is None:
        measured_mean, measured_std = measure_statistics(train_samples, image_size, resize_size, loader_workers)
        mean = mean if mean is not None else measured_mean
        std = std if std is not None else measured_std
    transform = FolderTransform(image_size, resize_size, tuple(crop_scale), tuple(mean), tuple(std))

    def split(samples, limit, augmented):
        samples = samples[:limit] if limit is not None else samples
        return ImageFolderSplit(samples, transform, augment=augmented, loader_workers=loader_workers)

    # the normalisation recorded, so that an imported prior's own (pretrain.input_mean/std) can be mapped onto it
    info = DatasetInfo(
        name=IMAGE_FOLDER,
        num_classes=len(classes),
        in_channels=3,
        image_size=image_size,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
    )
    return DatasetBundle(
        info=info,
        train=split(train_samples, limit_train, augment),
        test=split(test_samples, limit_test, False),
        validation=split(validation_samples, limit_validation, False) if validation_samples is not None else None,
    )


def measure_statistics(
    samples: list[tuple[Path, int]], image_size: int, resize_size: int, loader_workers: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of pixels in [0, 1] over at most ``STATISTICS_IMAGES`` of ``samples`` (drawn with
    ``VALIDATION_SEED``), each resized and centre-cropped as for evaluation."""
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    chosen = [samples[i] for i in order[:STATISTICS_IMAGES].tolist()]
    neutral = FolderTransform(image_size, resize_size, (1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    split = ImageFolderSplit(chosen, neutral, loader_workers=loader_workers)
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    batches = FolderEpochBatches(split, 64, seed=0, epoch=0, drop_last=False)
    for images, _ in batches.read(range(len(batches))):
        pixels = images.to(torch.float64).transpose(0, 1).reshape(3, -1)
        total += pixels.sum(1)
        squares += pixels.square().sum(1)
        count += pixels.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    if not bool((std > 0).all()):
        raise DataError(
            f"image folder: a channel of the training images is constant (std {std.tolist()}); give data.mean and "
            f"data.std, or images with varying pixel values"
        )
    return tuple(mean.tolist()), tuple(std.tolist())
