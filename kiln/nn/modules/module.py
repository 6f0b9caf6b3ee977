"""`Module`: the base class of every layer, with PyTorch's attribute registration and state dicts."""
from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterator

import numpy as np

from ...frontend.autograd import no_grad
from ...frontend.tensor import Tensor, _Cell, _check_device, to_device_value
from ...ir import dtypes as dt
from ..parameter import Buffer, Parameter
from ...frontend.tensor import active_trace as _active_trace
from ...frontend.trace import ABSENT as _ABSENT
from ...frontend.trace import guard_module as _guard_module

_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class _IncompatibleKeysRepr(_IncompatibleKeys):
    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class RemovableHandle:
    """Returned by `register_*_hook`; `remove()` unregisters the hook."""

    _next_id = itertools.count()

    def __init__(self, hooks: dict):
        self.hooks = hooks
        self.id = next(RemovableHandle._next_id)

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _to_array(value, key: str) -> np.ndarray:
    """A state-dict entry as a numpy array: kiln Tensors, numpy arrays, or anything with __array__ (e.g. torch)."""
    if isinstance(value, Tensor):
        return value._concrete(f"load_state_dict({key!r})")
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as e:  # pragma: no cover - defensive
        raise TypeError(f"load_state_dict: value for {key!r} of type {type(value).__name__} is not a tensor") from e


def _cast_value(a, d):
    """A tensor value cast to dtype `d`: numpy's astype on the CPU, a cast kernel on the device."""
    if isinstance(a, np.ndarray):
        return a.astype(d.np_dtype)
    from ...frontend.autograd import no_grad
    from ...frontend.tensor import apply
    with no_grad():
        return apply("cast", Tensor._make(a), dtype=d)._cell.value


class Module:
    """Base class for all neural network modules (PyTorch's `torch.nn.Module`).

    Assigning a `Parameter`, a `Module` or (via `register_buffer`) a Tensor as an attribute
    registers it; `parameters()`, `state_dict()` and friends walk the registered tree.
    """

    training: bool
    _version = 1

    def __init__(self, *args, **kwargs) -> None:
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments; Module.__init__ takes none")
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        tr = _active_trace()
        # a module built inside a kiln.compile trace is that call's own: its stores are not state to write back
        object.__setattr__(self, "_born_in_trace", weakref.ref(tr) if tr is not None else None)

    forward: Callable[..., Any]

    def forward(self, *input):  # noqa: F811
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    # -- registration ------------------------------------------------------------------------
    def _check_init(self, what: str):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or None, a placeholder) under `name`."""
        self._check_init("parameter")
        if not isinstance(name, str):
            raise TypeError(f"parameter name should be a string. Got {type(name).__name__}")
        if "." in name:
            raise KeyError('parameter name can\'t contain "."')
        if name == "":
            raise KeyError('parameter name can\'t be empty string ""')
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(torch.nn.Parameter or None required)")
        if param is not None and param.grad_fn is not None:
            raise ValueError(f"Cannot assign non-leaf Tensor to parameter '{name}'. Model parameters must be "
                             "created explicitly. To express '{name}' as a function of another Tensor, compute the "
                             "value in the forward() method.")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a buffer (state that is not a parameter, e.g. BatchNorm's running mean) under `name`."""
        self._check_init("buffer")
        if not isinstance(name, str):
            raise TypeError(f"buffer name should be a string. Got {type(name).__name__}")
        if "." in name:
            raise KeyError('buffer name can\'t contain "."')
        if name == "":
            raise KeyError('buffer name can\'t be empty string ""')
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(torch Tensor or None required)")
        if isinstance(tensor, Buffer):
            tensor = tensor.detach()
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        """Add a child module under `name`."""
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string. Got {type(name).__name__}")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if "." in name:
            raise KeyError(f'module name can\'t contain ".", got: {name}')
        if name == "":
            raise KeyError('module name can\'t be empty string ""')
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if params is not None:
            tr = _active_trace()
            if tr is not None and self._predates(tr):
                # stored while tracing (a cached mask, a counter): kiln.compile redoes it after every call
                tr.note_store(("module", id(self), name), lambda: self._slot_value(name),
                              lambda v: self._put_slot(name, v), f"{type(self).__name__}.{name}")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._remove_from(name, keep=self._parameters)
            self.register_parameter(name, value)
            return
        if params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(torch.nn.Parameter or None expected)")
            self.register_parameter(name, value)
            return
        modules = self.__dict__.get("_modules")
        if isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._remove_from(name, keep=modules)
            modules[name] = value
            return
        if modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(torch.nn.Module or None expected)")
            modules[name] = value
            return
        buffers = self.__dict__.get("_buffers")
        if isinstance(value, Buffer):
            self._remove_from(name, keep=self._buffers)
            self.register_buffer(name, value, persistent=value.persistent)
            return
        if buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(torch.Tensor or None expected)")
            buffers[name] = value
            return
        object.__setattr__(self, name, value)

    def _predates(self, trace: Any) -> bool:
        """Whether this module was built before `trace` began (not inside it): its attributes are state."""
        born = self.__dict__.get("_born_in_trace")
        return born is None or born() is not trace

    def _slot_value(self, name: str) -> Any:
        """The attribute `name` as stored (parameter, buffer, child or plain attribute), or ABSENT."""
        d = self.__dict__
        for store in (d["_parameters"], d["_buffers"], d["_modules"]):
            if name in store:
                return store[name]
        return d.get(name, _ABSENT)

    def _put_slot(self, name: str, value: Any) -> None:
        if value is _ABSENT:
            if self._slot_value(name) is not _ABSENT:
                delattr(self, name)
        else:
            setattr(self, name, value)

    def _remove_from(self, name: str, keep: dict | None = None) -> None:
        """Drop `name` from every store but `keep`: re-assigning a child, parameter or buffer keeps its
        place in registration order (children(), state_dict keys), as in PyTorch."""
        for d in (self.__dict__, self._parameters, self._buffers, self._modules):
            if name in d and d is not keep:
                del d[name]
        if keep is not self._buffers:
            self._non_persistent_buffers_set.discard(name)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        tr = _active_trace()
        if tr is not None and self._predates(tr):
            _guard_module(self)  # a compiled function retraces when train()/eval() or forward's attributes change
        for hook, with_kwargs in list(self._forward_pre_hooks.values()):
            if with_kwargs:
                res = hook(self, args, kwargs)
                if res is not None:
                    if not (isinstance(res, tuple) and len(res) == 2):
                        raise RuntimeError("forward pre-hook must return None or a tuple of (new_args, new_kwargs), "
                                           f"but got {res}.")
                    args, kwargs = res
            else:
                res = hook(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
        compiled = self.__dict__.get("_compiled_forward")
        out = compiled(*args, **kwargs) if compiled is not None else self.forward(*args, **kwargs)
        for hook, with_kwargs in list(self._forward_hooks.values()):
            res = hook(self, args, kwargs, out) if with_kwargs else hook(self, args, out)
            if res is not None:
                out = res
        return out

    def compile(self, *args, **kwargs) -> None:
        """Compile this module's forward in place with `kiln.compile` (as `torch.nn.Module.compile`).

        Later calls run the traced graph (retraced per input signature and on train/eval
        changes); parameters stay ordinary tensors, so optimizers and state dicts are unaffected.
        Keyword options go to `kiln.compile`; PyTorch's positional options are ignored.
        """
        from ...frontend.compile import compile as _compile
        opts = {k: v for k, v in kwargs.items() if k in ("recompile_limit", "name")}
        forward = self.forward

        def guarded_forward(*a, **k):
            _guard_module(self)  # forward may read self.training or other attributes directly
            return forward(*a, **k)

        guarded_forward.__name__ = f"{type(self).__name__}_forward"
        object.__setattr__(self, "_compiled_forward", _compile(guarded_forward, **opts))

    @staticmethod
    def _add_hook(store: dict, hook: Callable, prepend: bool, with_kwargs: bool) -> RemovableHandle:
        h = RemovableHandle(store)
        store[h.id] = (hook, with_kwargs)
        if prepend:
            store.move_to_end(h.id, last=False)
        return h

    def register_forward_hook(self, hook: Callable, *, prepend: bool = False, with_kwargs: bool = False,
                              always_call: bool = False) -> RemovableHandle:
        """`hook(module, args, output)` (or `(module, args, kwargs, output)` with `with_kwargs`) runs after
        forward; a non-None return replaces the output."""
        return self._add_hook(self._forward_hooks, hook, prepend, with_kwargs)

    def register_forward_pre_hook(self, hook: Callable, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """`hook(module, args)` runs before forward; a non-None return replaces the arguments (with
        `with_kwargs`: `hook(module, args, kwargs)` returning `(args, kwargs)`)."""
        return self._add_hook(self._forward_pre_hooks, hook, prepend, with_kwargs)

    # -- iteration -----------------------------------------------------------------------------
    def _named_members(self, get, prefix="", recurse=True, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for k, v in get(mod):
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                if remove_duplicate:
                    seen.add(id(v))
                yield (mod_prefix + ("." if mod_prefix else "") + k), v

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        yield from self._named_members(lambda m: m._parameters.items(), prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members(lambda m: m._buffers.items(), prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, "Module"]]:
        if memo is None:
            memo = set()
        if id(self) in memo and remove_duplicate:
            return
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def get_submodule(self, target: str) -> "Module":
        if target == "":
            return self
        mod = self
        for item in target.split("."):
            if item not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no attribute `{item}`")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter `{name}`")
        return mod._parameters[name]

    # -- modes ---------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for m in self.children():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def _guarded_training(self) -> bool:
        """`self.training`, read so that a kiln.compile trace retraces when the mode changes."""
        from ...frontend.trace import guard_attr
        return guard_attr(self, "training")

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the parameters' gradients: to None (default), or to zeros in place."""
        for p in self.parameters():
            if set_to_none:
                # Assign without reading first: inside kiln.compile, reading .grad would specialise
                # the trace on whether it was None, costing a retrace after the first call.
                p.grad = None
            elif p.grad is not None:
                with no_grad():
                    p.grad.zero_()

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Call `fn` on every submodule (children first) and on self, e.g. for custom initialisation."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- dtype / device ----------------------------------------------------------------------
    def _apply_tensors(self, fn: Callable, floats_only: bool = True) -> "Module":
        """Replace every parameter's and buffer's value (a numpy array, or a DeviceArray on the CUDA
        device) by fn(value), and their `.grad`s' too, keeping the Parameter objects."""
        for m in self.modules():
            for store in (m._parameters, m._buffers):
                for k, t in store.items():
                    if t is None or (floats_only and not t.dtype.is_floating_point):
                        continue
                    t._concrete("Module.to()")  # not while traced
                    arr = t._cell.value
                    new = fn(arr)
                    if new is arr:
                        continue
                    t._cell = _Cell(new)
                    t._vc = [0]
                    t._base = None
                    if t._grad is not None:
                        t._grad = Tensor._make(fn(t._grad._cell.value))
        return self

    def to(self, *args, **kwargs) -> "Module":
        """`to(dtype)`, `to(device)`, `to(device, dtype)` or `to(tensor)`: floating-point state changes dtype."""
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        kwargs.pop("memory_format", None)  # layouts are the backend's business in kiln
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, dt.DType):
                dtype = a
            else:
                device = a
        if dtype is not None:
            d = dt.get_dtype(dtype)
            if not d.is_floating_point:
                raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype={d.name}")
            self._apply_tensors(lambda a: a if a.dtype == d.np_dtype else _cast_value(a, d))
        if device is not None:
            where = _check_device(device)
            self._apply_tensors(lambda a: to_device_value(a, where), floats_only=False)
        return self

    def float(self) -> "Module":
        return self.to(dt.float32)

    def double(self) -> "Module":
        return self.to(dt.float64)

    def half(self) -> "Module":
        return self.to(dt.float16)

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self, device=None) -> "Module":
        return self.to("cuda" if device is None else device)

    def type(self, dst_type) -> "Module":
        return self.to(dst_type)

    # -- state dicts -------------------------------------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False) -> "OrderedDict":
        """Parameters and persistent buffers by dotted name (values are detached and share memory)."""
        if args:  # positional (destination, prefix, keep_vars), deprecated in PyTorch but accepted
            destination = args[0]
            if len(args) > 1:
                prefix = args[1]
            if len(args) > 2:
                keep_vars = args[2]
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def _load_from_state_dict(self, state_dict, prefix, strict, missing_keys, unexpected_keys, error_msgs):
        local = {**{k: v for k, v in self._parameters.items() if v is not None},
                 **{k: v for k, v in self._buffers.items()
                    if v is not None and k not in self._non_persistent_buffers_set}}
        for name, t in local.items():
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            arr = _to_array(state_dict[key], key)
            if tuple(arr.shape) != tuple(t.shape):
                error_msgs.append(f"size mismatch for {key}: copying a param with shape "
                                  f"torch.Size({list(arr.shape)}) from checkpoint, the shape in current model is "
                                  f"torch.Size({list(t.shape)}).")
                continue
            with no_grad():
                t._assign_value(arr.astype(t.dtype.np_dtype, copy=False))
        # unexpected keys are always reported; load_state_dict raises on them only when strict
        for key in state_dict:
            if key.startswith(prefix):
                rest = key[len(prefix):]
                head = rest.split(".", 1)[0]
                if "." not in rest and head not in local:
                    unexpected_keys.append(key)
                elif "." in rest and head not in self._modules:
                    unexpected_keys.append(key)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy `state_dict` into parameters and buffers; strict mode reports missing and unexpected keys.

        Values may be kiln Tensors, numpy arrays or torch tensors; they are copied (cast to each
        parameter's dtype), so Parameter objects (and optimizers holding them) stay valid.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        missing, unexpected, errors = [], [], []

        def load(module, prefix):
            module._load_from_state_dict(state_dict, prefix, strict, missing, unexpected, errors)
            for name, child in module._modules.items():
                if child is not None:
                    load(child, prefix + name + ".")

        load(self, "")
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                type(self).__name__, "\n\t".join(errors)))
        return _IncompatibleKeysRepr(missing, unexpected)

    # -- printing ------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        child_lines = []
        for key, m in self._modules.items():
            mod_str = repr(m).replace("\n", "\n  ")
            child_lines.append(f"({key}): {mod_str}")
        lines = lines + child_lines
        main = self._get_name() + "("
        if lines:
            if len(extra.split("\n")) == 1 and not child_lines:
                main += extra
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

