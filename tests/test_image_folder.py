"""image_folder data: the layout read and refused, the streamed batches a pure function of (seed, epoch,
position) whichever process decodes them, the transforms, the validation split and the normalisation."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from image_folders import CLASSES, write_image_folder

import raymeta.stages.latency as latency
from raymeta.cli import main
from raymeta.errors import DataError
from raymeta.io.data import epoch_batches, make_loader
from raymeta.io.image_folder import FolderEpochBatches, load_image_folder, random_resized_window
from raymeta.seeds import derive_seed

DEBUG = str(Path(__file__).resolve().parents[1] / "jobs" / "debug.yaml")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"))


def load(root, **overrides):
    settings = {"image_size": 12, "resize_size": 14, "crop_scale": (0.3, 1.0), "validation_fraction": 0.25}
    return load_image_folder(str(root), **{**settings, **overrides})


def test_splits_classes_and_held_out_validation(folder):
    bundle = load(folder)
    assert bundle.info.num_classes == len(CLASSES) and bundle.info.in_channels == 3 and bundle.info.image_size == 12
    assert (len(bundle.train), len(bundle.validation), len(bundle.test)) == (36, 12, 18)
    # the validation split is held out of train/, stratified by class, disjoint from what trains
    assert set(bundle.train.paths).isdisjoint(bundle.validation.paths)
    assert torch.bincount(bundle.validation.labels).tolist() == [4, 4, 4]
    assert all(
        path.parent.name == CLASSES[label]
        for path, label in zip(bundle.test.paths, bundle.test.labels.tolist(), strict=True)
    )
    image, label = bundle.test[0]
    assert image.shape == (3, 12, 12) and image.dtype == torch.float32 and label.dtype == torch.int64
    # a limit keeps a prefix of a fixed shuffled order, so it covers every class
    assert set(load(folder, limit_train=9).train.labels.tolist()) == {0, 1, 2}
    assert load(folder, validation_fraction=0.0).validation is None


def test_a_val_folder_is_the_validation_split(tmp_path):
    root = write_image_folder(tmp_path, {"train": 4, "val": 3, "test": 2})
    bundle = load(root)
    assert len(bundle.train) == 12 and len(bundle.validation) == 9
    assert all(path.parts[-3] == "val" for path in bundle.validation.paths)


def test_normalisation_is_measured_on_the_training_split_or_taken_from_the_config(folder):
    bundle = load(folder)
    pixels = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))])
    std, mean = torch.std_mean(pixels, dim=(0, 2, 3))
    assert mean.abs().max() < 1e-4 and (std - 1).abs().max() < 1e-2
    given = load(folder, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert given.train.transform.mean == (0.5, 0.5, 0.5)
    assert given.test[0][0].min() >= -2.0 - 1e-6 and given.test[0][0].max() <= 2.0 + 1e-6


def test_training_batches_depend_only_on_seed_epoch_and_position_whoever_decodes_them(folder):
    bundle = load(folder)
    batches = epoch_batches(bundle.train, 8, seed=3, epoch=1)
    assert isinstance(batches, FolderEpochBatches) and len(batches) == 4
    in_process = [batches[p] for p in (3, 0, 2)]
    bundle.train.loader_workers = 2
    state = torch.get_rng_state()
    in_workers = list(epoch_batches(bundle.train, 8, seed=3, epoch=1).read([3, 0, 2]))  # two worker processes
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    for (images, labels), (images_2, labels_2) in zip(in_process, in_workers, strict=True):
        assert torch.equal(images, images_2) and torch.equal(labels, labels_2)
    # the order is the in-memory sets' permutation of (seed, epoch); another epoch, another order
    assert batches.order == torch.randperm(36, generator=torch.Generator().manual_seed(derive_seed(3, 1))).tolist()
    other = epoch_batches(bundle.train, 8, seed=3, epoch=2)
    assert other.order != batches.order and sorted(other.order) == list(range(36))
    assert not torch.equal(other[0][0], batches[0][0])


def test_training_batches_are_augmented_and_indexing_never_is(folder):
    bundle = load(folder)
    batches = epoch_batches(bundle.train, 6, seed=0, epoch=0)
    images, labels = batches[0]
    plain = torch.stack([bundle.train[i][0] for i in batches.order[:6]])
    assert images.shape == plain.shape == (6, 3, 12, 12)
    assert torch.equal(labels, bundle.train.labels[batches.order[:6]])
    assert not torch.allclose(images, plain)  # random-resized crops and mirrors, not the centre crop
    unaugmented = load(folder, augment=False)
    assert torch.equal(epoch_batches(unaugmented.train, 6, seed=0, epoch=0)[0][0], plain)


def test_random_resized_windows_lie_inside_the_image_and_cover_the_scale():
    generator = torch.Generator().manual_seed(0)
    for height, width in ((16, 20), (224, 224), (10, 40)):
        for _ in range(200):
            top, left, h, w = random_resized_window(height, width, (0.3, 1.0), generator)
            assert 0 <= top and top + h <= height and 0 <= left and left + w <= width and h > 0 and w > 0
    areas = [(lambda t: t[2] * t[3])(random_resized_window(200, 200, (0.3, 1.0), generator)) for _ in range(300)]
    assert 0.28 * 200 * 200 <= min(areas) and max(areas) <= 200 * 200 and max(areas) > 0.9 * 200 * 200


def test_an_evaluation_loader_decodes_in_workers_what_indexing_gives(folder):
    bundle = load(folder, loader_workers=2)
    images, labels = next(iter(make_loader(bundle.test, 18, shuffle=False)))
    assert torch.equal(images, torch.stack([bundle.test[i][0] for i in range(18)]))
    assert torch.equal(labels, bundle.test.labels)


def _empty_class(root):
    shutil.rmtree(root / "train" / "square")
    (root / "train" / "square").mkdir()
    return root / "train" / "square"


def _non_image(root):
    (root / "test" / "circle" / "notes.txt").write_text("not an image")
    return root / "test" / "circle" / "notes.txt"


def _missing_split(root):
    shutil.rmtree(root / "test")
    return root / "test"


def _mismatched_classes(root):
    (root / "test" / "circle").rename(root / "test" / "oval")
    return "oval"


def _file_outside_a_class(root):
    (root / "train" / "README").write_text("")
    return root / "train" / "README"


def _corrupt_image(root):
    (root / "train" / "circle" / "000.png").write_bytes(b"\x89PNG truncated")
    return root / "train" / "circle" / "000.png"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_empty_class, "is empty"),
        (_non_image, "is not an image file"),
        (_missing_split, "does not exist"),
        (_mismatched_classes, "differ from those of train/"),
        (_file_outside_a_class, "outside a class folder"),
        (_corrupt_image, "cannot decode image"),
    ],
)
def test_bad_folders_are_one_clear_error_naming_the_path(tmp_path, damage, message):
    root = write_image_folder(tmp_path, {"train": 2, "test": 1})
    named = damage(root)
    with pytest.raises(DataError, match=message) as error:
        load(root, validation_fraction=0.0)
    assert str(named) in str(error.value)


def test_a_missing_root_names_it(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nowhere'} does not exist"):
        load(tmp_path / "nowhere")
    with pytest.raises(DataError, match="needs data.data_dir"):
        load_image_folder(None, image_size=12)


@pytest.mark.slow
def test_every_stage_runs_on_an_image_folder(tmp_path, capsys, monkeypatch):
    """pretrain → smooth → train → evaluate → report, the prune and skip baselines, export and deploy, all on
    streamed images: everything that consumes data reads an image folder."""
    monkeypatch.setattr(latency, "WARMUP_RUNS", 1)
    monkeypatch.setattr(latency, "REPEATS", 3)
    root = write_image_folder(tmp_path / "images", {"train": 12, "test": 4})
    run = str(tmp_path / "run")
    folder = [
        "data.name=image_folder",
        f"data.data_dir={root}",
        "data.image_size=16",
        "data.batch_size=8",
        "data.validation_fraction=0.25",
        "data.loader_workers=1",
        "pretrain.epochs=1",
        "eval.gammas=[0.0,0.5]",
    ]
    assert main(["run", "--config", DEBUG, "--run-dir", run, "--workers", "0", *folder]) == 0
    out = capsys.readouterr().out
    assert "on image_folder (27 train / 9 validation images)" in out and "12 test images" in out
    (table,) = (Path(run) / "results").glob("eval-*.parquet")
    rows = pd.read_parquet(table)
    assert (rows["dataset"] == "image_folder").all() and rows["gamma"].tolist() == [0.0, 0.5]
    assert rows["loss"].nunique() == 2 and rows["params"].is_monotonic_decreasing  # γ changes the network
    assert (Path(run) / "report.html").is_file()
    common = ["--run-dir", run]
    assert main(["baseline", "prune", *common, "--importance", "l1", "--gammas=0.5", "--finetune-epochs", "0"]) == 0
    assert main(["baseline", "skip", *common]) == 0
    # (the individual baseline trains through the same fitting loop as pretrain and skip)
    methods = {pd.read_parquet(path)["method"].iloc[0] for path in (Path(run) / "results").glob("*.parquet")}
    assert {"prune-l1", "skip"} <= methods
    assert main(["export", *common, "--gamma", "0.5", "--no-onnx", "-o", str(tmp_path / "export")]) == 0
    macs = int(rows["macs"].iloc[0])
    deployed = tmp_path / "deploy"
    assert (
        main(["deploy", *common, "--max-macs", str(macs), "--gammas", "0,0.5", "--no-onnx", "-o", str(deployed)]) == 0
    )
    assert "validation acc" in capsys.readouterr().out and (deployed / "network.pt").is_file()


def test_an_object_storage_root_says_to_mount_it():
    with pytest.raises(DataError, match="s3:// URIs are not read directly"):
        load_image_folder("s3://bucket/images", image_size=12)
