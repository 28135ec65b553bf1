"""Hypernetwork training: the loss, one optimiser step over M configurations, the stage schedule.

The pieces are split so that a distributed driver can reuse them unchanged: :func:`sample_gammas` is a
pure function of (seed, step), :func:`accumulate_gradients` runs any subset of a step's configurations
(each scaled by 1/M, so subsets summed over workers equal the whole), and :func:`apply_update` clips
and steps once the gradients are complete.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from raymeta.checkpoint import load_checkpoint, save_checkpoint
from raymeta.config import Config, config_from_dict
from raymeta.data import make_loader
from raymeta.errors import CheckpointError, ConfigError
from raymeta.evaluate import evaluate_gammas
from raymeta.metamorphic import MetamorphicNetwork
from raymeta.models import Architecture, ResNet, block_name, resolve_blocks
from raymeta.runtime import Progress, RunPaths, load_data, seed_everything, select_device


PROGRESS_SECONDS = 30.0
"""Within a long epoch, print a progress line at most this often."""


@dataclass(frozen=True)
class Stage:
    index: int
    active_blocks: int
    epochs: int


def plan_stages(config: Config, block_count: int) -> list[Stage]:
    """Incremental: one more block per stage. Otherwise one stage with as many epochs in total (paper §4.1)."""
    epochs = config.train.epochs_per_stage
    if config.train.incremental:
        return [Stage(i, i + 1, epochs) for i in range(block_count)]
    return [Stage(0, block_count, epochs * block_count)]


def sample_gammas(seed: int, step: int, count: int, pool: list[float]) -> list[float]:
    """The M compression ratios of optimiser step ``step``: γ = 0 first (when M ≥ 2), the rest uniform.

    A pure function of (seed, step), so every worker of a distributed run draws the same list.
    """
    rng = np.random.default_rng([seed, step])
    gammas = rng.uniform(pool[0], pool[1], size=count).tolist()
    if count >= 2:
        gammas[0] = 0.0
    return gammas


def noise_generator(seed: int, step: int, config_index: int) -> torch.Generator:
    """Coordinate noise of one configuration of one step, independent of which worker runs it."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 97 + config_index)


def configuration_loss(net: MetamorphicNetwork, gamma: float, images: torch.Tensor, labels: torch.Tensor,
                       config: Config, generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
    """``λ_task·CE + λ_rec·MSE(W_gen, W_prior) + λ_reg·Σ‖W_gen‖₂``; the MSE only at the prior's own shape."""
    train = config.train
    weights = net.generate(gamma, noise=config.inr.coordinate_noise, generator=generator)
    logits = net(images, weights)
    task = F.cross_entropy(logits, labels)
    regulariser = torch.stack([w.norm() for w in weights.values()]).sum()
    total = train.lambda_task * task + train.lambda_reg * regulariser
    parts = {"task": task.item(), "reg": regulariser.item(), "rec": 0.0,
             "correct": (logits.argmax(1) == labels).float().mean().item()}
    if net.is_full_width(gamma) and train.lambda_rec > 0:
        targets = net.prior_tensors()
        generated = torch.cat([weights[name].flatten() for name in targets])
        reference = torch.cat([targets[name].flatten() for name in targets]).to(generated.device)
        reconstruction = F.mse_loss(generated, reference)
        total = total + train.lambda_rec * reconstruction
        parts["rec"] = reconstruction.item()
    parts["loss"] = total.item()
    return total, parts


def accumulate_gradients(net: MetamorphicNetwork, step: int, configs: list[tuple[int, float]],
                         batches: list[tuple[torch.Tensor, torch.Tensor]], total_configs: int, config: Config,
                         device: torch.device) -> dict[str, float]:
    """Backward each (index, γ) configuration on its own micro-batch, scaled by 1/M; sum of loss parts."""
    sums: dict[str, float] = {}
    for (index, gamma), (images, labels) in zip(configs, batches, strict=True):
        generator = noise_generator(config.seed, step, index)
        loss, parts = configuration_loss(net, gamma, images.to(device), labels.to(device), config, generator)
        (loss / total_configs).backward()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
    return sums


def trainable_parameters(net: MetamorphicNetwork) -> list[torch.nn.Parameter]:
    return [p for p in net.parameters() if p.requires_grad]


def apply_update(net: MetamorphicNetwork, optimizer: torch.optim.Optimizer, clip_value: float) -> None:
    if clip_value > 0:
        torch.nn.utils.clip_grad_value_(trainable_parameters(net), clip_value)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def build_optimizer(net: MetamorphicNetwork, config: Config) -> torch.optim.AdamW:
    train = config.train
    groups = net.parameter_groups()
    settings = {"inr": (train.lr, train.weight_decay), "alpha": (train.alpha_lr, 0.0),
                "head": (train.head_lr, train.weight_decay)}
    param_groups = [{"params": groups[name], "lr": lr, "base_lr": lr, "weight_decay": wd, "name": name}
                    for name, (lr, wd) in settings.items() if groups[name]]
    return torch.optim.AdamW(param_groups)


def set_warmup(optimizer: torch.optim.Optimizer, step_in_stage: int, warmup_steps: float) -> float:
    """Linear warm-up from ~0 to every group's base rate, then constant; returns the factor."""
    factor = 1.0 if warmup_steps <= 0 else min(1.0, (step_in_stage + 1) / warmup_steps)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return factor


def build_network(config: Config, prior: ResNet) -> MetamorphicNetwork:
    blocks = resolve_blocks(config.train.blocks, prior.arch)
    return MetamorphicNetwork(prior, blocks, inr_hidden=config.inr.hidden_width, inr_depth=config.inr.depth,
                              frequencies=config.inr.fourier_frequencies,
                              separate_bias=config.train.separate_bias_inr,
                              alpha_scaling=config.train.alpha_scaling, finetune_head=config.train.finetune_head)


def load_prior_network(payload: dict) -> ResNet:
    """Rebuild the (BN-free) network stored in a smoothed-prior or metamorphic checkpoint."""
    arch = Architecture(**{**payload["arch"], "widths": tuple(payload["arch"]["widths"])})
    model = ResNet(arch, batchnorm=payload.get("batchnorm", False))
    model.load_state_dict(payload["state_dict"])
    return model.eval()


@torch.no_grad()
def initialise_new_blocks(net: MetamorphicNetwork, first: int, last: int, config: Config, stage: int) -> None:
    """INRs of blocks first..last-1 start as a copy of the previous block's (inr_init) or at random."""
    generator = torch.Generator().manual_seed(config.seed * 7919 + stage)
    for block in range(first, last):
        for offset in (0, 1):  # conv1 and conv2 of the block
            target = 2 * block + offset
            for bank in net.hyper.banks():
                if config.train.inr_init and block > 0:
                    bank.copy_mlp(2 * (block - 1) + offset, target)
                else:
                    bank.reset_mlp(target, generator)


def monitor_gammas(config: Config) -> list[float]:
    low, high = config.train.gamma_pool
    return sorted({low, high})


def load_trained(path: str | Path) -> tuple[MetamorphicNetwork, Config, dict]:
    """A trained metamorphic network, its configuration and the raw checkpoint payload."""
    payload = load_checkpoint(path, kind="metamorphic", required=("config", "arch", "state_dict", "net_state"))
    config = config_from_dict(payload["config"])
    net = build_network(config, load_prior_network(payload))
    net.set_active_blocks(payload["active_blocks"])
    net.load_state_dict(payload["net_state"])
    return net, config, payload


def train_epoch(net: MetamorphicNetwork, optimizer: torch.optim.Optimizer, loader, state: dict,
                steps: int, warmup_steps: float, config: Config, device: torch.device, report) -> dict[str, float]:
    """``steps`` optimiser steps, each over M configurations on M micro-batches; mean loss parts per step.

    ``state["step"]`` (the global step) advances; ``state["epoch"]`` places the epoch in its stage's warm-up.
    """
    M = config.train.configs_per_step
    net.train()
    batches_iter = iter(loader)
    sums: dict[str, float] = {}
    last_report = time.perf_counter()
    for step_in_epoch in range(steps):
        set_warmup(optimizer, state["epoch"] * steps + step_in_epoch, warmup_steps)
        gammas = sample_gammas(config.seed, state["step"], M, config.train.gamma_pool)
        batches = [next(batches_iter) for _ in range(M)]
        parts = accumulate_gradients(net, state["step"], list(enumerate(gammas)), batches, M, config, device)
        apply_update(net, optimizer, config.train.clip_value)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value / M
        state["step"] += 1
        if time.perf_counter() - last_report > PROGRESS_SECONDS and step_in_epoch + 1 < steps:
            last_report = time.perf_counter()
            report(f"step {step_in_epoch + 1}/{steps}  loss {sums['loss'] / (step_in_epoch + 1):.4f}")
    return {key: value / steps for key, value in sums.items()}


def train(config: Config, *, resume: bool | None = None, stop_after_epochs: int | None = None,
          progress: Progress | None = None) -> Path:
    """Train the INRs stage by stage; checkpoint at the end of every epoch. Returns the checkpoint path.

    ``resume``: None continues an existing checkpoint of the same configuration, True requires one,
    False starts afresh. ``stop_after_epochs`` ends this call after that many epochs (resumable).
    """
    progress = progress or Progress()
    paths = RunPaths(config.run_dir)
    seed_everything(config.seed)
    device = select_device(config)
    smoothed = load_checkpoint(paths.smoothed, kind="smoothed", required=("arch", "state_dict"))
    bundle = load_data(config)
    net = build_network(config, load_prior_network(smoothed)).to(device)
    stages = plan_stages(config, len(net.blocks))
    state = {"stage": 0, "epoch": 0, "step": 0, "history": []}
    optimizer_state = None

    exists = paths.train_checkpoint.is_file()
    if resume and not exists:
        raise CheckpointError(f"--resume: no training checkpoint at {paths.train_checkpoint}")
    if exists and resume is not False:
        payload = load_checkpoint(paths.train_checkpoint, kind="metamorphic", required=("net_state", "state"))
        if payload["config_hash"] != config.hash():
            raise ConfigError(
                f"the checkpoint {paths.train_checkpoint} was made by another configuration "
                f"(hash {payload['config_hash']}, now {config.hash()}): pass --restart to overwrite it or use "
                f"another run_dir"
            )
        net.set_active_blocks(payload["active_blocks"])
        net.load_state_dict(payload["net_state"])
        state = payload["state"]
        optimizer_state = payload["optimizer"]
        torch.set_rng_state(payload["rng"])
        if state["stage"] >= len(stages):
            progress(f"train: resuming {paths.train_checkpoint}: already finished ({state['step']} steps)")
        else:
            progress(f"train: resuming from {paths.train_checkpoint} at stage {state['stage'] + 1}, "
                     f"epoch {state['epoch']}, step {state['step']}")

    def save() -> None:
        save_checkpoint({"kind": "metamorphic", "config": config.to_dict(), "config_hash": config.hash(),
                         "arch": dataclasses.asdict(net.arch), "dataset": dataclasses.asdict(bundle.info),
                         "state_dict": net.prior.state_dict(), "net_state": net.state_dict(),
                         "active_blocks": net.active_blocks, "optimizer": optimizer.state_dict(),
                         "state": state, "rng": torch.get_rng_state(),
                         "done": state["stage"] >= len(stages)}, paths.train_checkpoint)

    M = config.train.configs_per_step
    test_loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    batches_per_epoch = len(bundle.train) // config.data.batch_size
    steps_per_epoch = batches_per_epoch // M
    if config.train.steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.train.steps_per_epoch)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"data.batch_size={config.data.batch_size} × train.configs_per_step={M} needs more than the "
            f"{len(bundle.train)} training examples: lower either"
        )
    names = [block_name(*p) for p in net.blocks]
    progress(f"train: {len(stages)} stage(s) over blocks {', '.join(names)}; M={M}, "
             f"{steps_per_epoch} steps/epoch, switches {config.train.switches}")
    epochs_run = 0
    while state["stage"] < len(stages):
        stage = stages[state["stage"]]
        net.set_active_blocks(stage.active_blocks)
        optimizer = build_optimizer(net, config)
        if state["epoch"] == 0:
            previous = stages[stage.index - 1].active_blocks if stage.index > 0 else 0
            initialise_new_blocks(net, previous, stage.active_blocks, config, stage.index)
        elif optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        optimizer_state = None
        warmup_steps = config.train.warmup_epochs * steps_per_epoch
        while state["epoch"] < stage.epochs:
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                progress(f"train: stopping after {epochs_run} epoch(s) as asked; resume to continue")
                return paths.train_checkpoint
            start = time.perf_counter()
            loader = make_loader(bundle.train, config.data.batch_size, shuffle=True, seed=config.seed,
                                 epoch=state["stage"] * 100_003 + state["epoch"], drop_last=True)
            label = f"stage {stage.index + 1}/{len(stages)} epoch {state['epoch'] + 1}/{stage.epochs}"
            means = train_epoch(net, optimizer, loader, state, steps_per_epoch, warmup_steps, config, device,
                                lambda text: progress(f"train: {label} {text}"))
            net.eval()
            rows = evaluate_gammas(net, test_loader, device, monitor_gammas(config), samples=1, noise=0.0,
                                   seed=config.seed, image_size=bundle.info.image_size)
            state["epoch"] += 1
            epochs_run += 1
            record = {"stage": stage.index, "epoch": state["epoch"], "step": state["step"],
                      "seconds": time.perf_counter() - start, **means,
                      **{f"acc@{r['gamma']:g}": r["accuracy"] for r in rows}}
            state["history"].append(record)
            if state["epoch"] >= stage.epochs:
                state["stage"] += 1
                state["epoch"] = 0
            save()
            accuracies = "  ".join(f"acc γ={r['gamma']:g} {r['accuracy']:.4f}" for r in rows)
            progress(f"train: stage {stage.index + 1}/{len(stages)} epoch {record['epoch']}/{stage.epochs} "
                     f"step {record['step']}  loss {means['loss']:.4f} (task {means['task']:.4f} "
                     f"rec {means['rec']:.5f} reg {means['reg']:.2f})  {accuracies}  [{record['seconds']:.1f}s]")
            if state["epoch"] == 0:
                break
    progress(f"train: done, {state['step']} steps; checkpoint {paths.train_checkpoint}")
    return paths.train_checkpoint
