"""Networks from configurations and checkpoints: the metamorphic network a configuration describes, the plain
ResNet a checkpoint holds, and a trained metamorphic network ready to evaluate or export."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from raymeta.config.migration import stored_config
from raymeta.config.schema import Config
from raymeta.io.artifacts import MetamorphicCheckpoint, PriorCheckpoint, SmoothedCheckpoint
from raymeta.method.ema import apply_average
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import Architecture, ResNet, resolve_blocks


def build_network(config: Config, prior: ResNet) -> MetamorphicNetwork:
    """The metamorphic network of ``config`` over ``prior`` (BatchNorm-folded), its INRs freshly initialised."""
    blocks = resolve_blocks(config.train.blocks, prior.arch)
    net = MetamorphicNetwork(
        prior,
        blocks,
        inr_hidden=config.inr.hidden_width,
        inr_depth=config.inr.depth,
        frequencies=config.inr.fourier_frequencies,
        separate_bias=config.train.separate_bias_inr,
        alpha_scaling=config.train.alpha_scaling,
        finetune_head=config.train.finetune_head,
        input_activation=config.inr.input_activation,
        base=config.inr.base,
        residual_scale_init=config.inr.residual_scale_init,
    )
    net.hyper.noise_shape = config.inr.noise_shape
    for bank in net.hyper.banks():
        bank.compiled = config.train.compile
    return net


def prior_network(checkpoint: PriorCheckpoint | SmoothedCheckpoint | MetamorphicCheckpoint) -> ResNet:
    """The plain ResNet a checkpoint holds: the prior (with BatchNorm), the smoothed prior, or the smoothed prior
    under a metamorphic network (BatchNorm folded)."""
    arch = Architecture.from_record(checkpoint.arch)
    model = ResNet(arch, batchnorm=getattr(checkpoint, "batchnorm", False))
    model.load_state_dict(checkpoint.state_dict)
    return model.eval()


class TrainedNetwork(NamedTuple):
    """A trained metamorphic network (INRs at their averaged weights), its configuration and its checkpoint."""

    net: MetamorphicNetwork
    config: Config
    checkpoint: MetamorphicCheckpoint


def load_trained(path: str | Path) -> TrainedNetwork:
    """A trained metamorphic network from its checkpoint, ready to evaluate or export."""
    checkpoint = MetamorphicCheckpoint.load(path)
    config = stored_config(checkpoint.config)
    net = build_network(config, prior_network(checkpoint))
    net.set_active_blocks(checkpoint.active_blocks)
    net.load_state_dict(checkpoint.net_state)
    apply_average(net, checkpoint.ema)  # evaluate and export the averaged INR weights
    return TrainedNetwork(net, config, checkpoint)
