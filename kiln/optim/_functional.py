"""The pieces the built-in update formulas share, each written once against `UpdateOps`.

In the spirit of torch.optim's functional module: every optimizer's `_update_group` is a
loop over its parameters that calls these (reading the gradient, weight decay, the step
counter, running averages, bias corrections) and adds only what is its own. Each helper
applies the same ops in the same order as the formula it replaced, so eager (`NumpyOps`)
and compiled (`TensorOps`) steps give the same numbers and a compiled step traces once.
"""
from __future__ import annotations

from typing import Any

from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from .optimizer import ParamGroup, UpdateOps


def lerp(start: Any, end: Any, weight: Any, one_minus_weight: Any, weight_value: Any) -> Any:
    """start + weight * (end - start) with PyTorch's two formulas (picked by the weight's value when traced)."""
    if weight_value < 0.5:
        return start + (end - start) * weight
    return end - (end - start) * one_minus_weight


def one_minus(ops: UpdateOps, key: str, dtype: dt.DType, index: int | None = None) -> Any:
    """`1 - group[key]` (element `index` of a tuple option), computed in float64, cast to `dtype`."""
    name = f"1-{key}" if index is None else f"1-{key}[{index}]"
    return ops.derived(name, dtype, lambda: 1 - ops.hp64(key, index))


def param_and_grad(ops: UpdateOps, p: Tensor, group: ParamGroup) -> tuple[Any, Any]:
    """`p`'s value and the gradient its update uses: negated when `maximize`, then weight decay.

    A non-zero `weight_decay` is added to the gradient (`g + wd * p`, L2), or with
    `decoupled_weight_decay` shrinks the parameter first (`p *= 1 - lr * wd`, written back).
    """
    param = ops.val(p)
    grad = ops.val(p.grad) if not group["maximize"] else -ops.val(p.grad)
    if group.get("weight_decay", 0) != 0:
        d = p.dtype
        if group.get("decoupled_weight_decay"):
            param = param * ops.derived("1-lr*wd", d, lambda: 1 - ops.hp64("lr") * ops.hp64("weight_decay"))
            ops.assign(p, param)
        else:
            grad = grad + param * ops.hp("weight_decay", d)
    return param, grad


def count_step(ops: UpdateOps, state: dict[str, Any]) -> Any:
    """Add one to the float32 `state["step"]` counter; returns the new count."""
    step = ops.val(state["step"]) + 1
    ops.assign(state["step"], step)
    return step


def running_average(ops: UpdateOps, avg: Tensor, x: Any, group: ParamGroup, key: str,
                    index: int | None = None) -> Any:
    """`avg = lerp(avg, x, 1 - decay)` written back, where decay is `group[key]` (element `index`)."""
    d = avg.dtype
    decay = group[key] if index is None else group[key][index]
    new = lerp(ops.val(avg), x, one_minus(ops, key, d, index), ops.hp(key, d, index), 1 - decay)
    ops.assign(avg, new)
    return new


def running_square_average(ops: UpdateOps, avg: Tensor, x: Any, key: str, index: int | None = None) -> Any:
    """`avg = decay * avg + (1 - decay) * x * x` written back, where decay is `group[key]` (element `index`)."""
    d = avg.dtype
    new = ops.val(avg) * ops.hp(key, d, index) + x * x * one_minus(ops, key, d, index)
    ops.assign(avg, new)
    return new


def adam_moments(ops: UpdateOps, state: dict[str, Any], grad: Any, group: ParamGroup) -> tuple[Any, Any]:
    """Adam's `exp_avg` (decay `betas[0]`) and `exp_avg_sq` (decay `betas[1]`) updated with `grad`, written back."""
    exp_avg = running_average(ops, state["exp_avg"], grad, group, "betas", 0)
    return exp_avg, running_square_average(ops, state["exp_avg_sq"], grad, "betas", 1)


def float64_step(ops: UpdateOps, step: Any) -> Any:
    """The step count in float64, where bias corrections are computed (PyTorch uses Python doubles)."""
    return ops.cast(step, dt.float64)


def bias_correction(ops: UpdateOps, step64: Any, index: int) -> Any:
    """`1 - betas[index] ** step` in float64."""
    return 1 - ops.hp64("betas", index) ** step64
