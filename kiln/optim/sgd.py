"""Stochastic gradient descent (optionally with momentum / Nesterov), as torch.optim.SGD."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.ops import where
from ..frontend.tensor import Tensor
from .optimizer import Optimizer, ParamGroup, _check_lr, _Scalars


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

    def _update_group(self, group: ParamGroup, params: list[Tensor], hp: _Scalars) -> None:
        momentum_on = group["momentum"] != 0
        for p in params:
            d = p.dtype
            grad = p.grad if not group["maximize"] else -p.grad
            if group["weight_decay"] != 0:
                grad = grad + p * hp("weight_decay", d)
            if momentum_on:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:  # momentum switched on after the state was created
                    buf = state["momentum_buffer"] = self._zeros_like(p)
                step = state.get("step")
                if step is None:
                    coef = hp.derived("1-dampening", d, lambda: 1 - hp("dampening"))
                else:
                    coef = where(step == 0, 1.0, 1 - hp("dampening")).to(d)
                    step.add_(1)
                buf.mul_(hp("momentum", d)).add_(grad * coef)
                if group["nesterov"]:
                    grad = grad + buf * hp("momentum", d)
                else:
                    grad = buf
            p.sub_(grad * hp("lr", d))
