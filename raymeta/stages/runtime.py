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
from raymeta.io.weights import weights_normalisation
from raymeta.method.models import Architecture, torchvision_architecture
from raymeta.seeds import derive_seed


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


def architecture(config: Config, info) -> Architecture:
    """The ResNet shape of ``config.model`` for a dataset's channels and classes, with the input map that turns the
    data's normalisation into the one an imported prior expects (:func:`input_map`)."""
    scale, shift = input_map(config, info)
    return model_architecture(config, info.in_channels, info.num_classes, input_scale=scale, input_shift=shift)


def model_architecture(config: Config, in_channels: int, num_classes: int, **input_affine) -> Architecture:
    """The ResNet shape of ``config.model`` alone (no input map unless given)."""
    model = config.model
    if model.family == "cifar":
        return Architecture(model.depth, tuple(model.widths), in_channels, num_classes, **input_affine)
    return torchvision_architecture(
        model.family,
        in_channels,
        num_classes,
        stage_blocks=tuple(model.stage_blocks) if model.stage_blocks else None,
        base_width=model.base_width,
        **input_affine,
    )


def input_map(config: Config, info) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """(scale, shift) per channel that take an image normalised as the data does (``info.mean``/``std``) to one
    normalised as the imported prior was trained (``pretrain.input_mean``/``input_std``, else a torchvision
    source's weights' own): ``x·σ_data/σ_prior + (μ_data − μ_prior)/σ_prior``. (None, None) when there is nothing
    to map: no imported prior, a source that does not say (a file, a hub entry: give input_mean and input_std),
    the same normalisation, or data that records none beside a torchvision source's default."""
    pretrain = config.pretrain
    if not pretrain.init_from:
        return None, None
    explicit = pretrain.input_mean is not None
    wanted = (pretrain.input_mean, pretrain.input_std) if explicit else weights_normalisation(pretrain.init_from)
    if wanted is None:
        return None, None
    data_mean, data_std = getattr(info, "mean", None), getattr(info, "std", None)
    if data_mean is None or data_std is None:
        if explicit:
            raise ConfigError(
                f"pretrain.input_mean={list(pretrain.input_mean)} needs the data's own normalisation, which "
                f"{info.name} does not record: leave pretrain.input_mean and input_std null"
            )
        return None, None
    mean, std = (tuple(float(v) for v in values) for values in wanted)
    if len(mean) != info.in_channels:
        raise ConfigError(
            f"pretrain.input_mean={list(mean)} has {len(mean)} value(s) but {info.name} has {info.in_channels} channel(s)"
        )
    if (mean, std) == (tuple(data_mean), tuple(data_std)):
        return None, None
    scale = tuple(d / p for d, p in zip(data_std, std, strict=True))
    shift = tuple((d - m) / p for d, m, p in zip(data_mean, mean, std, strict=True))
    return scale, shift


def calibration_images(bundle, count: int, seed: int) -> torch.Tensor | None:
    """``count`` images of the training split (as loaded, so without augmentation when the bundle was loaded
    with ``augment=False``), a fixed draw of ``seed``, for ``eval.calibration``; None when ``count`` is 0."""
    if count <= 0:
        return None
    count = min(count, len(bundle.train))
    generator = torch.Generator().manual_seed(derive_seed(seed, "calibration"))
    order = torch.randperm(len(bundle.train), generator=generator)[:count].tolist()
    return torch.stack([bundle.train[i][0] for i in order])
