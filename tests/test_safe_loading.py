"""Loading a file a user hands us never runs code from it: crafted checkpoints and CIFAR pickles are refused."""

import pickle

import pytest
import torch

from raymeta.checkpoint import load_checkpoint, save_checkpoint
from raymeta.data import load_dataset
from raymeta.errors import CheckpointError, DataError


class Payload:
    """Unpickling this runs ``open(marker, "w")``: the file appears only if the loader executed it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format_version": 1, "kind": "metamorphic", "state": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused.*could run code"):
        load_checkpoint(path, kind="metamorphic")
    assert not marker.exists(), "the payload ran"


def test_a_plain_checkpoint_still_loads(tmp_path):
    path = save_checkpoint({"kind": "prior", "state_dict": {"w": torch.ones(2)}, "config": {"seed": 0},
                            "history": [{"loss": 0.5, "name": "x"}], "rng": torch.get_rng_state()},
                           tmp_path / "prior.pt")
    assert torch.equal(load_checkpoint(path, kind="prior")["state_dict"]["w"], torch.ones(2))


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": Payload(marker), b"labels": [0]}, handle, protocol=2)
    with pytest.raises(DataError, match="refused global"):
        load_dataset("cifar10", str(tmp_path))
    assert not marker.exists(), "the payload ran"


def test_garbage_is_called_corrupt_not_dangerous(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="corrupt or not a raymeta checkpoint"):
        load_checkpoint(path, kind="metamorphic")
