"""Every `KILN_*` setting in one place: read from the environment once, when kiln is imported,
and overridable in code.

    import kiln
    kiln.config.get().dump                 # a current value
    kiln.config.set(dump="dumps")          # change settings for the rest of the process
    with kiln.config.override(verify=True, passes=False):
        ...                                # changed inside the block only
    print(kiln.config.describe())          # every setting: variable, value, meaning

A variable that is unset or empty takes the default; any other value that is not accepted
raises `ConfigError` naming the variable and the accepted values (at `import kiln`).
Flags accept 1/0, true/false, yes/no, on/off. The list of settings is the `Settings`
dataclass below (one field each, with its variable and a one-line doc); docs/user-guide.md
lists them too. This module imports nothing of kiln, so every layer may read it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

__all__ = ["ConfigError", "Settings", "get", "set", "override", "from_env", "describe", "blas_threads_from_env"]


class ConfigError(ValueError):
    """A `KILN_*` variable, or a value given to `kiln.config.set`, that is not accepted."""


@dataclass(frozen=True)
class _Kind:
    """How one setting's value is read from its variable's text and checked when set in code."""

    accepted: str  # shown in error messages
    parse: Callable[[str], Any]  # non-empty variable text -> value; ValueError when not accepted
    check: Callable[[Any], Any]  # value given in code -> value stored; ValueError when not accepted
    optional: bool = False  # None is accepted in code
    in_code: str = ""  # what `set` accepts, when it differs from `accepted`


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _parse_flag(text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError(text)


def _check_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(value)
    return value


def _check_path(value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(value)
    return os.fspath(value)


def _parse_count(text: str) -> int:
    n = int(text.strip())
    if n < 1:
        raise ValueError(text)
    return n


def _check_count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(value)
    return value


def _choice(*choices: str) -> _Kind:
    def pick(value: Any) -> str:
        if value not in choices:
            raise ValueError(value)
        return value
    return _Kind(" | ".join(repr(c) for c in choices), lambda text: pick(text.strip().lower()), pick)


_FLAG = _Kind("1/0, true/false, yes/no or on/off", _parse_flag, _check_flag, in_code="True or False")
_DIR = _Kind("a directory path", str, _check_path)
_OPTIONAL_DIR = _Kind("a directory path", str, lambda v: None if v is None else _check_path(v), optional=True)
_COUNT = _Kind("a positive integer", _parse_count, _check_count, optional=True)


def _user_cache_dir(environ: Mapping[str, str]) -> str:
    """`$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kiln")


def _setting(env: str, kind: _Kind, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "kind": kind, "doc": doc})


_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Settings:
    """One field per `KILN_*` variable (its metadata: `env`, `kind`, `doc`)."""

    verify: bool = _setting(
        "KILN_VERIFY", _FLAG, False,
        "verify every traced graph and the graph after every pass, check the IR text round-trips, and "
        "bound every lowered kernel's loads and stores by its buffers (kir_verify.check_bounds)")
    dump: str | None = _setting(
        "KILN_DUMP", _OPTIONAL_DIR, None,
        "directory for numbered dump files: each traced graph, the graph after every pass, the plans, a summary")
    passes: bool = _setting(
        "KILN_PASSES", _FLAG, True,
        "run the pass pipeline on traced graphs (0 skips it, for debugging)")
    num_threads: int | None = _setting(
        "KILN_NUM_THREADS", _COUNT, None,
        "threads of the native kernels (unset: the CPUs available) and BLAS threads, applied at import "
        "(unset: 1, unless OMP/OPENBLAS/MKL_NUM_THREADS is set)")
    backend: str = _setting(
        "KILN_BACKEND", _choice("llvm", "reference", "cuda"), "llvm",
        "which backend runs compiled graphs (llvm: native code; reference: the numpy interpreter; "
        "cuda: CUDA C through NVRTC on the GPU)")
    cc: str = _setting(
        "KILN_CC", _Kind("a C compiler command or path", str.strip, _check_path), "cc",
        "the C compiler that links exported shared libraries (write_shared_library)")
    cache_dir: str = _setting(
        "KILN_CACHE_DIR", _DIR, _user_cache_dir(os.environ),
        "directory of the on-disk cache of compiled object code ($XDG_CACHE_HOME/kiln or ~/.cache/kiln)")
    cache: bool = _setting(
        "KILN_CACHE", _FLAG, True,
        "keep compiled object code in the on-disk cache (0 disables)")
    strict_fp: bool = _setting(
        "KILN_STRICT_FP", _FLAG, False,
        "no re-association of reduction accumulations (every other float op already rounds as written)")
    loop_partition: bool = _setting(
        "KILN_LOOP_PARTITION", _FLAG, True,
        "split loops where pad/concat/slice conditions on their index change value, and simplify their "
        "index arithmetic (kiln.codegen.loop_partition; 0 leaves lowered kernels as they are, to bisect)")
    cuda_sim: bool = _setting(
        "KILN_CUDA_SIM", _FLAG, False,
        "run kiln's CUDA device (device='cuda' tensors, backend='cuda') on the host simulator: host memory, "
        "kernels compiled as C++ with g++ (for CI without a GPU; never chosen unless set)")
    profile: bool = _setting(
        "KILN_PROFILE", _FLAG, False,
        "time every compiled call kernel by kernel; the table (kiln.profiler) is printed to stderr at exit "
        "and written to the KILN_DUMP directory")


def _fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(Settings)


def from_env(environ: Mapping[str, str]) -> Settings:
    """The settings `environ` (e.g. `os.environ`) describes; raises ConfigError naming a bad variable."""
    values: dict[str, Any] = {}
    for f in _fields():
        env, kind = f.metadata["env"], f.metadata["kind"]
        text = environ.get(env, "")
        if not text.strip():
            continue
        try:
            values[f.name] = kind.parse(text)
        except ValueError:
            raise ConfigError(f"{env}={text!r} is not accepted; expected {kind.accepted} "
                              f"(unset or empty: the default, {f.default!r})") from None
    if "cache_dir" not in values:
        values["cache_dir"] = _user_cache_dir(environ)
    return Settings(**values)


def _checked(changes: Mapping[str, Any]) -> dict[str, Any]:
    by_name = {f.name: f for f in _fields()}
    out = {}
    for name, value in changes.items():
        if name not in by_name:
            raise TypeError(f"kiln.config has no setting {name!r}; the settings are: {', '.join(by_name)}")
        kind = by_name[name].metadata["kind"]
        try:
            out[name] = kind.check(value)
        except ValueError:
            raise ConfigError(f"kiln.config: {name}={value!r} is not accepted "
                              f"({by_name[name].metadata['env']}); expected {kind.in_code or kind.accepted}"
                              + (" or None" if kind.optional else "")) from None
    return out


_current: Settings = from_env(os.environ)
_blas_set: bool = any(v in os.environ for v in _BLAS_THREAD_VARS)


def get() -> Settings:
    """The settings in effect now."""
    return _current


def set(**changes: Any) -> Settings:  # noqa: A001  (kiln.config.set, like torch's set_* functions)
    """Change settings for the rest of the process, e.g. `kiln.config.set(dump="dumps")`; returns them."""
    global _current
    _current = dataclasses.replace(_current, **_checked(changes))
    return _current


@contextlib.contextmanager
def override(**changes: Any) -> Iterator[Settings]:
    """Change settings inside a `with` block only (for tests); restores the previous ones on exit."""
    global _current
    before = _current
    _current = dataclasses.replace(_current, **_checked(changes))
    try:
        yield _current
    finally:
        _current = before


def blas_threads_from_env() -> bool:
    """Whether OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS was set when kiln was imported."""
    return _blas_set


def describe(settings: Settings | None = None) -> str:
    """One line per setting: name, variable, value (current ones by default) and meaning."""
    s = settings if settings is not None else _current
    rows = [(f.name, f.metadata["env"], repr(getattr(s, f.name)), f.metadata["doc"]) for f in _fields()]
    w = [max(len(r[k]) for r in rows) for k in range(3)]
    return "\n".join(f"{n:<{w[0]}}  {e:<{w[1]}}  {v:<{w[2]}}  {d}" for n, e, v, d in rows) + "\n"
