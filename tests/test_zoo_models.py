"""torchvision's ResNet family (BasicBlock and Bottleneck) holds every property the CIFAR ResNets are tested for:
zoo state dicts load as they are, folding and smoothing keep the function, the counts match a real network,
γ = 0 reproduces the prior, h = 2C computes the prior's function, materialising and exporting keep it."""

import pytest
import torch

from raymeta.errors import ConfigError
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import (
    Architecture,
    ResNet,
    block_convs,
    count_params_macs,
    fold_batchnorm,
    resolve_blocks,
)
from raymeta.method.schedule import initialise_new_blocks
from raymeta.method.smoothing import permutation_groups, smooth_network, total_variation

# Small members of each family (blocks per stage 1, 2, 1, 2; 32 px inputs): stage2.block1 and stage4.block1 are
# the blocks without a projection.
FAMILIES = {
    "basic": Architecture(14, (8, 8, 16, 16), 3, 5, "basic", (1, 2, 1, 2)),
    "bottleneck": Architecture(20, (4, 4, 8, 8), 3, 5, "bottleneck", (1, 2, 1, 2)),
}
SIZE = 32


def randomise_batchnorm(model):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)


def folded_prior(arch):
    torch.manual_seed(0)
    model = ResNet(arch)
    randomise_batchnorm(model)
    return fold_batchnorm(model.eval())


@pytest.mark.slow  # torchvision itself takes ~2 s to import: the fast tier stays under a minute
@pytest.mark.parametrize("block, layers", [("basic", [1, 1, 1, 2]), ("bottleneck", [1, 1, 1, 1])])
def test_torchvision_state_dicts_load_as_they_are_and_compute_the_same(block, layers):
    import torchvision

    kind = torchvision.models.resnet.BasicBlock if block == "basic" else torchvision.models.resnet.Bottleneck
    torch.manual_seed(0)
    zoo = torchvision.models.resnet.ResNet(kind, layers, num_classes=7)
    randomise_batchnorm(zoo)
    depth = (2 if block == "basic" else 3) * sum(layers) + 2
    model = ResNet(Architecture(depth, (64, 128, 256, 512), 3, 7, block, tuple(layers)))
    model.load_state_dict(zoo.state_dict())  # strict: the same names and shapes
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), zoo.eval()(x))


@pytest.mark.parametrize("family", FAMILIES)
def test_folding_and_smoothing_keep_the_function(family):
    arch = FAMILIES[family]
    torch.manual_seed(0)
    model = ResNet(arch)
    randomise_batchnorm(model)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 3, SIZE, SIZE)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    smoothed, report = smooth_network(folded)
    torch.testing.assert_close(smoothed(x), folded(x), rtol=1e-4, atol=1e-4)
    assert report.total_variation_after < report.total_variation_before == total_variation(folded)
    assert not torch.equal(smoothed.conv1.weight, folded.conv1.weight)


@pytest.mark.parametrize("family", FAMILIES)
def test_smoothing_groups_cover_every_channel_axis_except_image_and_classes(family):
    arch = FAMILIES[family]
    members = [m for group in permutation_groups(arch) for m in group]
    assert len(members) == len(set(members)), "a tensor axis must belong to exactly one group"
    expected = set()
    for name, tensor in ResNet(arch, batchnorm=False).state_dict().items():
        expected |= {(name, 0)} | ({(name, 1)} if tensor.dim() >= 2 else set())
    assert set(members) == expected - {("conv1.weight", 1), ("fc.weight", 0), ("fc.bias", 0)}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batchnorm", [False, True])
def test_parameter_and_mac_counts_match_a_real_network(family, batchnorm):
    arch = FAMILIES[family]
    hidden = {(1, 1): 3, (3, 1): 13}
    model = ResNet(arch, batchnorm=batchnorm, hidden_widths=hidden).eval()
    params, macs = count_params_macs(arch, hidden, SIZE, batchnorm=batchnorm)
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
    model(torch.randn(1, 3, SIZE, SIZE))
    assert macs == sum(counted)


def test_blocks_of_four_stages_resolve_and_projections_are_refused():
    arch = FAMILIES["bottleneck"]
    assert resolve_blocks(["stage2.block1", "last"], arch) == [(1, 1), (3, 1)]
    assert resolve_blocks(["full"], arch) == [(1, 1)]  # the last block is the fine-tuned one
    with pytest.raises(ConfigError, match="projection"):
        resolve_blocks(["stage1.block0"], arch)  # a Bottleneck network's first block projects 4→16 channels
    with pytest.raises(ConfigError, match="stages 1..4"):
        resolve_blocks(["stage5"], arch)
    with pytest.raises(ConfigError, match="depth 20, not 21"):
        Architecture(21, (4, 4, 8, 8), 3, 5, "bottleneck", (1, 2, 1, 2))


def metamorphic(arch, **options) -> MetamorphicNetwork:
    torch.manual_seed(0)
    settings = dict(inr_hidden=16, inr_depth=2, frequencies=2, separate_bias=True, alpha_scaling=True)
    settings.update(options)
    return MetamorphicNetwork(folded_prior(arch), [(1, 1), (3, 1)], finetune_head=True, **settings)


@pytest.mark.parametrize("family", FAMILIES)
def test_gamma_zero_is_the_prior_and_twice_the_width_computes_its_function(family):
    arch = FAMILIES[family]
    net = metamorphic(arch, base="prior")
    initialise_new_blocks(net, 0, 2, seed=0, stage=0, alpha_init=1.0, inr_init=True)
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        prior = net.prior(x)
        torch.testing.assert_close(net(x, net.generate(0.0)), prior)
        doubled = net.generate(-1.0)  # h = 2C: every hidden channel twice
        torch.testing.assert_close(net(x, doubled), prior, atol=1e-5, rtol=1e-5)
        assert (net(x, net.generate(0.5)) - prior).abs().max() > 1e-3
    for conv in block_convs(arch):  # every generated conv at its kernel size; hidden axes doubled
        weight = doubled[f"layer4.1.{conv.name}.weight"]
        reference = net.prior.layer4[1].get_submodule(conv.name).weight
        assert weight.shape[2:] == (conv.kernel, conv.kernel)
        assert weight.shape[0] == reference.shape[0] * (2 if conv.hidden_out else 1)
        assert weight.shape[1] == reference.shape[1] * (2 if conv.hidden_in else 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_materialised_networks_compute_the_generated_one(family):
    net = metamorphic(FAMILIES[family])
    with torch.no_grad():
        net.alphas.copy_(torch.tensor([0.7, -0.3]))
    x = torch.randn(3, 3, SIZE, SIZE)
    for gamma in (0.0, 0.5, (0.25, -0.5)):
        plain = net.materialize(gamma)
        with torch.no_grad():
            torch.testing.assert_close(plain(x), net(x, net.generate(gamma)), rtol=1e-4, atol=1e-5)


def test_an_input_map_travels_with_the_architecture_outside_the_state_dict():
    arch = Architecture(14, (8, 8, 16), 3, 5, input_scale=(2.0, 1.0, 0.5), input_shift=(0.1, 0.0, -0.1))
    plain = ResNet(Architecture(14, (8, 8, 16), 3, 5)).eval()
    mapped = ResNet(arch).eval()
    mapped.load_state_dict(plain.state_dict())  # the same keys
    x = torch.randn(2, 3, 16, 16)
    scale, shift = torch.tensor([2.0, 1.0, 0.5]).view(1, 3, 1, 1), torch.tensor([0.1, 0.0, -0.1]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(mapped(x), plain(x * scale + shift))
        torch.testing.assert_close(fold_batchnorm(mapped)(x), mapped(x), rtol=1e-4, atol=1e-5)
    import dataclasses
    import json

    record = json.loads(json.dumps(dataclasses.asdict(arch)))  # as an export's network.json holds it
    assert Architecture.from_record(record) == arch


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.family=resnet50", "model.depth=56"], "model.depth=56 is not allowed: left out with model.family"),
        (["model.family=resnet18", "model.stage_blocks=[1,1,1]"], "four positive integers"),
        (["model.stage_blocks=[1,1,1,1]"], "null with model.family=cifar"),
        (["model.family=vgg16"], "cifar, resnet18, resnet34, resnet50, resnet101"),
        (["pretrain.epochs=0"], "0 only with pretrain.init_from"),
        (["pretrain.init_from=a.pt", "pretrain.input_mean=[0.5]"], "given together with pretrain.input_std"),
    ],
)
def test_model_and_import_settings_are_checked(overrides, message):
    from raymeta.config.loading import load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_a_torchvision_family_is_its_architecture_and_its_own_hash():
    from raymeta.config.loading import load_config
    from raymeta.config.schema import Config
    from raymeta.stages.runtime import model_architecture

    config = load_config(None, ["model.family=resnet50", "model.stage_blocks=[1,2,1,2]", "model.base_width=4"])
    assert model_architecture(config, 3, 5) == Architecture(20, (4, 8, 16, 32), 3, 5, "bottleneck", (1, 2, 1, 2))
    assert config.hash() != Config().hash() and config.prior_hash() != Config().prior_hash()
    assert model_architecture(load_config(None, ["model.family=resnet18"]), 3, 1000).depth == 18


@pytest.mark.slow  # Torch-Pruning's graph of each network: seconds on two busy cores
@pytest.mark.parametrize("family", FAMILIES)
def test_the_pruning_and_skip_baselines_take_every_family(family):
    """Torch-Pruning cuts every hidden axis of a block to the width γ gives (a Bottleneck's two); the skip network
    is the prior without the blocks' branches, its parameters counted by formula."""
    from raymeta.stages.baselines import prune_to_gamma, skip_network, skip_params_macs

    arch = FAMILIES[family]
    torch.manual_seed(0)
    prior = ResNet(arch).eval()
    blocks = [(1, 1), (3, 1)]
    pruned = prune_to_gamma(prior, blocks, 0.5, "l1")
    for conv in block_convs(arch):
        weight = pruned.layer4[1].get_submodule(conv.name).weight
        full = prior.layer4[1].get_submodule(conv.name).weight
        assert weight.shape[0] == full.shape[0] // (2 if conv.hidden_out else 1)
        assert weight.shape[1] == full.shape[1] // (2 if conv.hidden_in else 1)
    skipped = skip_network(fold_batchnorm(prior), blocks)
    assert skip_params_macs(arch, blocks, SIZE)[0] == sum(p.numel() for p in skipped.parameters())
    assert isinstance(skipped.layer4[1], torch.nn.Identity)


def groups_the_blocks_imply(arch):
    """The channel groups as the block definition implies them: each pair of consecutive convs of a block shares
    its hidden channels; a stage's stream couples its stem or projection output, every block's last conv's output,
    the inputs of the convs that read it and, for the last stage, the classifier's input."""
    convs = block_convs(arch)
    groups, stream = [], {(f"{arch.stem_convs()[0]}.weight", 0), (f"{arch.stem_convs()[0]}.bias", 0)}
    for s, b in arch.block_positions():
        prefix = arch.module_prefix(s, b)
        for first, second in zip(convs, convs[1:], strict=False):
            groups.append(
                {(f"{prefix}.{first.name}.weight", 0), (f"{prefix}.{first.name}.bias", 0)}
                | {(f"{prefix}.{second.name}.weight", 1)}
            )
        stream.add((f"{prefix}.{convs[0].name}.weight", 1))
        if arch.has_projection(s, b):
            projection = f"{prefix}.{arch.shortcut_name()}.0"
            groups.append(stream | {(f"{projection}.weight", 1)})
            stream = {(f"{projection}.weight", 0), (f"{projection}.bias", 0)}
        stream |= {(f"{prefix}.{convs[-1].name}.weight", 0), (f"{prefix}.{convs[-1].name}.bias", 0)}
    groups.append(stream | {("fc.weight", 1)})
    return {frozenset(group) for group in groups}


@pytest.mark.parametrize("family", ["cifar", *FAMILIES])
def test_the_dependency_graph_finds_the_groups_the_blocks_imply(family):
    """permutation_groups asks Torch-Pruning's DependencyGraph; its groups are those of the block definition (a
    Bottleneck's two hidden sets apart, each stage's stream across its residual additions)."""
    arch = Architecture(14, (4, 8, 8), 3, 5) if family == "cifar" else FAMILIES[family]
    found = permutation_groups(arch)
    assert {frozenset(group) for group in found} == groups_the_blocks_imply(arch)
    assert all(len(set(group)) == len(group) for group in found)
