"""The batched evaluation of many γ against the plain one: one γ at a time, ``generate`` then the whole loader."""

import pytest
import torch
from torch.utils.data import TensorDataset

from raymeta.io.data import make_loader
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import Architecture, ResNet
from raymeta.method.scoring import accuracies_and_losses, accuracy_and_loss
from raymeta.stages.evaluate import evaluate_gammas

GAMMAS = [-0.25, 0.0, 0.25, 0.5, 0.75]


def small_network(base: str) -> MetamorphicNetwork:
    torch.manual_seed(0)
    prior = ResNet(Architecture(14, (8, 8, 16), 3, 4), batchnorm=False).eval()
    net = MetamorphicNetwork(
        prior,
        [(0, 1), (1, 1), (2, 1)],
        inr_hidden=16,
        inr_depth=2,
        frequencies=3,
        separate_bias=True,
        alpha_scaling=True,
        finetune_head=True,
        base=base,
    )
    with torch.no_grad():
        net.alphas.copy_(torch.tensor([0.6, -0.4, 0.8]))  # live generated blocks (α starts at 0)
    return net.eval()


def gamma_by_gamma(
    net: MetamorphicNetwork, loader, samples: int, noise: float, seed: int, every_sample: bool = False
) -> list[tuple[float, float]]:
    """The reference: per γ, its own generator seeded with ``seed``, ``generate``, then every batch."""
    scores = []
    with torch.no_grad():
        for gamma in GAMMAS:
            weights = net.generate(
                gamma,
                samples=samples,
                noise=noise if samples > 1 or every_sample else 0.0,
                generator=torch.Generator().manual_seed(seed),
            )
            scores.append(accuracy_and_loss(lambda x, weights=weights: net(x, weights), loader, "cpu"))
    return scores


def test_evaluate_gammas_equals_the_gamma_by_gamma_evaluation():
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.randn(70, 3, 8, 8, generator=generator), torch.randint(0, 4, (70,), generator=generator)
    loader = make_loader(TensorDataset(images, labels), 32, shuffle=False)  # three batches, the last partial
    noise_free = None
    for base, samples, every_sample in (
        ("none", 3, False),
        ("prior", 3, False),
        ("prior", 1, False),
        ("prior", 1, True),
    ):
        net = small_network(base)
        rows = evaluate_gammas(
            net, loader, "cpu", GAMMAS, samples=samples, noise=0.4, seed=5, image_size=8, every_sample=every_sample
        )
        reference = gamma_by_gamma(net, loader, samples, 0.4, 5, every_sample)
        if samples == 1:  # eval.noise every_sample: K = 1 is one noisy sample, not the noise-free weights
            losses = [row["loss"] for row in rows]
            assert noise_free is None or losses != noise_free
            noise_free = losses
        assert len({accuracy for accuracy, _ in reference}) > 1, "the γ must differ for the comparison to mean much"
        for gamma, row, (accuracy, loss) in zip(GAMMAS, rows, reference, strict=True):
            assert (row["gamma"], row["samples"]) == (gamma, samples)
            assert row["accuracy"] == accuracy
            assert abs(row["loss"] - loss) <= 1e-5 * loss
            assert (row["params"], row["macs"]) == net.params_macs(gamma, 8)
    assert evaluate_gammas(net, loader, "cpu", [], samples=3, noise=0.4, seed=5, image_size=8) == []


def test_forward_is_the_frozen_prefix_then_the_rest():
    net = small_network("prior")
    net.set_active_blocks(2)  # stage1.block1 and stage2.block1: the prefix is the stem and stage1.block0
    x = torch.randn(4, 3, 8, 8)
    weights = net.generate(0.25)
    with torch.no_grad():
        assert torch.equal(net.forward_after_prefix(net.frozen_prefix(x), weights), net(x, weights))
        expected = net.prior.block(0, 0)(torch.relu(net.prior.stem(x)))
        prefix = net.frozen_prefix(x)  # channels-last inside on a CPU: equal up to rounding, the usual layout out
        assert torch.allclose(prefix, expected, atol=1e-6) and prefix.is_contiguous()
        net.cpu_channels_last = False
        assert torch.equal(net.frozen_prefix(x), expected)


def test_scoring_counts_every_example_once_whatever_the_batches():
    """Hand-made logits: 3 of 5 right; the mean loss is the per-example mean, not a mean of batch means."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0], [4.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0, 0])
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    for cut in (1, 2, 5):
        batches = [(logits[i : i + cut], labels[i : i + cut]) for i in range(0, 5, cut)]
        accuracy, loss = accuracy_and_loss(lambda x: x, batches)
        assert accuracy == 3 / 5
        assert abs(loss - expected) <= 1e-6
    scale = accuracies_and_losses([lambda x: x, lambda x: -x], [(logits, labels)], prepare=lambda x: 2 * x)
    assert [accuracy for accuracy, _ in scale] == [3 / 5, 2 / 5]
    with pytest.raises(ValueError, match="no examples"):
        accuracy_and_loss(lambda x: x, [])
