"""Export a metamorphic network at one configuration (a uniform γ, or one γ per metamorphic block) as a
standalone ResNet: state dict + JSON spec, a ``torch.export`` program, and ONNX.

The exported network is :meth:`MetamorphicNetwork.materialize` (α folded into the branch's last conv, BatchNorm already
folded in the prior), so it is an ordinary :class:`raymeta.method.models.ResNet` without BatchNorm: the state
dict needs only ``raymeta/method/models.py`` to load (with ``weights_only=True``), the ``ExportedProgram`` file
(``network.pt2``, :func:`torch.export.save`) needs only torch (:func:`load_program` checks an archive needs no
pickle before ``torch.export.load``, which would unpickle what an archive asks it to), and ``network.onnx`` (``torch.onnx.export``,
dynamo path) any ONNX runtime. All three take a batch of any size. With K > 1 samples the weights are the
average of K noisy generations, drawn exactly as ``raymeta evaluate`` draws them, so the exported network is
the one whose accuracy the results table reports.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import logging
import warnings
import zipfile
from pathlib import Path

import torch

from raymeta.config.schema import ExportConfig
from raymeta.errors import ConfigError
from raymeta.io.files import RunPaths, atomic_write, require_local
from raymeta.io.progress import Progress
from raymeta.method.models import Architecture, ResNet
from raymeta.method.widths import Gamma, block_gammas, canonical, format_gamma
from raymeta.stages.networks import load_trained
from raymeta.stages.runtime import load_data

SPEC_NAME = "network.json"
STATE_NAME = "network.pt"
PROGRAM_NAME = "network.pt2"
ONNX_NAME = "network.onnx"
SPEC_VERSION = 2
FORMATS = ("state_dict", "program", "onnx")
"""What ``export_network`` writes besides the spec: the state dict, the torch.export program, ONNX (the last
only where the ``onnx`` and ``onnxscript`` packages are installed: ``pip install raymeta[export]``)."""
ONNX_MISSING = "no ONNX file: it needs the onnx and onnxscript packages (pip install 'raymeta[export]')"
"""What the log says when ONNX is skipped because it cannot be written here (not because it was turned off)."""


def generation_settings(config, samples: int | None) -> dict:
    """The (samples, noise, seed) that ``raymeta evaluate`` uses for this run."""
    samples = config.eval.samples if samples is None else samples
    if samples < 1:
        raise ConfigError(f"--samples={samples} is not allowed: a positive integer (1 = noise-free weights)")
    return {
        "samples": samples,
        "noise": config.eval.noise_of(config.inr.coordinate_noise, samples),
        "seed": config.seed,
    }


def materialize_like_evaluation(net, gamma: Gamma, *, samples: int, noise: float, seed: int) -> ResNet:
    generator = torch.Generator().manual_seed(seed)
    return net.materialize(gamma, samples=samples, noise=noise, generator=generator)


def onnx_available() -> bool:
    """Whether ONNX export can run here (torch's dynamo exporter needs the onnx and onnxscript packages)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxscript"))


def example_input(arch: Architecture, image_size: int, batch: int = 2) -> torch.Tensor:
    return torch.zeros(batch, arch.in_channels, image_size, image_size)


def _batch_dimension():
    """The input's batch dimension as dynamic (1 to 65 536), for torch.export and the ONNX exporter."""
    return {"x": {0: torch.export.Dim("batch", min=1, max=1 << 16)}}


def export_program(model: ResNet, image_size: int) -> torch.export.ExportedProgram:
    """The network as a ``torch.export`` program with a dynamic batch dimension."""
    return torch.export.export(model, (example_input(model.arch, image_size),), dynamic_shapes=_batch_dimension())


def write_onnx(model: ResNet, image_size: int, path: str | Path) -> None:
    """ONNX through torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``), batch dimension dynamic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its progress lines are not ours to print
        try:
            program = torch.onnx.export(
                model,
                (example_input(model.arch, image_size),),
                dynamo=True,
                dynamic_shapes=_batch_dimension(),
                input_names=["x"],
                output_names=["logits"],
                verbose=False,
            )
        finally:
            logging.getLogger("torch.onnx").setLevel(level)
    program.save(str(path))


def export_network(
    net,
    config,
    dataset: dict,
    gamma: Gamma,
    out: str | Path,
    *,
    samples: int | None = None,
    source: str = "",
    onnx: bool | None = None,
) -> dict[str, Path]:
    """Write ``network.json`` (what rebuilds it), ``network.pt`` (state dict), ``network.pt2`` (torch.export)
    and ``network.onnx`` (``onnx``: True requires it, False skips it, None writes it where it can).

    ``gamma`` is a uniform γ or one γ per metamorphic block (``train.blocks`` order)."""
    hidden_by_position = net.hidden_widths(gamma)  # γ out of range, rounding to no channel, wrong length: an error
    gamma = canonical(gamma)
    settings = generation_settings(config, samples)
    if onnx and not onnx_available():
        raise ConfigError("ONNX export needs the onnx and onnxscript packages: pip install 'raymeta[export]'")
    onnx = onnx_available() if onnx is None else onnx
    model = materialize_like_evaluation(net, gamma, **settings).cpu().eval()
    image_size = int(dataset.get("image_size") or config_image_size(config))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hidden = {f"{s},{b}": h for (s, b), h in hidden_by_position.items()}
    spec = {
        "format": "raymeta-export",
        "version": SPEC_VERSION,
        "architecture": dataclasses.asdict(net.arch),
        "batchnorm": False,
        "hidden_widths": hidden,
        "gamma": gamma if isinstance(gamma, float) else list(gamma),
        "block_gammas": dict(zip(net.block_names(), block_gammas(gamma, net.block_names()), strict=True)),
        "image_size": image_size,
        "dataset": dataset,
        "generation": settings,
        "config_hash": config.hash(),
        "source": source,
        "formats": {"state_dict": STATE_NAME, "program": PROGRAM_NAME},
    }
    paths = {"spec": out / SPEC_NAME, "state_dict": out / STATE_NAME, "program": out / PROGRAM_NAME}
    atomic_write(paths["state_dict"], lambda p: torch.save(model.state_dict(), p))
    program = export_program(model, image_size)
    buffer = io.BytesIO()  # from a buffer, the archive's inner folder is "archive", not the temporary file's name
    torch.export.save(program, buffer)
    atomic_write(paths["program"], lambda p: Path(p).write_bytes(buffer.getvalue()))
    if onnx:
        paths["onnx"] = out / ONNX_NAME
        spec["formats"]["onnx"] = ONNX_NAME
        atomic_write(paths["onnx"], lambda p: write_onnx(model, image_size, p))
    else:
        (out / ONNX_NAME).unlink(missing_ok=True)  # never leave an ONNX file of an earlier export beside this one
    atomic_write(paths["spec"], lambda p: Path(p).write_text(json.dumps(spec, indent=2) + "\n"))
    return paths


def run_export(settings: ExportConfig, progress: Progress, *, run_dir: str | Path | None = None) -> dict[str, Path]:
    """The export stage: the trained network of ``run_dir`` (or ``settings.checkpoint``) generated at
    ``settings.gamma`` (a γ, or one γ per metamorphic block), written to ``settings.output`` (default
    RUN_DIR/export/gamma=G)."""
    if settings.gamma is None:
        raise ConfigError(
            "raymeta export needs a γ: --gamma 0.25 (or one γ per metamorphic block, --gamma 0.25,0.5), "
            "or export.gamma in the job config"
        )
    if not run_dir and not settings.checkpoint:
        raise ConfigError("raymeta export needs --run-dir (or --checkpoint) naming a trained run")
    checkpoint = (
        require_local(settings.checkpoint, "raymeta export's --checkpoint")
        if settings.checkpoint
        else RunPaths(require_local(run_dir, "raymeta export's run_dir")).train_checkpoint
    )
    net, trained_config, saved = load_trained(checkpoint)
    if not saved.done:
        progress("export: note — the checkpoint is from an unfinished run")
    gamma = settings.gamma
    gamma = float(gamma) if isinstance(gamma, (int, float)) else gamma[0] if len(gamma) == 1 else tuple(gamma)
    widths = ", ".join(f"{h}" for h in net.hidden_widths(gamma).values())
    out = Path(settings.output or (checkpoint.parent.parent / "export" / f"gamma={format_gamma(gamma)}"))
    paths = export_network(
        net,
        trained_config,
        saved.dataset,
        gamma,
        out,
        samples=settings.samples,
        source=str(checkpoint),
        onnx=settings.onnx,
    )
    if "onnx" not in paths and settings.onnx is not False:
        progress(f"export: note — {ONNX_MISSING}")
    progress(f"export: γ={format_gamma(gamma)} (hidden widths {widths}) → {', '.join(str(p) for p in paths.values())}")
    return paths


def config_image_size(config) -> int:
    """The image size of the run's dataset (for exports whose stored dataset record lacks it)."""
    return load_data(config, augment=False).info.image_size


def load_program(folder: str | Path) -> torch.export.ExportedProgram:
    """The exported network's ``torch.export`` program (``program.module()(x)`` runs it).

    ``torch.export.load`` unpickles whatever an archive marks as pickled (weights, constants, custom objects) and
    falls back to an unrestricted ``torch.load`` for sample inputs it cannot read safely, so an archive is checked
    first (:func:`check_program_archive`): one that needs any pickle is refused."""
    path = Path(folder) / PROGRAM_NAME
    if not path.is_file():
        raise ConfigError(f"exported program {path} does not exist (made by raymeta export or raymeta deploy?)")
    check_program_archive(path)
    return torch.export.load(path)


def check_program_archive(path: str | Path) -> None:
    """Refuse a ``.pt2`` archive unless every weight and constant is a raw tensor payload (no pickle, no custom or
    opaque object) and its sample inputs load with ``weights_only=True``: what raymeta writes."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(("_weights_config.json", "_constants_config.json")):
                    entries = json.loads(archive.read(name)).get("config", {})
                    for key, meta in entries.items():
                        if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(
                            ("weight_", "tensor_")
                        ):
                            raise ConfigError(
                                f"{path}: {key} is stored as a pickled or custom object; raymeta loads "
                                f"only programs whose weights and constants are plain tensors"
                            )
                elif "/data/sample_inputs/" in name:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, KeyError) as error:
        raise ConfigError(f"{path} is not a readable torch.export archive, or needs unsafe loading ({error})") from None


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
    arch = Architecture.from_record(spec["architecture"])
    hidden = {tuple(int(i) for i in key.split(",")): int(h) for key, h in spec["hidden_widths"].items()}
    model = ResNet(arch, batchnorm=spec["batchnorm"], hidden_widths=hidden)
    model.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    return model.eval(), spec
