"""`tensor[key]` and `tensor[key] = value` with numpy/PyTorch semantics.

Basic indexing (ints, slices, None, Ellipsis) becomes slice + reshape; advanced
indexing (integer/bool tensors, lists) becomes one `gather` on the flattened indexed
dims. Assignment scatters into the flattened tensor at the positions that the same key
selects from an iota, so every key that reads also writes.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes as dt
from ..creation import arange, tensor
from ..operands import _bcast, _cast, _prep
from ..tensor import Tensor, active_trace, apply
from .comparison import nonzero, where
from .shape import alias, broadcast_tensors, expand, permute, reshape, unsqueeze


def _is_advanced(k) -> bool:
    return isinstance(k, (Tensor, np.ndarray, list)) or (isinstance(k, bool))


def _to_index_tensor(k) -> Tensor:
    if isinstance(k, Tensor):
        return k
    if isinstance(k, bool):
        return tensor(k)
    if isinstance(k, list) and not k:
        return tensor(np.zeros(0, dtype=np.int64))  # x[[]] selects nothing (an empty long index, as in torch)
    return tensor(np.asarray(k) if not isinstance(k, np.ndarray) else k)


def _expand_key(x: Tensor, key) -> list:
    if not isinstance(key, tuple):
        key = (key,)
    # bool tensors index as many dims as they have
    consumed = 0
    for k in key:
        if k is None or k is Ellipsis:
            continue
        if isinstance(k, (Tensor, np.ndarray)) and _dtype_of(k).is_bool:
            consumed += max(np.ndim(k) if isinstance(k, np.ndarray) else k.ndim, 1) if not (
                isinstance(k, Tensor) and k.ndim == 0) else 0
        elif isinstance(k, (bool, np.bool_)):
            continue
        else:
            consumed += 1
    if consumed > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim}")
    out = []
    seen_ellipsis = False
    for k in key:
        if k is Ellipsis:
            if seen_ellipsis:
                raise IndexError("an index can only have a single ellipsis ('...')")
            seen_ellipsis = True
            out += [slice(None)] * (x.ndim - consumed)
        else:
            out.append(k)
    if not seen_ellipsis:
        out += [slice(None)] * (x.ndim - consumed)
    return out


def _dtype_of(k):
    if isinstance(k, Tensor):
        return k.dtype
    kind = np.asarray(k).dtype.kind
    if kind in "iu":
        return dt.int64  # numpy integer arrays of any width index like int64 ones
    if kind == "b":
        return dt.bool_
    raise IndexError(f"arrays used as indices must be of integer or boolean type, got {np.asarray(k).dtype}")


def _is_bool_scalar(k) -> bool:
    if isinstance(k, (bool, np.bool_)):
        return True
    if isinstance(k, Tensor):
        return k.dtype.is_bool and k.ndim == 0
    return isinstance(k, np.ndarray) and k.dtype == np.bool_ and k.ndim == 0


def _bool_scalars(x: Tensor, items: list):
    """PyTorch's x[True] / x[False]: a new dim of size 1, indexed by [0] (True) or [] (False)."""
    out, dim = [], 0
    for k in items:
        if _is_bool_scalar(k):
            if isinstance(k, Tensor) and k.is_tracer:
                raise IndexError("indexing with a 0-d bool tensor inside kiln.compile is not supported "
                                 "(the result's shape would depend on its value); use kiln.where")
            x = unsqueeze(x, dim)
            out.append(tensor([0] if bool(k) else [], dtype=dt.int64))
            dim += 1
        elif k is None:
            out.append(k)
        elif isinstance(k, (Tensor, np.ndarray)) and _dtype_of(k).is_bool:
            out.append(k)
            dim += np.ndim(k) if isinstance(k, np.ndarray) else k.ndim
        else:
            out.append(k)
            dim += 1
    return x, out


def getitem(x: Tensor, key) -> Tensor:
    items = _expand_key(x, key)
    if any(_is_bool_scalar(k) for k in items):
        x, items = _bool_scalars(x, items)
    # pass 1: basic indexing. Ints become slices (dim kept for now); Nones add dims.
    starts, stops, steps = [], [], []
    dim = 0
    adv: list[tuple[int, Tensor]] = []  # (dim in the sliced tensor, index tensor)
    out_items = []
    for k in items:
        if k is None:
            out_items.append(("new",))
            continue
        if isinstance(k, bool) or (isinstance(k, Tensor) and k.dtype.is_bool and k.ndim == 0):
            raise IndexError("indexing with a single bool is not supported by kiln")
        n = x.shape[dim]
        if isinstance(k, (int, np.integer)) or (isinstance(k, Tensor) and k.ndim == 0 and k.dtype.is_integer
                                                 and not k.is_tracer):
            i = int(k)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {dim} with size {n}")
            i %= n
            starts.append(i); stops.append(i + 1); steps.append(1)
            out_items.append(("int", dim))
        elif isinstance(k, slice):
            b, e, s = k.indices(n)
            if (k.step or 1) <= 0:
                raise ValueError("step must be greater than zero")
            e = max(e, b)
            starts.append(b); stops.append(e); steps.append(s)
            out_items.append(("slice", dim))
        elif _is_advanced(k) or isinstance(k, Tensor):
            t = _to_index_tensor(k)
            starts.append(0); stops.append(n); steps.append(1)
            if t.dtype.is_bool:
                if tuple(t.shape) != tuple(x.shape[dim:dim + t.ndim]):
                    raise IndexError(f"The shape of the mask {list(t.shape)} at index {dim} does not match the shape "
                                     f"of the indexed tensor {list(x.shape[dim:dim + t.ndim])}")
                parts = nonzero(t, as_tuple=True)
                for j, p in enumerate(parts):
                    if j:
                        starts.append(0); stops.append(x.shape[dim + j]); steps.append(1)
                    adv.append((dim + j, p))
                    out_items.append(("adv", dim + j))
                dim += t.ndim
                continue
            if not t.dtype.is_integer:
                raise IndexError("tensors used as indices must be long, int or bool tensors")
            adv.append((dim, t))
            out_items.append(("adv", dim))
        else:
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and long or bool tensors are "
                             f"valid indices (got {type(k).__name__})")
        dim += 1
    y = x
    if x.ndim and (tuple(starts) != (0,) * x.ndim or tuple(stops) != tuple(x.shape) or any(s != 1 for s in steps)):
        y = apply("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    if adv:
        y = _advanced(y, adv)
        # dims of y: adv result dims B at first adv position (if adjacent) else front; other dims in order
    # remove int dims, insert new axes
    out = _finish_basic(y, x, out_items, adv)
    return alias(x) if out is x else out  # `x[:]`, `x[...]`: a new view, as PyTorch


def _advanced(y: Tensor, adv: list[tuple[int, Tensor]]) -> Tensor:
    dims = [d for d, _ in adv]
    idx = [_cast(t, dt.int64) for _, t in adv]
    if y.is_cuda and not y.is_tracer:  # CPU index tensors may index a CUDA tensor (as in PyTorch)
        idx = [t.to(y.device) for t in idx]
    for d, t in zip(dims, idx):
        n = y.shape[d]
        if not t.is_tracer and t.numel():
            arr = t._concrete("the index bounds check")  # a host copy for a CUDA index
            if arr.min() < -n or arr.max() >= n:
                bad = arr[(arr < -n) | (arr >= n)].flat[0]
                raise IndexError(f"index {bad} is out of bounds for dimension {d} with size {n}")
    idx = [where(t < 0, t + y.shape[d], t) for d, t in zip(dims, idx)]
    if len(idx) > 1:
        try:
            idx = list(broadcast_tensors(*idx))
        except RuntimeError:
            raise IndexError("shape mismatch: indexing tensors could not be broadcast together with shapes "
                             + ", ".join(str(list(t.shape)) for t in idx)) from None
    bshape = tuple(idx[0].shape)
    rest = [d for d in range(y.ndim) if d not in dims]
    yp = permute(y, dims + rest)
    sizes = [y.shape[d] for d in dims]
    lin = idx[0]
    for t, s in zip(idx[1:], sizes[1:]):
        lin = lin * s + t
    m = math.prod(sizes)
    rest_shape = tuple(y.shape[d] for d in rest)
    flat = reshape(yp, (m,) + rest_shape)
    nb = math.prod(bshape)
    lin = reshape(lin, (nb,) + (1,) * len(rest_shape))
    lin = _bcast(lin, (nb,) + rest_shape)
    out = apply("gather", flat, lin, axis=0)
    out = reshape(out, bshape + rest_shape)
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    if adjacent and dims[0] > 0:
        nbd = len(bshape)
        lead = list(range(nbd, nbd + dims[0]))
        perm = lead + list(range(nbd)) + list(range(nbd + dims[0], out.ndim))
        out = permute(out, perm)
    return out


def _finish_basic(y: Tensor, x: Tensor, out_items, adv) -> Tensor:
    """Drop int-indexed dims and insert None axes into `y` (the sliced / gathered tensor)."""
    if not adv:
        shape = []
        dim_sizes = list(y.shape)
        k = 0
        for item in out_items:
            if item[0] == "new":
                shape.append(1)
            elif item[0] == "int":
                k += 1
            else:
                shape.append(dim_sizes[k])
                k += 1
        shape += dim_sizes[k:]
        return reshape(y, tuple(shape)) if tuple(shape) != tuple(y.shape) else y
    # with advanced indices: int dims are still present in y (as size-1 dims) unless consumed
    adv_dims = [d for d, _ in adv]
    bnd = y.ndim - (x.ndim - len(adv_dims))
    adjacent = adv_dims == list(range(adv_dims[0], adv_dims[0] + len(adv_dims)))
    start_b = adv_dims[0] if adjacent else 0
    # map each original non-adv dim to its position in y
    non_adv = [d for d in range(x.ndim) if d not in adv_dims]
    pos_of = {}
    for j, d in enumerate(non_adv):
        p = j if (not adjacent or d < adv_dims[0]) else j + bnd
        if not adjacent:
            p = bnd + j
        pos_of[d] = p
    shape = []
    emitted_b = False
    for item in out_items:
        if item[0] == "new":
            shape.append(1)
        elif item[0] == "int":
            continue
        elif item[0] == "adv":
            if not emitted_b:
                shape += list(y.shape[start_b:start_b + bnd]) if adjacent else []
                emitted_b = True
        else:
            shape.append(y.shape[pos_of[item[1]]])
    if not adjacent:
        shape = list(y.shape[:bnd]) + shape
    return reshape(y, tuple(shape)) if tuple(shape) != tuple(y.shape) else y


def setitem(x: Tensor, key, value) -> None:
    """x[key] = value, as an out-of-place scatter assigned back into x."""
    if not isinstance(value, (Tensor, int, float, bool, np.number, np.bool_)):
        raise TypeError(f"can't assign a {type(value).__name__} to a kiln tensor; assign a tensor or a Python "
                        "number (e.g. kiln.tensor(value))")
    n = x.numel()
    pos = None
    if active_trace() is None and _is_basic(key):
        # fast path: numpy and PyTorch agree on basic keys (errors are re-raised by getitem below)
        try:
            pos_np = np.arange(n, dtype=np.int64).reshape(tuple(x.shape))[key]
            pos = Tensor._make(np.require(pos_np, requirements="C"))
            pos._operand_constant = True  # positions from the key alone: they may index a CUDA tensor
        except (IndexError, TypeError, ValueError):
            pos = None
    if pos is None:
        pos = getitem(reshape(arange(n), tuple(x.shape)), key)
    v = _prep(value, x.dtype, tuple(pos.shape)) if not isinstance(value, Tensor) else None
    if v is None:
        if value.ndim > pos.ndim:  # PyTorch drops leading size-1 dims of the value
            lead = value.ndim - pos.ndim
            if all(s == 1 for s in value.shape[:lead]):
                value = reshape(value, tuple(value.shape[lead:]))
        try:
            v = expand(_cast(value, x.dtype), tuple(pos.shape))
        except RuntimeError:
            raise RuntimeError(f"shape mismatch: value tensor of shape {list(value.shape)} cannot be broadcast to "
                               f"indexing result of shape {list(pos.shape)}") from None
    flat = reshape(x, (n,))
    new = apply("scatter", flat, reshape(pos, (-1,)), reshape(v, (-1,)), axis=0)
    x._assign_(reshape(new, tuple(x.shape)))


def _is_basic(key) -> bool:
    """Only ints, slices, None and Ellipsis (no bools, lists, arrays or tensors)."""
    key = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, slice) or
               (isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))) for k in key)
