"""RMSprop, following torch.optim.RMSprop's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from .adam import _lerp_
from .optimizer import Optimizer, ParamGroup, _check_lr, _Scalars


class RMSprop(Optimizer):
    """RMSprop: `v = alpha * v + (1 - alpha) * g^2`; `p -= lr * g / (sqrt(v) + eps)` (optionally centered / momentum)."""

    _tensor_hparams = ("lr", "alpha", "eps", "weight_decay", "momentum")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False):
        _check_lr(lr)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        if differentiable:
            raise ValueError("differentiable=True is not supported by kiln's RMSprop")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        state["step"] = self._step_tensor()
        state["square_avg"] = self._zeros_like(p)
        if group["momentum"] > 0:
            state["momentum_buffer"] = self._zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = self._zeros_like(p)

    def _update_group(self, group: ParamGroup, params: list[Tensor], hp: _Scalars) -> None:
        for p in params:
            d = p.dtype
            state = self.state[p]
            grad = p.grad if not group["maximize"] else -p.grad
            square_avg = state["square_avg"]
            state["step"].add_(1)
            if group["weight_decay"] != 0:
                grad = grad + p * hp("weight_decay", d)
            one_minus_alpha = hp.derived("1-alpha", d, lambda: 1 - hp("alpha"))
            square_avg.mul_(hp("alpha", d)).add_(grad * grad * one_minus_alpha)
            if group["centered"]:
                grad_avg = state["grad_avg"]
                _lerp_(grad_avg, grad, one_minus_alpha, 1 - group["alpha"])
                avg = (square_avg - grad_avg * grad_avg).sqrt()
            else:
                avg = square_avg.sqrt()
            avg = avg + hp("eps", d)
            if group["momentum"] > 0:
                buf = state["momentum_buffer"]
                buf.mul_(hp("momentum", d)).add_(grad / avg)
                p.sub_(buf * hp("lr", d))
            else:
                p.sub_(grad / avg * hp("lr", d))
