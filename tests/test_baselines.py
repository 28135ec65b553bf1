"""Baselines: pruned networks have exactly the metamorphic widths; both baselines write schema rows."""

import copy
from pathlib import Path

import pytest
import torch

from raymeta.cli import main
from raymeta.errors import ConfigError
from raymeta.io.artifacts import PriorCheckpoint
from raymeta.io.files import RunPaths, save_config
from raymeta.io.results import RESULT_COLUMNS, read_tables
from raymeta.method.models import count_params_macs, hidden_width, resolve_blocks
from raymeta.stages.baselines import IMPORTANCES, check_importances, prune_to_gamma, target_widths
from raymeta.stages.networks import prior_network


@pytest.fixture(scope="module")
def prior_and_blocks(prepared_run):
    config = prepared_run()
    payload = PriorCheckpoint.load(RunPaths(config.run_dir).prior)
    prior = prior_network(payload)
    return prior, resolve_blocks(config.train.blocks, prior.arch), config


def batches_for(prior, count=2, size=8):
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(size, prior.arch.in_channels, 8, 8, generator=generator),
            torch.randint(0, prior.arch.num_classes, (size,), generator=generator),
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize("importance", IMPORTANCES)
@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.875])
def test_pruned_network_has_the_expected_hidden_widths(prior_and_blocks, importance, gamma):
    prior, blocks, _ = prior_and_blocks
    pruned = prune_to_gamma(prior, blocks, gamma, importance, batches=batches_for(prior))
    for s, b in prior.arch.block_positions():
        block, width = pruned.block(s, b), prior.arch.widths[s]
        expected = hidden_width(width, gamma) if (s, b) in blocks else width
        assert block.conv1.out_channels == expected == block.bn1.num_features == block.conv2.in_channels
        if (s, b) in blocks:
            # channels were removed, not re-initialised: every kept filter is one of the prior's filters
            kept = block.conv1.weight.flatten(1)
            original = prior.block(s, b).conv1.weight.flatten(1)
            assert torch.cdist(kept, original).min(dim=1).values.max() < 1e-6
    assert pruned(torch.randn(2, prior.arch.in_channels, 8, 8)).shape == (2, prior.arch.num_classes)
    assert not any(p.grad is not None for p in prior.parameters())  # the prior itself is left untouched


def test_pruning_at_gamma_zero_is_the_prior(prior_and_blocks):
    prior, blocks, _ = prior_and_blocks
    x = torch.randn(4, prior.arch.in_channels, 8, 8)
    assert torch.allclose(prune_to_gamma(prior, blocks, 0.0, "l1")(x), prior(x))


def test_pruning_rejects_widening_and_unknown_importances(prior_and_blocks):
    prior, blocks, _ = prior_and_blocks
    with pytest.raises(ConfigError, match="cannot widen"):
        prune_to_gamma(prior, blocks, -0.25, "l1")
    with pytest.raises(ConfigError, match="unknown: allowed are random, l1, l2, taylor, hessian"):
        check_importances(["l3"])
    assert check_importances(["l1,taylor", "l1"]) == ["l1", "taylor"] and check_importances(["all"]) == list(
        IMPORTANCES
    )
    with pytest.raises(ConfigError, match="leaves no hidden channel"):
        target_widths(prior.arch, blocks, 0.99)


@pytest.mark.slow
def test_baseline_commands_write_rows_in_the_schema(prepared_run, tmp_path, capsys):
    config = prepared_run()
    run = config.run_dir
    save_config(config, RunPaths(run).config)  # as `raymeta run` leaves it: prune reads the run's config
    common = ["--run-dir", run]
    assert (
        main(
            [
                "baseline",
                "prune",
                *common,
                "--importance",
                "l1",
                "taylor",
                "--gammas=-0.25,0.25",
                "--finetune-epochs",
                "1",
                "--gradient-batches",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "γ=-0.25 skipped (pruning cannot widen" in out
    frame = read_tables(RunPaths(run).results)
    assert list(frame.columns) == RESULT_COLUMNS and (frame["split"] == "test").all()
    assert sorted(frame["method"]) == ["prune-l1", "prune-l1+ft", "prune-taylor", "prune-taylor+ft"]
    prior = prior_network(PriorCheckpoint.load(RunPaths(run).prior))
    blocks = resolve_blocks(config.train.blocks, prior.arch)
    params, macs = count_params_macs(prior.arch, target_widths(prior.arch, blocks, 0.25), 8)
    assert (frame["params"] == params).all() and (frame["macs"] == macs).all() and (frame["gamma"] == 0.25).all()
    tuned = frame.set_index("method")
    assert tuned.loc["prune-l1+ft", "train_time_s"] > tuned.loc["prune-l1", "train_time_s"] > 0
    # a second run finds its finished rows and skips them
    assert (
        main(
            [
                "baseline",
                "prune",
                *common,
                "--importance",
                "l1",
                "--gammas",
                "0.25",
                "--finetune-epochs",
                "1",
                "--gradient-batches",
                "2",
            ]
        )
        == 0
    )
    assert "already in" in capsys.readouterr().out and len(read_tables(RunPaths(run).results)) == 4

    individual = tmp_path / "individual"
    argv = [
        "baseline",
        "individual",
        "--run-dir",
        str(individual),
        "--gammas",
        "0.5",
        "--epochs",
        "2",
        *[f"{o}" for o in _base_overrides()],
    ]
    assert main(argv) == 0
    rows = read_tables(individual / "results")
    assert rows["method"].unique().tolist() == ["individual"]
    assert rows["phase"].tolist() == ["train", "train", "final"] and rows["epoch"].tolist() == [1, 2, 2]
    assert rows["split"].tolist() == ["validation", "validation", "test"]  # per-epoch accuracy never on test
    assert "validation acc" in capsys.readouterr().out
    assert rows["run_id"].unique().tolist() == ["individual/individual/gamma=0.5"]


def _base_overrides():
    from conftest import BASE

    return BASE


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--importance", "l7"], "pruning importance 'l7' is unknown"),
        (["--gammas", "0.99"], "leaves no hidden channel"),
        (["--gammas", "1.5"], "baseline.gammas=[1.5] is not allowed: null or a non-empty list of numbers in [-1, 1)"),
        (["--gammas", "a,b"], "baseline.gammas[0]='a' is not allowed: expected a number"),
    ],
)
def test_bad_baseline_arguments_are_one_clear_error(prepared_run, capsys, argv, message):
    config = prepared_run()
    save_config(config, RunPaths(config.run_dir).config)
    assert main(["baseline", "prune", "--run-dir", config.run_dir, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_corrupt_prior_is_one_clear_error(tmp_path, capsys):
    tmp_path.joinpath("prior.pt").write_bytes(b"garbage")
    assert main(["baseline", "prune", "--run-dir", str(tmp_path)]) == 2
    assert "corrupt" in capsys.readouterr().err


# ---- skip: the metamorphic blocks removed -----------------------------------------------------------


def smoothed_prior(config):
    from raymeta.stages.baselines import load_smoothed_prior

    prior = load_smoothed_prior(config.run_dir)
    return prior, resolve_blocks(config.train.blocks, prior.arch)


def test_skip_network_computes_what_the_metamorphic_network_with_every_alpha_zero_computes(prepared_run):
    from raymeta.stages.baselines import skip_network, skip_params_macs
    from raymeta.stages.networks import build_network

    config = prepared_run()
    prior, blocks = smoothed_prior(config)
    skip = skip_network(prior, blocks)
    net = build_network(config, prior).eval()
    x = torch.randn(6, prior.arch.in_channels, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net.alphas.fill_(1.0)
        for gamma in (0.0, 0.5):
            assert not torch.allclose(net(x, net.generate(gamma)), skip(x))  # with the blocks on, it differs
        net.alphas.zero_()
        for gamma in (0.0, 0.5, -0.25):
            assert torch.allclose(net(x, net.generate(gamma)), skip(x), atol=1e-6)  # channels-last prefix: rounding
        assert not torch.allclose(prior(x), skip(x))  # and the prior itself is not the skip network
    params, macs = skip_params_macs(prior.arch, blocks, 8)
    assert params == sum(p.numel() for p in skip.parameters())
    full_params, full_macs = count_params_macs(prior.arch, None, 8)
    assert full_params - params == sum(2 * (9 * 8 * 8 + 8) for _ in blocks)  # two 3×3 convs of width 8 each
    assert 0 < macs < full_macs


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ((), ["fc.weight", "fc.bias"]),  # the last block is metamorphic: the classifier only
        (
            ("train.blocks=[stage2.block1]",),
            [
                "stages.2.1.conv1.weight",
                "stages.2.1.conv1.bias",
                "stages.2.1.conv2.weight",
                "stages.2.1.conv2.bias",
                "fc.weight",
                "fc.bias",
            ],
        ),
        (("train.finetune_head=false",), []),
    ],
)
def test_skip_baseline_trains_only_what_the_metamorphic_run_fine_tunes(prepared_run, overrides, expected):
    from raymeta.stages.baselines import fine_tuned_names, fit_head, skip_network
    from raymeta.stages.networks import build_network
    from raymeta.stages.runtime import load_data

    config = prepared_run("train.head_lr=0.05", *overrides)
    prior, blocks = smoothed_prior(config)
    names = fine_tuned_names(config, prior)
    assert sorted(names) == sorted(expected)
    net = build_network(config, copy.deepcopy(prior))
    assert [n for n, p in net.prior.named_parameters() if p.requires_grad] == names  # what it fine-tunes
    original = {k: v.clone() for k, v in prior.state_dict().items()}
    model = skip_network(prior, blocks)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = fit_head(model, names, load_data(config), config, epochs=1, device=torch.device("cpu"))
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == sorted(expected) and (seconds > 0) == bool(expected)
    for name, value in prior.state_dict().items():  # the skipped blocks' weights (and all others) untouched
        assert torch.equal(value, original[name]), name


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_baseline_skip_command_writes_flat_rows_in_the_schema(prepared_run, tmp_path, capsys):
    from raymeta.stages.baselines import skip_params_macs

    config = prepared_run()
    run = config.run_dir
    save_config(config, RunPaths(run).config)
    assert main(["baseline", "skip", "--run-dir", run]) == 0
    out = capsys.readouterr().out
    assert "blocks stage2.block1, stage3.block1 removed; training fc.weight, fc.bias for 2 epoch(s)" in out
    frame = read_tables(RunPaths(run).results)
    assert set(frame["method"]) == {"skip"} and frame["run_id"].unique().tolist() == [f"{Path(run).name}/skip"]
    final = frame[frame["phase"] == "final"]
    assert final["gamma"].tolist() == config.eval.gammas and (final["split"] == "test").all()
    assert final["accuracy"].nunique() == 1 and final["loss"].nunique() == 1  # one network at every γ
    prior, blocks = smoothed_prior(config)
    params, macs = skip_params_macs(prior.arch, blocks, 8)
    assert (frame["params"] == params).all() and (frame["macs"] == macs).all()
    assert (final["epoch"] == 2).all() and (final["train_time_s"] > 0).all()  # as many epochs as the metamorphic run
    curve = frame[frame["phase"] == "train"]
    assert (curve["split"] == "validation").all() and sorted(set(curve["epoch"])) == [1, 2]
    assert sorted(set(curve["gamma"])) == [0.0, 0.5]  # at the run's monitored γ
    # run again: finished; a new γ is added by a table of its own
    assert main(["baseline", "skip", "--run-dir", run]) == 0
    assert "every γ already in" in capsys.readouterr().out and len(read_tables(RunPaths(run).results)) == len(frame)
    assert main(["baseline", "skip", "--run-dir", run, "--gammas", "0,0.125"]) == 0
    again = read_tables(RunPaths(run).results)
    added = again[(again["phase"] == "final") & (again["gamma"] == 0.125)]
    assert len(added) == 1 and added["accuracy"].iloc[0] == final["accuracy"].iloc[0]  # same seed, same network
    assert len(again[(again["phase"] == "final") & (again["gamma"] == 0.0)]) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--gammas", "1.5"], "baseline.gammas=[1.5] is not allowed"),
        (["--epochs", "-1"], "baseline.epochs=-1 is not allowed"),
        (["train.blocks=[stage2.block0]"], "projection shortcut"),
    ],
)
def test_bad_skip_arguments_are_one_clear_error(prepared_run, capsys, argv, message):
    config = prepared_run()
    save_config(config, RunPaths(config.run_dir).config)
    assert main(["baseline", "skip", "--run-dir", config.run_dir, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_baseline_skip_without_a_smoothed_prior_says_to_smooth_first(prepared_run, capsys):
    config = prepared_run()
    save_config(config, RunPaths(config.run_dir).config)
    RunPaths(config.run_dir).smoothed.unlink()
    assert main(["baseline", "skip", "--run-dir", config.run_dir]) == 2
    err = capsys.readouterr().err
    assert "smoothed.pt" in err and "raymeta smooth" in err and "Traceback" not in err
