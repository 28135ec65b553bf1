"""The loss balance (raymeta.method.health.loss_balance): the reconstruction pull against the regulariser pull on
each generated tensor, by hand, against the objective's own gradients, and where it crosses 1."""

import math

import pytest
import torch

from raymeta.method.health import loss_balance, worst_by_block
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import Architecture, ResNet
from raymeta.method.objective import Objective, configuration_loss, reconstruction_error, weight_regulariser

M, LAMBDA_REG = 4, 1e-4
KERNEL = "stages.2.1.conv1.weight"


def tiny_network() -> MetamorphicNetwork:
    torch.manual_seed(0)
    prior = ResNet(Architecture(14, (8, 8, 16), 3, 4), batchnorm=False).eval()
    net = MetamorphicNetwork(
        prior,
        [(2, 1)],
        inr_hidden=16,
        inr_depth=2,
        frequencies=2,
        separate_bias=True,
        alpha_scaling=True,
        finetune_head=True,
        base="none",
    )
    for parameter in net.hyper.parameters():  # off the zero-output start, so every W is a real one
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    return net


def objective(relative: bool = False, **changes) -> Objective:
    settings = dict(
        lambda_task=1.0,
        lambda_distill=0.0,
        distill_temperature=1.0,
        lambda_feature=0.0,
        lambda_rec=1.0,
        relative_reconstruction=relative,
        lambda_reg=LAMBDA_REG,
        coordinate_noise=0.0,
        precision="fp32",
    )
    return Objective(**{**settings, **changes})


@pytest.mark.parametrize("relative", [False, True])
def test_the_balance_is_the_hand_computed_ratio_of_the_two_pulls(relative):
    net = tiny_network()
    balance = loss_balance(net, objective(relative), M)
    generated, targets = net.generate(0.0), net.prior_tensors()
    assert list(balance.ratio) == list(targets) == list(balance.at_zero) and len(targets) == 4
    T = len(targets)
    for name, target in targets.items():
        W, N = generated[name].detach(), target.numel()
        if relative:  # ∂/∂W of mean_T ‖W − W*‖²/‖W*‖²
            pull, pull_at_zero = 2 * (W - target).norm() / (T * target.norm() ** 2), 2 / (T * target.norm())
        else:  # ∂/∂W of mean_T ‖W − W*‖²/N
            pull, pull_at_zero = 2 * (W - target).norm() / (T * N), 2 * target.norm() / (T * N)
        assert balance.ratio[name] == pytest.approx(float(pull) / (M * LAMBDA_REG), rel=1e-5)
        assert balance.at_zero[name] == pytest.approx(float(pull_at_zero) / (M * LAMBDA_REG), rel=1e-5)
    with torch.no_grad():  # as evaluation code calls it: the same
        assert loss_balance(net, objective(relative), M) == balance
    # no regulariser: nothing pulls against the reconstruction, no balance
    assert loss_balance(net, objective(relative, lambda_reg=0.0), M).ratio == {}


def test_the_pulls_are_the_objectives_own_gradients():
    # configuration_loss at γ = 0 on given weights: with the task weighed 0, its gradient per tensor is
    # λ_rec·∂rec/∂W + λ_reg·W/‖W‖; each term alone has the norm the balance divides.
    net = tiny_network()
    generated = {name: value.detach() for name, value in net.generate(0.0).items()}
    images, labels = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])

    def pulls(**changes) -> dict[str, float]:
        weights = {name: value.clone().requires_grad_() for name, value in generated.items()}
        loss, _ = configuration_loss(
            net, 0.0, images, labels, objective(lambda_task=0.0, **changes), None, weights=weights
        )
        loss.backward()
        return {name: float(value.grad.norm()) for name, value in weights.items()}

    reconstruction, regulariser = pulls(lambda_reg=0.0), pulls(lambda_rec=0.0)
    assert regulariser == pytest.approx({name: LAMBDA_REG for name in generated}, rel=1e-5)
    balance = loss_balance(net, objective(), M)
    assert balance.ratio == pytest.approx({n: p / (M * LAMBDA_REG) for n, p in reconstruction.items()}, rel=1e-5)


def test_the_balance_at_zero_crosses_one_where_the_kernel_stops_being_pulled_to_zero():
    # MSE: 2‖W*‖/(T·N) against M·λ_reg, so the kernel's threshold is ‖W*‖ = M·λ_reg·T·N/2. Scaled to 0.9× of it,
    # rec + reg is smallest at W = 0 along the line t·W*; at 1.1× it is smallest off zero.
    for scale, below in ((0.9, True), (1.1, False)):
        net = tiny_network()
        target = net.prior.state_dict()[KERNEL]  # shares the prior's storage
        T, N = len(net.prior_tensors()), target.numel()
        threshold = M * LAMBDA_REG * T * N / 2
        target.mul_(scale * threshold / target.norm())
        ratio = loss_balance(net, objective(), M).at_zero[KERNEL]
        assert ratio == pytest.approx(scale, rel=1e-5) and (ratio < 1) == below
        best = min(torch.linspace(0, 1, 201).tolist(), key=lambda t: rec_plus_reg(net.prior_tensors(), t))
        assert (best == 0.0) == below, (scale, best)
        if not below:  # the minimiser the closed form gives: t* = 1 − threshold/‖W*‖
            assert best == pytest.approx(1 - 1 / scale, abs=0.01)


def rec_plus_reg(targets: dict[str, torch.Tensor], t: float) -> float:
    """rec + M·λ_reg·Σ‖W‖ (MSE) with every tensor at its target but the kernel, at t·W*."""
    weights = {**targets, KERNEL: t * targets[KERNEL]}
    return float(reconstruction_error(weights, targets) + M * LAMBDA_REG * weight_regulariser(weights))


def test_a_tensor_at_zero_is_held_by_the_regulariser_at_its_full_pull():
    net = tiny_network()
    for bank in net.hyper.banks():
        for index in range(bank.count):
            bank.zero_output(index)  # W = 0: the norm's gradient is undefined; its subgradients reach M·λ_reg
    balance = loss_balance(net, objective(), M)
    assert balance.ratio == pytest.approx(balance.at_zero, rel=1e-6)


def test_the_lowest_balance_of_each_block_is_what_the_progress_line_shows():
    balance = {"stages.2.1.conv1.weight": 0.5, "stages.2.1.conv2.weight": 0.2, "stages.2.2.conv1.weight": math.nan}
    lowest = worst_by_block(balance, lowest=True)
    assert lowest["stage3.block1"] == 0.2 and math.isnan(lowest["stage3.block2"])  # NaN is never hidden
    assert worst_by_block(balance)["stage3.block1"] == 0.5
