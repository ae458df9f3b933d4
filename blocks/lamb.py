"""Shared block: the LAMB optimiser (You et al. 2020), which torch does not ship.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

from typing import Any, Callable, Iterable, Optional, Tuple

import torch


# === block ===
class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments: Adam's step direction plus weight decay, then each tensor's step
    rescaled by the trust ratio ||w|| / ||step|| (1 where either norm is 0).

    Like the optimiser the ODT authors used (torch_optimizer.Lamb): ||w|| is clamped to
    `clamp_value` and the moments are not bias-corrected. The trust ratio stays on the device:
    no host sync per step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        clamp_value: float = 10.0,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, clamp_value=clamp_value))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for parameter in (p for p in group["params"] if p.grad is not None):
                state = self.state[parameter]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(parameter), torch.zeros_like(parameter)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(parameter.grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(parameter.grad, parameter.grad, value=1 - beta2)
                update = exp_avg / (exp_avg_sq.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update.add(parameter, alpha=group["weight_decay"])
                weight_norm = parameter.norm().clamp(0, group["clamp_value"])
                update_norm = update.norm()
                usable = (weight_norm > 0) & (update_norm > 0)
                trust = torch.where(usable, weight_norm / update_norm, torch.ones_like(weight_norm))
                parameter.sub_(update * (trust * group["lr"]))
        return loss
