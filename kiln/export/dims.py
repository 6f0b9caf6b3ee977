"""`kiln.Dim` and `dynamic_shapes`: which input axes an exported program accepts at any size.

    batch = kiln.Dim("batch")                       # any size >= 1
    kiln.export(model, x, dynamic_shapes=({0: batch},))
    kiln.export(f, x, y, dynamic_shapes={"x": {0: batch}, "y": None})

One entry per positional argument (a tuple/list in order, or a dict by parameter name),
each `None` (every axis static) or `{axis: Dim}`. Arguments given no entry are static.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

_NAME = re.compile(r"^[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Dim:
    """A named dynamic dimension; every axis given the same `Dim` has the same size at a call."""

    name: str
    min: int = 1
    max: int | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"kiln.Dim: name must be an identifier, got {self.name!r}")
        if isinstance(self.min, bool) or not isinstance(self.min, int) or self.min < 0:
            raise ValueError(f"kiln.Dim({self.name!r}): min must be an int >= 0, got {self.min!r}")
        if self.max is not None and (isinstance(self.max, bool) or not isinstance(self.max, int)
                                     or self.max < self.min):
            raise ValueError(f"kiln.Dim({self.name!r}): max must be None or an int >= min ({self.min}), "
                             f"got {self.max!r}")

    def check(self, size: int, where: str) -> None:
        """Raise ValueError naming `where` if `size` is outside [min, max]."""
        if size < self.min or (self.max is not None and size > self.max):
            hi = "inf" if self.max is None else str(self.max)
            raise ValueError(f"{where}: size {size} of dynamic dim {self.name!r} is outside its range "
                             f"[{self.min}, {hi}]")

    def to_json(self) -> dict:
        return {"min": self.min, "max": self.max}


def normalize_dynamic_shapes(fn: Callable, args: Sequence[Any], dynamic_shapes: Any,
                             is_tensor: Callable[[Any], bool]) -> dict[int, dict[int, Dim]]:
    """`dynamic_shapes` as {positional argument index: {axis (>= 0): Dim}}; checks every entry.

    Errors (ValueError/TypeError) name the argument and axis at fault."""
    if dynamic_shapes is None:
        return {}
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params]
    if isinstance(dynamic_shapes, dict):
        entries = {}
        for key, spec in dynamic_shapes.items():
            if key not in names[:len(args)]:
                raise ValueError(f"kiln.export: dynamic_shapes names {key!r}, which is not a positional parameter "
                                 f"given an example; parameters: {', '.join(names[:len(args)]) or '(none)'}")
            entries[names.index(key)] = spec
    elif isinstance(dynamic_shapes, (tuple, list)):
        if len(dynamic_shapes) != len(args):
            raise ValueError(f"kiln.export: dynamic_shapes has {len(dynamic_shapes)} entries for {len(args)} "
                             "positional arguments (give one per argument, None for a static one)")
        entries = dict(enumerate(dynamic_shapes))
    else:
        raise TypeError("kiln.export: dynamic_shapes must be a tuple/list (one entry per positional argument) or a "
                        f"dict by parameter name, got {type(dynamic_shapes).__name__}")
    out: dict[int, dict[int, Dim]] = {}
    by_name: dict[str, Dim] = {}
    for k, spec in sorted(entries.items()):
        what = f"argument {k}" + (f" ({names[k]!r})" if k < len(names) else "")
        if spec is None:
            continue
        if not isinstance(spec, dict):
            raise TypeError(f"kiln.export: dynamic_shapes entry for {what} must be None or {{axis: kiln.Dim}}, "
                            f"got {type(spec).__name__}")
        if not is_tensor(args[k]):
            raise TypeError(f"kiln.export: dynamic_shapes gives axes for {what}, which is not a tensor")
        ndim = len(args[k].shape)
        axes: dict[int, Dim] = {}
        for axis, dim in spec.items():
            if not isinstance(dim, Dim):
                raise TypeError(f"kiln.export: dynamic_shapes[{what}][{axis!r}] must be a kiln.Dim, "
                                f"got {type(dim).__name__}")
            if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
                raise ValueError(f"kiln.export: dynamic_shapes axis {axis!r} of {what} is out of range for its "
                                 f"{ndim} dims")
            if by_name.setdefault(dim.name, dim) != dim:
                raise ValueError(f"kiln.export: two different kiln.Dim objects are named {dim.name!r}")
            size = int(args[k].shape[axis])
            dim.check(size, f"kiln.export: example {what}, axis {axis % ndim}")
            axes[axis % ndim] = dim
        if axes:
            out[k] = axes
    return out
