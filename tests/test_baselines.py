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


# ---- slimmable (US-Nets), merge, INR-off and the equal-cost pruning fine-tune ------------------------


@pytest.mark.slow  # a few training steps of the slimmable network (~2 s)
def test_slimmable_network_slices_trains_by_the_sandwich_rule_and_recalibrates_per_width(prepared_run):
    from raymeta.method.slimmable import SlimmableResNet, recalibrate_batchnorm
    from raymeta.stages.runtime import load_data
    from raymeta.stages.slimmable import train_slimmable

    config = prepared_run("train.configs_per_step=3")
    prior = prior_network(PriorCheckpoint.load(RunPaths(config.run_dir).prior))
    blocks = resolve_blocks(config.train.blocks, prior.arch)
    slim = SlimmableResNet(copy.deepcopy(prior), blocks)
    x = torch.randn(16, prior.arch.in_channels, 8, 8, generator=torch.Generator().manual_seed(3))

    def same_function(gamma):
        widths = slim.hidden_widths(gamma)
        fresh = slim.sliced(widths)
        assert {(s, b): fresh.block(s, b).conv1.out_channels for s, b in blocks} == widths
        with torch.no_grad():
            slim.eval()
            assert torch.allclose(slim(x, widths), fresh(x), atol=1e-5)  # running statistics, sliced
            slim.train(), fresh.train()
            assert torch.allclose(slim(x, widths), fresh(x), atol=1e-5)  # batch statistics
        slim.eval(), fresh.eval()

    with torch.no_grad():
        assert torch.allclose(slim.eval()(x, slim.hidden_widths(0.0)), prior(x), atol=1e-6)  # γ = 0: the prior
        assert not torch.allclose(slim(x, slim.hidden_widths(0.5)), prior(x), atol=1e-3)
    with pytest.raises(ConfigError, match="slicing cannot widen"):
        slim.hidden_widths(-0.25)

    bundle = load_data(config)
    before = {k: v.clone() for k, v in slim.model.state_dict().items()}
    draws: list[list[float]] = []
    seconds, epochs = train_slimmable(slim, bundle, config, lr=0.01, device=torch.device("cpu"), epochs=1, draws=draws)
    assert epochs == 1 and seconds > 0 and len(draws) == len(bundle.train) // config.data.batch_size
    for gammas in draws:  # the sandwich: both ends of the pool every step, the rest strictly between
        assert len(gammas) == 3 and gammas[:2] == [0.0, 0.5] and 0.0 < gammas[2] < 0.5
    assert len({gammas[2] for gammas in draws}) == len(draws)  # drawn afresh each step
    name = f"{prior.arch.module_prefix(*blocks[0])}.conv1.weight"
    width = hidden_width(prior.arch.widths[blocks[0][0]], 0.5)
    assert not torch.equal(slim.model.state_dict()[name][:width], before[name][:width])  # shared slice trained
    for gamma in (0.5, 0.25):  # still one function with the fresh copy after training
        same_function(gamma)

    batches = [bundle.train[list(range(i * 32, (i + 1) * 32))] for i in range(3)]
    calibrated = {}
    for gamma in (0.0, 0.5):
        net = slim.sliced(slim.hidden_widths(gamma))
        stale = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
        assert recalibrate_batchnorm(net, batches, torch.device("cpu")) == 3 and not net.training
        calibrated[gamma] = {k: v for k, v in net.state_dict().items() if "running_mean" in k}
        assert any(not torch.equal(stale[k], v) for k, v in calibrated[gamma].items())
        with torch.no_grad():  # the stem's statistics: the plain mean over the batches of each batch's mean
            means = [net.stem.conv(images).mean(dim=(0, 2, 3)) for images, _ in batches]
        assert torch.allclose(net.stem.bn.running_mean, torch.stack(means).mean(0), atol=1e-5)
    after_block = f"{prior.arch.module_prefix(*blocks[0])}.bn2.running_mean"  # reads the sliced hidden channels
    assert not torch.allclose(calibrated[0.0][after_block], calibrated[0.5][after_block])
    assert torch.equal(calibrated[0.0]["stem.bn.running_mean"], calibrated[0.5]["stem.bn.running_mean"])


@pytest.fixture
def evaluated_run(per_block_run, tmp_path):
    """A copy of the tiny trained run with its test rows (``raymeta evaluate``), as ``raymeta run`` leaves it."""
    import dataclasses
    import shutil

    target = tmp_path / "run"
    shutil.copytree(per_block_run.run_dir, target)
    config = dataclasses.replace(per_block_run, run_dir=str(target))
    save_config(config, RunPaths(target).config)
    assert main(["evaluate", "--run-dir", str(target)]) == 0
    return config


@pytest.mark.slow  # the slimmable network and a pruning fine-tune for the tiny run's training time (~2 × 1-3 s)
def test_baseline_slimmable_merge_inr_off_and_equal_cost_pruning_write_rows(evaluated_run, capsys):
    from raymeta.io.artifacts import MetamorphicCheckpoint, SmoothedCheckpoint
    from raymeta.io.data import make_loader
    from raymeta.method.scoring import accuracy_and_loss
    from raymeta.stages.baseline_rows import metamorphic_train_seconds
    from raymeta.stages.runtime import load_data

    run = evaluated_run.run_dir
    paths = RunPaths(run)
    trained = MetamorphicCheckpoint.load(paths.train_checkpoint).train_time_s
    assert metamorphic_train_seconds(run) == pytest.approx(trained)
    capsys.readouterr()

    assert (
        main(["baseline", "slimmable", "--run-dir", run, "--gammas=-0.25,0,0.5", "--recalibration-batches", "2"]) == 0
    )
    out = capsys.readouterr().out
    assert "γ=-0.25 skipped (slicing cannot widen a block); no rows" in out and "the prior (with BatchNorm)" in out
    frame = read_tables(paths.results)
    slim = frame[frame["method"] == "slimmable"]
    assert slim["gamma"].tolist() == [0.0, 0.5] and (slim["split"] == "test").all()
    assert ((slim["train_budget_s"] - trained).abs() < 1e-6).all() and (slim["train_time_s"] >= trained).all()
    assert main(["baseline", "slimmable", "--run-dir", run, "--gammas=0,0.5", "--recalibration-batches", "2"]) == 0
    assert "every γ already in" in capsys.readouterr().out

    assert main(["baseline", "merge", "--run-dir", run, "--gammas=-0.25,0,0.5"]) == 0
    assert main(["baseline", "inr-off", "--run-dir", run, "--gammas=0,0.5"]) == 0
    frame = read_tables(paths.results)
    merge = frame[frame["method"] == "merge"].set_index("gamma")
    assert merge.index.tolist() == [-0.25, 0.0, 0.5] and (merge["train_time_s"] == 0).all()
    smoothed = prior_network(SmoothedCheckpoint.load(paths.smoothed))
    bundle = load_data(evaluated_run, augment=False)
    accuracy, loss = accuracy_and_loss(smoothed, make_loader(bundle.test, 256, shuffle=False), "cpu")
    assert merge.loc[0.0, "accuracy"] == pytest.approx(accuracy)  # γ = 0: the smoothed prior itself
    assert merge.loc[0.0, "loss"] == pytest.approx(loss, rel=1e-4) != merge.loc[0.5, "loss"]
    assert merge.loc[0.0, "params"] == count_params_macs(smoothed.arch, None, 8)[0]
    off = frame[frame["method"] == "metamorphic-inr-off"].set_index("gamma")
    assert off.index.tolist() == [0.0, 0.5] and ((off["train_time_s"] - trained).abs() < 1e-6).all()
    assert (off["run_id"] == f"{paths.root.name}/inr-off").all()
    on = frame[(frame["method"] == "metamorphic") & (frame["phase"] == "final")].set_index("gamma")
    assert off.loc[0.5, "accuracy"] != on.loc[0.5, "accuracy"] or off.loc[0.5, "loss"] != on.loc[0.5, "loss"]
    # calibrated (eval.calibration): rows of their own beside the uncalibrated ones, the same at γ = 0
    assert main(["baseline", "inr-off", "--run-dir", run, "--gammas=0,0.5", "eval.calibration=16"]) == 0
    calibrated = read_tables(paths.results)
    calibrated = calibrated[calibrated["method"] == "metamorphic-inr-off+calibrated"].set_index("gamma")
    assert (calibrated["calibration"] == 16).all() and calibrated.index.tolist() == [0.0, 0.5]
    assert (calibrated["run_id"] == f"{paths.root.name}/inr-off+calibrated").all()
    assert calibrated.loc[0.0, "accuracy"] == pytest.approx(off.loc[0.0, "accuracy"])
    assert calibrated.loc[0.5, "loss"] != off.loc[0.5, "loss"]

    argv = ["baseline", "prune", "--run-dir", run, "--importance", "l1", "--gammas=0.25,0.5"]
    assert main([*argv, "--finetune-epochs", "0", "--finetune-budget", "equal"]) == 0
    assert "and " in capsys.readouterr().out
    frame = read_tables(paths.results)
    equal = frame[frame["method"] == "prune-l1+ft-equal"]
    assert equal["gamma"].tolist() == [0.25, 0.5]
    assert ((equal["train_budget_s"] - trained / 2).abs() < 1e-6).all()  # the run's time over the two widths
    pruned = frame[frame["method"] == "prune-l1"].set_index("gamma")
    assert (equal["train_time_s"].to_numpy() >= trained / 2).all()
    assert (equal.set_index("gamma")["loss"] != pruned["loss"]).all()  # fine-tuned from the pruned network
    assert main([*argv, "--finetune-epochs", "0", "--finetune-budget", "equal"]) == 0
    assert "already in" in capsys.readouterr().out and len(read_tables(paths.results)) == len(frame)


@pytest.mark.slow  # five commands that load a run (~3 s on a busy machine): the fast tier stays under a minute
def test_baselines_that_match_the_run_s_cost_say_what_they_need(prepared_run, capsys):
    config = prepared_run()
    save_config(config, RunPaths(config.run_dir).config)
    assert main(["baseline", "slimmable", "--run-dir", config.run_dir]) == 2
    err = capsys.readouterr().err
    assert "baseline slimmable needs the training time of the metamorphic run" in err and "--epochs N" in err
    assert main(["baseline", "prune", "--run-dir", config.run_dir, "--finetune-budget", "equal"]) == 2
    assert "--finetune-epochs N" in capsys.readouterr().err
    assert main(["baseline", "prune", "--run-dir", config.run_dir, "--finetune-budget", "half"]) == 2
    assert "baseline.finetune_budget='half' is not allowed: null or equal" in capsys.readouterr().err
    assert (
        main(["baseline", "slimmable", "--run-dir", config.run_dir, "--epochs", "1", "train.configs_per_step=1"]) == 2
    )
    assert "train.configs_per_step=1 is not allowed for baseline slimmable" in capsys.readouterr().err
    assert main(["baseline", "inr-off", "--run-dir", config.run_dir]) == 2
    assert "Traceback" not in capsys.readouterr().err
