import pytest
import torch
from conftest import BASE

from raymeta.config.loading import load_config
from raymeta.errors import CheckpointError, ConfigError
from raymeta.io.artifacts import PriorCheckpoint
from raymeta.io.progress import Progress
from raymeta.stages.pretrain import pretrain
from raymeta.stages.smooth import smooth

QUIET = Progress(stream=open("/dev/null", "w"))


def config_in(folder, *overrides):
    return load_config(None, BASE + [f"run_dir={folder}", "pretrain.epochs=3", *overrides])


# digits: augmented training batches, which a resumed run must draw exactly as an uninterrupted one does
@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
@pytest.mark.parametrize("data", [[], ["data.name=digits", "data.limit_train=192"]], ids=["synthetic", "digits"])
def test_interrupted_pretraining_resumes_and_matches_an_uninterrupted_one(tmp_path, data):
    whole = PriorCheckpoint.load(pretrain(config_in(tmp_path / "whole", *data), QUIET))

    split = config_in(tmp_path / "split", *data)
    partial = PriorCheckpoint.load(pretrain(split, QUIET, stop_after_epochs=2))
    assert partial.state.epoch == 2 and not partial.done
    with pytest.raises(CheckpointError, match="unfinished"):
        smooth(split, QUIET)
    resumed = PriorCheckpoint.load(pretrain(split, QUIET))
    assert resumed.done and len(resumed.state.history) == 3
    for name, value in whole.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[name], value, rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_finished_prior_is_reused_and_another_config_is_refused(tmp_path):
    config = config_in(tmp_path)
    path = pretrain(config, QUIET)
    stamp = path.stat().st_mtime_ns
    pretrain(config, QUIET)
    assert path.stat().st_mtime_ns == stamp, "a finished prior of the same configuration is not trained again"
    pretrain(config_in(tmp_path, "train.lr=0.01"), QUIET)  # training settings do not concern the prior
    assert path.stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="made by another configuration .*--restart"):
        pretrain(config_in(tmp_path, "pretrain.lr=0.01"), QUIET)
    pretrain(config_in(tmp_path, "pretrain.lr=0.01"), QUIET, resume=False)
    assert path.stat().st_mtime_ns != stamp


def test_pretraining_reports_validation_accuracy_never_test(tmp_path):
    payload = PriorCheckpoint.load(pretrain(config_in(tmp_path / "a", "pretrain.epochs=1"), QUIET))
    assert set(payload.metrics) == {"train_loss", "validation_accuracy", "validation_loss"}
    without = config_in(tmp_path / "b", "pretrain.epochs=1", "data.validation_fraction=0")
    assert set(PriorCheckpoint.load(pretrain(without, QUIET)).metrics) == {"train_loss"}


def test_fit_steps_once_per_batch_and_reports_every_epoch():
    from raymeta.io.data import TensorImageDataset
    from raymeta.stages.fitting import Optimisation, batches_per_epoch, fit

    dataset = TensorImageDataset(torch.randn(50, 1, 2, 2), torch.arange(50) % 2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    steps, ends = [], []
    optimisation = Optimisation(torch.optim.SGD(model.parameters(), lr=0.1), before_step=steps.append)
    fit(
        model,
        dataset,
        optimisation,
        batch_size=8,
        seed=0,
        epochs=range(2, 5),
        device=torch.device("cpu"),
        max_batches=5,
        drop_last=True,
        on_epoch=ends.append,
    )
    assert steps == list(range(15))  # 5 batches (of the 6 whole ones) in each of the epochs 2, 3, 4
    assert [end.epoch for end in ends] == [3, 4, 5] and all(end.train_loss > 0 for end in ends)
    assert not model.training
    assert batches_per_epoch(50, 8) == 7 and batches_per_epoch(50, 8, drop_last=True, most=5) == 5
    with pytest.raises(ConfigError, match="data.batch_size=64 is more than the 50 training examples"):
        batches_per_epoch(50, 64, drop_last=True)
