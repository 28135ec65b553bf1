"""The per-step losses of a seeded tiny run are pinned: ``jobs/debug.yaml`` (pretrain, smooth, then 4 optimiser
steps of M = 2 configurations, in this process) must reproduce the stored numbers of every loss part at every step.

A change to a loss term or its weight, to the configurations a step samples, to the coordinate noise, the data
order or the seeds shows here as a changed number. When such a change is meant, run this file with ``-s`` after
setting ``REGENERATE = True`` and paste the printed numbers, saying in the commit why they moved.
"""

import pytest
import torch

from raymeta.config.loading import load_config
from raymeta.io.artifacts import MetamorphicCheckpoint
from raymeta.io.progress import Progress
from raymeta.stages.pretrain import pretrain
from raymeta.stages.smooth import smooth
from raymeta.stages.train import train

QUIET = Progress(stream=open("/dev/null", "w"))
REGENERATE = False

PINNED = {
    "loss": [0.106377285, 0.0831047557, 0.068730833, 0.0712142996],
    "task": [0.0938654896, 0.0791931543, 0.0645356681, 0.0615352727],
    "distill": [0.0116513671, 0.00276707816, 0.00216181186, 0.00614877057],
    "feature": [0.0, 0.0, 0.0, 0.0],
    "rec": [0.0, 0.000285867718, 0.00117523246, 0.00267077517],
    "reg": [8.60431814, 8.586555, 8.58124924, 8.59481025],
    "correct": [1.0, 1.0, 1.0, 1.0],
}
"""Each loss part (the mean over the step's configurations) at each of the run's 4 steps."""


@pytest.fixture(scope="module")
def debug_prior(tmp_path_factory):
    """The debug job's prior, pretrained and smoothed once; a factory of runs of the job that reuse it."""
    folder = tmp_path_factory.mktemp("debug")
    config = load_config("jobs/debug.yaml", [f"run_dir={folder}"])
    pretrain(config, QUIET)
    smooth(config, QUIET)

    def step_losses(*overrides: str) -> dict[str, list[float]]:
        changed = load_config("jobs/debug.yaml", [f"run_dir={folder}", *overrides])
        history = MetamorphicCheckpoint.load(train(changed, resume=False, progress=QUIET)).state.history
        assert len(history) == 1, "the debug job trains one epoch"
        return history[0].step_losses

    return step_losses


def test_the_debug_job_reproduces_its_pinned_per_step_losses(debug_prior):
    losses = debug_prior()
    if REGENERATE:
        print({part: [float(f"{value:.9g}") for value in values] for part, values in losses.items()})
    assert set(losses) == set(PINNED)
    for part, expected in PINNED.items():
        assert losses[part] == pytest.approx(expected, rel=1e-5, abs=1e-9), part


@pytest.mark.parametrize("weight", ["train.lambda_reg=0.0002", "train.lambda_distill=0.5", "train.lambda_rec=2"])
def test_the_pin_sees_a_changed_loss_weight(debug_prior, weight):
    # the pinned test cannot pass for a run whose objective weighs a term otherwise
    losses = debug_prior(weight)
    assert losses["loss"] != pytest.approx(PINNED["loss"], rel=1e-5, abs=1e-9)
    assert all(torch.isfinite(torch.tensor(values)).all() for values in losses.values())
