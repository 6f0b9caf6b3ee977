"""Adagrad, following torch.optim.Adagrad's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from . import _functional as F
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class Adagrad(Optimizer):
    """Adagrad: `sum += g^2`; `p -= clr * g / (sqrt(sum) + eps)` with `clr = lr / (1 + (step - 1) * lr_decay)`.

    As in PyTorch, the state (`step`, `sum` filled with `initial_accumulator_value`) is
    created for every parameter in the constructor.
    """

    _tensor_hparams = ("lr", "lr_decay", "eps", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None):
        _check_options("Adagrad", lr, lr_decay=lr_decay, weight_decay=weight_decay,
                       initial_accumulator_value=initial_accumulator_value, eps=eps, differentiable=differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                state: dict[str, Any] = {}
                self._init_state(p, group, state)
                self.state[p] = state

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        self._start_state(p, state)
        state["sum"] = self._full_like(p, group["initial_accumulator_value"])

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        for p in params:
            d, state = p.dtype, self.state[p]
            param, grad = F.param_and_grad(ops, p, group)
            step64 = F.float64_step(ops, F.count_step(ops, state))
            clr = ops.cast(ops.hp64("lr") / (1 + (step64 - 1) * ops.hp64("lr_decay")), d)
            state_sum = ops.val(state["sum"]) + grad * grad
            ops.assign(state["sum"], state_sum)
            std = ops.sqrt(state_sum) + ops.hp("eps", d)
            ops.assign(p, param - grad / std * clr)