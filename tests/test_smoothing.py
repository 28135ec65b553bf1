import torch

from raymeta.method.models import Architecture, ResNet, fold_batchnorm
from raymeta.method.smoothing import permutation_groups, smooth_network, total_variation


def trained_like_network(arch):
    torch.manual_seed(1)
    model = ResNet(arch)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2.0)
    return fold_batchnorm(model.eval())


def test_permuted_network_has_same_outputs_and_lower_total_variation():
    arch = Architecture(14, (8, 16, 16), 3, 5)
    folded = trained_like_network(arch)
    smoothed, report = smooth_network(folded)
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(smoothed(x), folded(x), rtol=1e-4, atol=1e-5)
    assert report.total_variation_before == total_variation(folded)
    assert report.total_variation_after < report.total_variation_before
    assert report.total_variation_after == total_variation(smoothed)
    # something was actually permuted
    assert not torch.equal(smoothed.stem.conv.weight, folded.stem.conv.weight)


def test_groups_cover_every_channel_axis_except_image_and_classes():
    arch = Architecture(20, (8, 16, 32), 3, 10)
    model = ResNet(arch, batchnorm=False)
    members = [m for group in permutation_groups(arch) for m in group]
    assert len(members) == len(set(members)), "a tensor axis must belong to exactly one group"
    expected = set()
    for name, tensor in model.state_dict().items():
        expected.add((name, 0))
        if tensor.dim() >= 2:
            expected.add((name, 1))
    expected -= {("stem.conv.weight", 1), ("fc.weight", 0), ("fc.bias", 0)}
    assert set(members) == expected


def test_shuffled_smooth_channels_are_put_back_in_order():
    """Hidden channels that vary smoothly, then shuffled: smoothing recovers a much lower variation."""
    model = ResNet(Architecture(8, (4, 4, 4), 1, 2), batchnorm=False, hidden_widths={(0, 0): 64})
    block = model.block(0, 0)
    with torch.no_grad():
        ramp = torch.linspace(0, 1, 4)
        levels = torch.linspace(-1, 1, 64)[torch.randperm(64, generator=torch.Generator().manual_seed(0))]
        block.conv1.weight.copy_(levels.reshape(64, 1, 1, 1).expand_as(block.conv1.weight))
        block.conv2.weight.copy_(levels.reshape(1, 64, 1, 1).expand_as(block.conv2.weight) * ramp.reshape(4, 1, 1, 1))
    smoothed, report = smooth_network(model)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(smoothed(x), model(x), rtol=1e-4, atol=1e-5)
    hidden = smoothed.block(0, 0).conv1.weight[:, 0, 0, 0]
    steps = (hidden[1:] - hidden[:-1]).abs()
    assert torch.allclose(steps, torch.full_like(steps, 2 / 63), atol=1e-5), "hidden channels must be sorted"
