"""Which movement ops make a view while tracing, as eager numpy would.

Eagerly, a movement op's result is a view of its input exactly when numpy shares the memory
(`np.may_share_memory`): a slice, a permute or a broadcast always does, a reshape only when no
copy is needed for the input's strides, a pad never, and an empty result never. A view's
in-place update writes through to its base, so a trace must make the same call: it keeps no
strides, but every traced view is a chain of movement ops from a base that is row-major (made
in the trace) or an argument whose strides the trace recorded, so the strides follow. Where a
reshape of an argument was a view or a copy and an in-place update made that matter, the
compiled function is guarded on it (`CompiledEntry.stride_guards`): a call with other strides
that change it retraces.
"""
from __future__ import annotations

from math import prod
from typing import Sequence

Shape = tuple[int, ...]


def contiguous_strides(shape: Sequence[int]) -> Shape:
    """Row-major element strides of `shape`."""
    strides, step = [], 1
    for d in reversed(tuple(shape)):
        strides.append(step)
        step *= max(int(d), 1)
    return tuple(reversed(strides))


def reshape_strides(shape: Sequence[int], strides: Sequence[int], new_shape: Sequence[int]) -> Shape | None:
    """The strides of `new_shape` over the memory of (`shape`, `strides`) without a copy, or None
    when the reshape must copy (numpy's `_attempt_nocopy_reshape`, C order)."""
    old = [(int(d), int(s)) for d, s in zip(shape, strides) if d != 1]
    new = [int(d) for d in new_shape]
    out = [0] * len(new)
    oi, oj, ni, nj = 0, 1, 0, 1
    while ni < len(new) and oi < len(old):
        np_, op_ = new[ni], old[oi][0]
        while np_ != op_:
            if np_ < op_:
                np_ *= new[nj]
                nj += 1
            else:
                op_ *= old[oj][0]
                oj += 1
        for ok in range(oi, oj - 1):
            if old[ok][1] != old[ok + 1][0] * old[ok + 1][1]:
                return None
        out[nj - 1] = old[oj - 1][1]
        for nk in range(nj - 1, ni, -1):
            out[nk - 1] = out[nk] * new[nk]
        ni, nj, oi, oj = nj, nj + 1, oj, oj + 1
    last = out[ni - 1] if ni >= 1 else 1
    for nk in range(ni, len(new)):
        out[nk] = last
    return tuple(out)


def _apply(name: str, attrs: dict, shape: Shape, strides: Shape) -> tuple[Shape, Shape | None]:
    """(shape, strides) after view op `name`; strides None when it has to copy."""
    if name == "reshape":
        new = tuple(attrs["shape"])
        return new, reshape_strides(shape, strides, new)
    if name == "permute":
        perm = attrs["perm"]
        return tuple(shape[p] for p in perm), tuple(strides[p] for p in perm)
    if name == "slice":
        new = tuple((e - b + s - 1) // s for b, e, s in zip(attrs["starts"], attrs["stops"], attrs["steps"]))
        return new, tuple(st * s for st, s in zip(strides, attrs["steps"]))
    if name == "broadcast_to":
        new = tuple(attrs["shape"])
        lead = len(new) - len(shape)
        out = [0] * lead + [0 if (d == 1 and n != 1) else st for d, n, st in zip(shape, new[lead:], strides)]
        return new, tuple(out)
    return shape, None  # pad, or anything else: a copy


def chain_strides(base_shape: Sequence[int], chain, base_strides: Sequence[int] | None = None
                  ) -> tuple[Shape, Shape | None]:
    """(shape, strides) of the view `chain` ((name, attrs) pairs) of a base of `base_strides`
    (default: row-major)."""
    shape = tuple(int(d) for d in base_shape)
    strides: Shape | None = contiguous_strides(shape) if base_strides is None else tuple(base_strides)
    for name, attrs in chain:
        shape, strides = _apply(name, attrs, shape, strides)
        if strides is None:
            return shape, None
    return shape, strides


def makes_view(name: str, attrs: dict, base_shape: Sequence[int], chain, out_shape: Sequence[int],
               base_strides: Sequence[int] | None = None) -> bool:
    """Whether movement op `name` on the view `chain` of a base of `base_shape` (row-major, or
    `base_strides`) gives a view of it in eager mode (memory shared with a non-empty result)."""
    if prod(int(d) for d in out_shape) == 0 or prod(int(d) for d in base_shape) == 0:
        return False
    shape, strides = chain_strides(base_shape, chain, base_strides)
    if strides is None:
        return False
    return _apply(name, attrs, shape, strides)[1] is not None


def reshape_is_view(base, chain, attrs: dict, shape: Sequence[int]) -> bool:
    """`makes_view` for a reshape of the view `chain` of the ndarray `base` (its own strides)."""
    strides = None if base.flags.c_contiguous or not base.itemsize else \
        tuple(s // base.itemsize for s in base.strides)
    return makes_view("reshape", attrs, base.shape, chain, shape, strides)
