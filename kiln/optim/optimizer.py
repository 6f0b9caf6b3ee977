"""The Optimizer base class, with PyTorch's param_groups / state / state_dict layout.

Compile-friendliness (see docs/training.md):

* All per-parameter state is kiln tensors, created once (lazily, on the first step)
  inside `trace.suspended()`, so a first `step()` inside `kiln.compile` still creates
  real eager tensors; the trace then lifts them and writes their updates back.
* Numeric hyperparameters live twice: as the Python value in the param group (what
  users read and write) and as a 0-d float64 tensor that the update math reads.
  `ParamGroup.__setitem__` writes new values into that tensor in place, so a compiled
  step sees a scheduler's new learning rate without retracing.
* The update runs the same Python code on every step; first-step differences are
  tensor math, never a Python branch on state values.
* Each update formula is written once against `UpdateOps`: `TensorOps` runs it as kiln
  ops (what a trace records), `NumpyOps` runs it directly on the arrays for eager steps.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..frontend import trace as _trace
from ..frontend.autograd import enable_grad, no_grad
from ..frontend.tensor import Tensor, active_trace
from ..ir import dtypes as dt

_Number = (int, float, np.integer, np.floating)


class _RequiredParameter:
    """Marker for an option that has no default (PyTorch's `required`)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def _is_number(v: Any) -> bool:
    return isinstance(v, _Number) and not isinstance(v, (bool, np.bool_))


def _is_number_or_tensor(v: Any) -> bool:
    """Whether `v` can be a numeric hyperparameter: a Python/numpy number or a (1-element) tensor."""
    return _is_number(v) or isinstance(v, Tensor)


def _scalar_tensor(value: float) -> Tensor:
    with _trace.suspended():
        return Tensor._make(np.array(float(value), dtype=np.float64))


def _number_of(value: Any, key: str) -> float:
    if isinstance(value, Tensor):
        if value.is_tracer:
            raise RuntimeError(f"param_group[{key!r}] was set to a tensor computed inside kiln.compile; set "
                               "hyperparameters outside the compiled function")
        if value.numel() != 1:
            raise ValueError(f"param_group[{key!r}] must be a number or a 1-element tensor")
        return float(value.item())
    return float(value)


def _guard_value(v: Any) -> Any:
    """What a guard on a param-group option compares: tensors by identity, other values by value."""
    return ("tensor", id(v)) if isinstance(v, Tensor) else v


@contextmanager
def _internal_reads() -> Iterator[None]:
    """kiln's own update code reads param groups without guards (it reads hyperparameter tensors)."""
    _reads.internal += 1
    try:
        yield
    finally:
        _reads.internal -= 1


def _check_lr(lr: Any) -> None:
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        return
    if not _is_number(lr):
        raise TypeError(f"lr must be a number or a 1-element tensor, got {type(lr).__name__}")
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")


_OPTION_LABELS = {"eps": "epsilon"}  # names torch.optim's messages use for an option


def _option_error(name: str, value: Any) -> str | None:
    """torch.optim's message for an invalid constructor option, or None when `value` is valid."""
    if name == "betas":
        for i, b in enumerate(value):
            if not 0.0 <= b < 1.0:
                return f"Invalid beta parameter at index {i}: {b}"
        return None
    if name == "etas":
        return None if 0.0 < value[0] < 1.0 < value[1] else f"Invalid eta values: {value[0]}, {value[1]}"
    if name == "rho":
        return None if 0.0 <= value <= 1.0 else f"Invalid rho value: {value}"
    return None if 0.0 <= value else f"Invalid {_OPTION_LABELS.get(name, name)} value: {value}"


def _check_options(owner: str, lr: Any, *, differentiable: bool = False, **options: Any) -> None:
    """Validate a built-in optimizer's constructor options with torch.optim's messages, in the order given.

    `lr` must be a non-negative number or a 1-element tensor; `betas` lie in [0, 1), `rho` in
    [0, 1], `etas` satisfy 0 < etas[0] < 1 < etas[1]; every other option given must be >= 0.
    `differentiable=True` is refused, naming `owner`.
    """
    _check_lr(lr)
    for name, value in options.items():
        message = _option_error(name, value)
        if message is not None:
            raise ValueError(message)
    if differentiable:
        raise ValueError(f"differentiable=True is not supported by kiln's {owner}")


class _Reads(threading.local):
    internal = 0  # > 0 while kiln's own update code reads param groups (it reads hyperparameter tensors)


_reads = _Reads()


class ParamGroup(dict):
    """A parameter group: a dict whose numeric hyperparameters are mirrored in 0-d tensors.

    `group["lr"] = 0.01` updates the float64 tensor `group.hparam("lr")` in place, so code
    compiled with `kiln.compile` (which reads that tensor at every call) sees the new value.
    Code that reads an option's Python value while tracing (a user optimizer's
    `group["lr"]`) makes the trace specialise on that value: a changed value retraces.
    """

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if key != "params" and not _reads.internal:
            tr = active_trace()
            if tr is not None:
                tr.guard_once((id(self), key), lambda: _guard_value(dict.get(self, key, _trace.ABSENT)))
        return value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if key in self else default

    def __init__(self, *args, tensor_keys: Iterable[str] = (), **kwargs):
        super().__init__()
        self._tensor_keys = frozenset(tensor_keys)
        self._hp: dict[str, Any] = {}
        self.update(*args, **kwargs)

    # -- dict API that must go through __setitem__ ---------------------------------------
    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._tensor_keys:
            self._sync(key, value)
        else:
            tr = active_trace()
            if tr is not None:  # e.g. a user optimizer counting steps in its group: redone after each call
                tr.note_store(("group", id(self), key), lambda: dict.get(self, key, _trace.ABSENT),
                              lambda v: self.__setitem__(key, v) if v is not _trace.ABSENT else self.pop(key, None),
                              f"param_group[{key!r}]")
        super().__setitem__(key, value)

    def update(self, *args, **kwargs) -> None:  # type: ignore[override]
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._hp.pop(key, None)

    def __copy__(self) -> "ParamGroup":
        g = ParamGroup(tensor_keys=self._tensor_keys)
        g.update(self)
        return g

    # -- hyperparameter tensors ------------------------------------------------------------
    def _sync(self, key: str, value: Any) -> None:
        if isinstance(value, (tuple, list)) and value and all(_is_number_or_tensor(v) for v in value):
            nums = [_number_of(v, key) for v in value]
            old = self._hp.get(key)
            if isinstance(old, tuple) and len(old) == len(nums):
                for t, v in zip(old, nums):
                    self._write(t, v, key)
            else:
                self._hp[key] = tuple(_scalar_tensor(v) for v in nums)
        elif _is_number_or_tensor(value):
            v = _number_of(value, key)
            old = self._hp.get(key)
            if isinstance(old, Tensor):
                self._write(old, v, key)
            else:
                self._hp[key] = _scalar_tensor(v)
        else:  # e.g. None or a non-numeric value: no tensor mirror
            self._hp.pop(key, None)

    @staticmethod
    def _write(t: Tensor, v: float, key: str) -> None:
        if active_trace() is not None or t.is_tracer:
            raise RuntimeError(f"param_group[{key!r}] was changed inside a kiln.compile function; change "
                               "hyperparameters (e.g. call scheduler.step()) between calls of the compiled step, "
                               "not inside it")
        t._cell.value[...] = v
        t._vc[0] += 1

    def hparam_value(self, key: str) -> float:
        """The Python float held by the 0-d tensor `hparam(key)` (a number option, or a 1-element tensor's value)."""
        return float(self.hparam(key)._cell.value)

    def hparam(self, key: str) -> Any:
        """The 0-d float64 tensor (or tuple of them, for e.g. `betas`) mirroring `self[key]`."""
        try:
            return self._hp[key]
        except KeyError:
            raise KeyError(f"param group has no numeric hyperparameter {key!r}") from None


class UpdateOps:
    """What the update formulas are written against: one formula, two ways to run it.

    Values are kiln Tensors (`TensorOps`: used while tracing, so the update becomes graph
    nodes) or numpy arrays (`NumpyOps`: eager steps, without kiln's per-op dispatch cost).
    Both apply the same numpy ufuncs in the same order on the same dtypes, so eager and
    compiled steps agree; hyperparameters are read from the group's 0-d float64 tensors,
    cast to the parameter dtype (as PyTorch casts Python scalars), and derived scalars such
    as `1 - beta` are computed in float64 first.
    """

    def __init__(self, group: ParamGroup):
        self.group = group
        self._cache: dict[tuple, Any] = {}

    def hp(self, key: str, dtype, index: int | None = None) -> Any:
        """Hyperparameter `key` (element `index` of a tuple option) cast to `dtype`, once per step."""
        ck = (key, index, dtype)
        v = self._cache.get(ck)
        if v is None:
            v = self._cache[ck] = self.cast(self.hp64(key, index), dtype)
        return v

    def hp64(self, key: str, index: int | None = None) -> Any:
        """Hyperparameter `key` (element `index` of a tuple option) in float64, read once per step."""
        ck = (key, index, "float64")
        v = self._cache.get(ck)
        if v is None:
            v = self._cache[ck] = self._read64(self.group.hparam(key) if index is None
                                               else self.group.hparam(key)[index])
        return v

    def derived(self, name: str, dtype, fn: Callable[[], Any]) -> Any:
        """A float64 value computed from hyperparameters by `fn`, cast to `dtype`, once per step."""
        ck = ("derived", name, dtype)
        v = self._cache.get(ck)
        if v is None:
            v = self._cache[ck] = self.cast(fn(), dtype)
        return v

    # interface: val, _read64, cast, sqrt, abs, sign, maximum, minimum, clamp, where, assign


class TensorOps(UpdateOps):
    """Run the formulas with kiln tensor ops (traced inside kiln.compile)."""

    def val(self, t: Tensor) -> Tensor:
        return t

    def _read64(self, t: Tensor) -> Tensor:
        return t

    def cast(self, x: Tensor, dtype) -> Tensor:
        return x.to(dtype)

    def sqrt(self, x: Tensor) -> Tensor:
        return x.sqrt()

    def maximum(self, a: Tensor, b: Tensor) -> Tensor:
        from ..frontend.ops import maximum
        return maximum(a, b)

    def where(self, cond: Tensor, a: Any, b: Any) -> Tensor:
        from ..frontend.ops import where
        return where(cond, a, b)

    def abs(self, x: Tensor) -> Tensor:
        return x.abs()

    def sign(self, x: Tensor) -> Tensor:
        return x.sign()

    def clamp(self, x: Tensor, lo: Any, hi: Any) -> Tensor:
        return self.minimum(self.maximum(x, lo), hi)

    def minimum(self, a: Tensor, b: Tensor) -> Tensor:
        from ..frontend.ops import minimum
        return minimum(a, b)

    def assign(self, t: Tensor, value: Tensor) -> None:
        t.copy_(value)


class NumpyOps(UpdateOps):
    """Run the formulas directly on the tensors' numpy arrays (eager steps)."""

    def val(self, t: Tensor) -> np.ndarray:
        return t._cell.value

    def _read64(self, t: Tensor) -> np.float64:
        return np.float64(t._cell.value)

    def cast(self, x: Any, dtype) -> Any:
        npd = dtype.np_dtype
        if isinstance(x, np.ndarray) and x.ndim > 0:
            return x.astype(npd, copy=False)
        return npd.type(x)

    def sqrt(self, x: Any) -> Any:
        return np.sqrt(x)

    def maximum(self, a: Any, b: Any) -> Any:
        return np.maximum(a, b)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return np.where(cond, a, b)

    def abs(self, x: Any) -> Any:
        return np.abs(x)

    def sign(self, x: Any) -> Any:
        return np.sign(x)

    def clamp(self, x: Any, lo: Any, hi: Any) -> Any:
        return np.minimum(np.maximum(x, lo), hi)

    def minimum(self, a: Any, b: Any) -> Any:
        return np.minimum(a, b)

    def assign(self, t: Tensor, value: Any) -> None:
        np.copyto(t._cell.value, value, casting="unsafe")
        t._vc[0] += 1


def _on_device_of(p: Tensor, arr: np.ndarray):
    """`arr` as a value on parameter `p`'s device (state is created where the parameter lives)."""
    from ..frontend.tensor import to_device_value
    return to_device_value(arr, p.device)


class Optimizer:
    """Base class: holds param groups and per-parameter state; subclasses implement `_update_group`.

    Subclasses set `_tensor_hparams` (the numeric options mirrored as tensors), fill state
    in `_init_state(p, group, state)` (a parameter's first step) and implement
    `_update_group(group, params, ops)` once against `UpdateOps`.
    """

    _tensor_hparams: tuple[str, ...] = ("lr",)
    #: Options whose zero / non-zero value changes the update's code path (guarded when traced).
    _branch_on_zero: tuple[str, ...] = ("momentum", "dampening", "weight_decay")
    #: Eager steps run the update formulas on numpy arrays (NumpyOps); set False to run them
    #: with kiln tensor ops (TensorOps, what a trace records) also when eager.
    _eager_numpy: bool = True
    #: 0-d state kept float32 whatever the parameter dtype, as PyTorch's (other floating state follows the parameter).
    _scalar_state: tuple[str, ...] = ("step",)

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[ParamGroup] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):  # tensors, or (name, tensor) pairs from named_parameters()
            param_groups = [{"params": param_groups}]
        for g in param_groups:
            self.add_param_group(g)
        _trace.watch_state(self)

    def _traced_state_slots(self) -> Iterator[tuple]:
        """Per parameter, the slot `self.state[p]` (for `kiln.compile`: state a traced step creates
        is written back after every call; see `trace.Trace.state_writes`)."""
        state = self.state
        for group in self.param_groups:
            for p in dict.__getitem__(group, "params"):
                yield (("state", id(state), id(p)),
                       lambda p=p: state.get(p, _trace.ABSENT),
                       lambda v, p=p: state.__setitem__(p, v) if v is not _trace.ABSENT else state.pop(p, None),
                       f"{type(self).__name__}.state[<parameter of shape {tuple(p.shape)}>]")

    # -- groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (missing options take the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        names = None
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params)
        if params and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in params):
            names = [n for n, _ in params]  # named_parameters(): kept as 'param_names', as PyTorch does
            params = [p for _, p in params]
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        group = ParamGroup(tensor_keys=self._tensor_hparams)
        if names is not None:
            group["param_names"] = names
        for k, v in param_group.items():
            if k != "params":
                group[k] = v
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            if name not in group:
                group[name] = default
        group["params"] = params
        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if existing & {id(p) for p in params}:
            raise ValueError("some parameters appear in more than one parameter group")
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: ParamGroup) -> None:
        """Validate a group's options (subclasses raise ValueError for invalid values)."""

    # -- gradients ---------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized parameters (to None by default, or to zeros)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    # Assign without reading first: inside kiln.compile, reading .grad would specialise
                    # the trace on whether it was None, costing a retrace after the first call.
                    p.grad = None
                elif p.grad is not None:
                    g = p.grad
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    with no_grad():
                        g.zero_()

    # -- stepping -------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; `closure` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        tr = active_trace()
        with no_grad(), _internal_reads():
            for group in self.param_groups:
                if tr is not None:  # retrace if an option's branch (zero / non-zero, a flag) changes later
                    tr.guard(lambda g=group: _structure(g, self._branch_on_zero))
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                for p in params:
                    if not self.state.get(p):
                        state: dict[str, Any] = {}
                        with _trace.suspended():
                            self._init_state(p, group, state)
                        if state:  # stateless updates (plain SGD) keep no entry, as in PyTorch
                            self.state[p] = state
                eager_numpy = (self._eager_numpy and active_trace() is None
                               and all(type(p._cell.value) is np.ndarray for p in params))  # CPU arrays only
                ops = NumpyOps(group) if eager_numpy else TensorOps(group)
                self._update_group(group, params, ops)
        return loss

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict[str, Any]) -> None:
        """Create the state tensors of parameter `p` (runs eagerly, once)."""

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        """Update `params` (those with a gradient) in place, with formulas written against `ops`."""
        raise NotImplementedError

    @staticmethod
    def _full_like(p: Tensor, value: float) -> Tensor:
        """A new eager tensor of `p`'s shape and dtype filled with `value` (state, even while tracing)."""
        with _trace.suspended():
            return Tensor._make(_on_device_of(p, np.full(tuple(p.shape), value, dtype=p.dtype.np_dtype)))

    @classmethod
    def _zeros_like(cls, p: Tensor) -> Tensor:
        return cls._full_like(p, 0.0)

    @staticmethod
    def _step_tensor(value: float = 0.0) -> Tensor:
        """A new eager 0-d float32 tensor: the `step` counter, or other `_scalar_state`."""
        with _trace.suspended():
            return Tensor._make(np.array(value, dtype=np.float32))

    def _start_state(self, p: Tensor, state: dict[str, Any], *zeros: str, **scalars: float) -> None:
        """Fill a parameter's new `state` in PyTorch's key order: `step` (0), then the float32
        `scalars` at their given values, then a zero tensor like `p` for each name in `zeros`."""
        state["step"] = self._step_tensor()
        for name, value in scalars.items():
            state[name] = self._step_tensor(value)
        for name in zeros:
            state[name] = self._zeros_like(p)

    # -- state dicts ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """PyTorch's layout: {'state': {index: {name: tensor}}, 'param_groups': [{..., 'params': [indices]}]}.

        State tensors are returned by reference (as PyTorch does); save or clone them to keep a snapshot.
        """
        index: dict[int, int] = {}
        groups = []
        start = 0
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            for i, p in enumerate(g["params"]):
                index.setdefault(id(p), start + i)
            packed["params"] = [index[id(p)] for p in g["params"]]
            start += len(g["params"])
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state:
                    state[index[id(p)]] = dict(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load state saved by `state_dict()` (or by PyTorch's optimizer of the same kind).

        State tensors that already exist with the same shape and dtype are updated in place,
        and hyperparameters are written into the existing groups, so a step already compiled
        with `kiln.compile` keeps working on the loaded values.
        """
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("loaded state dict must be a dict with keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for g, sg in zip(self.param_groups, saved_groups):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                                 "optimizer's group")
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        for g, sg in zip(self.param_groups, saved_groups):
            for p, idx in zip(g["params"], sg["params"]):
                entry = saved_state.get(int(idx))
                if entry is None:
                    self.state.pop(p, None)
                    continue
                self._load_param_state(p, entry)
            for k, v in sg.items():
                if k != "params":
                    g[k] = tuple(v) if isinstance(v, list) and k in self._tensor_hparams else v

    def _load_param_state(self, p: Tensor, entry: dict[str, Any]) -> None:
        from ..frontend.creation import tensor as _tensor
        state = self.state[p]
        for key in list(state):
            if key not in entry:
                del state[key]
        for key, value in entry.items():
            if value is None:
                state[key] = None
                continue
            if not isinstance(value, Tensor):
                value = _tensor(np.asarray(value))
            if key in self._scalar_state:
                want = dt.float32 if not value.dtype.is_floating_point else value.dtype
            elif value.dtype.is_floating_point:
                want = p.dtype
            else:
                want = value.dtype
            arr = np.array(value._concrete("load_state_dict"), dtype=want.np_dtype, copy=True)
            cur = state.get(key)
            if isinstance(cur, Tensor) and not cur.is_tracer and tuple(cur.shape) == arr.shape and cur.dtype == want:
                cur._assign_value(arr)
            else:
                with _trace.suspended():
                    # per-parameter tensors follow the parameter's device (as PyTorch); `step` stays on the CPU
                    state[key] = Tensor._make(arr if key in self._scalar_state or arr.ndim == 0
                                              else _on_device_of(p, arr))

    # -- misc ------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        lines = [self.__class__.__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)


def _structure(group: dict, zero_keys: tuple[str, ...]) -> tuple:
    """The Python-level choices a traced update branches on: flags, and whether `zero_keys` are zero."""
    out = []
    for k, v in sorted((k, v) for k, v in group.items() if k != "params"):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            out.append((k, v))
        elif k in zero_keys and isinstance(v, (int, float)):
            out.append((k, v != 0))
    return tuple(out)
