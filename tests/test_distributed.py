"""Ray Train: two workers give the single-process update, a killed worker resumes, a stopped run continues.

One embedded Ray (4 logical CPUs, as Ray's own tests oversubscribe a small machine) serves the module.
"""

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import BASE
from faults import KillOnce
from image_folders import write_image_folder
from monitor_check import assert_monitor_is_validation
from ray_fixtures import embedded_ray

from raymeta.config.loading import load_config
from raymeta.config.schema import Config, RayConfig
from raymeta.drivers.distributed import _plan_workers, run_name, train_distributed
from raymeta.errors import ConfigError
from raymeta.io.artifacts import MetamorphicCheckpoint
from raymeta.io.progress import Progress
from raymeta.stages.collective import Collective, WorkUnit, my_batch_positions, my_configurations
from raymeta.stages.pretrain import pretrain
from raymeta.stages.smooth import smooth
from raymeta.stages.train import train

QUIET = Progress(stream=open("/dev/null", "w"))
OPTIONS = RayConfig(workers=2, cpus_per_worker=1, timeout_s=60, max_failures=0)


def on_ray(config: Config, options: RayConfig = OPTIONS) -> Config:
    return dataclasses.replace(config, ray=options)


@pytest.fixture(scope="module")
def ray_cluster():
    yield from embedded_ray()


def states(path):
    payload = MetamorphicCheckpoint.load(path)
    return payload, payload.net_state


def assert_same_parameters(first: dict, second: dict):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.allclose(first[name], second[name], rtol=1e-4, atol=1e-6), name


def test_configurations_are_shared_out_round_robin():
    gammas = [0.0, 0.1, 0.2, 0.3, 0.4]
    assert my_configurations(gammas, 0, 2) == [WorkUnit(0, 0.0), WorkUnit(2, 0.2), WorkUnit(4, 0.4)]
    assert my_configurations(gammas, 1, 2) == [WorkUnit(1, 0.1), WorkUnit(3, 0.3)]
    assert sorted((u.index, u.gamma) for r in range(3) for u in my_configurations(gammas, r, 3)) == list(
        enumerate(gammas)
    )
    # more workers than configurations: each micro-batch is sliced, every slice runs exactly once
    units = [u for r in range(3) for u in my_configurations([0.0, 0.3], r, 3)]
    assert sorted((u.index, u.slice, u.slices) for u in units) == [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2)]
    assert [len(my_configurations([0.0], r, 2)) for r in range(2)] == [1, 1]
    # what each rank reads of an epoch: batch s·M + k for each of its configurations k, its shard of the epoch
    assert my_batch_positions(2, 5, 0, 2) == [0, 2, 4, 5, 7, 9] and my_batch_positions(2, 5, 1, 2) == [1, 3, 6, 8]
    assert my_batch_positions(2, 1, 1, 2) == [0, 1]  # slices of one micro-batch: both ranks read it


def test_worker_plan_fits_the_cluster_and_refuses_what_cannot_work():
    assert _plan_workers(RayConfig(), 4, {"CPU": 2.0}) == (2, 1.0)
    assert _plan_workers(RayConfig(), 4, {"CPU": 16.0}) == (4, 4.0)
    assert _plan_workers(RayConfig(gpus_per_worker=1), 8, {"CPU": 16.0, "GPU": 2.0})[0] == 2
    assert _plan_workers(RayConfig(workers=3), 2, {"CPU": 8.0}) == (3, 2.0)  # slices of micro-batches
    with pytest.raises(ConfigError, match="GPU"):
        _plan_workers(RayConfig(gpus_per_worker=1), 2, {"CPU": 8.0})
    with pytest.raises(ConfigError, match="CPUs"):
        _plan_workers(RayConfig(workers=2, cpus_per_worker=3), 2, {"CPU": 4.0})


@pytest.mark.ray
def test_two_workers_give_the_single_process_update(prepared_run, ray_cluster):
    # M = 4: each worker runs two configurations, each on its own micro-batch (half of the step's data)
    overrides = ("train.configs_per_step=4", "train.steps_per_epoch=3")
    single = prepared_run(*overrides)
    one, one_state = states(train(single, progress=QUIET))
    distributed = prepared_run(*overrides)
    two, two_state = states(train_distributed(on_ray(distributed), progress=QUIET))
    assert one.state.step == two.state.step == 6 and two.done
    assert_same_parameters(one_state, two_state)
    # the comparison is not vacuous: the INRs still move from step 3 to step 6
    _, halfway = states(train(prepared_run(*overrides), stop_after_epochs=1, progress=QUIET))
    assert any(not torch.allclose(one_state[name], halfway[name]) for name in one_state if name.startswith("hyper"))
    losses = [record.losses["loss"] for record in one.state.history]
    assert losses == pytest.approx([record.losses["loss"] for record in two.state.history], rel=1e-4)
    assert_monitor_is_validation(distributed)  # the Ray driver monitors on the validation split too


@pytest.mark.ray
def test_more_workers_than_configurations_still_give_the_single_process_update(prepared_run, ray_cluster):
    # M = 1 (as in NeuMeta): the two workers each take half of every micro-batch
    overrides = ("train.configs_per_step=1", "train.steps_per_epoch=3")
    _, one_state = states(train(prepared_run(*overrides), progress=QUIET))
    two, two_state = states(train_distributed(on_ray(prepared_run(*overrides)), progress=QUIET))
    assert two.done and two.state.step == 6
    assert_same_parameters(one_state, two_state)


@pytest.mark.ray
def test_killed_worker_resumes_from_the_last_checkpoint(prepared_run, ray_cluster, tmp_path):
    # 2 stages × 2 epochs × 3 steps = 12 steps; rank 1 dies right after step 7 (stage 2, epoch 1). α and the head
    # step per configuration: over 2 workers, after each round of 2 configurations (M = 4: 2 rounds a step), what
    # the single process computes with rounds of 2; the resumed run reloads both optimisers
    overrides = (
        "train.epochs_per_stage=2",
        "train.steps_per_epoch=3",
        "train.configs_per_step=4",
        "train.head_updates=per_configuration",
    )
    marker = tmp_path / "fault-injected"
    options = RayConfig(workers=2, cpus_per_worker=1, timeout_s=60, max_failures=2)
    faulty, faulty_state = states(
        train_distributed(
            on_ray(prepared_run(*overrides), options), progress=QUIET, step_hook=KillOnce(rank=1, step=7, marker=marker)
        )
    )
    assert marker.is_file(), "the fault was not injected"
    clean, clean_state = states(train(prepared_run(*overrides), progress=QUIET, collective=Collective(round_size=2)))
    assert faulty.done and faulty.state.step == clean.state.step == 12
    heads = [{int(s["step"].max()) for s in run.optimizer["head"]["state"].values()} for run in (faulty, clean)]
    assert heads == [{24}, {24}]  # 2 rounds in each of 12 steps
    assert [(r.stage, r.epoch) for r in faulty.state.history] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert_same_parameters(clean_state, faulty_state)  # the resumed run continued exactly where it stopped
    _, per_configuration = states(train(prepared_run(*overrides), progress=QUIET))  # rounds of 1: not the same
    assert not all(torch.allclose(clean_state[k], per_configuration[k]) for k in clean_state if k.startswith("prior"))


@pytest.mark.ray
def test_stopped_run_continues_from_its_storage_path(prepared_run, ray_cluster):
    config = prepared_run("train.epochs_per_stage=2", "train.steps_per_epoch=2")
    first, _ = states(train_distributed(on_ray(config), stop_after_epochs=3, progress=QUIET))
    assert first.state.step == 6 and not first.done and first.state.stage == 1
    assert (Path(config.run_dir) / "ray" / run_name(config)).is_dir()
    final, _ = states(train_distributed(on_ray(config), progress=QUIET))
    assert final.done and final.state.step == 8
    assert [r.global_epoch for r in final.state.history] == [1, 2, 3, 4]  # no epoch lost or repeated


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A prior pretrained and smoothed on a tiny image folder, and a factory of runs that reuse it. The folder is
    given relative to ``base`` (the tests run from there): Ray's workers start elsewhere."""
    base = tmp_path_factory.mktemp("folder")
    write_image_folder(base / "images", {"train": 16, "test": 2})
    folder = [
        "data.name=image_folder",
        "data.data_dir=images",
        "data.image_size=16",
        "data.batch_size=4",
        "data.validation_fraction=0.25",
        "data.loader_workers=1",
        "pretrain.epochs=1",
        "train.configs_per_step=4",
        "train.steps_per_epoch=2",
    ]
    source = load_config(None, [*BASE, *folder, f"run_dir={base / 'prior'}"])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        pretrain(source, QUIET)
        smooth(source, QUIET)

    def make(*overrides: str) -> Config:
        target = tmp_path_factory.mktemp("folder-run")
        for name in ("prior.pt", "smoothed.pt"):
            (target / name).write_bytes((Path(source.run_dir) / name).read_bytes())
        return load_config(None, [*BASE, *folder, f"run_dir={target}", *overrides])

    make.base = base
    return make


@pytest.mark.ray
def test_two_workers_give_the_single_process_update_on_a_streamed_image_folder(folder_run, ray_cluster, monkeypatch):
    # M = 4 over 2 workers: each decodes only the micro-batches of its own two configurations, in its own
    # DataLoader worker, with random-resized crops and mirrors, and the update is the single process's;
    # data.data_dir is relative to where the command runs, as the workers see it too
    monkeypatch.chdir(folder_run.base)
    one, one_state = states(train(folder_run(), progress=QUIET))
    two, two_state = states(train_distributed(on_ray(folder_run()), progress=QUIET))
    assert one.state.step == two.state.step == 4 and two.done
    assert_same_parameters(one_state, two_state)
    losses = [record.losses["loss"] for record in one.state.history]
    assert losses == pytest.approx([record.losses["loss"] for record in two.state.history], rel=1e-4)
    assert losses[0] != losses[1]  # two stages, each on other batches: the comparison is not of constants
