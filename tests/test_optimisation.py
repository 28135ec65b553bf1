"""The optimisers of a training step: AdamW with a step count per row (a block joining a run keeps its own), α and
the head stepped after every configuration (HTTY's code), the rounds that say what N workers compute, and the
coordinate noise on the shape coordinates and at evaluation."""

import pytest
import torch
from test_evaluate import small_network

from raymeta.io.artifacts import MetamorphicCheckpoint
from raymeta.io.progress import Progress
from raymeta.method.adamw import RowAdamW
from raymeta.method.inr import BaseLayer, Hypernetwork, _Layout
from raymeta.method.schedule import build_optimizer, initialise_new_blocks, restart_new_blocks
from raymeta.stages.collective import Collective, WorkUnit, my_configurations, my_rounds
from raymeta.stages.train import run_training

QUIET = Progress(stream=open("/dev/null", "w"))


def test_row_adamw_is_torchs_adamw_until_rows_restart_and_then_those_rows_are_a_fresh_adam():
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(3, 4, 5))
    theirs = torch.nn.Parameter(ours.detach().clone())
    row_adam = RowAdamW([{"params": [ours], "lr": 1e-2, "weight_decay": 1e-3}])
    torch_adam = torch.optim.AdamW([{"params": [theirs], "lr": 1e-2, "weight_decay": 1e-3}])

    def step(*pairs):
        gradient = torch.randn(3, 4, 5)
        for parameter, optimizer in pairs:
            parameter.grad = gradient.clone() if parameter.dim() == 3 else gradient[1].clone()
            optimizer.step()

    for _ in range(30):
        step((ours, row_adam), (theirs, torch_adam))
    assert torch.equal(ours, theirs)  # the same arithmetic, bit for bit, while every row shares one count
    row_adam.restart_rows(ours, [1])
    fresh = torch.nn.Parameter(ours.detach()[1].clone())
    fresh_adam = torch.optim.AdamW([fresh], lr=1e-2, weight_decay=1e-3)
    for _ in range(5):
        step((ours, row_adam), (theirs, torch_adam), (fresh, fresh_adam))
    assert (ours[1] - fresh).abs().max() < 1e-7  # the restarted row: a fresh Adam
    assert torch.equal(ours[[0, 2]], theirs[[0, 2]])  # the others go on as before
    restored = RowAdamW([{"params": [ours], "lr": 1e-2, "weight_decay": 1e-3}])
    restored.load_state_dict(row_adam.state_dict())
    assert restored.state[ours]["step"].tolist() == [35, 5, 35]


@pytest.mark.parametrize("restart", [True, False])
def test_a_block_that_joins_late_takes_a_fresh_adams_first_update(restart):
    # One optimiser for the run (train.warmup: once): block 0 trains (3 steps, counted as 1000), then block 1 joins.
    # Its first update must be a fresh Adam's (|Δ| = lr per element); with the tensor's count 1001 it is
    # (1 − β1)/√((1 − β2)/(1 − β2^1001)) ≈ 2.5 times that (the bug).
    net = small_network("none").train()
    net.set_active_blocks(1)
    lr = 1e-3
    optimizer = build_optimizer(net, lr=lr, weight_decay=0.0, alpha_lr=lr, head_lr=lr, groups=("inr",))
    generator = torch.Generator().manual_seed(0)

    def step():
        weights = net.generate(0.0, noise=0.3, generator=generator)
        sum(w.pow(2).sum() for w in weights.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    for state in optimizer.state.values():
        state["step"].fill_(1000)
    net.set_active_blocks(2)
    initialise_new_blocks(net, 1, 2, seed=0, stage=1, alpha_init=0.0, inr_init=True)
    if restart:
        restart_new_blocks(net, optimizer, 1, 2)
    rows = list(net.block_layers(1))
    before = net.hyper.weight_bank.w_out[rows].detach().clone()
    step()
    change = (net.hyper.weight_bank.w_out[rows] - before).abs().max().item()
    if restart:
        assert change == pytest.approx(lr, rel=1e-3)
    else:
        assert change == pytest.approx(0.1 / (0.001 / (1 - 0.999**1001)) ** 0.5 * lr, rel=1e-3)


def test_rounds_are_one_unit_per_rank_and_one_process_can_run_n_workers_rounds():
    gammas = [0.0, 0.1, 0.2, 0.3, 0.4]
    assert my_rounds(my_configurations(gammas, 0, 1), 5, 1, 1) == [[0], [1], [2], [3], [4]]  # per configuration
    assert my_rounds(my_configurations(gammas, 0, 1), 5, 2, 1) == [[0, 1], [2, 3], [4]]  # one process, 2 ranks' rounds
    assert my_rounds(my_configurations(gammas, 0, 2), 5, 2, 2) == [[0], [1], [2]]  # rank 0 of 2: configs 0, 2, 4
    assert my_rounds(my_configurations(gammas, 1, 2), 5, 2, 2) == [[0], [1], []]  # rank 1: 1, 3, then an empty round
    # more ranks than configurations: the slices of a configuration are one round
    assert my_rounds([WorkUnit(0, 0.0, 1, 2)], 1, 2, 2) == [[0]]
    assert Collective().round_size == 1 and Collective(round_size=2).round_size == 2


def run_to_the_end(config, collective: Collective) -> MetamorphicCheckpoint:
    last = []
    run_training(
        config,
        resume_from=None,
        progress=QUIET,
        collective=collective,
        on_epoch_end=lambda make, record: last.append(make()),
    )
    return last[-1]


@pytest.mark.slow  # two short runs (~2 s each)
def test_per_configuration_steps_alpha_and_the_head_after_every_configuration(prepared_run):
    # 2 stages × 1 epoch × 3 steps of M = 4: the INRs step 6 times, α and the head 24 (one process) or 12 (the
    # rounds of 2 workers, one process computing them), each by its own AdamW at weight decay 1e-2
    config = prepared_run(
        "train.configs_per_step=4", "train.head_updates=per_configuration", "train.head_weight_decay=0.01"
    )
    for round_size, head_steps in ((1, 24), (2, 12)):
        checkpoint = run_to_the_end(config, Collective(round_size=round_size))
        inr, head = checkpoint.optimizer["inr"], checkpoint.optimizer["head"]
        assert [g["name"] for g in inr["param_groups"]] == ["inr"]
        assert [(g["name"], g["weight_decay"]) for g in head["param_groups"]] == [("alpha", 0.01), ("head", 0.01)]
        steps = {int(s["step"].max()) for s in head["state"].values()}
        assert steps == {head_steps} and {int(s["step"].max()) for s in inr["state"].values()} == {6}


def test_noise_on_the_shape_coordinates_moves_the_shape_features_too():
    layers = [BaseLayer("a", (0, 0), True, False, 4, 3), BaseLayer("b", (0, 0), False, True, 3, 4)]
    hyper = Hypernetwork(layers, hidden=4, depth=1, frequencies=0, separate_bias=True)  # features = coordinates
    raw = torch.tensor([[[1.0, 2.0, 1.0, 2.0, 4.0, 3.0]]], dtype=torch.float64)
    references = torch.tensor([[4.0, 3.0]], dtype=torch.float64)
    shift = torch.tensor([[[[0.1, 0.2, 0.3, 0.4, -0.2, 0.25]]]], dtype=torch.float64)
    layout = _Layout(raw, [[("weight", 0, 1, (2, 4, 3, 3))]])
    position_only = hyper._bank_features([(layout, 1, shift[..., :3])], references)[0]
    with_shape = hyper._bank_features([(layout, 1, shift)], references)[0]
    assert torch.allclose(position_only[0], torch.tensor([1.1 / 2, 2.2 / 4, 1.3 / 3, 1, 1, 1]))
    shape = torch.tensor([2.4, 3.8, 3.25])
    expected = torch.cat([torch.tensor([1.1, 2.2, 1.3]) / shape, shape / torch.tensor([2.0, 4.0, 3.0])])
    assert torch.allclose(with_shape[0], expected)
    # the generator: 6 columns drawn instead of 3, so the same seed gives other weights
    draws = [hyper.generate({(0, 0): 2}, noise=0.4, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    hyper.noise_shape = True
    noisy = hyper.generate({(0, 0): 2}, noise=0.4, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(draws[0][k], draws[1][k]) for k in noisy)
    assert not any(torch.allclose(draws[0][k], noisy[k]) for k in noisy if k.endswith("weight"))


def test_eval_noise_every_sample_makes_one_sample_noisy_in_evaluation_and_export():
    from raymeta.config.loading import load_config
    from raymeta.stages.export import generation_settings

    default, every = load_config(None, []), load_config(None, ["eval.noise=every_sample"])
    assert generation_settings(default, 1)["noise"] == 0.0 and generation_settings(default, 4)["noise"] == 0.5
    assert generation_settings(every, 1)["noise"] == 0.5 and every.hash() != default.hash()
