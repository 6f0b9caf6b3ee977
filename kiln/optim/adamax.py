"""Adamax (Adam with the infinity norm), following torch.optim.Adamax's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from .adam import lerp
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class Adamax(Optimizer):
    """Adamax: `m = lerp(m, g, 1 - beta1)`; `u = max(beta2 u, |g| + eps)`; `p -= lr / (1 - beta1^t) * m / u`."""

    _tensor_hparams = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, capturable: bool = False):
        _check_options("Adamax", lr, eps=eps, betas=betas, weight_decay=weight_decay, differentiable=differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        state["step"] = self._step_tensor()
        state["exp_avg"] = self._zeros_like(p)
        state["exp_inf"] = self._zeros_like(p)

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        beta1 = ops.hp64("betas", 0)
        for p in params:
            d = p.dtype
            state = self.state[p]
            param = ops.val(p)
            grad = ops.val(p.grad) if not group["maximize"] else -ops.val(p.grad)
            step = ops.val(state["step"]) + 1
            ops.assign(state["step"], step)
            if group["weight_decay"] != 0:
                grad = grad + param * ops.hp("weight_decay", d)
            exp_avg = lerp(ops.val(state["exp_avg"]), grad, ops.derived("1-beta1", d, lambda: 1 - beta1),
                           ops.hp("betas", d, 0), 1 - group["betas"][0])
            ops.assign(state["exp_avg"], exp_avg)
            exp_inf = ops.maximum(ops.val(state["exp_inf"]) * ops.hp("betas", d, 1), ops.abs(grad) + ops.hp("eps", d))
            ops.assign(state["exp_inf"], exp_inf)
            clr = ops.cast(ops.hp64("lr") / (1 - beta1 ** ops.cast(step, dt.float64)), d)
            ops.assign(p, param - exp_avg / exp_inf * clr)
