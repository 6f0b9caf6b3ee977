"""`kiln.nn.utils`: gradient clipping and parameter/vector conversion."""
from __future__ import annotations

import math
from typing import Iterable

from ...frontend import ops as K
from ...frontend.autograd import no_grad
from ...frontend.creation import tensor
from ...frontend.tensor import Tensor
from . import rnn  # noqa: F401

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters", "rnn"]


def _params(parameters) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """Scale gradients in place so their total `norm_type` norm is at most `max_norm`; returns the total norm."""
    grads = [p.grad for p in _params(parameters) if p.grad is not None]
    if not grads:
        return tensor(0.0)
    with no_grad():
        if norm_type == math.inf:
            norms = [K.amax(K.abs(g)) for g in grads]
            total = norms[0] if len(norms) == 1 else K.amax(K.stack(norms))
        else:
            norms = [K.pow(K.sum(K.pow(K.abs(g), norm_type)), 1.0 / norm_type) for g in grads]
            total = K.pow(K.sum(K.pow(K.stack(norms), norm_type)), 1.0 / norm_type)
        if error_if_nonfinite and not bool(K.isfinite(total)):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                               "so it cannot be clipped. To disable this error and scale the gradients by the "
                               "non-finite norm anyway, set `error_if_nonfinite=False`")
        coef = K.clamp(K.div(max_norm, K.add(total, 1e-6)), max=1.0)
        for g in grads:
            g.mul_(K._cast(coef, g.dtype))
    return total


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    with no_grad():
        for p in _params(parameters):
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    return K.cat([K.reshape(p, (-1,)) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    off = 0
    with no_grad():
        for p in parameters:
            n = p.numel()
            p.copy_(K.reshape(vec[off:off + n], tuple(p.shape)))
            off += n
