"""Shared block: the LAMB optimiser (You et al. 2020), which torch does not ship.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

from typing import Any, Callable, Iterable, Optional, Tuple

import torch


# === block ===
class Lamb(torch.optim.Optimizer):
    """LAMB as in the timm-style lamb.py that both official ODT repositories vendor (not torch_optimizer's).

    All gradients are first scaled together so their global norm is at most `max_grad_norm`. Each
    tensor's step is then Adam's bias-corrected direction plus weight decay, rescaled by the trust
    ratio ||w|| / ||step|| (1 where either norm is 0; no clamp on ||w||). As in timm, tensors without
    weight decay keep the plain Adam step. Norms stay on the device: no host sync per step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        max_grad_norm: Optional[float] = 1.0,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return loss
        scale = torch.ones((), device=grads[0].device)
        if self.max_grad_norm is not None:
            global_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            scale = torch.clamp(global_norm / self.max_grad_norm, min=1.0)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            group["step"] = group.get("step", 0) + 1
            bias_correction1, bias_correction2 = 1 - beta1 ** group["step"], 1 - beta2 ** group["step"]
            for parameter in (p for p in group["params"] if p.grad is not None):
                state = self.state[parameter]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(parameter), torch.zeros_like(parameter)
                grad = parameter.grad / scale
                state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denominator = (state["exp_avg_sq"] / bias_correction2).sqrt() + group["eps"]
                update = state["exp_avg"] / bias_correction1 / denominator
                if group["weight_decay"]:
                    update = update + group["weight_decay"] * parameter
                    weight_norm, update_norm = parameter.norm(), update.norm()
                    usable = (weight_norm > 0) & (update_norm > 0)
                    update = update * torch.where(usable, weight_norm / update_norm, torch.ones_like(weight_norm))
                parameter.sub_(update * group["lr"])
        return loss
