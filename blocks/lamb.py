"""Shared block: the LAMB optimiser (You et al. 2020), which torch does not ship.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""
from typing import Any, Iterable, Optional, Tuple

import torch

# === block ===
class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments: Adam's step direction plus weight decay, then each tensor's step
    rescaled by the trust ratio ||w|| / ||step|| (1 where either norm is 0).

    Like the optimiser the ODT authors used (torch_optimizer.Lamb): ||w|| is clamped to
    `clamp_value` and the moments are not bias-corrected unless `bias_correction` is set.
    The trust ratio stays on the device: no host sync per step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        clamp_value: float = 10.0,
        bias_correction: bool = False,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, clamp_value=clamp_value,
                        bias_correction=bias_correction)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Any] = None) -> Optional[torch.Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state[parameter]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(parameter)
                    state["exp_avg_sq"] = torch.zeros_like(parameter)
                state["step"] += 1
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(parameter.grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(parameter.grad, parameter.grad, value=1 - beta2)
                first, second = exp_avg, exp_avg_sq
                if group["bias_correction"]:
                    first = exp_avg / (1 - beta1 ** state["step"])
                    second = exp_avg_sq / (1 - beta2 ** state["step"])
                update = first / (second.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update.add(parameter, alpha=group["weight_decay"])
                weight_norm = parameter.norm().clamp(0, group["clamp_value"])
                update_norm = update.norm()
                trust = torch.where((weight_norm > 0) & (update_norm > 0), weight_norm / update_norm,
                                    torch.ones_like(weight_norm))
                parameter.sub_(update * (trust * group["lr"]))
        return loss
