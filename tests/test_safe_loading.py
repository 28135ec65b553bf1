"""Loading a file a user hands us never runs code from it: a crafted file of every kind raymeta reads is refused
with one clear error, and its payload never runs."""

import json
import pickle

import pytest
import torch

from raymeta.errors import CheckpointError, ConfigError, DataError
from raymeta.io.artifacts import MetamorphicCheckpoint, PretrainState, PriorCheckpoint, SmoothedCheckpoint
from raymeta.io.data import load_dataset


class Payload:
    """Unpickling this runs ``open(marker, "w")``: the file appears only if the loader executed it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


KINDS = [PriorCheckpoint, SmoothedCheckpoint, MetamorphicCheckpoint]


@pytest.mark.parametrize("artifact", KINDS, ids=lambda cls: cls.kind)
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, artifact):
    # prior.pt, smoothed.pt, train/checkpoint.pt and the copy in each Ray Train checkpoint all load through here
    marker = tmp_path / "ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format_version": artifact.format_version, "kind": artifact.kind, "state": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused.*could run code"):
        artifact.load(path)
    assert not marker.exists(), "the payload ran"


def test_a_plain_checkpoint_round_trips_as_its_dataclass(tmp_path):
    prior = PriorCheckpoint(
        config={"seed": 0},
        prior_hash="abc",
        arch={"depth": 8},
        dataset={"name": "x"},
        state_dict={"w": torch.ones(2)},
        state=PretrainState(2, [{"loss": 0.5, "name": "x"}]),
        rng=torch.get_rng_state(),
        done=True,
    )
    path = prior.save(tmp_path / "prior.pt")
    loaded = PriorCheckpoint.load(path, expect_hash="abc")
    assert torch.equal(loaded.state_dict["w"], torch.ones(2))
    assert loaded.state == PretrainState(2, [{"loss": 0.5, "name": "x"}]) and loaded.done
    with pytest.raises(ConfigError, match="made by another configuration .*--restart"):
        PriorCheckpoint.load(path, expect_hash="xyz")
    with pytest.raises(CheckpointError, match="holds a 'prior' checkpoint, expected 'metamorphic'"):
        MetamorphicCheckpoint.load(path)
    torch.save({"format_version": PriorCheckpoint.format_version, "kind": "prior", "config": {}}, tmp_path / "thin.pt")
    with pytest.raises(CheckpointError, match="lacks prior_hash, arch, dataset, state_dict, state"):
        PriorCheckpoint.load(tmp_path / "thin.pt")


def test_an_exported_network_that_would_run_code_is_refused(tmp_path):
    from raymeta.stages.export import SPEC_NAME, STATE_NAME, load_exported

    marker = tmp_path / "ran"
    spec = {
        "format": "raymeta-export",
        "architecture": {"depth": 8, "widths": [4, 8, 16], "in_channels": 1, "num_classes": 10},
        "batchnorm": False,
        "hidden_widths": {},
    }
    (tmp_path / SPEC_NAME).write_text(json.dumps(spec))
    torch.save({"w": Payload(marker)}, tmp_path / STATE_NAME)
    with pytest.raises(Exception, match="(?i)weights only|unsupported global"):
        load_exported(tmp_path)
    assert not marker.exists(), "the payload ran"


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
        MetamorphicCheckpoint.load(path)
