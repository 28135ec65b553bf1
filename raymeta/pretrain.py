"""Train the prior: an ordinary ResNet with BatchNorm at γ = 0, saved with the configuration that made it."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from raymeta.checkpoint import save_checkpoint
from raymeta.config import Config
from raymeta.data import make_loader
from raymeta.evaluate import accuracy_and_loss
from raymeta.models import ResNet
from raymeta.runtime import Progress, RunPaths, architecture, load_data, seed_everything, select_device


def train_classifier(model: torch.nn.Module, bundle, config: Config, *, epochs: int, lr: float, device,
                     progress: Progress, label: str) -> dict:
    """SGD with momentum and cosine decay; returns the final test accuracy and loss."""
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=config.pretrain.momentum,
                                weight_decay=config.pretrain.weight_decay, nesterov=True)
    steps_per_epoch = math.ceil(len(bundle.train) / config.data.batch_size)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    test_loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    metrics = {}
    for epoch in range(epochs):
        model.train()
        running, seen = 0.0, 0
        for images, labels in make_loader(bundle.train, config.data.batch_size, shuffle=True, seed=config.seed,
                                          epoch=epoch):
            images, labels = images.to(device), labels.to(device)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(labels)
            seen += len(labels)
        model.eval()
        accuracy, test_loss = accuracy_and_loss(model, test_loader, device)
        metrics = {"train_loss": running / seen, "test_accuracy": accuracy, "test_loss": test_loss}
        progress(f"{label} epoch {epoch + 1}/{epochs}  train loss {running / seen:.4f}  "
                 f"test acc {accuracy:.4f}  test loss {test_loss:.4f}")
    return metrics


def pretrain(config: Config, progress: Progress | None = None) -> Path:
    progress = progress or Progress()
    seed_everything(config.seed)
    device = select_device(config)
    bundle = load_data(config)
    arch = architecture(config, bundle.info)
    model = ResNet(arch)
    progress(f"pretrain: ResNet-{arch.depth} {list(arch.widths)} on {bundle.info.name} "
             f"({len(bundle.train)} train / {len(bundle.test)} test images), {config.pretrain.epochs} epochs")
    metrics = train_classifier(model, bundle, config, epochs=config.pretrain.epochs, lr=config.pretrain.lr,
                               device=device, progress=progress, label="pretrain")
    path = RunPaths(config.run_dir).prior
    save_checkpoint({"kind": "prior", "config": config.to_dict(), "arch": dataclasses.asdict(arch),
                     "dataset": dataclasses.asdict(bundle.info), "state_dict": model.cpu().state_dict(),
                     "metrics": metrics}, path)
    progress(f"pretrain: saved {path}")
    return path
