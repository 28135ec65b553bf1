"""The training step's layout for speed changes nothing it computes: running the frozen prefix once for the network
and its distillation teacher (channels-last) gives the gradients and loss parts of the teacher's own forward."""

import copy

import pytest
import torch

from raymeta.config.loading import load_config
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import Architecture, ResNet
from raymeta.method.objective import configuration_loss
from raymeta.method.sampling import noise_generator
from raymeta.method.schedule import trainable_parameters
from raymeta.stages.collective import WorkUnit, accumulate_gradients
from raymeta.stages.networks import build_network
from raymeta.stages.train import objective_of

GAMMAS = [0.0, 0.25, 0.5]


def make(blocks: str = "[full]"):
    config = load_config(
        None,
        [
            "model.depth=14",
            "model.widths=[8,8,16]",
            "inr.hidden_width=16",
            "inr.depth=2",
            "inr.fourier_frequencies=2",
            f"train.blocks={blocks}",
            f"train.configs_per_step={len(GAMMAS)}",
        ],
    )
    torch.manual_seed(0)
    prior = ResNet(Architecture(14, (8, 8, 16), 3, 10), batchnorm=False).eval()
    teacher = copy.deepcopy(prior)
    net = build_network(config, prior)
    with torch.no_grad():
        net.alphas.fill_(0.5)  # live residual branches
        net.prior.fc.weight.add_(0.3)  # a head trained away from the teacher's: their logits differ
    return config, net, net.layout_teacher(teacher)


def batches(count: int, size: int = 6):
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(size, 3, 8, 8, generator=generator), torch.randint(0, 10, (size,), generator=generator))
        for _ in range(count)
    ]


def one_at_a_time(net, step, units, data, total, objective, seed, teacher):
    """The step as it was laid out before: each unit generates its weights and runs the whole teacher itself."""
    sums = {}
    plain = copy.deepcopy(teacher).to(memory_format=torch.contiguous_format)
    for unit, (images, labels) in zip(units, data, strict=True):
        rows = unit.rows(len(labels))
        share = len(labels[rows]) / len(labels)
        with torch.no_grad():
            targets = plain(images[rows])
        loss, parts = configuration_loss(
            net,
            unit.gamma,
            images[rows],
            labels[rows],
            objective,
            noise_generator(seed, step, unit.index),
            share=share,
            weight_terms=unit.slice == 0,
            teacher_logits=targets,
        )
        (loss / total).backward()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
    return sums


def gradients(net, run):
    net.zero_grad(set_to_none=True)
    parts = run()
    return [None if p.grad is None else p.grad.clone() for p in trainable_parameters(net)], parts


@pytest.mark.parametrize("slices", [1, 2])
def test_the_step_equals_one_configuration_at_a_time_with_the_teachers_own_forward(slices):
    config, net, teacher = make()
    units = [WorkUnit(index, gamma, part, slices) for index, gamma in enumerate(GAMMAS) for part in range(slices)]
    data = [batch for batch in batches(len(GAMMAS)) for _ in range(slices)]
    objective = objective_of(config)
    assert objective.lambda_distill > 0 and objective.coordinate_noise > 0  # the teacher and the noise both run
    expected, expected_parts = gradients(
        net, lambda: one_at_a_time(net, 7, units, data, len(GAMMAS), objective, config.seed, teacher)
    )
    actual, actual_parts = gradients(
        net,
        lambda: accumulate_gradients(
            net, 7, units, data, len(GAMMAS), objective, config.seed, torch.device("cpu"), teacher
        ),
    )
    assert actual_parts == pytest.approx(expected_parts, rel=1e-5, abs=1e-7)
    assert expected_parts["distill"] > 1e-4 and expected_parts["rec"] > 0  # both terms are in the comparison
    for a, b in zip(actual, expected, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("active", [1, 2])
def test_the_teacher_from_the_shared_prefix_gives_its_own_logits(active):
    _, net, teacher = make("[stage2.block1, stage1.block1]")
    net.set_active_blocks(active)  # the prefix ends before stage 2's second block, or stage 1's
    images = batches(1)[0][0]
    plain = copy.deepcopy(teacher).to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        torch.testing.assert_close(net.teacher_logits(teacher, net.frozen_prefix(images)), plain(images))
        assert not torch.allclose(plain(images), net.prior(images), atol=1e-3)  # the net's head is not the teacher's


def test_a_bottleneck_network_steps_as_one_configuration_at_a_time():
    # torchvision's Bottleneck family (1×1 and 3×3 kernels generated, an ImageNet stem in the frozen prefix)
    config, _, _ = make()
    torch.manual_seed(0)
    arch = Architecture(20, (4, 4, 8, 8), 3, 10, "bottleneck", (1, 2, 1, 2))
    prior = ResNet(arch, batchnorm=False).eval()
    teacher = copy.deepcopy(prior)
    settings = dict(inr_hidden=16, inr_depth=2, frequencies=2, separate_bias=True, alpha_scaling=True)
    net = MetamorphicNetwork(prior, [(1, 1), (3, 1)], finetune_head=True, **settings)
    with torch.no_grad():
        net.alphas.fill_(0.5)
        net.prior.fc.weight.add_(0.3)
    teacher = net.layout_teacher(teacher)
    generator = torch.Generator().manual_seed(2)
    data = [(torch.randn(4, 3, 32, 32, generator=generator), torch.randint(0, 10, (4,), generator=generator))] * 3
    units = [WorkUnit(index, gamma) for index, gamma in enumerate(GAMMAS)]
    objective = objective_of(config)
    expected, expected_parts = gradients(
        net, lambda: one_at_a_time(net, 3, units, data, len(GAMMAS), objective, config.seed, teacher)
    )
    actual, actual_parts = gradients(
        net,
        lambda: accumulate_gradients(
            net, 3, units, data, len(GAMMAS), objective, config.seed, torch.device("cpu"), teacher
        ),
    )
    assert actual_parts == pytest.approx(expected_parts, rel=1e-5, abs=1e-7) and expected_parts["distill"] > 1e-4
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
