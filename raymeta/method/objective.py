"""The training objective (Eq. 3 of "How to Train Your Metamorphic DNN", with NeuMeta's terms): the loss of one
sampled configuration, and each of its terms.

    loss(γ) = λ_task·CE + λ_distill·T²·KL(p_prior ‖ p) + λ_feature·feature + λ_rec·rec(W_gen, W_prior) + λ_reg·Σ‖W_gen‖₂

The reconstruction term applies at the prior's own shape (γ = 0) only; distillation needs the prior's logits on
the same images; the feature term compares each generated block's residual branch with the prior's. The
weights and switches come in one :class:`Objective`, built from the configuration by the training stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.widths import Gamma

LOSS_PARTS = ("loss", "task", "distill", "feature", "rec", "reg", "correct")
"""What :func:`configuration_loss` reports of one configuration: the total, each term (before its λ), and the
fraction of the batch classified correctly."""


@dataclass(frozen=True)
class Objective:
    """The weight λ of every term, how the reconstruction is measured, and the step's arithmetic.

    ``relative_reconstruction`` divides each tensor's error by its target's mean square (see
    :func:`reconstruction_error`); ``coordinate_noise`` is the half-width of the uniform noise added to the INR
    coordinates while training; ``precision`` is ``fp32`` or ``bf16`` (see :func:`autocast`). No defaults here:
    the configuration's ``train`` group holds them (the training stage builds this from it).
    """

    lambda_task: float
    lambda_distill: float
    distill_temperature: float
    lambda_feature: float
    lambda_rec: float
    relative_reconstruction: bool
    lambda_reg: float
    coordinate_noise: float
    precision: str


def configuration_loss(
    net: MetamorphicNetwork,
    gamma: Gamma,
    images: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    generator: torch.Generator | None,
    *,
    share: float = 1.0,
    weight_terms: bool = True,
    teacher_logits: torch.Tensor | None = None,
    weights: dict[str, torch.Tensor] | None = None,
    prefix: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of configuration ``gamma`` on one micro-batch, and its parts (:data:`LOSS_PARTS`).

    ``generator`` draws the coordinate noise. ``teacher_logits`` (the prior's logits on these images) turn on
    the distillation term. For a slice of a configuration's micro-batch, ``share`` is the slice's fraction of
    the batch (it scales the batch-mean terms) and ``weight_terms`` says whether this slice carries the
    batch-independent terms (exactly one slice of each configuration does), so the slices sum to the
    whole-batch loss. ``weights`` (the configuration's generated weights, generated already: ``generator`` is
    then unused) and ``prefix`` (``net.frozen_prefix(images)``, computed already) spare the work a caller has
    done; the loss is the same.
    """
    features = [] if objective.lambda_feature > 0 else None
    with autocast(objective.precision, images.device):
        if weights is None:
            weights = net.generate(gamma, noise=objective.coordinate_noise, generator=generator)
        if prefix is None:
            prefix = net.frozen_prefix(images)
        logits = net.forward_after_prefix(prefix, weights, features)
    # The loss terms in fp32 whatever the step's precision (a no-op in fp32).
    logits = logits.float()
    weights = {name: value.float() for name, value in weights.items()}
    features = [(branch.float(), target.float()) for branch, target in features] if features else features
    task = F.cross_entropy(logits, labels) * share
    total = objective.lambda_task * task
    parts = {
        "task": task.item(),
        "reg": 0.0,
        "rec": 0.0,
        "distill": 0.0,
        "feature": 0.0,
        "correct": (logits.argmax(1) == labels).float().mean().item() * share,
    }
    if features:
        feature = feature_loss(features) * share
        total = total + objective.lambda_feature * feature
        parts["feature"] = feature.item()
    if teacher_logits is not None and objective.lambda_distill > 0:
        distill = distillation_loss(logits, teacher_logits, objective.distill_temperature) * share
        total = total + objective.lambda_distill * distill
        parts["distill"] = distill.item()
    if not weight_terms:
        parts["loss"] = total.item()
        return total, parts
    regulariser = weight_regulariser(weights)
    total = total + objective.lambda_reg * regulariser
    parts["reg"] = regulariser.item()
    if net.is_full_width(gamma) and objective.lambda_rec > 0:
        reconstruction = reconstruction_error(weights, net.prior_tensors(), relative=objective.relative_reconstruction)
        total = total + objective.lambda_rec * reconstruction
        parts["rec"] = reconstruction.item()
    parts["loss"] = total.item()
    return total, parts


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The step's arithmetic: for ``bf16``, autocast of weight generation and the generated network (matrix
    products and convolutions in bfloat16, parameters and their gradients in fp32); for ``fp32``, nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def reconstruction_error(
    generated: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], *, relative: bool = False
) -> torch.Tensor:
    """The mean over tensors of each tensor's MSE to its target, as NeuMeta's code computes it: a bias weighs
    as much as a kernel. (One MSE over all elements together would leave the biases, well under 1 % of the
    elements, all but unsupervised.) ``relative`` measures each tensor by :func:`relative_squared_error`
    instead, 1 for generating zeros whatever the tensor's scale."""
    measure = relative_squared_error if relative else F.mse_loss
    errors = [measure(generated[name], target.to(generated[name].device)) for name, target in targets.items()]
    return torch.stack(errors).mean()


def weight_regulariser(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum over generated tensors of each tensor's L2 norm (not squared): each pulls towards zero with a
    force of norm 1 whatever its size (:func:`raymeta.method.health.loss_balance`)."""
    return torch.stack([w.norm() for w in weights.values()]).sum()


def relative_squared_error(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``‖value − target‖² / ‖target‖²``: the MSE over the target's mean square, 0 for a perfect copy and 1 for
    zeros, whatever the target's scale. Its square root is the relative RMS error ``‖value − target‖ / ‖target‖``
    that monitoring reports (:func:`raymeta.method.health.reconstruction_errors`)."""
    return F.mse_loss(value, target) / target.pow(2).mean().clamp_min(1e-12)


def feature_loss(features: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The mean over generated blocks of :func:`relative_squared_error` between each block's residual branch
    and the prior's branch on the same input."""
    return torch.stack([relative_squared_error(branch, target) for branch, target in features]).mean()


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T²·KL(softmax(teacher/T) ‖ softmax(logits/T))``, the batch mean (Hinton et al.'s scaling)."""
    log_student = F.log_softmax(logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean") * temperature**2
