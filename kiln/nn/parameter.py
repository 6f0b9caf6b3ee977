"""`Parameter`: a Tensor that a Module registers as learnable state."""
from __future__ import annotations

import copy

import numpy as np

from ..frontend.tensor import Tensor


def _copied(value):
    """A tensor value in new memory, on the same device (a numpy array or a CUDA DeviceArray)."""
    return value.copy() if not isinstance(value, np.ndarray) else np.array(value, copy=True)


class Parameter(Tensor):
    """A leaf Tensor with `requires_grad=True` that Modules register when assigned as an attribute.

    `Parameter(t)` shares `t`'s value (like PyTorch sharing storage): in-place updates seen
    through either are seen by both. `Parameter()` is an empty float32 parameter.
    """

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            p = cls._make(np.empty((0,), dtype=np.float32))
        else:
            if not isinstance(data, Tensor):
                raise TypeError(f"Parameter: data must be a kiln Tensor, got {type(data).__name__}")
            if data.is_tracer:
                raise RuntimeError("Parameter: cannot create a parameter from a tensor traced inside kiln.compile")
            p = cls._make(data._cell.value)
            p._cell = data._cell
            p._vc = data._vc
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        pass  # everything happens in __new__ (Tensor.__init__ refuses direct construction)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        self._concrete("deepcopy of a Parameter")  # not while traced
        p = Parameter(Tensor._make(_copied(self._cell.value)), requires_grad=self.requires_grad)
        if self._grad is not None:
            p._grad = Tensor._make(_copied(self._grad._cell.value))
        p.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()
                           if k not in ("_cell", "_vc", "_base", "_requires_grad", "_grad_fn", "_grad", "_acc",
                                        "_acc_strong")})
        memo[id(self)] = p
        return p


class Buffer(Tensor):
    """Marker for `Module.register_buffer`-style assignment: `self.x = nn.Buffer(t)` (PyTorch 2.5+)."""

    def __new__(cls, data: Tensor, *, persistent: bool = True):
        b = cls._make(data._cell.value)
        b._cell = data._cell
        b._vc = data._vc
        b.persistent = persistent
        return b

    def __init__(self, data: Tensor, *, persistent: bool = True):
        pass
