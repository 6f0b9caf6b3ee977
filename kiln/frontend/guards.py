"""Guards on the Python values a compiled function reads (as torch.compile's guards).

A trace bakes the Python values the function reads into the graph as constants. So that a
later change is seen, the trace records, per value read, how to read it again and what it
was; a cached trace is reused only while every guard still holds, otherwise the function
retraces. What is guarded (found by reading the bytecode, before and while tracing):

- the module globals and closure cells the compiled function reads, and attribute chains
  starting from them (`cfg.scale` where `cfg` is a Python module, a class or an
  `nn.Module`);
- the same, transitively, in the user-written functions it calls through those names
  (functions defined outside kiln, the standard library and site-packages; a compiled
  function called inside is inlined, so its function is followed too);
- the attributes `forward` (and the methods it calls on `self`) reads from every
  `nn.Module` called while tracing: `self.scale`, `self.training`, `self.p` of a Dropout.

Values guarded by equality (and exact type, so `2` → `2.0` retraces): bool, int, float
(a nan equals a nan), complex, str, None, kiln dtypes and tuples of these. Functions,
builtins and `nn.Module`s read through those names are guarded by identity (rebinding
`act = kiln.relu` to `kiln.tanh` retraces). A value the trace itself changes (a counter
the function increments) is not guarded: that is a side effect, not a constant.

Not guarded (documented in the user guide): attributes of other objects (an instance of a
plain class, a dataclass), items of lists and dicts, names read through `getattr` with a
computed name or through `eval`, properties (their code may have side effects), attributes
of library modules (`math.pi`, `kiln.float32`). Change those, then call `fn.cache_clear()`.
Tensors found through guarded names (a global, `self.weight`) are graph inputs, read at every
call through the object the trace found; they are guarded by identity, so rebinding the name
to another tensor retraces (an in-place update needs no retrace).
"""
from __future__ import annotations

import dis
import functools
import os
import sys
import sysconfig
import types
import weakref
from typing import Any, Callable

from ..ir.dtypes import DType

#: What a guard's read returns when the name or attribute is gone (then the guard fails).
MISSING = ("<missing>",)
_UNGUARDED = object()
_MAX_DEPTH = 6  # call depth followed into user functions
_BASE_OPS = {"LOAD_GLOBAL": "global", "LOAD_DEREF": "deref", "LOAD_CLASSDEREF": "deref", "LOAD_FAST": "fast",
             "LOAD_FAST_CHECK": "fast", "LOAD_FAST_BORROW": "fast"}
_ATTR_OPS = {"LOAD_ATTR", "LOAD_METHOD"}


def value_key(v: Any) -> Any:
    """The comparable form of a guardable Python value, or `_UNGUARDED` for other values."""
    t = type(v)
    if t is float:
        return (float, "nan") if v != v else (float, v)
    if t in (bool, int, str, complex) or v is None:
        return (t, v)
    if t is tuple:
        keys = tuple(value_key(x) for x in v)
        return _UNGUARDED if any(k is _UNGUARDED for k in keys) else (tuple, keys)
    if isinstance(v, DType):
        return (DType, v.name)
    return _UNGUARDED


def _identity_guarded(v: Any) -> bool:
    from ..nn.modules.module import Module  # function-local: nn builds on the frontend
    return isinstance(v, (types.FunctionType, types.BuiltinFunctionType, Module)) or (
        callable(v) and type(v).__module__ in ("numpy", "builtins") and not isinstance(v, type))


@functools.lru_cache(maxsize=None)
def _library_dirs() -> tuple[str, ...]:
    kiln_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = {kiln_dir + os.sep}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.add(os.path.abspath(p) + os.sep)
    return tuple(dirs)


def is_user_code(code: types.CodeType) -> bool:
    """Code written by the user: not kiln's, the standard library's or an installed package's."""
    fname = code.co_filename
    if fname.startswith("<"):
        return not fname.startswith("<frozen")
    return not os.path.abspath(fname).startswith(_library_dirs())


@functools.lru_cache(maxsize=4096)
def code_reads(code: types.CodeType) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """The names a code object loads, with the attribute chains loaded from them:
    (kind, name, attrs) with kind "global", "deref" or "fast" (a local or argument); nested
    code (lambdas, comprehensions, inner functions) included, whose locals are left out."""
    out: set = set()
    chain: list | None = None
    for ins in dis.get_instructions(code):
        if ins.opname in _ATTR_OPS and chain is not None:
            chain[2].append(ins.argval)
            continue
        if chain is not None:
            out.add((chain[0], chain[1], tuple(chain[2])))
            chain = None
        kind = _BASE_OPS.get(ins.opname)
        if kind is not None:
            chain = [kind, ins.argval, []]
        elif ins.opname == "LOAD_FAST_LOAD_FAST":  # Python 3.13: two locals in one instruction
            out.add(("fast", ins.argval[0], ()))
            chain = ["fast", ins.argval[1], []]
    if chain is not None:
        out.add((chain[0], chain[1], tuple(chain[2])))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out.update(r for r in code_reads(const) if r[0] != "fast")
    return tuple(sorted(out))


@functools.lru_cache(maxsize=4096)
def _stored_names(code: types.CodeType) -> frozenset:
    """Names the code (or its nested code) rebinds: `global n; n += 1`, `nonlocal`."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("STORE_GLOBAL", "STORE_DEREF",
                                                                                "DELETE_GLOBAL", "DELETE_DEREF")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _stored_names(const)
    return frozenset(names)


def _ref(obj: Any) -> Callable[[], Any]:
    """A strong-free reference to `obj` where it supports weak references."""
    try:
        r = weakref.ref(obj)
    except TypeError:
        return lambda: obj
    return r


def _read_global(g: dict, name: str) -> Callable[[], Any]:
    return lambda: g.get(name, MISSING)


def _read_cell(cell: types.CellType) -> Callable[[], Any]:
    def read():
        try:
            return cell.cell_contents
        except ValueError:
            return MISSING
    return read


def _read_attr(base: Callable[[], Any], attr: str) -> Callable[[], Any]:
    def read():
        obj = base()
        if obj is MISSING or obj is None:
            return MISSING
        return getattr(obj, attr, MISSING)
    return read


class GuardCollector:
    """Finds the Python values a trace reads and records a guard for each (see the module doc).

    `add_function(fn)` before tracing, `add_module(m)` for each module called while tracing;
    `guards()` after it: (read, expected) pairs whose `read()` equals `expected` while the
    trace is valid (the form `CompiledEntry.guards` holds)."""

    def __init__(self) -> None:
        self._guards: dict[Any, tuple[Callable[[], Any], Any]] = {}
        self._pins: list[Any] = []  # objects guarded by identity: kept alive so their ids stay theirs
        self._seen: set = set()

    # -- entry points ----------------------------------------------------------------------
    def add_function(self, fn: Any, depth: int = 0) -> None:
        """Guard what `fn` (a function, bound method, partial, nn.Module or callable) reads."""
        from ..nn.modules.module import Module
        if depth > _MAX_DEPTH:
            return
        if isinstance(fn, functools.partial):
            self.add_function(fn.func, depth + 1)
        elif isinstance(fn, types.MethodType):
            self._scan(fn.__func__, fn.__self__, depth)
        elif isinstance(fn, types.FunctionType):
            self._scan(fn, None, depth)
        elif isinstance(fn, Module):
            self.add_module(fn, depth)
        elif hasattr(type(fn), "__call__") and isinstance(getattr(type(fn), "__call__", None), types.FunctionType):
            self._scan(type(fn).__call__, fn, depth)

    def add_module(self, module: Any, depth: int = 0) -> None:
        """Guard the attributes `module.forward` reads (called for each module run while tracing)."""
        forward = getattr(type(module), "forward", None)
        if isinstance(forward, types.FunctionType):
            self._scan(forward, module, depth)

    def guards(self) -> list[tuple[Callable[[], Any], Any]]:
        """The guards that still hold now (a value the trace changed is state, not a constant)."""
        return [(read, key) for read, key in self._guards.values() if _safe(read) == key]

    @property
    def pins(self) -> list[Any]:
        return self._pins

    # -- scanning ----------------------------------------------------------------------------
    def _scan(self, fn: types.FunctionType, self_obj: Any, depth: int) -> None:
        code = fn.__code__
        token = (code, id(self_obj))
        if token in self._seen:
            return
        self._seen.add(token)
        user = is_user_code(code)
        stored = _stored_names(code)
        cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
        self_name = code.co_varnames[0] if self_obj is not None and code.co_argcount > 0 else None
        for kind, name, attrs in code_reads(code):
            if kind == "fast":
                if name != self_name:
                    continue
                obj, read, key = self_obj, (lambda r=_ref(self_obj): r()), ("self", id(self_obj))
            elif not user or name in stored:
                continue  # library code's globals are the library's; rebound names are state
            elif kind == "global":
                if name not in fn.__globals__:
                    continue  # a builtin
                read, key = _read_global(fn.__globals__, name), ("g", id(fn.__globals__), name)
                obj = read()
            else:
                cell = cells.get(name)
                if cell is None:
                    continue
                read, key = _read_cell(cell), ("c", id(cell))
                obj = read()
            self._follow(obj, read, key, attrs, depth, top=kind != "fast")

    def _follow(self, obj: Any, read: Callable[[], Any], key: Any, attrs: tuple[str, ...], depth: int,
                top: bool) -> None:
        """Guard `obj` (found by `read`), then walk `attrs` from it while the objects are namespaces."""
        from ..nn.modules.module import Module
        from .tensor import Tensor
        for k in range(len(attrs) + 1):
            if obj is MISSING:
                return
            if not (k == 0 and not top):  # `self` itself is not guarded, its attributes are
                vkey = value_key(obj)
                if vkey is not _UNGUARDED:
                    self._guards.setdefault(key, (_keyed(read), vkey))
                    return
                if isinstance(obj, Tensor):
                    # a tensor is a graph input read at every call, through the object the trace found:
                    # rebinding the name (`model.weight = Parameter(...)`, a global) must retrace, not
                    # read the old object (the entry's source keeps it alive: no pin needed)
                    self._guards.setdefault(key, (_identity(read), id(obj)))
                    return
                if _identity_guarded(obj):
                    self._pins.append(obj)
                    self._guards.setdefault(key, (_identity(read), id(obj)))
                    self._callee(obj, depth)
                elif isinstance(obj, (types.MethodType, functools.partial)):
                    self._callee(obj, depth)
                elif self._compiled_callee(obj, depth):
                    return
            if k == len(attrs):
                return
            attr = attrs[k]
            if isinstance(obj, Module):
                if _is_data_descriptor(type(obj), attr):
                    return
            elif isinstance(obj, types.ModuleType):
                if not _is_user_module(obj):
                    return
            elif isinstance(obj, type):
                if _is_data_descriptor(type(obj), attr) or not _is_user_class(obj):
                    return
            else:
                return  # attributes of other objects are not guarded (see the module doc)
            read, key = _read_attr(read, attr), (key, attr)
            obj = _safe(read)

    def _callee(self, obj: Any, depth: int) -> None:
        from ..nn.modules.module import Module
        if isinstance(obj, Module):
            return  # its forward is scanned when it is called (`add_module`)
        self.add_function(obj, depth + 1)

    def _compiled_callee(self, obj: Any, depth: int) -> bool:
        """A compiled function called from the traced code is inlined: guard what its function reads."""
        from .compile import CompiledFunction  # function-local: compile builds on tracing
        if isinstance(obj, CompiledFunction):
            self.add_function(obj.fn, depth + 1)
            return True
        return False


def _keyed(read: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: value_key(read())


def _identity(read: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: id(read())


def _safe(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception:  # a guard that cannot be read fails (retrace) rather than raising
        return MISSING


def _is_data_descriptor(cls: type, attr: str) -> bool:
    for klass in cls.__mro__:
        if attr in klass.__dict__:
            d = klass.__dict__[attr]
            return hasattr(type(d), "__set__") or hasattr(type(d), "__delete__")
    return False


def _is_user_module(mod: types.ModuleType) -> bool:
    f = getattr(mod, "__file__", None)
    return f is not None and not os.path.abspath(f).startswith(_library_dirs())


def _is_user_class(cls: type) -> bool:
    mod = sys.modules.get(cls.__module__)
    return mod is not None and (mod.__name__ == "__main__" or _is_user_module(mod))
