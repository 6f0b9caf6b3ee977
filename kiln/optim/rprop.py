"""Rprop (resilient backpropagation), following torch.optim.Rprop's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from . import _functional as F
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class Rprop(Optimizer):
    """Rprop: each element's step size grows by `etas[1]` while its gradient keeps its sign and
    shrinks by `etas[0]` when it flips (that step is skipped), clamped to `step_sizes`;
    `p -= sign(g) * step_size`. Step sizes start at `lr`."""

    _tensor_hparams = ("lr", "etas", "step_sizes")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False):
        _check_options("Rprop", lr, etas=etas, differentiable=differentiable)
        defaults = dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), foreach=foreach, maximize=maximize,
                        differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        self._start_state(p, state, "prev")
        state["step_size"] = self._full_like(p, group.hparam_value("lr"))

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        for p in params:
            d, state = p.dtype, self.state[p]
            param, grad = F.param_and_grad(ops, p, group)
            F.count_step(ops, state)
            etaminus, etaplus = ops.hp("etas", d, 0), ops.hp("etas", d, 1)
            sign = ops.sign(grad * ops.val(state["prev"]))
            factor = ops.where(sign > 0, etaplus, ops.where(sign < 0, etaminus, 1.0))
            step_size = ops.clamp(ops.val(state["step_size"]) * factor, ops.hp("step_sizes", d, 0),
                                  ops.hp("step_sizes", d, 1))
            ops.assign(state["step_size"], step_size)
            grad = ops.where(factor == etaminus, 0.0, grad)
            ops.assign(p, param - ops.sign(grad) * step_size)
            ops.assign(state["prev"], grad)