"""Tests for raymeta.io.data: every loader on small files written here, so no download and no installed data."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from raymeta.errors import ConfigError, DataError
from raymeta.io.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATASET_NAMES,
    FASHION_MNIST_FILES,
    AugmentSpec,
    EpochBatches,
    TensorImageDataset,
    load_dataset,
    make_loader,
)

# --- helpers that write the on-disk formats -----------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(dim.to_bytes(4, "big") for dim in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist(folder, num_train=30, num_test=12, gz=False, seed=0):
    """Write the four idx files; returns the raw arrays for comparison."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (num_train, 28, 28)), 0x803),
        "train-labels-idx1-ubyte": (rng.integers(0, 10, num_train), 0x801),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (num_test, 28, 28)), 0x803),
        "t10k-labels-idx1-ubyte": (rng.integers(0, 10, num_test), 0x801),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, (array, magic) in arrays.items():
        content = idx_bytes(array, magic)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return {name: array for name, (array, _) in arrays.items()}


def write_cifar_file(path, num_images, label_key, num_classes, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (num_images, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, num_images).tolist()
    with open(path, "wb") as handle:
        pickle.dump({b"data": data, label_key: labels, b"filenames": []}, handle)
    return data, labels


def write_cifar10(data_dir, per_batch=20, num_test=10):
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train = [write_cifar_file(folder / f"data_batch_{i}", per_batch, b"labels", 10, seed=i) for i in range(1, 6)]
    test = write_cifar_file(folder / "test_batch", num_test, b"labels", 10, seed=99)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [b"class"] * 10}, handle)
    return folder, train, test


# --- digits -------------------------------------------------------------------------------------------


def test_digits_shapes_split_and_normalisation():
    bundle = load_dataset("digits")
    assert bundle.info.name == "digits"
    assert (bundle.info.num_classes, bundle.info.in_channels, bundle.info.image_size) == (10, 1, 8)
    assert len(bundle.train) + len(bundle.test) == 1797
    assert abs(len(bundle.test) - 0.2 * 1797) <= 10
    image, label = bundle.test[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert label.dtype == torch.int64
    # Stratified: every class is in both splits in about the same proportion.
    train_counts = bundle.train.labels.bincount(minlength=10)
    test_counts = bundle.test.labels.bincount(minlength=10)
    assert torch.all((test_counts.float() / (train_counts + test_counts) - 0.2).abs() < 0.02)
    assert abs(bundle.train.images.mean().item()) < 1e-4
    assert abs(bundle.train.images.std().item() - 1) < 1e-3


def test_digits_split_is_deterministic_per_seed():
    first = load_dataset("digits", seed=3, augment=False)
    again = load_dataset("digits", seed=3, augment=False)
    other = load_dataset("digits", seed=4, augment=False)
    assert torch.equal(first.train.images, again.train.images)
    assert torch.equal(first.test.labels, again.test.labels)
    assert not torch.equal(first.test.labels, other.test.labels)


def test_digits_augmentation_crops_without_flipping():
    bundle = load_dataset("digits", augment=True, validation_fraction=0.0)
    assert bundle.train.augment == AugmentSpec(crop_padding=1, horizontal_flip=False)
    assert bundle.test.augment is None
    order = torch.arange(len(bundle.train))
    labelled = TensorImageDataset(bundle.train.images, order, bundle.train.augment)  # a label names its image
    images, positions = EpochBatches(labelled, 64, seed=0, epoch=0)[0]
    windows = [window_of(bundle.train.images[p], image, 1) for image, p in zip(images, positions, strict=True)]
    assert None not in windows and not any(mirrored for _, _, mirrored in windows)
    assert len({(top, left) for top, left, _ in windows}) > 4


def test_limits_keep_the_first_examples_with_every_class():
    full = load_dataset("digits", augment=False)
    limited = load_dataset("digits", augment=False, limit_train=100, limit_test=30)
    assert (len(limited.train), len(limited.test)) == (100, 30)
    assert torch.equal(limited.train.images, full.train.images[:100])
    assert torch.equal(limited.test.labels, full.test.labels[:30])
    assert len(limited.train.labels.unique()) == 10


@pytest.mark.parametrize("limit", [0, -5, 2.5, True])
def test_bad_limit_is_a_config_error(limit):
    with pytest.raises(ConfigError, match="limit_train"):
        load_dataset("digits", limit_train=limit)


# --- synthetic ----------------------------------------------------------------------------------------


def test_synthetic_shapes_and_determinism():
    bundle = load_dataset(
        "synthetic", synthetic_size=(40, 24), synthetic_image_size=6, synthetic_channels=2, synthetic_classes=5
    )
    assert (bundle.info.num_classes, bundle.info.in_channels, bundle.info.image_size) == (5, 2, 6)
    assert bundle.train.images.shape == (40, 2, 6, 6)
    assert bundle.test.images.shape == (24, 2, 6, 6)
    assert bundle.train.labels.bincount().tolist() == [8] * 5
    again = load_dataset(
        "synthetic", synthetic_size=(40, 24), synthetic_image_size=6, synthetic_channels=2, synthetic_classes=5
    )
    assert torch.equal(bundle.test.images, again.test.images)


def test_synthetic_classes_are_distinguishable():
    bundle = load_dataset("synthetic")
    train, test = bundle.train, bundle.test
    # Class means of the training split stand in for the templates.
    centroids = torch.stack([train.images[train.labels == c].mean(0) for c in range(bundle.info.num_classes)])
    distances = torch.cdist(test.images.flatten(1), centroids.flatten(1))
    accuracy = (distances.argmin(1) == test.labels).float().mean().item()
    assert accuracy > 0.9


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"synthetic_classes": 1}, "synthetic_classes"),
        ({"synthetic_image_size": 0}, "synthetic_image_size"),
        ({"synthetic_size": (10,)}, "synthetic_size"),
    ],
)
def test_bad_synthetic_arguments_are_config_errors(overrides, argument):
    with pytest.raises(ConfigError, match=argument):
        load_dataset("synthetic", **overrides)


# --- Fashion-MNIST ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_reads_idx_files(tmp_path, gz):
    arrays = write_fashion_mnist(tmp_path, gz=gz)
    bundle = load_dataset("fashion_mnist", str(tmp_path), augment=False)
    assert (bundle.info.num_classes, bundle.info.in_channels, bundle.info.image_size) == (10, 1, 28)
    assert bundle.train.images.shape == (30, 1, 28, 28)
    assert bundle.test.images.shape == (12, 1, 28, 28)
    assert bundle.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert bundle.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    # Normalisation is affine and increasing, so the pixel ordering must survive it.
    raw = torch.as_tensor(arrays["train-images-idx3-ubyte"], dtype=torch.float32).flatten()
    loaded = bundle.train.images.flatten()
    assert torch.equal(raw.argsort(stable=True), loaded.argsort(stable=True))
    assert abs(loaded.mean().item()) < 1e-4


def test_fashion_mnist_augmentation_uses_padding_two_and_flips(tmp_path):
    write_fashion_mnist(tmp_path)
    bundle = load_dataset("fashion_mnist", str(tmp_path))
    assert bundle.train.augment == AugmentSpec(crop_padding=2, horizontal_flip=True)


def test_truncated_idx_file_names_the_file(tmp_path):
    write_fashion_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        load_dataset("fashion_mnist", str(tmp_path))


def test_truncated_gzip_file_names_the_file(tmp_path):
    write_fashion_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion_mnist", str(tmp_path))


def test_wrong_idx_magic_names_the_file(tmp_path):
    write_fashion_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes((0x803).to_bytes(4, "big") + path.read_bytes()[4:])
    expected = r"train-labels-idx1-ubyte has magic number 0x00000803; expected 0x00000801"
    with pytest.raises(DataError, match=expected):
        load_dataset("fashion_mnist", str(tmp_path))


def test_idx_image_and_label_counts_must_match(tmp_path):
    write_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5), 0x801))
    with pytest.raises(DataError, match="12 images.*5 labels"):
        load_dataset("fashion_mnist", str(tmp_path))


def test_missing_fashion_mnist_folder_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere") as caught:
        load_dataset("fashion_mnist", str(missing))
    assert "train-images-idx3-ubyte" in str(caught.value)
    assert "apt-get install dataset-fashion-mnist" in str(caught.value)


def test_missing_fashion_mnist_file_lists_expected_files(tmp_path):
    write_fashion_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte") as caught:
        load_dataset("fashion_mnist", str(tmp_path))
    assert all(name in str(caught.value) for name in FASHION_MNIST_FILES)


# --- CIFAR --------------------------------------------------------------------------------------------


def test_cifar10_reads_pickles(tmp_path):
    _, train, test = write_cifar10(tmp_path)
    bundle = load_dataset("cifar10", str(tmp_path), augment=False)
    assert (bundle.info.num_classes, bundle.info.in_channels, bundle.info.image_size) == (10, 3, 32)
    assert bundle.train.images.shape == (100, 3, 32, 32)
    assert bundle.test.images.shape == (10, 3, 32, 32)
    assert bundle.train.labels.tolist() == [label for _, labels in train for label in labels]
    assert bundle.test.labels.tolist() == test[1]
    # Row-major 3x32x32: the first 1024 values are the red plane.
    data = train[0][0]
    red_row0 = torch.as_tensor(data[0, :32], dtype=torch.float32) / 255
    expected = (red_row0 - CIFAR10_MEAN[0]) / CIFAR10_STD[0]
    assert torch.allclose(bundle.train.images[0, 0, 0], expected, atol=1e-5)
    blue_last = (data[0, -1] / 255 - CIFAR10_MEAN[2]) / CIFAR10_STD[2]
    assert bundle.train.images[0, 2, 31, 31].item() == pytest.approx(blue_last, abs=1e-5)


def test_cifar100_reads_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _, train_labels = write_cifar_file(folder / "train", 30, b"fine_labels", 100, seed=1)
    _, test_labels = write_cifar_file(folder / "test", 8, b"fine_labels", 100, seed=2)
    bundle = load_dataset("cifar100", str(tmp_path), limit_train=25)
    assert (bundle.info.num_classes, bundle.info.in_channels, bundle.info.image_size) == (100, 3, 32)
    assert bundle.train.images.shape == (25, 3, 32, 32)
    assert bundle.train.labels.tolist() == train_labels[:25]
    assert bundle.test.labels.tolist() == test_labels
    assert bundle.train.augment == AugmentSpec(crop_padding=4, horizontal_flip=True)


def test_missing_cifar_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py") as caught:
        load_dataset("cifar10", str(tmp_path))
    assert "data.download=true" in str(caught.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ([1, 2, 3], "holds list"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "expected a dict with keys"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(2, 100\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "one label per image"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "expected 0..9"),
    ],
)
def test_malformed_cifar_pickle_names_the_file(tmp_path, content, message):
    folder, _, _ = write_cifar10(tmp_path)
    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump(content, handle)
    with pytest.raises(DataError, match=message) as caught:
        load_dataset("cifar10", str(tmp_path))
    assert "data_batch_3" in str(caught.value)


def test_corrupt_cifar_pickle_names_the_file(tmp_path):
    folder, _, _ = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", str(tmp_path))


# --- names, augmentation, loaders ---------------------------------------------------------------------


def test_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError, match="imagenet") as caught:
        load_dataset("imagenet")
    assert all(name in str(caught.value) for name in DATASET_NAMES)


def window_of(image: torch.Tensor, augmented: torch.Tensor, pad: int) -> tuple[int, int, bool] | None:
    """(top, left, mirrored) of the window of the zero-padded ``image`` that ``augmented`` is, or None."""
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    height, width = image.shape[-2:]
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            window = padded[:, top : top + height, left : left + width]
            for mirrored in (False, True):
                if torch.equal(window.flip(-1) if mirrored else window, augmented):
                    return top, left, mirrored
    return None


def test_training_batches_are_crops_within_the_padding_and_mirrors():
    images = torch.randn(64, 3, 8, 8)
    dataset = TensorImageDataset(images, torch.arange(64), AugmentSpec(2, True))  # a label names its image
    batches = EpochBatches(dataset, 16, seed=0, epoch=0)
    windows = []
    for position in range(len(batches)):
        augmented, labels = batches[position]
        assert augmented.shape == (16, 3, 8, 8)
        windows += [window_of(images[label], image, 2) for image, label in zip(augmented, labels, strict=True)]
    assert None not in windows  # every image is a window of its padded original, offsets in [0, 4]
    assert {top for top, _, _ in windows} == {left for _, left, _ in windows} == set(range(5))
    assert 16 < sum(mirrored for _, _, mirrored in windows) < 48
    # an image comes back unchanged only with offset (2, 2) and no mirror: 1 in 50
    assert sum(window != (2, 2, False) for window in windows) > 48


def test_indexing_a_dataset_never_augments():
    # One augmentation path: only EpochBatches augments, so a DataLoader over the training split (scoring,
    # gradients) sees the stored images.
    images = torch.randn(8, 3, 8, 8)
    dataset = TensorImageDataset(images, torch.arange(8), AugmentSpec(2, True))
    assert all(torch.equal(dataset[i][0], images[i]) for i in range(8))
    assert torch.equal(next(iter(make_loader(dataset, 8, shuffle=False)))[0], images)


def test_training_batches_depend_only_on_seed_epoch_and_position():
    dataset = TensorImageDataset(torch.randn(40, 3, 6, 6), torch.arange(40), AugmentSpec(2, True))
    torch.manual_seed(1)
    first = EpochBatches(dataset, 8, seed=5, epoch=2)[3]
    torch.manual_seed(2)  # the global RNG does not matter
    again = EpochBatches(dataset, 8, seed=5, epoch=2)[3]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    for other in (EpochBatches(dataset, 8, seed=6, epoch=2)[3], EpochBatches(dataset, 8, seed=5, epoch=3)[3]):
        assert not torch.equal(other[0], first[0])


def test_epoch_batches_keep_the_partial_last_batch_when_asked_in_the_loaders_order():
    dataset = TensorImageDataset(torch.zeros(50, 1, 2, 2), torch.arange(50))
    assert len(EpochBatches(dataset, 8, seed=5, epoch=2)) == 6
    kept = EpochBatches(dataset, 8, seed=5, epoch=2, drop_last=False)
    assert len(kept) == 7 and len(kept[6][1]) == 2
    labels = torch.cat([kept[b][1] for b in range(7)]).tolist()
    assert labels == torch.cat([y for _, y in make_loader(dataset, 8, shuffle=True, seed=5, epoch=2)]).tolist()
    assert sorted(labels) == list(range(50))


def test_loader_order_depends_only_on_seed_and_epoch():
    dataset = TensorImageDataset(torch.zeros(50, 1, 2, 2), torch.arange(50))

    def order(**kwargs):
        return torch.cat([labels for _, labels in make_loader(dataset, 8, shuffle=True, **kwargs)]).tolist()

    torch.manual_seed(1)
    first = order(seed=5, epoch=2)
    torch.manual_seed(2)  # the global RNG must not matter
    assert order(seed=5, epoch=2) == first
    assert order(seed=5, epoch=3) != first
    assert order(seed=6, epoch=2) != first
    assert sorted(first) == list(range(50))
    loader = make_loader(dataset, 8, shuffle=True, seed=5, epoch=2)
    assert [batch[1].tolist() for batch in loader] == [batch[1].tolist() for batch in loader]


def test_loader_without_shuffle_keeps_order_and_drop_last_works():
    dataset = TensorImageDataset(torch.zeros(50, 1, 2, 2), torch.arange(50))
    batches = list(make_loader(dataset, 8, shuffle=False, drop_last=True))
    assert len(batches) == 6
    assert torch.cat([labels for _, labels in batches]).tolist() == list(range(48))


def test_loader_does_not_consume_the_global_rng():
    dataset = TensorImageDataset(torch.zeros(10, 1, 2, 2), torch.arange(10))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(make_loader(dataset, 4, shuffle=True))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 4, "epoch": -1}])
def test_bad_loader_arguments_are_config_errors(kwargs):
    dataset = TensorImageDataset(torch.zeros(4, 1, 2, 2), torch.arange(4))
    with pytest.raises(ConfigError):
        make_loader(dataset, shuffle=True, **kwargs)


def test_epoch_batches_are_addressable_and_independent_of_reading_order():
    images = torch.randn(40, 1, 6, 6)
    dataset = TensorImageDataset(images, torch.arange(40) % 3, AugmentSpec(crop_padding=1, horizontal_flip=True))
    forward = EpochBatches(dataset, 8, seed=3, epoch=2)
    assert len(forward) == 5
    all_in_order = [forward[b] for b in range(5)]
    backward = EpochBatches(dataset, 8, seed=3, epoch=2)
    for b in (4, 1, 3):  # a worker reading only its own batches, in any order, gets the same tensors
        assert torch.equal(backward[b][0], all_in_order[b][0]) and torch.equal(backward[b][1], all_in_order[b][1])
    labels = torch.cat([labels for _, labels in all_in_order])
    assert sorted(forward.order[:40].tolist()) == list(range(40)) and len(labels) == 40
    assert not torch.equal(EpochBatches(dataset, 8, seed=3, epoch=3)[0][1], all_in_order[0][1])
    plain = TensorImageDataset(images, torch.arange(40) % 3)
    unaugmented = EpochBatches(plain, 8, seed=3, epoch=2)[0][0]
    assert torch.equal(unaugmented, images[forward.order[:8]])
    assert not torch.equal(all_in_order[0][0], unaugmented)  # crops/mirrors applied
    with pytest.raises(IndexError):
        forward[5]


def reference_augment_batch(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """The batch augmentation as first written: the same draws, then one slice per image (a loop)."""
    count, _, height, width = images.shape
    pad = spec.crop_padding
    if pad > 0:
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        offsets = torch.randint(0, 2 * pad + 1, (count, 2), generator=generator).tolist()
        images = torch.stack(
            [padded[i, :, top : top + height, left : left + width] for i, (top, left) in enumerate(offsets)]
        )
    if spec.horizontal_flip:
        mirror = torch.rand(count, generator=generator) < 0.5
        images = torch.where(mirror.view(-1, 1, 1, 1), images.flip(-1), images)
    return images


@pytest.mark.parametrize("padding", [0, 1, 2, 4])
@pytest.mark.parametrize("flip", [False, True])
def test_batch_augmentation_is_bit_identical_to_one_slice_per_image(padding, flip):
    from raymeta.io.data import _augment_batch

    spec = AugmentSpec(crop_padding=padding, horizontal_flip=flip)
    for batch, shape in enumerate([(16, 3, 8, 8), (7, 1, 6, 9), (128, 3, 32, 32)]):
        images = torch.randn(*shape, generator=torch.Generator().manual_seed(batch))
        seed = 1000 * padding + 10 * flip + batch
        vectorised = _augment_batch(images, spec, torch.Generator().manual_seed(seed))
        expected = reference_augment_batch(images, spec, torch.Generator().manual_seed(seed))
        assert vectorised.shape == images.shape and torch.equal(vectorised, expected)


def test_a_dataset_moved_to_a_device_gives_the_same_batches_there():
    images, labels = torch.randn(40, 3, 6, 6), torch.arange(40) % 3
    dataset = TensorImageDataset(images, labels, AugmentSpec(crop_padding=2, horizontal_flip=True))
    moved = TensorImageDataset(images.clone(), labels.clone(), dataset.augment).to("cpu")
    assert moved.augment == dataset.augment and moved.device == torch.device("cpu")
    here, there = EpochBatches(dataset, 8, seed=1, epoch=4), EpochBatches(moved, 8, seed=1, epoch=4)
    for b in range(len(here)):
        assert torch.equal(here[b][0], there[b][0]) and torch.equal(here[b][1], there[b][1])
    # On another device (meta: shapes only), the batch is indexed and augmented there, drawn on the CPU.
    on_meta = EpochBatches(dataset.to("meta"), 8, seed=1, epoch=4)
    meta_images, meta_labels = on_meta[2]
    assert meta_images.device.type == "meta" and meta_images.shape == (8, 3, 6, 6)
    assert meta_labels.device.type == "meta" and meta_labels.dtype == torch.int64


def test_ordered_batches_slice_a_dataset_in_order_where_it_is_held():
    from raymeta.io.data import ordered_batches

    dataset = TensorImageDataset(torch.randn(10, 1, 2, 2), torch.arange(10), AugmentSpec(1, True))
    batches = list(ordered_batches(dataset, 4))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([images for images, _ in batches]), dataset.images)  # never augmented
    assert torch.cat([labels for _, labels in batches]).tolist() == list(range(10))
    assert all(images.device.type == "meta" for images, _ in ordered_batches(dataset.to("meta"), 4))
    with pytest.raises(ConfigError):
        list(ordered_batches(dataset, 0))


# --- the validation split -----------------------------------------------------------------------------


def digits_indices(bundle) -> dict[str, list[int]]:
    """Which of scikit-learn's 1797 digits (by index) each split of a digits bundle holds.

    Normalisation maps the 17 raw pixel levels to 17 distinct values, so ranking a bundle's values gives
    back the raw levels; every digit image is unique, so its raw pixels name it.
    """
    from sklearn.datasets import load_digits

    raw = {tuple(row): index for index, row in enumerate(load_digits().data.astype(int).tolist())}
    splits = {name: getattr(bundle, name) for name in ("train", "validation", "test") if getattr(bundle, name)}
    levels, inverse = torch.unique(torch.cat([s.images for s in splits.values()]), return_inverse=True)
    assert len(levels) == 17
    out, start = {}, 0
    for name, split in splits.items():
        pixels = inverse[start : start + len(split)].flatten(1).tolist()
        out[name] = [raw[tuple(row)] for row in pixels]
        start += len(split)
    return out


def test_digits_validation_is_disjoint_stratified_and_the_same_for_every_seed():
    first = load_dataset("digits", seed=0, augment=False, validation_fraction=0.1)
    other = load_dataset("digits", seed=3, augment=False, validation_fraction=0.1)
    a, b = digits_indices(first), digits_indices(other)
    for ids in (a, b):
        train, validation, test = set(ids["train"]), set(ids["validation"]), set(ids["test"])
        assert not (validation & train) and not (validation & test) and not (train & test)
        assert len(train | validation | test) == 1797
    assert len(a["validation"]) == round(0.1 * (1797 - 359)) == 144 and len(a["test"]) == 359
    assert a["validation"] == b["validation"]  # the same images, in the same order, whatever the run's seed
    assert a["test"] != b["test"]  # while the seed still draws the train/test split
    assert torch.equal(first.validation.labels, other.validation.labels)
    share = first.validation.labels.bincount(minlength=10).float() / (
        first.validation.labels.bincount(minlength=10) + first.train.labels.bincount(minlength=10)
    )
    assert torch.all((share - 0.1).abs() < 0.02)  # stratified: about 10% of every class's training images
    # normalisation statistics come from the remaining training images
    assert abs(first.train.images.mean().item()) < 1e-4 and abs(first.train.images.std().item() - 1) < 1e-3


def test_fraction_zero_has_no_validation_split_and_leaves_the_split_as_it_was():
    bundle = load_dataset("digits", seed=3, augment=False, validation_fraction=0.0)
    assert bundle.validation is None and len(bundle.train) == 1797 - 359
    assert load_dataset("synthetic").validation is None  # the function's default; the config's is 0.1


def test_held_out_validation_of_a_file_dataset(tmp_path):
    from raymeta.io.data import hold_out_validation

    arrays = write_fashion_mnist(tmp_path, num_train=40)
    bundle = load_dataset("fashion_mnist", str(tmp_path), augment=False, validation_fraction=0.25, seed=0)
    again = load_dataset("fashion_mnist", str(tmp_path), augment=False, validation_fraction=0.25, seed=7)
    raw_labels = torch.as_tensor(arrays["train-labels-idx1-ubyte"], dtype=torch.int64)
    validation_index, train_index = hold_out_validation(raw_labels, 0.25, "fashion_mnist")
    assert (len(bundle.train), len(bundle.validation), len(bundle.test)) == (30, 10, 12)
    assert bundle.validation.labels.tolist() == raw_labels[validation_index].tolist()
    assert bundle.train.labels.tolist() == raw_labels[train_index].tolist()  # the rest, in file order
    assert sorted(validation_index.tolist() + train_index.tolist()) == list(range(40))
    assert torch.equal(bundle.validation.images, again.validation.images)  # independent of the run's seed
    # disjoint by content: no validation image is a training or test image
    flat = {name: getattr(bundle, name).images.flatten(1) for name in ("train", "validation", "test")}
    assert (
        torch.cdist(flat["validation"], flat["train"]).min() > 1
        and torch.cdist(flat["validation"], flat["test"]).min() > 1
    )
    # the validation split is not augmented even when the training split is
    augmented = load_dataset("fashion_mnist", str(tmp_path), validation_fraction=0.25)
    assert augmented.validation.augment is None and augmented.train.augment is not None


def test_limits_apply_after_the_validation_split_is_held_out():
    full = load_dataset("synthetic", validation_fraction=0.1)
    assert (len(full.train), len(full.validation), len(full.test)) == (461, 51, 256)  # 10% of 512
    limited = load_dataset("synthetic", validation_fraction=0.1, limit_train=100, limit_validation=20, limit_test=30)
    assert (len(limited.train), len(limited.validation), len(limited.test)) == (100, 20, 30)
    assert torch.equal(limited.train.images, full.train.images[:100])
    assert torch.equal(limited.validation.images, full.validation.images[:20])
    assert torch.equal(limited.test.images, full.test.images[:30])
    assert len(full.validation.labels[:20].unique()) == 4  # shuffled across classes: a prefix covers them


def test_stratified_quotas_follow_the_class_sizes():
    from raymeta.io.data import stratified_quotas

    assert stratified_quotas([128, 128, 128, 128], 51) == [13, 13, 13, 12]
    assert stratified_quotas([10, 30, 60], 10) == [1, 3, 6]
    assert stratified_quotas([1, 1, 98], 3) == [0, 0, 3]
    assert stratified_quotas([5, 5], 0) == [0, 0]


@pytest.mark.parametrize(
    "fraction, message",
    [
        (
            0.01,
            r"validation_fraction=0.01 leaves no validation example: 0.01 × 10 training examples of synthetic "
            r"rounds to 0; allowed: 0 \(no validation split\) or a number in \[0.05, 0.95\)",
        ),
        (0.96, r"validation_fraction=0.96 leaves no training example"),
        (1.0, r"validation_fraction=1.0 is not allowed: a number in \[0, 1\)"),
        (-0.1, r"validation_fraction=-0.1 is not allowed"),
        (True, r"validation_fraction=True is not allowed"),
    ],
)
def test_bad_validation_fractions_are_one_clear_error(fraction, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset("synthetic", synthetic_size=(10, 4), validation_fraction=fraction)


def test_bad_limit_validation_is_a_config_error():
    with pytest.raises(ConfigError, match="limit_validation"):
        load_dataset("digits", validation_fraction=0.1, limit_validation=0)
