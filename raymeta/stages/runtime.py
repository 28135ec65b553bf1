"""What every stage sets up the same way: the device and threads, the seeds, the dataset (its training split
on the device when asked) and its validation loader, the ResNet shape of a configuration."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch

from raymeta.config.schema import Config
from raymeta.errors import ConfigError
from raymeta.io.data import DatasetBundle, TensorImageDataset, load_dataset, make_loader
from raymeta.io.image_folder import IMAGE_FOLDER, load_image_folder
from raymeta.io.progress import Progress
from raymeta.method.models import Architecture


def select_device(config: Config) -> torch.device:
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={config.device!r} is not available on this machine: use cpu or auto")
    return torch.device(config.device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_data(config: Config, *, augment: bool | None = None):
    """The dataset named by ``config.data``: an image folder streamed from disk
    (:func:`raymeta.io.image_folder.load_image_folder`) or a built-in set in memory
    (:func:`raymeta.io.data.load_dataset`)."""
    data = config.data
    if data.name == IMAGE_FOLDER:
        return load_image_folder(
            data.data_dir,
            image_size=data.image_size,
            resize_size=data.resize_size,
            crop_scale=tuple(data.crop_scale),
            mean=tuple(data.mean) if data.mean is not None else None,
            std=tuple(data.std) if data.std is not None else None,
            augment=data.augment if augment is None else augment,
            validation_fraction=data.validation_fraction,
            limit_train=data.limit_train,
            limit_validation=data.limit_validation,
            limit_test=data.limit_test,
            loader_workers=data.loader_workers,
        )
    return load_dataset(
        data.name,
        data.data_dir,
        download=data.download,
        augment=data.augment if augment is None else augment,
        validation_fraction=data.validation_fraction,
        limit_train=data.limit_train,
        limit_validation=data.limit_validation,
        limit_test=data.limit_test,
        seed=config.seed,
    )


def place_training_split(bundle: DatasetBundle, config: Config, device: torch.device) -> DatasetBundle:
    """``bundle`` with its training split moved to ``device`` once when ``data.resident`` is on, so a training step
    copies nothing from the host (on the CPU nothing moves); otherwise, or for a streamed split (an image
    folder's, decoded batch by batch), ``bundle`` as it is."""
    if not config.data.resident or not isinstance(bundle.train, TensorImageDataset):
        return bundle
    return dataclasses.replace(bundle, train=bundle.train.to(device))


def validation_loader(bundle, config: Config, progress: Progress | None = None, what: str = ""):
    """A loader over the validation split, what monitoring and every choice look at; None when there is none
    (data.validation_fraction = 0), said once by ``progress`` for ``what`` (e.g. "train: no per-epoch
    monitoring"). Never a fallback to the test split, which is kept for final evaluation."""
    if bundle.validation is not None:
        return make_loader(bundle.validation, config.data.eval_batch_size, shuffle=False)
    if progress is not None and what:
        progress(
            f"{what}: data.validation_fraction=0 leaves no validation split (the test split is kept for the "
            f"final evaluation)"
        )
    return None


def architecture(config: Config, info):
    """The ResNet shape of ``config.model`` for a dataset's channels and classes."""
    return Architecture(config.model.depth, tuple(config.model.widths), info.in_channels, info.num_classes)
