"""Imported weights: a torchvision model's zoo weights, a torch.hub entry, or a state-dict file, read safely and
mapped onto a ResNet's names.

A source is named by ``pretrain.init_from``: ``torchvision:NAME[:WEIGHTS]``, ``hub:OWNER/REPO:REF:ENTRY`` or a
path ending in ``.pt``, ``.pth`` or ``.safetensors``. Files and zoo downloads are read weights-only
(``torch.load(weights_only=True)``, safetensors without pickle); a hub entry runs its repository's
``hubconf.py``, which is what torch.hub is. Downloads go where torch puts them (``$TORCH_HOME``) and are read
from there when present, so a prepared cache needs no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from raymeta.errors import ConfigError
from raymeta.method.models import Architecture

STATE_FILE_SUFFIXES = (".pt", ".pth", ".safetensors")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImportedWeights:
    """A state dict in the target network's names, and where it came from."""

    state_dict: dict[str, torch.Tensor]
    provenance: dict
    """``source`` (what init_from said), ``kind`` (torchvision, hub, file) and what pins it down: the weights'
    URL, the hub repository and entry, or the file's path and size."""


def parse_source(source: str) -> tuple[str, tuple[str, ...]]:
    """``(kind, parts)`` of an init_from value; one clear error for anything else."""
    allowed = (
        "torchvision:NAME[:WEIGHTS] (e.g. torchvision:resnet18:IMAGENET1K_V1), hub:OWNER/REPO:REF:ENTRY (e.g. "
        "hub:chenyaofo/pytorch-cifar-models:master:cifar10_resnet20) or a state-dict file ending in "
        + ", ".join(STATE_FILE_SUFFIXES)
    )
    if source.startswith("torchvision:"):
        parts = tuple(source.split(":")[1:])
        if len(parts) in (1, 2) and all(parts):
            return "torchvision", parts
    elif source.startswith("hub:"):
        match = re.fullmatch(r"hub:([\w.-]+/[\w.-]+):([^:]+):([\w.]+)", source)
        if match:
            return "hub", match.groups()
        if re.fullmatch(r"hub:[\w.-]+/[\w.-]+:[\w.]+", source):
            raise ConfigError(
                f"pretrain.init_from={source!r} names no branch or tag: write hub:OWNER/REPO:REF:ENTRY (e.g. "
                "hub:chenyaofo/pytorch-cifar-models:master:cifar10_resnet20); without one, torch.hub asks GitHub"
            )
    elif source.endswith(STATE_FILE_SUFFIXES):
        return "file", (source,)
    raise ConfigError(f"pretrain.init_from={source!r} is not allowed: {allowed}")


def torchvision_weights(name: str, weights: str | None):
    """The ``torchvision.models`` weights enum member of model ``name`` (``DEFAULT`` when ``weights`` is None)."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (KeyError, ValueError):
        raise ConfigError(
            f"pretrain.init_from: torchvision has no model {name!r}; its ResNets are resnet18, resnet34, resnet50, "
            "resnet101"
        ) from None
    try:
        return enum[weights or "DEFAULT"]
    except KeyError:
        raise ConfigError(
            f"pretrain.init_from: torchvision's {name} has no weights {weights!r}; allowed: "
            + ", ".join(["DEFAULT", *enum.__members__])
        ) from None


def weights_normalisation(source: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (mean, std) of [0, 1] pixels a torchvision source's weights were trained with; None for other sources
    (they do not say: give pretrain.input_mean and input_std)."""
    kind, parts = parse_source(source)
    if kind != "torchvision":
        return None
    transforms = torchvision_weights(parts[0], parts[1] if len(parts) > 1 else None).transforms()
    return tuple(float(v) for v in transforms.mean), tuple(float(v) for v in transforms.std)


def read_source(source: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict a source holds, as its own names, and its provenance."""
    kind, parts = parse_source(source)
    if kind == "torchvision":
        import torchvision

        name = parts[0]
        weights = torchvision_weights(name, parts[1] if len(parts) > 1 else None)
        try:
            model = torchvision.models.get_model(name, weights=weights)  # from $TORCH_HOME when cached
        except OSError as error:  # no network and no cached file
            raise ConfigError(
                f"pretrain.init_from={source!r}: the weights {weights.url} are neither cached under $TORCH_HOME "
                f"nor downloadable here ({error}); fetch them on a connected machine into "
                f"$TORCH_HOME/hub/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
            ) from None
        return model.state_dict(), {"kind": kind, "model": name, "weights": str(weights), "url": weights.url}
    if kind == "hub":
        repo, ref, entry = parts
        try:
            model = torch.hub.load(f"{repo}:{ref}", entry, pretrained=True, trust_repo=True, skip_validation=True)
        except (OSError, RuntimeError, AttributeError, TypeError) as error:  # no copy, no such entry, no weights
            raise ConfigError(
                f"pretrain.init_from={source!r}: torch.hub could not load {entry}(pretrained=True) from "
                f"{repo}:{ref} ({type(error).__name__}: {error}); on a connected machine the repository and its "
                f"weights are fetched into {torch.hub.get_dir()}"
            ) from None
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(
                f"pretrain.init_from={source!r}: the hub entry returned {type(model).__name__}, not a module"
            )
        return model.state_dict(), {"kind": kind, "repo": repo, "ref": ref, "entry": entry}
    return read_state_file(Path(parts[0])), {
        "kind": kind,
        "path": str(Path(parts[0]).resolve()),
        "bytes": Path(parts[0]).stat().st_size,
    }


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pt``/``.pth`` file (weights-only; a ``{"state_dict": …}`` or ``{"model": …}``
    wrapper is opened) or a ``.safetensors`` file."""
    if not path.is_file():
        raise ConfigError(f"pretrain.init_from: the state-dict file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ConfigError(f"pretrain.init_from: {path} is not a readable safetensors file ({error})") from None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickler refusal, a truncated or foreign file: one clear error
        raise ConfigError(
            f"pretrain.init_from: {path} is not a state dict that loads weights-only (plain tensors); a file that "
            f"needs pickled objects is refused ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ConfigError(f"pretrain.init_from: {path} holds no state dict (a mapping of names to tensors)")
    return payload


_CIFAR_FROM_TORCHVISION = (
    (r"^conv1\.", "stem.conv."),
    (r"^bn1\.", "stem.bn."),
    (r"^layer(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}."),
    (r"\.downsample\.", ".shortcut."),
)
_TORCHVISION_FROM_CIFAR = (
    (r"^stem\.conv\.", "conv1."),
    (r"^stem\.bn\.", "bn1."),
    (r"^stages\.(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}."),
    (r"\.shortcut\.", ".downsample."),
)


def map_names(state: dict[str, torch.Tensor], arch: Architecture) -> dict[str, torch.Tensor]:
    """``state`` in ``arch``'s names: a ``module.`` prefix (DataParallel) dropped, and torchvision's names
    (conv1, bn1, layerK, downsample; the CIFAR ResNets of torch.hub use them too) mapped onto raymeta's CIFAR
    names (stem.conv, stem.bn, stages.K-1, shortcut), or the other way round."""
    rules = _TORCHVISION_FROM_CIFAR if arch.torchvision else _CIFAR_FROM_TORCHVISION
    mapped = {}
    for name, tensor in state.items():
        name = name.removeprefix("module.")
        for pattern, replacement in rules:
            name = re.sub(pattern, replacement, name)
        mapped[name] = tensor
    return mapped


def match_state(imported: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str) -> dict:
    """``imported`` checked against the network's ``expected`` state dict: every name present with its shape, and
    nothing else; the first difference is the error."""
    for name, tensor in expected.items():
        if name not in imported:
            raise ConfigError(
                f"pretrain.init_from={source!r} has no tensor {name!r} that the network needs (it holds e.g. "
                f"{', '.join(list(imported)[:4])}): does model.family match the weights?"
            )
        if tuple(imported[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"pretrain.init_from={source!r}: {name} has shape {list(imported[name].shape)} in the weights but "
                f"{list(tensor.shape)} in the network (model.family, stage_blocks, base_width, or the dataset's "
                f"channels and classes must match the weights)"
            )
    extra = [name for name in imported if name not in expected]
    if extra:
        raise ConfigError(f"pretrain.init_from={source!r} holds {extra[0]!r}, which the network does not have")
    return {name: imported[name].to(tensor.dtype) for name, tensor in expected.items()}


def import_weights(source: str, arch: Architecture, expected: dict[str, torch.Tensor]) -> ImportedWeights:
    """The weights ``source`` names, in ``arch``'s names, checked against the network's state dict ``expected``."""
    state, provenance = read_source(source)
    matched = match_state(map_names(state, arch), expected, source)
    return ImportedWeights(matched, {"source": source, **provenance})
