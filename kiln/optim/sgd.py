"""Stochastic gradient descent (optionally with momentum / Nesterov), as torch.optim.SGD."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from . import _functional as F
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_lr


class SGD(Optimizer):
    """SGD: `buf = momentum * buf + (1 - dampening) * g` (buf = g on the first step); `p -= lr * buf`.

    The momentum buffer starts at zero, so with `dampening == 0` the first step's
    `0 * momentum + g` is exactly PyTorch's `buf = g.clone()`. With dampening, the state
    also holds a `step` counter and the first-step coefficient is `where(step == 0, 1, 1 - dampening)`.
    """

    _tensor_hparams = ("lr", "momentum", "dampening", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None):
        _check_lr(lr)
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if differentiable:
            raise ValueError("differentiable=True is not supported by kiln's SGD")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        super().__init__(params, defaults)

    def _check_group(self, group: ParamGroup) -> None:
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        if group["momentum"] != 0:
            state["momentum_buffer"] = self._zeros_like(p)
            if group["dampening"] != 0:
                state["step"] = self._step_tensor()

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        momentum_on = group["momentum"] != 0
        for p in params:
            d = p.dtype
            param, grad = F.param_and_grad(ops, p, group)
            if momentum_on:
                state = self.state[p]
                if state.get("momentum_buffer") is None:  # momentum switched on after the state was created
                    state["momentum_buffer"] = self._zeros_like(p)
                buf_t = state["momentum_buffer"]
                step_t = state.get("step")
                if step_t is None:
                    coef = ops.derived("1-dampening", d, lambda: 1 - ops.hp64("dampening"))
                else:  # first step: buf = grad exactly (the buffer starts at zero)
                    step = ops.val(step_t)
                    coef = ops.cast(ops.where(step == 0, 1.0, 1 - ops.hp64("dampening")), d)
                    ops.assign(step_t, step + 1)
                buf = ops.val(buf_t) * ops.hp("momentum", d) + grad * coef
                ops.assign(buf_t, buf)
                grad = grad + buf * ops.hp("momentum", d) if group["nesterov"] else buf
            ops.assign(p, param - grad * ops.hp("lr", d))
