"""Adam and AdamW, following torch.optim.Adam's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.ops import maximum
from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from .optimizer import Optimizer, ParamGroup, _check_lr, _Scalars


def _lerp_(t: Tensor, end: Tensor, weight: Tensor, weight_value: float) -> None:
    """t.lerp_(end, weight) with PyTorch's two formulas (chosen by the weight's value when traced)."""
    if weight_value < 0.5:
        t.add_((end - t) * weight)
    else:
        t.copy_(end - (end - t) * (1 - weight))


class Adam(Optimizer):
    """Adam (Kingma & Ba); `decoupled_weight_decay=True` gives AdamW.

    Bias corrections `1 - beta ** step` are computed in float64 from the float32 `step`
    state tensor (as PyTorch computes them in Python doubles), then cast to the parameter dtype.
    """

    _tensor_hparams = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False):
        _check_lr(lr)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if differentiable:
            raise ValueError(f"differentiable=True is not supported by kiln's {type(self).__name__}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable,
                        fused=fused, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        state["step"] = self._step_tensor()
        state["exp_avg"] = self._zeros_like(p)
        state["exp_avg_sq"] = self._zeros_like(p)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = self._zeros_like(p)

    def _update_group(self, group: ParamGroup, params: list[Tensor], hp: _Scalars) -> None:
        beta1, beta2 = hp("betas", index=0), hp("betas", index=1)
        for p in params:
            d = p.dtype
            state = self.state[p]
            grad = p.grad if not group["maximize"] else -p.grad
            exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
            step_t.add_(1)
            if group["weight_decay"] != 0:
                if group["decoupled_weight_decay"]:
                    p.mul_(hp.derived("1-lr*wd", d, lambda: 1 - hp("lr") * hp("weight_decay")))
                else:
                    grad = grad + p * hp("weight_decay", d)
            _lerp_(exp_avg, grad, hp.derived("1-beta1", d, lambda: 1 - beta1), 1 - group["betas"][0])
            exp_avg_sq.mul_(hp("betas", d, 1)).add_(grad * grad * hp.derived("1-beta2", d, lambda: 1 - beta2))
            step = step_t.to(dt.float64)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            step_size = (hp("lr") / bias_correction1).to(d)
            bias_correction2_sqrt = bias_correction2.sqrt().to(d)
            if group["amsgrad"]:
                mx = state["max_exp_avg_sq"]
                mx.copy_(maximum(mx, exp_avg_sq))
                denom = mx.sqrt() / bias_correction2_sqrt + hp("eps", d)
            else:
                denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + hp("eps", d)
            p.sub_(exp_avg / denom * step_size)


class AdamW(Adam):
    """Adam with decoupled weight decay (`p *= 1 - lr * weight_decay` before the Adam update)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, foreach=foreach,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for g in self.param_groups:
            g["decoupled_weight_decay"] = True
