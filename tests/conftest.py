"""Shared fixtures: a tiny prior (ResNet-14, widths 8) pretrained and smoothed once per session."""

import shutil

import pytest
import torch

from raymeta.config.loading import load_config
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.stages.pretrain import pretrain
from raymeta.stages.smooth import smooth

BASE = [
    "data.name=synthetic",
    "data.batch_size=32",
    "data.eval_batch_size=256",
    "model.depth=14",
    "model.widths=[8,8,8]",
    "pretrain.epochs=2",
    "pretrain.lr=0.05",
    "inr.hidden_width=32",
    "inr.depth=2",
    "inr.fourier_frequencies=4",
    "train.blocks=[stage2.block1,stage3.block1]",
    "train.epochs_per_stage=1",
    "train.steps_per_epoch=3",
    "train.configs_per_step=2",
    "train.warmup_epochs=0",
    "train.lr=0.002",
    "eval.gammas=[-0.25,0.0,0.25,0.5,0.75]",
]


# Two cores are shared by everything on this machine; one thread keeps tests predictable. Set at import too, so
# that session fixtures (the prior below), which run before any function-scoped fixture, get it: with two
# threads on a busy machine, pretraining it spun for many times its single-thread CPU time.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def prepared_run(tmp_path_factory):
    """A run folder holding prior.pt and smoothed.pt, and a factory for configs that reuse them."""
    source = tmp_path_factory.mktemp("prior")
    config = load_config(None, BASE + [f"run_dir={source}"])
    quiet = Progress(stream=open("/dev/null", "w"))
    pretrain(config, quiet)
    smooth(config, quiet)

    def make(*overrides: str, run_dir=None):
        target = run_dir or tmp_path_factory.mktemp("run")
        paths = RunPaths(str(target))
        paths.root.mkdir(parents=True, exist_ok=True)
        for name in ("prior", "smoothed"):
            shutil.copy(getattr(RunPaths(str(source)), name), getattr(paths, name))
        return load_config(None, BASE + [f"run_dir={target}", *overrides])

    return make


@pytest.fixture(scope="session")
def per_block_run(prepared_run):
    """A tiny run trained with per-block γ sampling (blocks stage2.block1, stage3.block1; eval.samples = 2)."""
    from raymeta.stages.train import train

    config = prepared_run("train.gamma_sampling=per_block", "eval.samples=2")
    train(config, progress=Progress(stream=open("/dev/null", "w")))
    return config
