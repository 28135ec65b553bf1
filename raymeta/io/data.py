"""Datasets and deterministic data loaders.

Every built-in dataset is held in memory as one normalised float tensor (the largest, CIFAR, is about 600 MB),
so a training step never decodes images (your own images, ``image_folder``, are streamed from disk instead:
:mod:`raymeta.io.image_folder`; :func:`epoch_batches` gives either's training batches). Their training batches
come from :class:`EpochBatches`, the one place that augments them: a batch is gathered and augmented at once, a
pure function of (seed, epoch, batch).

Datasets:

* ``digits``: scikit-learn's bundled 8x8 digits, split 80/20 (stratified) here; needs no files.
* ``synthetic``: class templates plus gaussian noise, generated in memory; for fast tests and smoke runs.
* ``fashion_mnist``: the standard idx files (plain or gzipped) in ``data_dir``.
* ``cifar10`` / ``cifar100``: the standard "python version" pickles under ``data_dir``.

None of them has an official validation split: ``validation_fraction`` holds out a share of the training
split, drawn with the fixed ``VALIDATION_SEED`` (never the run's seed) and stratified by class, so every run
of an experiment monitors and selects on the same images and the test split is left for final evaluation.
"""

from __future__ import annotations

import gzip
import math
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from raymeta.errors import ConfigError, DataError
from raymeta.seeds import derive_seed

DATASET_NAMES = ("digits", "synthetic", "fashion_mnist", "cifar10", "cifar100")

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_CIFAR_DIR = "./data"

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N)

VALIDATION_SEED = 20_240_917
"""Seed of the draw that holds the validation split out of the training split. A module constant, not the
run's seed: every seed of an experiment sees the same validation images."""

CIFAR_IMAGE_SIZE = 32
CIFAR_PIXELS = 3 * CIFAR_IMAGE_SIZE * CIFAR_IMAGE_SIZE
# Per-channel mean/std of the CIFAR training sets (pixel values in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class _CifarLayout:
    """Where one CIFAR variant lives on disk and where to fetch it from."""

    num_classes: int
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: bytes
    url: str
    md5: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_CIFAR_LAYOUTS = {
    "cifar10": _CifarLayout(
        num_classes=10,
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        label_key=b"labels",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    ),
    "cifar100": _CifarLayout(
        num_classes=100,
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        label_key=b"fine_labels",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
    ),
}


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset: what a model consuming it has to be built for."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int  # images are square: image_size x image_size
    mean: tuple[float, ...] | None = None
    """Per-channel mean of the [0, 1] pixels the images were normalised with (None: not recorded)."""
    std: tuple[float, ...] | None = None
    """Per-channel standard deviation that goes with ``mean``."""


@dataclass
class DatasetBundle:
    """A dataset's splits, each yielding ``(image float32 [C,H,W], label int64)``.

    ``validation`` is held out of the training split (never augmented); None when the validation fraction
    is 0. The three splits are disjoint.
    """

    info: DatasetInfo
    train: Dataset
    test: Dataset
    validation: Dataset | None = None


@dataclass(frozen=True)
class AugmentSpec:
    """Training augmentation, drawn per image: a random crop after zero padding, then an optional mirror.
    Applied by :class:`EpochBatches` only."""

    crop_padding: int
    horizontal_flip: bool


class TensorImageDataset(Dataset):
    """Images and labels held in memory, with the augmentation their training batches get.

    ``images`` must already be normalised ([N, C, H, W] float32). ``augment`` is applied by
    :class:`EpochBatches`, never by indexing (``dataset[i]`` is the stored image): one augmentation path for all
    training, whose draws come from a generator of its own rather than torch's global RNG. The crop pads with
    zeros in the normalised space, i.e. with the dataset's mean colour, so padding does not introduce a pixel
    value the network never sees otherwise.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: AugmentSpec | None = None):
        if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(
                f"TensorImageDataset got images of shape {tuple(images.shape)} and labels of shape "
                f"{tuple(labels.shape)}; expected images [N, C, H, W] and labels [N] with the same N"
            )
        self.images = images.to(torch.float32)
        self.labels = labels.to(torch.int64)
        self.augment = augment

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        """Where the images and labels are held."""
        return self.images.device

    def to(self, device: torch.device | str) -> TensorImageDataset:
        """This dataset, its augmentation included, with images and labels on ``device``: moved once, so that
        batches are indexed, augmented and used there with no copy from the host per step."""
        return TensorImageDataset(self.images.to(device), self.labels.to(device), self.augment)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


def load_dataset(
    name: str,
    data_dir: str | None = None,
    *,
    download: bool = False,
    augment: bool = True,
    validation_fraction: float = 0.0,
    limit_train: int | None = None,
    limit_validation: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    synthetic_size: tuple[int, int] = (512, 256),
    synthetic_image_size: int = 8,
    synthetic_channels: int = 3,
    synthetic_classes: int = 4,
) -> DatasetBundle:
    """Load dataset ``name`` (one of ``DATASET_NAMES``) into memory, normalised.

    ``data_dir`` is used by fashion_mnist (default ``/usr/share/datasets/fashion-mnist``) and the CIFARs
    (default ``./data``); ``download`` only applies to the CIFARs. ``augment`` turns on the training-split
    augmentation (never for the validation or test split, never for synthetic).

    ``validation_fraction`` (0 ≤ f < 1; the config's ``data.validation_fraction`` defaults to 0.1) holds out
    round(f · N) of the N training examples as ``bundle.validation``, stratified by class and drawn with
    ``VALIDATION_SEED``, not ``seed``; the remaining training examples keep their order. digits, whose
    80/20 train/test split is drawn from ``seed``, draws its validation images out of the whole dataset
    first (as many per class as a hold-out of its training split would), so they too are the same for
    every seed. synthetic data is itself generated from ``seed``.

    ``limit_train``/``limit_validation``/``limit_test`` then keep the first N examples of each split, for
    fast runs. ``seed`` fixes the digits train/test split and the synthetic data. Normalisation statistics
    come from the training split without its validation examples, before ``limit_train``, so a limited run
    sees inputs on the same scale as a full one (CIFAR uses its standard published statistics).
    """
    if name not in DATASET_NAMES:
        raise ConfigError(
            f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)} (held in memory) or "
            "image_folder (streamed: raymeta.io.image_folder.load_image_folder)"
        )
    _check_limit("limit_train", limit_train)
    _check_limit("limit_validation", limit_validation)
    _check_limit("limit_test", limit_test)
    _check_fraction(validation_fraction)

    normalise = True
    if name == "digits":
        info, train, validation, test = _load_digits(seed, validation_fraction)
        augment_spec = AugmentSpec(crop_padding=1, horizontal_flip=False)  # digits are not mirror-invariant
    else:
        if name == "synthetic":
            info, train_images, train_labels, test_images, test_labels = _make_synthetic(
                seed, synthetic_size, synthetic_image_size, synthetic_channels, synthetic_classes
            )
            # Templates are pixel noise, so shifting them would destroy most of the signal.
            augment_spec = None
        elif name == "fashion_mnist":
            folder = Path(data_dir if data_dir is not None else DEFAULT_FASHION_MNIST_DIR)
            info, train_images, train_labels, test_images, test_labels = _load_fashion_mnist(folder)
            augment_spec = AugmentSpec(crop_padding=2, horizontal_flip=True)
        else:
            folder = Path(data_dir if data_dir is not None else DEFAULT_CIFAR_DIR)
            info, train_images, train_labels, test_images, test_labels = _load_cifar(name, folder, download)
            augment_spec = AugmentSpec(crop_padding=4, horizontal_flip=True)
            normalise = False  # already normalised with the standard CIFAR statistics
        test = (test_images, test_labels)
        held_out = hold_out_validation(train_labels, validation_fraction, name)
        if held_out is None:
            train, validation = (train_images, train_labels), None
        else:
            validation_index, train_index = held_out
            validation = (train_images[validation_index], train_labels[validation_index])
            train = (train_images[train_index], train_labels[train_index])
            del train_images  # the full training tensor (600 MB for CIFAR) is not kept alive

    if normalise:
        others = [test[0]] + ([validation[0]] if validation is not None else [])
        _normalise_by_train_stats(name, train[0], *others)

    # Clone the kept prefix: a slice is a view that would keep the whole split (600 MB for CIFAR) alive.
    train, test = _prefix(train, limit_train), _prefix(test, limit_test)
    validation = _prefix(validation, limit_validation) if validation is not None else None
    return DatasetBundle(
        info=info,
        train=TensorImageDataset(*train, augment_spec if augment else None),
        test=TensorImageDataset(*test, None),
        validation=TensorImageDataset(*validation, None) if validation is not None else None,
    )


def _prefix(split: tuple[torch.Tensor, torch.Tensor], limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` examples of a split (a copy), or the split itself when ``limit`` is None."""
    if limit is None:
        return split
    images, labels = split
    return images[:limit].clone(), labels[:limit].clone()


def _check_limit(argument: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{argument} must be a positive integer or None, got {value!r}")


def _check_fraction(value: object) -> None:
    """``validation_fraction`` must be a finite number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(
            f"data.validation_fraction={value!r} is not allowed: a number in [0, 1), the share of "
            f"the training split held out for validation (0: no validation split)"
        )


def _check_positive_int(argument: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{argument} must be an integer >= {minimum}, got {value!r}")


def validation_count(fraction: float, train_count: int, dataset: str) -> int:
    """round(fraction · train_count) (halves up): how many training examples the validation split takes.

    0 for fraction 0; otherwise a count that leaves no validation example or no training example is a
    ConfigError naming the fraction and the fractions that would work.
    """
    _check_fraction(fraction)
    if fraction == 0:
        return 0
    count = math.floor(fraction * train_count + 0.5)
    if 1 <= count < train_count:
        return count
    what = "no validation example" if count < 1 else "no training example"
    if train_count < 2:
        allowed = f"0 (no validation split): {dataset} has only {train_count} training example(s)"
    else:
        allowed = f"0 (no validation split) or a number in [{0.5 / train_count:.4g}, {1 - 0.5 / train_count:.4g})"
    raise ConfigError(
        f"data.validation_fraction={fraction!r} leaves {what}: {fraction!r} × {train_count} training "
        f"examples of {dataset} rounds to {count}; allowed: {allowed}"
    )


def stratified_quotas(counts: list[int], total: int) -> list[int]:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder; ties go to the lower class).

    Every quota is at most its class's count (as long as ``total`` ≤ the sum of ``counts``).
    """
    size = sum(counts)
    exact = [total * count for count in counts]  # numerators over ``size``
    quotas = [value // size for value in exact]
    leftover = total - sum(quotas)
    order = sorted(range(len(counts)), key=lambda c: (-(exact[c] % size), c))
    for c in order[:leftover]:
        quotas[c] += 1
    return quotas


def hold_out_validation(
    labels: torch.Tensor, fraction: float, dataset: str
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Indices (validation, remaining training) of a training split with ``labels``; None for fraction 0.

    Stratified by class, drawn with ``VALIDATION_SEED``: a pure function of the labels and the fraction.
    The validation indices are shuffled across classes (so any prefix covers every class); the remaining
    training indices keep their original order.
    """
    count = validation_count(fraction, len(labels), dataset)
    if count == 0:
        return None
    classes, class_counts = torch.unique(labels, return_counts=True)
    quotas = stratified_quotas(class_counts.tolist(), count)
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    chosen = []
    for label, quota in zip(classes.tolist(), quotas, strict=True):
        members = torch.nonzero(labels == label).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:quota]])
    validation = torch.cat(chosen)
    validation = validation[torch.randperm(len(validation), generator=generator)]
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[validation] = False
    return validation, torch.nonzero(keep).flatten()


def _normalise_by_train_stats(dataset: str, train: torch.Tensor, *others: torch.Tensor) -> None:
    """Normalise every split in place with the per-channel mean/std of the training split."""
    std, mean = torch.std_mean(train, dim=(0, 2, 3), keepdim=True)
    if not bool((std > 0).all()):
        raise DataError(
            f"{dataset}: a channel of the training images is constant (std {std.flatten().tolist()}); "
            "expected images with varying pixel values"
        )
    for images in (train, *others):
        images.sub_(mean).div_(std)


# --- digits -------------------------------------------------------------------------------------------


def _load_digits(seed: int, validation_fraction: float):
    """scikit-learn's 1797 8x8 digits (pixels in [0, 1]), split 80/20 per class with a permutation from ``seed``.

    The validation images (a ``validation_fraction`` of the training split's size, per class in proportion
    to the training split) are drawn first, out of every image, with ``VALIDATION_SEED``; the 80/20 split
    is then drawn from ``seed`` out of the rest. With fraction 0 the split is the plain seeded 80/20 one.
    Returns ``info`` and (images, labels) of train, validation (None for fraction 0) and test.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # values are 0..16
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)

    members = [torch.nonzero(labels == label).flatten() for label in range(10)]
    test_counts = [round(0.2 * len(m)) for m in members]
    train_counts = [len(m) - t for m, t in zip(members, test_counts, strict=True)]
    held = validation_count(validation_fraction, sum(train_counts), "digits")
    quotas = stratified_quotas(train_counts, held)

    fixed = torch.Generator().manual_seed(VALIDATION_SEED)
    generator = torch.Generator().manual_seed(seed)
    train_parts, validation_parts, test_parts = [], [], []
    for group, quota, num_test in zip(members, quotas, test_counts, strict=True):
        if quota:
            chosen = torch.randperm(len(group), generator=fixed)[:quota]
            validation_parts.append(group[chosen])
            keep = torch.ones(len(group), dtype=torch.bool)
            keep[chosen] = False
            group = group[keep]  # the rest, in their original order
        group = group[torch.randperm(len(group), generator=generator)]
        test_parts.append(group[:num_test])
        train_parts.append(group[num_test:])
    # Shuffle across classes so that "the first N examples" (limit_*) covers every class.
    train_index = torch.cat(train_parts)
    train_index = train_index[torch.randperm(len(train_index), generator=generator)]
    test_index = torch.cat(test_parts)
    test_index = test_index[torch.randperm(len(test_index), generator=generator)]
    validation = None
    if validation_parts:
        validation_index = torch.cat(validation_parts)
        validation_index = validation_index[torch.randperm(len(validation_index), generator=fixed)]
        validation = (images[validation_index], labels[validation_index])

    info = DatasetInfo(name="digits", num_classes=10, in_channels=1, image_size=8)
    return info, (images[train_index], labels[train_index]), validation, (images[test_index], labels[test_index])


# --- synthetic ----------------------------------------------------------------------------------------


def _make_synthetic(seed: int, sizes: tuple[int, int], image_size: int, channels: int, num_classes: int):
    """One random template per class; each example is its class template plus unit gaussian noise (not normalised).

    With templates and noise both of unit scale the classes are far apart in pixel space (nearest
    template is almost always right) yet every single pixel is noisy, so a small CNN needs a few epochs.
    """
    if not (isinstance(sizes, (tuple, list)) and len(sizes) == 2):
        raise ConfigError(f"synthetic_size must be a (train, test) pair of positive integers, got {sizes!r}")
    # Two examples at least, so the normalisation statistics are defined.
    _check_positive_int("synthetic_size[0] (train examples)", sizes[0], minimum=2)
    _check_positive_int("synthetic_size[1] (test examples)", sizes[1])
    _check_positive_int("synthetic_image_size", image_size)
    _check_positive_int("synthetic_channels", channels)
    _check_positive_int("synthetic_classes", num_classes, minimum=2)

    generator = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, channels, image_size, image_size, generator=generator)

    def sample(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Balanced classes, in a random order so that any prefix is roughly balanced too.
        labels = (torch.arange(count) % num_classes)[torch.randperm(count, generator=generator)]
        noise = torch.randn(count, channels, image_size, image_size, generator=generator)
        return templates[labels] + noise, labels

    train_images, train_labels = sample(sizes[0])
    test_images, test_labels = sample(sizes[1])
    info = DatasetInfo(name="synthetic", num_classes=num_classes, in_channels=channels, image_size=image_size)
    return info, train_images, train_labels, test_images, test_labels


# --- Fashion-MNIST ------------------------------------------------------------------------------------


def _load_fashion_mnist(folder: Path):
    """The four standard idx files in ``folder``: 60000 train and 10000 test 28x28 grayscale images in [0, 1]."""
    paths = _find_fashion_mnist_files(folder)
    train_images = _read_idx(paths["train-images-idx3-ubyte"], IDX_IMAGES_MAGIC, image_size=28)
    train_labels = _read_idx(paths["train-labels-idx1-ubyte"], IDX_LABELS_MAGIC)
    test_images = _read_idx(paths["t10k-images-idx3-ubyte"], IDX_IMAGES_MAGIC, image_size=28)
    test_labels = _read_idx(paths["t10k-labels-idx1-ubyte"], IDX_LABELS_MAGIC)
    for images, labels, images_name, labels_name in (
        (train_images, train_labels, "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        (test_images, test_labels, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ):
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{paths[images_name]} holds {images.shape[0]} images but {paths[labels_name]} holds "
                f"{labels.shape[0]} labels; expected the same count"
            )
        if labels.numel() and int(labels.max()) >= 10:
            raise DataError(f"{paths[labels_name]} holds label {int(labels.max())}; expected labels 0..9")

    train_float = train_images.to(torch.float32).div_(255.0).unsqueeze(1)
    test_float = test_images.to(torch.float32).div_(255.0).unsqueeze(1)
    info = DatasetInfo(name="fashion_mnist", num_classes=10, in_channels=1, image_size=28)
    return info, train_float, train_labels.to(torch.int64), test_float, test_labels.to(torch.int64)


def _find_fashion_mnist_files(folder: Path) -> dict[str, Path]:
    """Map each expected idx file name to its path in ``folder``, preferring the plain over the .gz file."""
    expected = ", ".join(f"{name}[.gz]" for name in FASHION_MNIST_FILES)
    hint = "install them with `apt-get install dataset-fashion-mnist` or pass the folder that holds them"
    if not folder.is_dir():
        raise DataError(f"Fashion-MNIST folder {folder} does not exist; expected it to hold {expected} ({hint})")
    paths = {}
    for name in FASHION_MNIST_FILES:
        candidates = [folder / name, folder / f"{name}.gz"]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise DataError(
                f"Fashion-MNIST file {folder / name} (or {name}.gz) is missing; expected {expected} "
                f"in {folder} ({hint})"
            )
        paths[name] = found
    return paths


def _read_idx(path: Path, expected_magic: int, image_size: int | None = None) -> torch.Tensor:
    """Read an unsigned-byte idx file (big-endian header: magic, then one uint32 per dimension).

    ``image_size``, when given, is the required rows and cols of an image file.
    """
    kind = "images" if expected_magic == IDX_IMAGES_MAGIC else "labels"
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            content = handle.read()
    except (OSError, EOFError) as error:  # gzip reports a corrupt or truncated archive this way
        raise DataError(f"cannot read idx {kind} file {path}: {error}") from error

    if len(content) < 4:
        raise DataError(f"idx {kind} file {path} is {len(content)} bytes long; expected at least a 4-byte header")
    magic = int.from_bytes(content[:4], "big")
    if magic != expected_magic:
        raise DataError(f"idx {kind} file {path} has magic number 0x{magic:08x}; expected 0x{expected_magic:08x}")
    num_dims = expected_magic & 0xFF
    header_size = 4 + 4 * num_dims
    if len(content) < header_size:
        raise DataError(f"idx {kind} file {path} is {len(content)} bytes long; expected a {header_size}-byte header")
    dims = [int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(num_dims)]
    if image_size is not None and dims[1:] != [image_size, image_size]:
        raise DataError(f"idx {kind} file {path} holds {dims[1]}x{dims[2]} images; expected {image_size}x{image_size}")
    expected_size = header_size + int(np.prod(dims))
    if len(content) != expected_size:
        raise DataError(
            f"idx {kind} file {path} is {len(content)} bytes long; expected {expected_size} bytes for "
            f"dimensions {dims} (truncated or corrupt file?)"
        )
    array = np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(dims)
    return torch.from_numpy(array.copy())  # copy: frombuffer's array is read-only


# --- CIFAR --------------------------------------------------------------------------------------------


def _load_cifar(name: str, data_dir: Path, download: bool):
    """CIFAR-10/100 from the standard python-version pickles under ``data_dir``."""
    layout = _CIFAR_LAYOUTS[name]
    folder = data_dir / layout.folder
    needed = [*layout.train_files, layout.test_file]
    missing = [file for file in needed if not (folder / file).is_file()]
    if missing and download:
        _download_cifar(name, layout, data_dir)
        missing = [file for file in needed if not (folder / file).is_file()]
    if missing:
        raise DataError(
            f"{name} files missing in {folder}: {', '.join(missing)}; expected {', '.join(needed)} there. "
            f"Pass data.download=true to download them, or put the extracted {layout.url.rsplit('/', 1)[1]} "
            f"under {data_dir}"
        )

    train_batches = [_read_cifar_pickle(folder / file, layout) for file in layout.train_files]
    train_pixels = torch.cat([pixels for pixels, _ in train_batches])
    train_labels = torch.cat([labels for _, labels in train_batches])
    test_pixels, test_labels = _read_cifar_pickle(folder / layout.test_file, layout)

    info = DatasetInfo(
        name=name,
        num_classes=layout.num_classes,
        in_channels=3,
        image_size=CIFAR_IMAGE_SIZE,
        mean=layout.mean,
        std=layout.std,
    )
    return (
        info,
        _cifar_to_float(train_pixels, layout),
        train_labels,
        _cifar_to_float(test_pixels, layout),
        test_labels,
    )


def _download_cifar(name: str, layout: _CifarLayout, data_dir: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(layout.url, download_root=str(data_dir), md5=layout.md5)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad md5 is a RuntimeError
        raise DataError(f"downloading {name} from {layout.url} into {data_dir} failed: {error}") from error


_CIFAR_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)
"""The only callables a CIFAR batch pickle names: what rebuilds a numpy array (under numpy 1's and 2's module
names). Dicts, lists, bytes and numbers need none."""


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR format and nothing else: any other global is refused before it is looked up, so a
    crafted file cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a CIFAR batch holds only dicts, lists, bytes and numpy arrays"
            )
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path, layout: _CifarLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR batch file: uint8 pixels [N, 3, 32, 32] and int64 labels [N].

    The files are pickles; they are read with an unpickler that admits only the format's types, so a crafted
    file is refused rather than run.
    """
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(handle, encoding="bytes").load()
    except Exception as error:  # unpickling corrupt bytes can raise almost any exception type
        raise DataError(f"cannot unpickle CIFAR file {path}: {type(error).__name__}: {error}") from error
    label_key = layout.label_key
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = list(batch) if isinstance(batch, dict) else None
        raise DataError(
            f"CIFAR file {path} holds {type(batch).__name__} with keys {keys}; expected a dict with keys "
            f"{b'data'!r} and {label_key!r}"
        )
    data = batch[b"data"]
    is_array = isinstance(data, np.ndarray)
    if not is_array or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        description = f"{data.dtype} array of shape {data.shape}" if is_array else type(data).__name__
        raise DataError(
            f"CIFAR file {path}: {b'data'!r} is a {description}; expected a uint8 array [N, {CIFAR_PIXELS}]"
        )
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise DataError(f"CIFAR file {path}: {label_key!r} is not a list of integers: {error}") from error
    if labels.shape != (data.shape[0],):
        raise DataError(
            f"CIFAR file {path}: {label_key!r} has shape {labels.shape}; expected one label per image "
            f"({data.shape[0]},)"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise DataError(
            f"CIFAR file {path}: labels range over {labels.min()}..{labels.max()}; expected 0..{layout.num_classes - 1}"
        )
    pixels = torch.from_numpy(np.ascontiguousarray(data)).reshape(-1, 3, CIFAR_IMAGE_SIZE, CIFAR_IMAGE_SIZE)
    return pixels, torch.from_numpy(labels)


def _cifar_to_float(pixels: torch.Tensor, layout: _CifarLayout) -> torch.Tensor:
    """uint8 pixels to floats normalised with the standard CIFAR statistics (in place after one copy)."""
    mean = torch.tensor(layout.mean).view(1, 3, 1, 1)
    std = torch.tensor(layout.std).view(1, 3, 1, 1)
    return pixels.to(torch.float32).div_(255.0).sub_(mean).div_(std)


# --- loaders ------------------------------------------------------------------------------------------


class _SeededPermutationSampler(Sampler[int]):
    """Yields a permutation of ``range(size)`` that depends only on (seed, epoch), the same on every pass."""

    def __init__(self, size: int, seed: int, epoch: int):
        self.size = size
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())


class BatchOrder:
    """The batches of one epoch of ``size`` examples as positions: batch ``b`` holds the examples
    ``order[b·B : (b+1)·B]`` of a permutation seeded by (seed, epoch), and augments with :meth:`generator` ``(b)``,
    seeded by (seed, epoch, b): what makes a batch a pure function of (seed, epoch, b) whoever reads it. The
    partial last batch is dropped unless ``drop_last`` is False. :class:`EpochBatches` (in memory) and an image
    folder's batches (streamed) read their examples in this order."""

    def __init__(self, size: int, batch_size: int, *, seed: int, epoch: int, drop_last: bool = True):
        check_batch_arguments(batch_size, seed, epoch)
        self.size, self.batch_size, self.seed, self.epoch, self.drop_last = size, batch_size, seed, epoch, drop_last
        self.order = torch.randperm(size, generator=torch.Generator().manual_seed(derive_seed(seed, epoch)))

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.batch_size
        return math.ceil(self.size / self.batch_size)

    def indices(self, position: int):
        """The examples of batch ``position`` (a slice of ``order``); an IndexError outside the epoch."""
        if not 0 <= position < len(self):
            raise IndexError(f"batch {position} of an epoch with {len(self)} batches")
        return self.order[position * self.batch_size : (position + 1) * self.batch_size]

    def generator(self, position: int) -> torch.Generator:
        """The generator batch ``position`` augments with."""
        return torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, position + 1))


class EpochBatches(BatchOrder):
    """The training batches of one epoch, addressable by position: what every training loop reads.

    Batch ``b`` is a pure function of (seed, epoch, b), its augmentation included: the order is a seeded
    permutation (the order of ``make_loader(..., shuffle=True)`` for the same seed and epoch) and each batch
    augments with its own generator. So a worker of a distributed run that reads only the batches of its own
    configurations gets exactly what one process reading all of them gets, and never decodes or augments the
    others; a resumed run needs no random state to get the batches it would have had. The partial last batch
    is dropped unless ``drop_last`` is False.

    Batches come out on the dataset's device (see :meth:`TensorImageDataset.to`): the permutation and the
    augmentation's draws are made on the CPU and only the indexing runs there, so a batch holds the same
    numbers on every device.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int, epoch: int, drop_last: bool = True):
        if not isinstance(dataset, TensorImageDataset):
            raise DataError(f"EpochBatches needs an in-memory TensorImageDataset, got {type(dataset).__name__}")
        super().__init__(len(dataset), batch_size, seed=seed, epoch=epoch, drop_last=drop_last)
        self.dataset = dataset
        self.order = self.order.to(dataset.device)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        indices = self.indices(position)
        images = self.dataset.images[indices]
        if self.dataset.augment is not None:
            images = _augment_batch(images, self.dataset.augment, self.generator(position))
        return images, self.dataset.labels[indices]

    def read(self, positions: Iterable[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches at ``positions``, in that order (each gathered when it is reached)."""
        return (self[position] for position in positions)


def check_batch_arguments(batch_size: int, seed: int, epoch: int) -> None:
    """A positive batch size, a seed and an epoch >= 0: what every epoch's batches are made from."""
    _check_positive_int("batch_size", batch_size)
    for argument, value in (("seed", seed), ("epoch", epoch)):
        _check_positive_int(argument, value, minimum=0)


def epoch_batches(dataset: Dataset, batch_size: int, *, seed: int, epoch: int, drop_last: bool = True):
    """The training batches of one epoch of ``dataset``: :class:`EpochBatches` for an in-memory set, the
    dataset's own for a streamed one (``dataset.epoch_batches``, e.g. an image folder's); either is addressable
    by position (``batches[b]``, a pure function of (seed, epoch, b)) and streams a list of positions
    (``batches.read(positions)``)."""
    if isinstance(dataset, TensorImageDataset) or not hasattr(dataset, "epoch_batches"):
        return EpochBatches(dataset, batch_size, seed=seed, epoch=epoch, drop_last=drop_last)
    return dataset.epoch_batches(batch_size, seed=seed, epoch=epoch, drop_last=drop_last)


def _augment_batch(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """Every image of a batch [B, C, H, W] randomly cropped after zero padding (a window whose offsets are
    drawn in [0, 2 · padding]) and, with ``spec.horizontal_flip``, mirrored with probability 1/2.

    The offsets and mirrors are drawn on the CPU ``generator`` (the same calls in the same order whatever the
    images' device, so a batch is the same numbers on every device); the crops and mirrors are then one
    gather on the images' own device, not one slice per image (a kernel launch each on a GPU).
    """
    count, _, height, width = images.shape
    pad = spec.crop_padding
    offsets = torch.zeros(count, 2, dtype=torch.int64)
    if pad > 0:
        images = F.pad(images, (pad, pad, pad, pad))
        offsets = torch.randint(0, 2 * pad + 1, (count, 2), generator=generator)
    mirror = torch.zeros(count, dtype=torch.bool)
    if spec.horizontal_flip:
        mirror = torch.rand(count, generator=generator) < 0.5
    return _crop_windows(images, offsets.to(images.device), mirror.to(images.device), height, width)


def _crop_windows(
    padded: torch.Tensor, offsets: torch.Tensor, mirror: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Window ``[top : top + height, left : left + width]`` of every image of ``padded`` [B, C, H', W'], with
    (top, left) = ``offsets[b]``, mirrored left to right where ``mirror[b]``: one gather over the flattened
    pixels (a pure copy, so bit-identical to slicing and flipping each image)."""
    count, channels, _, padded_width = padded.shape
    device = padded.device
    rows = offsets[:, :1] + torch.arange(height, device=device)  # [B, H]
    columns = torch.arange(width, device=device).expand(count, width)
    columns = torch.where(mirror[:, None], columns.flip(-1), columns) + offsets[:, 1:]  # [B, W]
    pixels = (rows[:, :, None] * padded_width + columns[:, None, :]).view(count, 1, height * width)
    return padded.flatten(2).gather(2, pixels.expand(count, channels, -1)).view(count, channels, height, width)


def ordered_batches(dataset: TensorImageDataset, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` of ``dataset`` in order, ``batch_size`` at a time (the last batch may be smaller),
    never augmented: slices of the tensors where they are held, so evaluating a resident dataset needs no
    DataLoader and no copy."""
    _check_positive_int("batch_size", batch_size)
    for start in range(0, len(dataset), batch_size):
        yield dataset.images[start : start + batch_size], dataset.labels[start : start + batch_size]


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose order depends only on ``(seed, epoch)``; it never augments (training reads
    :func:`epoch_batches`), so it is what scoring and other passes over a split use. In-memory sets load in the
    calling process; a streamed set (one with ``loader_workers``, an image folder's) decodes in that many
    worker processes.

    Build one per epoch with that epoch's number. Iterating the same loader again repeats its order.
    The loader never draws from torch's global RNG.
    """
    _check_positive_int("batch_size", batch_size)
    for argument, value in (("seed", seed), ("epoch", epoch)):
        _check_positive_int(argument, value, minimum=0)
    sampler = _SeededPermutationSampler(len(dataset), seed, epoch) if shuffle else None
    # DataLoader draws a base seed for worker processes on every iteration, from the global RNG unless it
    # has its own generator; give it one so iterating a loader leaves everyone else's random stream alone.
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=getattr(dataset, "loader_workers", 0),
        generator=generator,
    )
