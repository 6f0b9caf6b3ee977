"""RMSprop, following torch.optim.RMSprop's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from . import _functional as F
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class RMSprop(Optimizer):
    """RMSprop: `v = alpha * v + (1 - alpha) * g^2`; `p -= lr * g / (sqrt(v) + eps)` (optionally centered / momentum)."""

    _tensor_hparams = ("lr", "alpha", "eps", "weight_decay", "momentum")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False):
        _check_options("RMSprop", lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha,
                       differentiable=differentiable)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        self._start_state(p, state, "square_avg")
        if group["momentum"] > 0:
            state["momentum_buffer"] = self._zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = self._zeros_like(p)

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        for p in params:
            d, state = p.dtype, self.state[p]
            param, grad = F.param_and_grad(ops, p, group)
            F.count_step(ops, state)
            square_avg = F.running_square_average(ops, state["square_avg"], grad, "alpha")
            if group["centered"]:
                grad_avg = F.running_average(ops, state["grad_avg"], grad, group, "alpha")
                avg = ops.sqrt(square_avg - grad_avg * grad_avg)
            else:
                avg = ops.sqrt(square_avg)
            avg = avg + ops.hp("eps", d)
            if group["momentum"] > 0:
                buf = ops.val(state["momentum_buffer"]) * ops.hp("momentum", d) + grad / avg
                ops.assign(state["momentum_buffer"], buf)
                ops.assign(p, param - buf * ops.hp("lr", d))
            else:
                ops.assign(p, param - grad / avg * ops.hp("lr", d))