import pytest
import torch

from raymeta.errors import ConfigError
from raymeta.method.models import (
    Architecture,
    ResNet,
    compression_ratio,
    count_params_macs,
    fold_batchnorm,
    hidden_width,
    resolve_blocks,
)


def randomise_batchnorm(model):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)


def test_folded_network_computes_the_same_outputs():
    torch.manual_seed(0)
    model = ResNet(Architecture(20, (8, 16, 32), 3, 10))
    randomise_batchnorm(model)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(6, 3, 16, 16)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_folding_uses_the_statistics_present_at_fold_time():
    """The reference code folded before loading the checkpoint; folding must see the loaded statistics."""
    arch = Architecture(8, (4, 4, 4), 1, 3)
    trained = ResNet(arch)
    randomise_batchnorm(trained)
    fresh = ResNet(arch)
    fresh.load_state_dict(trained.state_dict())
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(fold_batchnorm(fresh.eval())(x), trained.eval()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 7, 16, 64, 256])
def test_gamma_and_width_round_trip(channels):
    for hidden in range(1, 2 * channels + 1):
        assert hidden_width(channels, compression_ratio(hidden, channels)) == hidden
    assert hidden_width(64, 0.0) == 64 and hidden_width(64, 0.5) == 32 and hidden_width(64, -0.25) == 80


@pytest.mark.parametrize("gamma", [1.0, 1.5, -1.5, float("nan"), float("inf")])
def test_gamma_out_of_range_is_rejected(gamma):
    with pytest.raises(ConfigError, match="γ"):
        hidden_width(16, gamma)


def test_width_that_rounds_to_zero_is_rejected_with_the_limit():
    with pytest.raises(ConfigError, match="no hidden channel.*width 4"):
        hidden_width(4, 0.9)


def test_parameter_and_mac_counts_match_a_real_network():
    arch = Architecture(14, (8, 16, 32), 3, 10)
    hidden = {(0, 1): 5, (2, 1): 40}
    model = ResNet(arch, batchnorm=False, hidden_widths=hidden)
    params, macs = count_params_macs(arch, hidden, 16)
    assert params == sum(p.numel() for p in model.parameters())
    counted = []

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            counted.append(output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1])
        else:
            counted.append(module.in_features * module.out_features)

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(hook)
    model(torch.randn(1, 3, 16, 16))
    assert macs == sum(counted)


def test_block_names_resolve_and_bad_ones_are_explained():
    arch = Architecture(56, (16, 32, 64), 3, 100)
    assert resolve_blocks(["stage3.block1-7"], arch) == [(2, b) for b in range(1, 8)]
    assert resolve_blocks(["stage3"], arch) == [(2, b) for b in range(1, 8)]
    assert resolve_blocks(["last"], arch) == [(2, 8)]
    assert len(resolve_blocks(["full"], arch)) == 3 * 9 - 3 - 1
    with pytest.raises(ConfigError, match="projection"):
        resolve_blocks(["stage2.block0"], arch)
    with pytest.raises(ConfigError, match="outside stage 3"):
        resolve_blocks(["stage3.block9"], arch)
    with pytest.raises(ConfigError, match="not understood"):
        resolve_blocks(["block3"], arch)
    with pytest.raises(ConfigError, match="twice"):
        resolve_blocks(["stage3.block1", "stage3.block1-2"], arch)


def test_architecture_rejects_bad_depth():
    with pytest.raises(ConfigError, match="6n\\+2"):
        Architecture(21, (16, 32, 64), 3, 10)


def test_the_seams_compose_to_forward_exactly():
    """forward = forward_head ∘ forward_features, and the features are the stem then every block in forward order,
    however the blocks are split (the deploy search runs them in two parts)."""
    torch.manual_seed(0)
    model = ResNet(Architecture(14, (8, 16, 32), 3, 10))
    randomise_batchnorm(model)
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (4, 32, 4, 4)
        assert torch.equal(model.forward_head(features), model(x))
        h = torch.relu(model.stem(x))
        for stage in model.stages:
            for block in stage:
                h = block(h)
        assert torch.equal(features, h)
        torch.testing.assert_close(model.forward_head(h), model.fc(h.mean(dim=(2, 3))))  # the pool is global
        for split in range(len(model.arch.block_positions()) + 1):
            front = model.forward_blocks(model.forward_stem(x), stop=split)
            assert torch.equal(model.forward_blocks(front, start=split), features)


def test_a_metamorphic_network_computes_its_blocks_between_the_priors_stem_and_head():
    """The metamorphic forward through the seams: the prior's stem, its blocks or the generated ones (α-scaled
    branch), the prior's head; and the materialised ResNet computes the same function."""
    from raymeta.method.metamorphic import MetamorphicNetwork

    torch.manual_seed(0)
    prior = ResNet(Architecture(14, (8, 8, 16), 3, 4), batchnorm=False).eval()
    blocks = [(1, 1), (2, 1)]
    net = MetamorphicNetwork(
        prior,
        blocks,
        inr_hidden=16,
        inr_depth=2,
        frequencies=3,
        separate_bias=True,
        alpha_scaling=True,
        finetune_head=True,
    ).eval()
    with torch.no_grad():
        net.alphas.copy_(torch.tensor([0.7, -0.5]))
    net.cpu_channels_last = False  # the layout the reference below computes in
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        weights = net.generate(0.5)
        h = torch.relu(prior.stem(x))
        for s, b in prior.arch.block_positions():
            if (s, b) in blocks:
                name = f"stages.{s}.{b}"
                inner = torch.relu(
                    torch.nn.functional.conv2d(
                        h, weights[f"{name}.conv1.weight"], weights[f"{name}.conv1.bias"], padding=1
                    )
                )
                branch = torch.nn.functional.conv2d(
                    inner, weights[f"{name}.conv2.weight"], weights[f"{name}.conv2.bias"], padding=1
                )
                h = torch.relu(h + net.alphas[blocks.index((s, b))] * branch)
            else:
                h = prior.block(s, b)(h)
        expected = prior.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1))
        assert torch.equal(net(x, weights), expected)
        torch.testing.assert_close(net.materialize(0.5)(x), expected, rtol=1e-4, atol=1e-5)
