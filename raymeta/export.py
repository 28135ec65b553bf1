"""Export a metamorphic network at one γ as a standalone ResNet: state dict + JSON spec, and TorchScript.

The exported network is :meth:`MetamorphicNetwork.materialize` (α folded into conv2, BatchNorm already
folded in the prior), so it is an ordinary :class:`raymeta.models.ResNet` without BatchNorm: the state
dict needs only ``models.py`` to load, and the TorchScript file needs only torch. With K > 1 samples the
weights are the average of K noisy generations, drawn exactly as ``raymeta evaluate`` draws them, so the
exported network is the one whose accuracy the results table reports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from raymeta.errors import ConfigError
from raymeta.models import Architecture, ResNet, hidden_width

SPEC_NAME = "network.json"
STATE_NAME = "network.pt"
SCRIPT_NAME = "network.torchscript.pt"
SPEC_VERSION = 1


def generation_settings(config, samples: int | None) -> dict:
    """The (samples, noise, seed) that ``raymeta evaluate`` uses for this run."""
    samples = config.eval.samples if samples is None else samples
    if samples < 1:
        raise ConfigError(f"--samples={samples} is not allowed: a positive integer (1 = noise-free weights)")
    return {"samples": samples, "noise": config.inr.coordinate_noise if samples > 1 else 0.0, "seed": config.seed}


def materialize_like_evaluation(net, gamma: float, *, samples: int, noise: float, seed: int) -> ResNet:
    generator = torch.Generator().manual_seed(seed)
    return net.materialize(gamma, samples=samples, noise=noise, generator=generator)


def _atomic(path: Path, write) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)  # files meant to be shipped: not mkstemp's private 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def export_network(net, config, dataset: dict, gamma: float, out: str | Path, *, samples: int | None = None,
                   source: str = "") -> dict[str, Path]:
    """Write ``network.pt`` (state dict), ``network.json`` (what rebuilds it) and ``network.torchscript.pt``."""
    for s, _ in net.active():
        hidden_width(net.arch.widths[s], gamma)  # γ out of range or rounding to no channel: a clear error
    settings = generation_settings(config, samples)
    model = materialize_like_evaluation(net, gamma, **settings).cpu().eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hidden = {f"{s},{b}": h for (s, b), h in net.hidden_widths(gamma).items()}
    spec = {"format": "raymeta-export", "version": SPEC_VERSION, "architecture": dataclasses.asdict(net.arch),
            "batchnorm": False, "hidden_widths": hidden, "gamma": float(gamma), "dataset": dataset,
            "generation": settings, "config_hash": config.hash(), "source": source}
    paths = {"spec": out / SPEC_NAME, "state_dict": out / STATE_NAME, "torchscript": out / SCRIPT_NAME}
    _atomic(paths["state_dict"], lambda p: torch.save(model.state_dict(), p))
    with warnings.catch_warnings():  # torch 2.14 marks TorchScript deprecated; it is still the portable format asked for
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(model)
        _atomic(paths["torchscript"], lambda p: torch.jit.save(scripted, p))
    _atomic(paths["spec"], lambda p: Path(p).write_text(json.dumps(spec, indent=2) + "\n"))
    return paths


def load_exported(folder: str | Path) -> tuple[ResNet, dict]:
    """Rebuild an exported network from its folder with plain torch modules; returns (model, spec)."""
    folder = Path(folder)
    spec_path, state_path = folder / SPEC_NAME, folder / STATE_NAME
    for path in (spec_path, state_path):
        if not path.is_file():
            raise ConfigError(f"exported network file {path} does not exist (made by raymeta export?)")
    spec = json.loads(spec_path.read_text())
    if spec.get("format") != "raymeta-export":
        raise ConfigError(f"{spec_path} is not a raymeta export spec")
    arch = spec["architecture"]
    arch = Architecture(arch["depth"], tuple(arch["widths"]), arch["in_channels"], arch["num_classes"])
    hidden = {tuple(int(i) for i in key.split(",")): int(h) for key, h in spec["hidden_widths"].items()}
    model = ResNet(arch, batchnorm=spec["batchnorm"], hidden_widths=hidden)
    model.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    return model.eval(), spec
