"""An exponential moving average (EMA) of the INR weights, the weights that monitoring, evaluation and export use.

The papers are silent; NeuMeta's code keeps an EMA of its hypernetwork (decay 0.995) and evaluates with it.
Here the decay after n updates is ``min(decay, (1 + n) / (10 + n))``: the first updates follow the weights
closely, so a short run (or a stage that has just begun) is not an average dominated by its starting point.
The average restarts at every incremental stage, when new INRs join (:meth:`restart`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class ExponentialAverage:
    """Shadow copies of some parameters, updated after every optimiser step."""

    def __init__(self, parameters: dict[str, nn.Parameter], decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.parameters = parameters
        self.decay = decay
        self.updates = 0
        self.shadow = {name: p.detach().clone() for name, p in parameters.items()}

    @torch.no_grad()
    def restart(self) -> None:
        """Start the average afresh from the current weights (new INRs have just been initialised)."""
        self.updates = 0
        for name, parameter in self.parameters.items():
            self.shadow[name].copy_(parameter)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        decay = self.current_decay()
        for name, parameter in self.parameters.items():
            self.shadow[name].lerp_(parameter.detach(), 1 - decay)
        self.updates += 1

    @contextmanager
    def applied(self):
        """Within the block the parameters hold the averaged weights; the training weights come back after."""
        saved = {name: p.detach().clone() for name, p in self.parameters.items()}
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                parameter.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in self.parameters.items():
                    parameter.copy_(saved[name])

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": {name: t.detach().cpu().clone() for name, t in self.shadow.items()}}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if set(state["shadow"]) != set(self.shadow):
            raise ValueError(f"EMA state holds {sorted(state['shadow'])}, expected {sorted(self.shadow)}")
        self.updates = int(state["updates"])
        for name, tensor in state["shadow"].items():
            self.shadow[name].copy_(tensor)


def inr_parameters(net) -> dict[str, nn.Parameter]:
    """The parameters the EMA averages: the hypernetwork's (NeuMeta's code averages its hypernetwork only)."""
    return {f"hyper.{name}": p for name, p in net.hyper.named_parameters()}


@torch.no_grad()
def apply_average(net, state: dict | None) -> None:
    """Load a saved EMA's weights into ``net``'s INRs (for evaluation and export); None leaves them as they are."""
    if state is None:
        return
    parameters = inr_parameters(net)
    for name, tensor in state["shadow"].items():
        parameters[name].copy_(tensor)
