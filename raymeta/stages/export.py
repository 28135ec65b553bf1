"""Export a metamorphic network at one γ as a standalone ResNet: state dict + JSON spec, and TorchScript.

The exported network is :meth:`MetamorphicNetwork.materialize` (α folded into conv2, BatchNorm already
folded in the prior), so it is an ordinary :class:`raymeta.method.models.ResNet` without BatchNorm: the state
dict needs only ``models.py`` to load, and the TorchScript file needs only torch. With K > 1 samples the
weights are the average of K noisy generations, drawn exactly as ``raymeta evaluate`` draws them, so the
exported network is the one whose accuracy the results table reports.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import torch

from raymeta.errors import ConfigError
from raymeta.io.files import RunPaths, atomic_write
from raymeta.io.progress import Progress
from raymeta.method.models import Architecture, ResNet, hidden_width
from raymeta.stages.networks import load_trained

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
    atomic_write(paths["state_dict"], lambda p: torch.save(model.state_dict(), p))
    with warnings.catch_warnings():  # torch 2.14 marks TorchScript deprecated; it is still the portable format asked for
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(model)
        atomic_write(paths["torchscript"], lambda p: torch.jit.save(scripted, p))
    atomic_write(paths["spec"], lambda p: Path(p).write_text(json.dumps(spec, indent=2) + "\n"))
    return paths


def run_export(gamma: float, progress: Progress, *, run_dir: str | Path | None = None,
               checkpoint: str | Path | None = None, output: str | Path | None = None,
               samples: int | None = None) -> dict[str, Path]:
    """The export stage: the trained network of ``run_dir`` (or ``checkpoint``) generated at ``gamma``, written
    to ``output`` (default RUN_DIR/export/gamma=G)."""
    if not run_dir and not checkpoint:
        raise ConfigError("raymeta export needs --run-dir (or --checkpoint) naming a trained run")
    checkpoint = Path(checkpoint) if checkpoint else RunPaths(run_dir).train_checkpoint
    net, trained_config, saved = load_trained(checkpoint)
    if not saved.done:
        progress("export: note — the checkpoint is from an unfinished run")
    out = Path(output or (checkpoint.parent.parent / "export" / f"gamma={gamma:g}"))
    paths = export_network(net, trained_config, saved.dataset, gamma, out, samples=samples, source=str(checkpoint))
    widths = ", ".join(f"{h}" for h in net.hidden_widths(gamma).values())
    progress(f"export: γ={gamma:g} (hidden widths {widths}) → {paths['state_dict']}, {paths['spec']}, "
             f"{paths['torchscript']}")
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
