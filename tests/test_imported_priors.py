"""pretrain.init_from: torchvision zoo weights from a prepared $TORCH_HOME, a torch.hub entry from a prepared hub
folder, .pt and .safetensors files the tests write; names mapped, shapes checked, loading weights-only, the
prior's normalisation carried. Nothing here downloads."""

import types

import pytest
import torch
from conftest import BASE

from raymeta.config.loading import load_config
from raymeta.errors import ConfigError
from raymeta.io.artifacts import PriorCheckpoint
from raymeta.io.progress import Progress
from raymeta.io.weights import import_weights, parse_source
from raymeta.method.models import Architecture, ResNet, torchvision_architecture
from raymeta.stages.pretrain import pretrain
from raymeta.stages.runtime import input_map

QUIET = Progress(stream=open("/dev/null", "w"))
CIFAR = Architecture(8, (4, 4, 8), 3, 4)


def torchvision_named(state: dict) -> dict:
    """A CIFAR ResNet's state dict in torchvision's names, as torch.hub's CIFAR ResNets write theirs."""
    renamed = {}
    for name, tensor in state.items():
        name = name.replace("stem.conv.", "conv1.").replace("stem.bn.", "bn1.").replace(".shortcut.", ".downsample.")
        if name.startswith("stages."):
            _, stage, rest = name.split(".", 2)
            name = f"layer{int(stage) + 1}.{rest}"
        renamed[f"module.{name}"] = tensor  # as saved from DataParallel
    return renamed


@pytest.mark.parametrize(
    "source, kind",
    [
        ("torchvision:resnet18", "torchvision"),
        ("torchvision:resnet50:IMAGENET1K_V2", "torchvision"),
        ("hub:chenyaofo/pytorch-cifar-models:master:cifar10_resnet20", "hub"),
        ("weights/prior.safetensors", "file"),
    ],
)
def test_sources_parse(source, kind):
    assert parse_source(source)[0] == kind


@pytest.mark.parametrize(
    "source, message",
    [
        ("resnet18", "torchvision:NAME"),
        ("hub:chenyaofo/pytorch-cifar-models:cifar10_resnet20", "names no branch or tag"),
        ("weights/prior.bin", "state-dict file ending in .pt, .pth, .safetensors"),
    ],
)
def test_bad_sources_are_one_clear_error(source, message):
    with pytest.raises(ConfigError, match=message):
        parse_source(source)


def test_a_pt_file_in_torchvision_names_loads_into_a_cifar_resnet_and_computes_the_same(tmp_path):
    torch.manual_seed(0)
    source = ResNet(CIFAR).eval()
    path = tmp_path / "prior.pt"
    torch.save({"state_dict": torchvision_named(source.state_dict())}, path)
    target = ResNet(CIFAR)
    imported = import_weights(str(path), CIFAR, target.state_dict())
    target.load_state_dict(imported.state_dict)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x), source(x))
    assert imported.provenance["kind"] == "file" and imported.provenance["bytes"] == path.stat().st_size


def test_a_safetensors_file_loads_into_a_bottleneck_network(tmp_path):
    from safetensors.torch import save_file

    arch = torchvision_architecture("resnet50", 3, 5, stage_blocks=(1, 1, 1, 1), base_width=4)
    source = ResNet(arch)
    path = tmp_path / "prior.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    imported = import_weights(str(path), arch, ResNet(arch).state_dict())
    for name, tensor in source.state_dict().items():
        assert torch.equal(imported.state_dict[name], tensor)


def test_the_first_mismatch_missing_or_extra_tensor_is_named(tmp_path):
    state = ResNet(CIFAR).state_dict()
    expected = ResNet(CIFAR).state_dict()
    wrong = dict(state, **{"fc.weight": torch.zeros(10, 8)})
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ConfigError, match=r"fc.weight has shape \[10, 8\] in the weights but \[4, 8\]"):
        import_weights(str(tmp_path / "wrong.pt"), CIFAR, expected)
    torch.save({k: v for k, v in state.items() if k != "stem.bn.running_var"}, tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="no tensor 'stem.bn.running_var'"):
        import_weights(str(tmp_path / "missing.pt"), CIFAR, expected)
    torch.save(dict(state, extra=torch.zeros(1)), tmp_path / "extra.pt")
    with pytest.raises(ConfigError, match="holds 'extra'"):
        import_weights(str(tmp_path / "extra.pt"), CIFAR, expected)
    with pytest.raises(ConfigError, match="does not exist"):
        import_weights(str(tmp_path / "absent.pt"), CIFAR, expected)


def test_a_file_that_needs_pickled_objects_is_refused_without_running_it(tmp_path):
    torch.save({"state_dict": types.SimpleNamespace(weights=1)}, tmp_path / "pickled.pt")
    with pytest.raises(ConfigError, match="loads weights-only"):
        import_weights(str(tmp_path / "pickled.pt"), CIFAR, ResNet(CIFAR).state_dict())


@pytest.mark.slow  # a full-size ResNet-18 written and read (45 MB): about a second
def test_zoo_weights_come_from_the_torch_home_cache(tmp_path, monkeypatch):
    """torchvision's resnet18 weights, read from the file name torchvision gives the weights' URL under
    $TORCH_HOME/hub/checkpoints (what a connected machine downloads once)."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    torch.manual_seed(0)
    zoo = torchvision.models.resnet18()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(zoo.state_dict(), tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1])
    arch = torchvision_architecture("resnet18", 3, 1000)
    imported = import_weights("torchvision:resnet18:IMAGENET1K_V1", arch, ResNet(arch).state_dict())
    for name, tensor in zoo.state_dict().items():
        assert torch.equal(imported.state_dict[name], tensor), name
    assert imported.provenance["url"] == weights.url


HUBCONF = '''
"""A stand-in for chenyaofo/pytorch-cifar-models written by the test: a CIFAR ResNet-8 in torchvision's names."""
import torch
from torch import nn

dependencies = ["torch"]


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def cifar10_resnet8(pretrained=False):
    torch.manual_seed(7)
    model = nn.Module()
    model.conv1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
    model.bn1 = nn.BatchNorm2d(4)
    model.layer1 = nn.Sequential(Block(4, 4, 1))
    model.layer2 = nn.Sequential(Block(4, 4, 2))
    model.layer3 = nn.Sequential(Block(4, 8, 2))
    model.fc = nn.Linear(8, 4)
    return model
'''


def test_a_hub_entry_comes_from_the_hub_folder_and_its_normalisation_travels(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    (hub / "someone_cifar-models_master").mkdir(parents=True)
    (hub / "someone_cifar-models_master" / "hubconf.py").write_text(HUBCONF)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    source = "hub:someone/cifar-models:master:cifar10_resnet8"
    config = load_config(
        None,
        BASE
        + [
            f"run_dir={tmp_path / 'run'}",
            "model.depth=8",
            "model.widths=[4,4,8]",
            f"pretrain.init_from={source}",
            "pretrain.epochs=0",
        ],
    )
    path = pretrain(config, QUIET)
    prior = PriorCheckpoint.load(path, expect_hash=config.prior_hash())
    assert prior.done and prior.source == {
        "source": source,
        "kind": "hub",
        "repo": "someone/cifar-models",
        "ref": "master",
        "entry": "cifar10_resnet8",
    }
    assert set(prior.metrics) == {"validation_accuracy", "validation_loss"}
    assert prior.state_dict["stages.2.0.shortcut.0.weight"].shape == (8, 4, 1, 1)  # torchvision names mapped

    with pytest.raises(ConfigError, match="could not load cifar10_resnet99"):
        import_weights("hub:someone/cifar-models:master:cifar10_resnet99", CIFAR, ResNet(CIFAR).state_dict())

    cifar = types.SimpleNamespace(name="cifar10", in_channels=3, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.1))
    mapped = load_config(None, [f"pretrain.init_from={source}", "pretrain.input_mean=[0.4,0.4,0.4]",
                                "pretrain.input_std=[0.5,0.2,0.2]"])  # fmt: skip
    scale, shift = input_map(mapped, cifar)
    torch.testing.assert_close(torch.tensor(scale), torch.tensor([0.5, 1.0, 0.5]))
    torch.testing.assert_close(torch.tensor(shift), torch.tensor([0.2, 0.0, -0.5]))
    with pytest.raises(ConfigError, match="synthetic does not record"):
        input_map(mapped, types.SimpleNamespace(name="synthetic", in_channels=3, mean=None, std=None))
