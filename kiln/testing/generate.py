"""Random well-typed programs through kiln's public API (see `kiln.testing.program`).

Each step is drawn from a catalogue of user-level ops (elementwise, transcendental, casts,
comparisons, reductions on every axis, views and movement, indexing, matmul, conv, random
numbers, in-place updates of arguments and of views, a module whose forward reads guarded
state) and run eagerly at once: a step that raises is dropped, so every program the
generator returns runs eagerly. Inputs are drawn with sizes 0, 1, primes and (outside the
small profile) large ones, contiguous or as views (transposed, strided, offset, expanded),
sometimes aliasing an earlier argument.

Ops whose result jumps on a tiny change of their operand (comparisons, floor, argmax, casts
to integers, integer division) only see *exact* values: arguments (a dyadic grid) and what
exact ops (movement, add, mul, min/max, sums of few terms) made of them, so every backend
computes the same operand bit for bit and the comparison is meaningful.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .program import PRELUDE, InputSpec, Program, Step

SMALL_DIMS = (1, 2, 3, 5)
SMALL_RARE = (0, 4, 7)
LARGE_DIMS = (11, 13, 17, 31, 64, 127, 257)
MAX_NUMEL = 1 << 16


@dataclass
class _Val:
    shape: tuple[int, ...]
    dtype: str
    exact: bool
    level: int  # exact arithmetic ops along the way (bounded: exactness needs few of them)
    arg: int | None  # the input index when this value is an argument itself
    owned: bool  # an argument or a clone: in-place updates of it (and its views) are allowed
    requires_grad: bool

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")

    @property
    def ndim(self) -> int:
        return len(self.shape)


class Generator:
    """Draws programs from `np.random.default_rng(seed)`; `profile` is "small" (the CI batch:
    dims up to 7) or "full" (primes and large dims too)."""

    def __init__(self, seed: int, profile: str = "small", max_steps: int = 8):
        if profile not in ("small", "full"):
            raise ValueError(f"profile must be 'small' or 'full', got {profile!r}")
        self.rng = np.random.default_rng(seed)
        self.profile = profile
        self.max_steps = max_steps
        self.rejected = 0  # steps dropped because they raised eagerly
        self._ns: dict[str, Any] = {}
        exec(compile(PRELUDE, "<kiln fuzz prelude>", "exec"), self._ns)

    # -- random helpers ----------------------------------------------------------------------
    def _pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def _chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def _dim(self) -> int:
        if self.profile == "full" and self._chance(0.15):
            return self._pick(LARGE_DIMS)
        return self._pick(SMALL_RARE) if self._chance(0.1) else self._pick(SMALL_DIMS)

    def _shape(self, max_nd: int = 3) -> tuple[int, ...]:
        nd = int(self.rng.integers(0, max_nd + 1))
        shape = tuple(self._dim() for _ in range(nd))
        while math.prod(shape) > MAX_NUMEL:
            shape = shape[1:]
        return shape

    # -- the program under construction --------------------------------------------------------
    def program(self, seed: int) -> Program:
        """One random program; it runs eagerly (with its backward pass) without raising."""
        for _ in range(20):
            prog = self._draw(seed)
            if prog is not None:
                return prog
        raise RuntimeError(f"no valid program drawn for seed {seed}")

    def _draw(self, seed: int) -> Program | None:
        self.seed = seed
        self.specs: list[InputSpec] = []
        self.steps: list[Step] = []
        self.vals: list[_Val] = []
        self.tensors: list[Any] = []
        self.leaves: list[Any] = []
        self.step_of: dict[int, int] = {}  # value index -> step index (steps' values only)
        self._add_input(self._shape(), self._input_dtype(), first=True)
        n_steps = int(self.rng.integers(2, self.max_steps + 1))
        tries = 0
        while len(self.steps) < n_steps and tries < 4 * n_steps + 8:
            tries += 1
            self._try_step()
        if not self.steps:
            return None
        n_in = len(self.specs)
        used = {a for s in self.steps for a in s.args}
        ends = [v for v in range(n_in, n_in + len(self.steps)) if v not in used]
        extra = [v for v in range(n_in, n_in + len(self.steps) - 1) if v not in ends and self._chance(0.2)]
        outputs = tuple(sorted(set(ends[-4:] + extra)))
        prog = Program(tuple(self.specs), tuple(self.steps), outputs, seed, training=True)
        from .program import load
        try:
            load(prog)["run"](load(prog)["program"], [s.as_tuple() for s in prog.inputs], seed)
        except Exception:  # noqa: BLE001 - e.g. backward through a tensor updated in place: not well-typed
            self.rejected += 1
            return None
        return prog

    def _input_dtype(self) -> str:
        r = self.rng.random()
        return "float32" if r < 0.7 else "float64" if r < 0.85 else "int64" if r < 0.93 else "bool" if r < 0.97 \
            else "float16"

    def _add_input(self, shape, dtype, first: bool = False, grad: bool | None = None) -> _Val:
        shape = tuple(int(s) for s in shape)
        layout = "contiguous"
        if self._chance(0.35):
            layout = self._pick(("transposed", "strided", "offset", "expanded"))
        is_float = dtype.startswith("float")
        rg = (is_float and self._chance(0.6)) if grad is None else (grad and is_float)
        alias = None
        if not first and self._chance(0.1):
            same = [i for i, s in enumerate(self.specs) if tuple(self.vals[i].shape) == shape
                    and self.vals[i].dtype == dtype and s.alias is None]
            overlap = [i for i in same if self.specs[i].layout == "offset"]
            # a 0-d "offset" input is stored as is (it has no axis to offset): nothing overlaps it
            if overlap and self._chance(0.7) and len(shape) >= 1:
                alias, layout, rg = self._pick(overlap), "overlap", False
            elif same:
                alias, layout, rg = self._pick(same), self._pick(("same", "detach")), False
        spec = InputSpec(shape, dtype, layout, rg, "grid", alias)
        self._insert_input(spec)  # inputs come first in the value numbering: step values after them shift
        return self.vals[len(self.specs) - 1]

    def _insert_input(self, spec: InputSpec) -> None:
        i = len(self.specs)
        self.specs.append(spec)
        self.steps = [Step(s.code, tuple(a + 1 if a >= i else a for a in s.args), s.family, s.stmt)
                      for s in self.steps]
        leaf, arg = self._ns["make_input"](spec.as_tuple(), self.seed, i, self.leaves, self.tensors[:i])
        self.leaves.append(leaf)
        self.tensors.insert(i, arg)
        self.vals.insert(i, _Val(spec.shape, spec.dtype, spec.dtype != "float16", 0, i,
                                 spec.layout != "expanded" and not spec.requires_grad, arg.requires_grad))

    def _remove_last_input(self) -> None:
        i = len(self.specs) - 1
        self.specs.pop()
        self.leaves.pop()
        self.tensors.pop(i)
        self.vals.pop(i)
        self.steps = [Step(s.code, tuple(a - 1 if a > i else a for a in s.args), s.family, s.stmt)
                      for s in self.steps]

    def _try_step(self) -> None:
        n_specs = len(self.specs)
        x = int(self.rng.integers(len(self.vals)))
        if len(self.vals) > n_specs and self._chance(0.6):  # mostly chain on recent values
            x = len(self.vals) - 1 - int(self.rng.integers(min(3, len(self.vals) - n_specs)))
        try:
            made = self._pick(CATALOGUE)(self, self.vals[x])
        except _Skip:
            made = None
        if made is None:
            while len(self.specs) > n_specs:
                self._remove_last_input()
            return
        step, exact, owned = made
        # arguments may have been added by the step: value indices of the step are current
        ns = dict(self._ns)
        ns.update({f"v{k}": t for k, t in enumerate(self.tensors)})
        try:
            if step.stmt:
                exec(step.line(), ns)
                out = ns[f"v{step.args[0]}"]
            else:
                out = eval(step.line(), ns)
            if not hasattr(out, "shape") or math.prod(out.shape) > MAX_NUMEL:
                raise _Skip()
        except Exception:  # noqa: BLE001 - an op that does not apply to these operands
            self.rejected += 1
            while len(self.specs) > n_specs:
                self._remove_last_input()
            return
        src = [self.vals[a] for a in step.args]
        level = max((v.level for v in src), default=0) + (0 if step.family == "exact" else 1)
        is_exact = exact and all(v.exact for v in src) and level <= 3
        self.steps.append(step)
        self.tensors.append(out)
        self.vals.append(_Val(tuple(out.shape), str(out.dtype).replace("kiln.", ""), is_exact,
                              level if is_exact else 99, None, owned, bool(out.requires_grad)))

    # -- operand helpers for the catalogue ---------------------------------------------------
    def refs(self, *vals: _Val) -> tuple[int, ...]:
        """The current value indices of `vals` (adding an argument renumbers the step values)."""
        return tuple(next(k for k, w in enumerate(self.vals) if w is v) for v in vals)

    def operand_like(self, v: _Val, broadcast: bool = True) -> _Val:
        """An operand for a binary op with value `v`: a value of the same shape and dtype, or a new
        argument of a shape that broadcasts against it."""
        same = [w for w in self.vals if w.shape == v.shape and w.dtype == v.dtype and w is not v]
        if same and self._chance(0.5):
            return self._pick(same)
        shape = list(v.shape)
        if broadcast and shape and self._chance(0.5):
            if self._chance(0.5):
                shape = shape[int(self.rng.integers(len(shape) + 1)):]  # a trailing part
            else:
                shape = [1 if self._chance(0.5) else s for s in shape]
        return self._add_input(shape, v.dtype)


class _Skip(Exception):
    """The drawn op does not apply to this operand."""


def _need(cond: bool) -> None:
    if not cond:
        raise _Skip()


Made = tuple[Step, bool, bool]  # the step, whether it keeps exact operands exact, whether it owns its result


def _unary(g: Generator, v: _Val) -> Made:
    code, family, exact = g._pick(UNARY)
    _need(v.dtype != "bool")
    return Step(code, g.refs(v), family), exact, False


UNARY = [
    ("{0}.clamp(-4, 4).exp()", "transcendental", False), ("{0}.tanh()", "transcendental", False),
    ("{0}.sigmoid()", "transcendental", False), ("{0}.sin()", "transcendental", False),
    ("{0}.cos()", "transcendental", False), ("({0}.abs() + 1).log()", "transcendental", False),
    ("({0} * {0} + 1).sqrt()", "elementwise", False), ("({0} * {0} + 1).rsqrt()", "transcendental", False),
    ("{0}.erf()", "transcendental", False), ("F.gelu({0})", "transcendental", False),
    ("F.softplus({0})", "transcendental", False), ("{0}.abs().log1p()", "transcendental", False),
    ("1 / ({0} * {0} + 1)", "elementwise", False), ("({0}.abs() + 1) ** 0.5", "transcendental", False),
    ("{0}.relu()", "exact", True), ("{0}.abs()", "exact", True), ("-{0}", "exact", True),
    ("{0} * 0.5", "elementwise", True), ("{0} + 1", "elementwise", True), ("{0}.clamp(-1, 1)", "exact", True),
    ("{0} ** 2", "elementwise", True), ("{0}.square()", "elementwise", True), ("flag({0})", "elementwise", True),
]


def _binary(g: Generator, v: _Val) -> Made:
    _need(v.dtype != "bool")
    code, family, exact, needs_exact = g._pick(BINARY)
    y = g.operand_like(v)
    if needs_exact:
        _need(v.exact and y.exact)
    args = (v, y) if g._chance(0.7) else (y, v)
    return Step(code, g.refs(*args), family), exact, False


BINARY = [  # code, family, keeps exactness, needs exact operands
    ("{0} + {1}", "elementwise", True, False), ("{0} - {1}", "elementwise", True, False),
    ("{0} * {1}", "elementwise", True, False), ("{0} / ({1}.abs() + 1)", "elementwise", False, False),
    ("kiln.maximum({0}, {1})", "exact", True, False), ("kiln.minimum({0}, {1})", "exact", True, False),
    ("kiln.where({0} > {1}, {0}, {1})", "exact", True, True), ("({0} >= {1})", "exact", True, True),
    ("({0}.abs() + 1) ** {1}.clamp(-2, 2)", "transcendental", False, False),
    ("{0} // ({1}.abs() + 1)", "elementwise", True, True), ("{0} % ({1}.abs() + 1)", "elementwise", True, True),
    ("kiln.where({1} != 0, {0}, {0} * 2)", "exact", True, True),
]


def _cast(g: Generator, v: _Val) -> Made:
    code, exact_only = g._pick(CASTS)
    _need(not exact_only or v.exact)
    return Step(code, g.refs(v), "exact"), True, False


CASTS = [("{0}.double()", False), ("{0}.float()", False), ("{0}.long()", True), ("{0}.bool()", True),
         ("{0}.half()", False), ("{0}.floor()", True), ("{0}.round()", True), ("{0}.sign()", True),
         ("({0} > 0).float()", True), ("{0}.to(kiln.int32)", True)]


def _reduce(g: Generator, v: _Val) -> Made:
    _need(v.ndim >= 1 and v.dtype != "bool")
    d = int(g.rng.integers(-v.ndim, v.ndim))
    kd = g._pick(("", ", keepdim=True"))
    code, family, exact, needs_exact = g._pick(REDUCE)
    _need(not needs_exact or v.exact)
    if "{axes}" in code:
        axes = sorted(set(int(a) for a in g.rng.integers(0, v.ndim, size=2)))
        code = code.replace("{axes}", repr(tuple(axes)))
    return Step(code.replace("{d}", str(d)).replace("{kd}", kd), g.refs(v), family), exact, False


REDUCE = [
    ("{0}.sum({d}{kd})", "reduction", True, False), ("{0}.sum()", "reduction", True, False),
    ("{0}.sum({axes}{kd})", "reduction", True, False), ("{0}.mean({d}{kd})", "reduction", False, False),
    ("{0}.amax({d}{kd})", "exact", True, False), ("{0}.amin({d}{kd})", "exact", True, False),
    ("{0}.max({d}{kd})[0]", "exact", True, False), ("{0}.prod({d}{kd})", "reduction", False, False),
    ("{0}.argmax({d}{kd})", "exact", True, True), ("{0}.argmin({d})", "exact", True, True),
    ("{0}.var({d}{kd})", "reduction", False, False), ("{0}.std({d}{kd})", "reduction", False, False),
    ("{0}.logsumexp({d}{kd})", "reduction", False, False), ("{0}.softmax({d})", "reduction", False, False),
    ("{0}.log_softmax({d})", "reduction", False, False), ("{0}.cumsum({d})", "reduction", True, False),
    ("{0}.norm()", "reduction", False, False), ("{0}.mean()", "reduction", False, False),
]


def _movement(g: Generator, v: _Val) -> Made:
    nd = v.ndim
    options: list[str] = ["{0}.reshape(-1)", "{0}.unsqueeze(0)", "{0}.contiguous()", "{0}.flatten()"]
    if nd >= 1:
        d = int(g.rng.integers(nd))
        s = v.shape[d]
        options += [f"{{0}}.flip({d})", f"{{0}}.narrow({d}, {min(1, s)}, {max(s - 1, 0)})",
                    "{0}[..., ::2]", "{0}[1:]", f"{{0}}.unsqueeze({d}).squeeze({d})", "{0}.expand(2, *{0}.shape)",
                    f"{{0}}.roll(1, {d})", f"F.pad({{0}}, (1, 2))", f"{{0}}.repeat({', '.join(['2'] + ['1'] * (nd - 1))})",
                    "{0}.reshape({0}.shape[0], -1)", f"{{0}}.unbind({d})[0]"]
        if s > 0:
            idx = [int(i) for i in g.rng.integers(0, s, size=int(g.rng.integers(1, 4)))]
            options += [f"{{0}}.index_select({d}, kiln.tensor({idx}))"]
            gshape = list(v.shape)
            gshape[d] = int(g.rng.integers(1, 3))
            gidx = g.rng.integers(0, s, size=gshape).tolist()
            options += [f"{{0}}.gather({d}, kiln.tensor({gidx}))"]
            options += [f"{{0}}[kiln.tensor({idx})]"] if d == 0 else []
    if nd >= 2:
        a, b = (int(i) for i in g.rng.permutation(nd)[:2])
        perm = tuple(int(i) for i in g.rng.permutation(nd))
        options += ["{0}.mT", f"{{0}}.transpose({a}, {b})", f"{{0}}.permute{perm}", "{0}[:, 1:]"]
    code = g._pick(options)
    return Step(code, g.refs(v), "exact"), True, False


def _join(g: Generator, v: _Val) -> Made:
    y = g.operand_like(v, broadcast=False)
    _need(y.shape == v.shape)
    d = int(g.rng.integers(-v.ndim, v.ndim)) if v.ndim else 0
    code = g._pick((f"kiln.cat([{{0}}, {{1}}], {d})", f"kiln.stack([{{0}}, {{1}}], {d})",
                    "kiln.stack([{0}, {1}])"))
    _need(v.ndim >= 1 or "stack" in code)
    return Step(code, g.refs(v, y), "exact"), True, False


def _matmul(g: Generator, v: _Val) -> Made:
    _need(v.ndim >= 1 and v.is_float)
    k, m = v.shape[-1], g._pick((1, 2, 3, 5))
    form = g._pick(("right", "right", "left", "linear", "batched"))
    if form == "left":
        _need(v.ndim >= 2)
        w = g._add_input((m, v.shape[-2]), v.dtype)
        return Step("{1} @ {0}", g.refs(v, w), "matmul"), False, False
    if form == "linear":
        w = g._add_input((m, k), v.dtype)
        b = g._add_input((m,), v.dtype)
        return Step("F.linear({0}, {1}, {2})", g.refs(v, w, b), "matmul"), False, False
    if form == "batched":
        _need(v.ndim == 3)
        w = g._add_input((v.shape[0], k, m), v.dtype)
        return Step("kiln.bmm({0}, {1})", g.refs(v, w), "matmul"), False, False
    w = g._add_input((k, m), v.dtype)
    return Step("{0} @ {1}", g.refs(v, w), "matmul"), False, False


def _conv(g: Generator, v: _Val) -> Made:
    _need(v.is_float)
    cout, kw = g._pick((1, 2, 3)), g._pick((1, 2, 3))
    stride, pad = g._pick((1, 1, 2)), g._pick((0, 1))
    if v.ndim == 4 and g._chance(0.7):
        w = g._add_input((cout, v.shape[1], kw, kw), v.dtype)
        return Step(f"F.conv2d({{0}}, {{1}}, stride={stride}, padding={pad})", g.refs(v, w), "conv"), False, False
    if v.ndim == 3 and g._chance(0.7):
        w = g._add_input((cout, v.shape[1], kw), v.dtype)
        groups = ""
        return Step(f"F.conv1d({{0}}, {{1}}, stride={stride}, padding={pad}{groups})", g.refs(v, w), "conv"), False, False
    kind = g._pick(("conv", "avg", "max"))
    if kind == "conv":
        w = g._add_input((cout, 1, kw), v.dtype)
        return Step(f"F.conv1d({{0}}.reshape(1, 1, -1), {{1}}, stride={stride}, padding={pad})", g.refs(v, w),
                    "conv"), False, False
    if kind == "avg":
        return Step(f"F.avg_pool1d({{0}}.reshape(1, 1, -1), {kw})", g.refs(v), "conv"), False, False
    return Step(f"F.max_pool1d({{0}}.reshape(1, 1, -1), {kw})", g.refs(v), "exact"), True, False


def _random(g: Generator, v: _Val) -> Made:
    _need(v.is_float)
    code = g._pick(("{0} + kiln.rand_like({0})", "F.dropout({0}, 0.5, training=True)",
                    "{0} * kiln.randn_like({0})", "{0} * (kiln.rand({0}.shape) < 0.5)"))
    return Step(code, g.refs(v), "elementwise"), False, False


def _inplace(g: Generator, v: _Val) -> Made:
    if not v.owned:  # an in-place update of a clone of `x`, in a later step
        return Step("{0}.clone()", g.refs(v), "exact"), True, True
    options = ["{0}.mul_(2)", "{0}.add_(1)", "{0}.clamp_(-1, 1)", "{0}.zero_()"]
    if v.ndim >= 1:
        options += ["{0}[..., :1] = 0.5", "{0}[1:].mul_(3)", "{0}[0] = {0}[-1]", "{0}[..., ::2].add_(1)"]
    if v.ndim >= 2:
        options += ["{0}.t().mul_(-1)" if v.ndim == 2 else "{0}[:, 0] = 1"]
    code = g._pick(options)
    if v.dtype == "bool":
        _need(False)
    if g._chance(0.3):
        y = g.operand_like(v, broadcast=True)
        _need(y.dtype == v.dtype)
        return Step("{0}.add_({1})", g.refs(v, y), "elementwise", stmt=True), True, True
    return Step(code, g.refs(v), "elementwise", stmt=True), True, True


def _creation(g: Generator, v: _Val) -> Made:
    _need(v.ndim >= 1 and v.dtype != "bool")
    code = g._pick(("{0} + kiln.arange({0}.shape[-1])", "{0} * kiln.ones_like({0})",
                    "kiln.zeros_like({0}) + {0}", "{0} + kiln.full({0}.shape, 0.25)",
                    "kiln.tril({0}) if {0}.ndim == 2 else {0}.triu() if {0}.ndim > 2 else {0}"))
    return Step(code, g.refs(v), "elementwise"), True, False


CATALOGUE: list[Callable[[Generator, _Val], Made]] = [
    _unary, _unary, _unary, _binary, _binary, _binary, _cast, _reduce, _reduce, _movement, _movement, _movement,
    _join, _matmul, _conv, _random, _inplace, _inplace, _creation,
]
