"""AdamW whose step count may differ between the rows of a parameter: the INR banks stack one MLP per row, and a
block that joins in a later stage must start its own moments and bias correction while the others go on.

With one optimiser for the whole run (``train.warmup: once``), torch's AdamW keeps one step count per tensor. A
new block's rows of a bank tensor (and its entry of α) have zero moments but the tensor's count t, so their bias
correction is t's, not a fresh Adam's: a first update of (1−β1)/√((1−β2)/(1−β2^t)) times the rate instead of
one rate (2.5× at t = 1000; up to 5× over the next ~100 steps as the first moment fills faster than the second).
:class:`RowAdamW` stores a step count per row once :meth:`RowAdamW.restart_rows` has restarted some rows, and
applies each row's own bias correction; while every row has the same count it runs torch's single-tensor AdamW
arithmetic, operation for operation, so its numbers are torch's (CPU) until a row is restarted.
"""

from __future__ import annotations

import torch


class RowAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, no AMSGrad) with an optional step count per row of a parameter."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad, state = param.grad, self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                step_t += 1
                if decay != 0:
                    param.mul_(1 - lr * decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if step_t.dim() == 0:  # one count for the whole tensor: torch's single-tensor AdamW
                    step = step_t.item()
                    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
                    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                    param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
                else:  # a count per row (dimension 0), each row's own bias correction
                    steps = step_t.to(torch.float64).view(-1, *([1] * (param.dim() - 1)))
                    bias_correction2_sqrt = (1 - beta2**steps).sqrt().to(param.device, param.dtype)
                    step_size = (lr / (1 - beta1**steps)).to(param.device, param.dtype)
                    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                    param.sub_(exp_avg * step_size / denom)
        return loss

    @torch.no_grad()
    def restart_rows(self, param: torch.Tensor, rows: list[int]) -> None:
        """Rows ``rows`` (indices along dimension 0) of ``param`` start afresh: zero moments and step count, so that
        their next update is a fresh Adam's first. The other rows keep their state. Nothing to do for a parameter
        that has not stepped yet (its first step starts every row afresh)."""
        state = self.state.get(param)
        if not state or not rows:
            return
        step = state["step"]
        if step.dim() == 0:
            step = step.repeat(param.shape[0])
        index = torch.tensor(rows, dtype=torch.long)
        step[index] = 0.0
        state["step"] = step
        state["exp_avg"][index.to(param.device)] = 0.0
        state["exp_avg_sq"][index.to(param.device)] = 0.0
