import io

import pytest
import torch
from monitor_check import assert_monitor_is_validation

from raymeta.config.loading import load_config
from raymeta.config.schema import ExportConfig
from raymeta.io.artifacts import MetamorphicCheckpoint, SmoothedCheckpoint
from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.method.presets import NEUMETA_SWITCHES
from raymeta.method.sampling import sample_gammas
from raymeta.method.schedule import plan_stages
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.networks import load_trained
from raymeta.stages.runtime import load_data, place_training_split
from raymeta.stages.train import train

QUIET = Progress(stream=open("/dev/null", "w"))


def test_gamma_sampling_is_a_pure_function_of_seed_and_step():
    first = sample_gammas(0, 5, 4, [0.0, 0.5], 64)
    assert first == sample_gammas(0, 5, 4, [0.0, 0.5], 64)
    assert first[0] == 0.0 and all(0.0 <= g <= 0.5 for g in first)
    assert first != sample_gammas(0, 6, 4, [0.0, 0.5], 64)
    single = [sample_gammas(0, s, 1, [0.0, 0.5], 64)[0] for s in range(100)]
    assert len(set(single)) > 20, "with M = 1 the configuration is drawn from the pool, not forced to γ = 0"


@pytest.mark.parametrize("resident", [True, False])
def test_the_training_split_alone_is_moved_to_the_device_when_resident(resident):
    config = load_config(None, ["data.name=digits", f"data.resident={str(resident).lower()}"])
    bundle = load_data(config)
    placed = place_training_split(bundle, config, torch.device("meta"))  # meta: any device but the CPU
    assert placed.train.device.type == ("meta" if resident else "cpu") and placed.train.augment == bundle.train.augment
    assert placed.validation is bundle.validation and placed.test is bundle.test  # evaluation reads them as before
    assert place_training_split(bundle, config, torch.device("cpu")).train.images is bundle.train.images  # no copy


@pytest.mark.slow  # 300 training steps: ~9 s of CPU, a fifth of the fast tier's
def test_reconstruction_alone_reproduces_the_smoothed_prior(prepared_run):
    config = prepared_run(
        "train.lambda_task=0",
        "train.lambda_reg=0",
        "train.lambda_rec=1",
        "train.gamma_pool=[0.0,0.0]",
        "train.configs_per_step=1",
        "train.incremental=false",
        "train.epochs_per_stage=60",
        "train.steps_per_epoch=5",
        "train.lr=0.003",
        "inr.coordinate_noise=0",
        "inr.hidden_width=64",
        "inr.depth=3",
        "inr.fourier_frequencies=6",
        "train.finetune_head=false",
        "data.limit_train=64",
    )
    net, _, _ = load_trained(train(config, progress=QUIET))
    generated = net.generate(0.0)
    targets = net.prior_tensors()
    for name, target in targets.items():
        error = (generated[name] - target).pow(2).mean() / target.pow(2).mean()
        assert error < 0.05, f"{name}: relative squared error {error:.3f}"


@pytest.mark.slow
def test_short_run_raises_accuracy_above_chance_at_seen_and_unseen_gammas(prepared_run):
    # A barely trained prior (near chance), so that the accuracy must come from training the INRs.
    config = prepared_run(
        "train.epochs_per_stage=4",
        "train.steps_per_epoch=8",
        "train.lr=0.003",
        "train.alpha_lr=0.05",
        "train.head_lr=0.01",
    )
    paths = RunPaths(config.run_dir)
    smoothed = SmoothedCheckpoint.load(paths.smoothed)
    # Scramble the fine-tuned head so that the starting network is at chance level.
    torch.manual_seed(0)
    for name, value in smoothed.state_dict.items():
        if name.startswith(("fc", "stages.2.1")):
            value.normal_(0, 0.01)
    smoothed.save(paths.smoothed)
    net, _, _ = load_trained(train(config, progress=QUIET))
    bundle = load_data(config, augment=False)
    loader = make_loader(bundle.test, 256, shuffle=False)
    rows = evaluate_gammas(
        net, loader, "cpu", [0.0, 0.25, 0.5, 0.75], samples=1, noise=0.0, seed=0, image_size=bundle.info.image_size
    )
    chance = 1 / bundle.info.num_classes
    for row in rows:
        assert row["accuracy"] > chance + 0.3, row


def test_neumeta_baseline_trains_every_block_in_one_stage(prepared_run):
    config = prepared_run(*[f"train.{k}={str(v).lower()}" for k, v in NEUMETA_SWITCHES.items()])
    path = train(config, progress=QUIET)
    payload = MetamorphicCheckpoint.load(path)
    assert payload.done
    stages = plan_stages(config.train.incremental, config.train.epochs_per_stage, 2)
    assert len(stages) == 1 and stages[0].epochs == 2 and len(payload.state.history) == 2
    assert payload.state.step == 2 * 3  # M = 1: one configuration per step
    assert all(torch.isfinite(torch.tensor(h.losses["loss"])) for h in payload.state.history)
    net, _, _ = load_trained(path)
    assert net.hyper.bias_bank.out_dim == 9 and net.alphas.tolist() == [1.0, 1.0]
    assert set(net.generate(0.3)) >= {"stages.1.1.conv1.weight", "stages.2.1.conv2.bias"}


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_resumed_run_continues_from_its_checkpoint(prepared_run, tmp_path):
    overrides = ("train.epochs_per_stage=2",)
    whole = prepared_run(*overrides, run_dir=tmp_path / "whole")
    reference = MetamorphicCheckpoint.load(train(whole, progress=QUIET))

    split = prepared_run(*overrides, run_dir=tmp_path / "split")
    path = train(split, stop_after_epochs=3, progress=QUIET)  # stops inside the second stage
    middle = MetamorphicCheckpoint.load(path)
    assert middle.state.stage == 1 and middle.state.epoch == 1 and not middle.done
    resumed = MetamorphicCheckpoint.load(train(split, resume=True, progress=QUIET))

    assert resumed.state.step == reference.state.step == 4 * 3
    assert [h.step for h in resumed.state.history] == [h.step for h in reference.state.history]
    for name, value in reference.net_state.items():
        torch.testing.assert_close(resumed.net_state[name], value, rtol=0, atol=1e-6, msg=name)


def test_checkpoint_of_another_configuration_is_not_resumed(prepared_run, tmp_path):
    from raymeta.errors import ConfigError

    config = prepared_run(run_dir=tmp_path / "run")
    train(config, stop_after_epochs=1, progress=QUIET)
    changed = prepared_run("train.lr=0.01", run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="another configuration"):
        train(changed, progress=QUIET)


@pytest.mark.parametrize("slices", [2, 3])
def test_batch_slices_of_a_configuration_sum_to_its_whole_gradient(prepared_run, slices):
    # With more workers than configurations each micro-batch is cut into slices; the slices' gradients
    # (cross-entropy weighted by share, weight terms once) must add up to the whole configuration's.
    from raymeta.method.schedule import trainable_parameters
    from raymeta.stages.collective import WorkUnit, accumulate_gradients
    from raymeta.stages.train import objective_of

    config = prepared_run("train.gamma_pool=[0.0,0.0]", "train.configs_per_step=1")  # γ = 0: the MSE term too
    net, _, _ = load_trained(train(config, stop_after_epochs=1, progress=QUIET))
    bundle = load_data(config, augment=False)
    batch = next(iter(make_loader(bundle.train, 30, shuffle=False)))
    parameters = trainable_parameters(net)

    def gradients(units):
        net.zero_grad(set_to_none=True)
        parts = accumulate_gradients(
            net, 3, units, [batch] * len(units), 1, objective_of(config), config.seed, torch.device("cpu")
        )
        return [p.grad.clone() for p in parameters], parts

    whole, whole_parts = gradients([WorkUnit(0, 0.0)])
    sliced, sliced_parts = gradients([WorkUnit(0, 0.0, part, slices) for part in range(slices)])
    for a, b in zip(whole, sliced, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert whole_parts["rec"] > 0 and sliced_parts == pytest.approx(whole_parts, rel=1e-5)


def test_monitor_rows_are_measured_on_the_validation_split(prepared_run):
    # A test split cut to 9 images, so that its numbers cannot pass for the validation split's 51.
    config = prepared_run("data.limit_test=9")
    assert config.data.validation_fraction == 0.1  # on by default
    train(config, progress=QUIET)
    assert len(load_data(config).validation) == 51 and len(load_data(config).train) == 461
    assert_monitor_is_validation(config)


def test_without_a_validation_split_there_is_no_monitoring(prepared_run):
    import math

    from raymeta.errors import ConfigError
    from raymeta.stages.evaluate import evaluate_run

    config = prepared_run("data.validation_fraction=0")
    stream = io.StringIO()
    path = train(config, progress=Progress(stream=stream))
    lines = [line for line in stream.getvalue().splitlines() if "no validation split" in line]
    assert len(lines) == 1 and "no per-epoch monitoring" in lines[0]
    history = MetamorphicCheckpoint.load(path).state.history
    assert len(history) == 2 and all(record.monitor == [] and math.isnan(record.score) for record in history)
    assert not (RunPaths(config.run_dir).results / "train-monitor.parquet").exists()
    assert not any(key.startswith("acc@") for key in history[-1].metrics())
    with pytest.raises(ConfigError, match="data.validation_fraction=0, so it has none; use --split test"):
        evaluate_run(config, path, QUIET, split="validation")
    assert set(evaluate_run(config, path, QUIET)["split"]) == {"test"}


def test_monitor_rows_carry_the_health_signals_of_the_evaluated_weights(prepared_run):
    # α, the relative reconstruction error and the loss balance at γ = 0 of every active block / generated tensor,
    # per epoch: the last epoch's equal raymeta.method.health on the final checkpoint (its EMA weights, as the
    # monitor evaluates).
    import math

    from raymeta.io.results import read_tables
    from raymeta.method.health import block_alphas, loss_balance, reconstruction_errors, worst_by_block
    from raymeta.stages.train import objective_of

    config = prepared_run("train.alpha_lr=0.05")  # α must move off train.alpha_init for the check to mean anything
    stream = io.StringIO()
    net, _, payload = load_trained(train(config, progress=Progress(stream=stream)))
    alphas, errors = block_alphas(net), reconstruction_errors(net)
    assert list(alphas) == ["stage2.block1", "stage3.block1"] and len(errors) == 8
    assert config.train.alpha_init == 1.0
    assert all(abs(a - config.train.alpha_init) > 1e-2 for a in alphas.values()), alphas  # every α has moved
    assert all(0 < e < math.inf for e in errors.values())
    last = payload.state.history[-1]
    assert last.alphas == pytest.approx(alphas, rel=1e-6) and last.rec_errors == pytest.approx(errors, rel=1e-5)
    balance = loss_balance(net, objective_of(config), config.train.configs_per_step)
    assert list(balance.ratio) == list(errors) and all(0 < value < math.inf for value in balance.ratio.values())
    assert last.balance == pytest.approx(balance.ratio, rel=1e-4)
    assert last.balance_at_zero == pytest.approx(balance.at_zero, rel=1e-6)

    table = read_tables(RunPaths(config.run_dir).results / "train-monitor.parquet")
    health = sorted(c for c in table.columns if c.startswith(("alpha.", "rec.")))
    assert health == sorted([f"alpha.{name}" for name in alphas] + [f"rec.{path}" for path in errors])
    final = table[table["epoch"] == 2]
    assert len(final) == 2  # one row per monitored γ, each carrying the epoch's signals
    for name, value in alphas.items():
        assert final[f"alpha.{name}"].tolist() == pytest.approx([value] * 2, rel=1e-6)
    for path, value in errors.items():
        assert final[f"rec.{path}"].tolist() == pytest.approx([value] * 2, rel=1e-5)
        assert final[f"balance.{path}"].tolist() == pytest.approx([balance.ratio[path]] * 2, rel=1e-4)
        assert final[f"balance_at_zero.{path}"].tolist() == pytest.approx([balance.at_zero[path]] * 2, rel=1e-6)
    first = table[table["epoch"] == 1]  # stage 1: only stage2.block1 is active yet
    assert first["alpha.stage2.block1"].notna().all() and first["alpha.stage3.block1"].isna().all()
    assert first["rec.stages.1.1.conv1.weight"].notna().all() and first["rec.stages.2.1.conv2.weight"].isna().all()
    assert first["balance.stages.2.1.conv2.weight"].isna().all()
    # at W = 0 the balance depends on the T tensors of the reconstruction mean: twice as many in stage 2, half each
    at_zero = first["balance_at_zero.stages.1.1.conv1.weight"].iloc[0]
    assert final["balance_at_zero.stages.1.1.conv1.weight"].iloc[0] == pytest.approx(at_zero / 2, rel=1e-6)

    line = [text for text in stream.getvalue().splitlines() if "stage 2/2 epoch 1/1" in text][-1]
    worst = " ".join(f"{e:.2f}" for e in worst_by_block(errors).values())
    assert f"rec [{worst}]" in line and len(worst.split()) == 2
    lowest = " ".join(f"{b:.3g}" for b in worst_by_block(last.balance, lowest=True).values())
    assert f"balance [{lowest}]" in line and len(lowest.split()) == 2
    assert lowest.split() == [
        f"{min(last.balance[p] for p in errors if p.startswith(s)):.3g}" for s in ("stages.1.", "stages.2.")
    ]


def rewrite_as_format_1(path) -> None:
    """Turn a training checkpoint into what raymeta wrote before format 2: format_version 1, and each epoch record
    one flat mapping (the loss parts and acc@γ as keys, α as a list), without per-step losses."""
    payload = torch.load(path, weights_only=True)
    records = []
    for record in payload["state"]["history"]:
        flat = {key: value for key, value in record.items() if key not in ("losses", "step_losses")}
        flat.update(record["losses"])
        flat.update({f"acc@{row['gamma']:g}": row["accuracy"] for row in record["monitor"]})
        records.append({**flat, "alpha": list(record["alphas"].values())})
    payload["state"]["history"] = records
    payload["format_version"] = 1
    torch.save(payload, path)


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_a_format_1_checkpoint_loads_but_is_resumed_only_when_finished(prepared_run, tmp_path):
    # Format 2 changed the random streams: an unfinished format-1 run cannot go on as it began.
    import re

    from raymeta.errors import CheckpointError
    from raymeta.stages.evaluate import evaluate_run
    from raymeta.stages.export import run_export

    config = prepared_run(run_dir=tmp_path / "run")
    path = train(config, stop_after_epochs=1, progress=QUIET)
    current = MetamorphicCheckpoint.load(path).state.history
    rewrite_as_format_1(path)
    old = MetamorphicCheckpoint.load(path).state.history  # it loads, its records read as they were written
    assert [r.metrics() for r in old] == [r.metrics() for r in current] and old[0].step_losses == {}
    assert old[0].alphas == current[0].alphas and old[0].monitor == current[0].monitor
    with pytest.raises(
        CheckpointError,
        match=re.escape(str(path)) + r" is of format 1.*cannot be resumed exactly.*"
        r"--restart",
    ):
        train(config, progress=QUIET)

    finished = train(config, resume=False, progress=QUIET)  # what --restart does
    rewrite_as_format_1(finished)
    stream = io.StringIO()
    assert train(config, progress=Progress(stream=stream)) == finished  # nothing left to draw: nothing refused
    assert "already finished" in stream.getvalue()
    assert set(evaluate_run(config, finished, QUIET)["split"]) == {"test"}
    paths = run_export(
        ExportConfig(gamma=0.25, checkpoint=str(finished), output=str(tmp_path / "export"), onnx=False), QUIET
    )
    assert paths["state_dict"].is_file()


def test_an_epoch_reads_each_example_once_and_what_cannot_step_is_refused():
    from raymeta.errors import ConfigError
    from raymeta.stages.collective import steps_per_epoch

    assert steps_per_epoch(461, 32, 2, None, 1) == 7  # 14 whole batches, M = 2 per step
    assert steps_per_epoch(461, 32, 2, 3, 1) == 3 == steps_per_epoch(461, 32, 2, 3, 4)  # capped; 4 workers fit
    with pytest.raises(ConfigError, match=r"data.batch_size=32 × train.configs_per_step=2 needs more than the 63"):
        steps_per_epoch(63, 32, 2, None, 1)
    with pytest.raises(
        ConfigError,
        match="5 workers would cut each micro-batch of data.batch_size=2 into 5 slices: use at most 2 workers",
    ):
        steps_per_epoch(461, 2, 1, None, 5)
