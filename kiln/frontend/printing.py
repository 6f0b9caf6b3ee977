"""PyTorch-style tensor formatting (torch/_tensor_str.py's rules, on numpy arrays)."""
from __future__ import annotations

import numpy as np

_PREFIX = "tensor("


def _float_formatter(arr: np.ndarray):
    finite = arr[np.isfinite(arr)].astype(np.float64)
    nonzero = np.abs(finite[finite != 0])
    int_mode = bool(np.all(finite == np.ceil(finite)))
    sci = False
    if nonzero.size:
        hi, lo = float(nonzero.max()), float(nonzero.min())
        sci = hi / lo > 1000.0 or hi > 1.0e8 or (not int_mode and lo < 1.0e-4)
    if sci:
        fmt = "{:.4e}".format
    elif int_mode:
        fmt = lambda v: f"{v:.0f}."  # noqa: E731
    else:
        fmt = "{:.4f}".format

    def one(v) -> str:
        v = float(v)
        if np.isnan(v):
            return "nan"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return fmt(v)
    return one


def format_array(arr: np.ndarray) -> str:
    """The body of a tensor's repr: nested brackets, PyTorch's number format, aligned widths."""
    if arr.dtype.kind == "f":
        one = _float_formatter(arr)
    elif arr.dtype.kind == "b":
        one = lambda v: "True" if v else "False"  # noqa: E731
    else:
        one = lambda v: str(int(v))  # noqa: E731
    summarize = arr.size > 1000
    sample = arr
    if summarize and arr.ndim:
        idx = tuple(np.r_[0:min(3, s), max(s - 3, 3):s] if s > 6 else slice(None) for s in arr.shape)
        sample = arr[np.ix_(*[np.atleast_1d(np.arange(s)[i]) for s, i in zip(arr.shape, idx)])]
    flat = sample.reshape(-1)
    if arr.dtype.kind == "f":
        flat = flat[np.isfinite(flat)]  # PyTorch sizes columns by the finite values only
    width = max((len(one(v)) for v in flat), default=0)
    return np.array2string(arr, separator=", ", prefix=_PREFIX, threshold=1000, edgeitems=3,
                           max_line_width=80, formatter={"all": lambda v: one(v).rjust(width)})
