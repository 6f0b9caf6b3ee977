"""Dynamic dims over static-shape IR: the graph text as a template whose numbers are multilinear in the dims.

kiln's IR has static shapes. `kiln.export` traces a program with dynamic dims at the example
sizes, at every corner of the box "each dim +0 or +1", and, as a check, with each dim +2 (and
all dims +2 when there are several). The texts must agree token for token except for numbers;
each number that differs is fitted once, at export, as a multilinear expression of the dims
(`DimExpr`: `c + a*batch`, `batch*time`, ...; floats too), or the reciprocal of one (a mean's
`1/n`), and must match at the check sizes. The fit is stored in the ExportedProgram (the `.kiln`
file's `dim_map`); `ExportedProgram.instantiate` substitutes the numbers for concrete sizes and
parses the text (the shape rules check the result), and the ONNX writer reads the same fit as
per-attribute expressions (`symbolic_attrs`) to compute them from the run-time sizes.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"%[\w.]+|[A-Za-z_][\w.]*|-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\s+|.", re.S)
_NUMBER = re.compile(r"^-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?$")
KINDS = ("int", "float", "recip")
MAX_DYNAMIC_DIMS = 4  #: a program is traced 2**dims + dims (+1) more times to fit its values


class DynamicShapeError(ValueError):
    """The traced program's structure depends on a dynamic dim, or a value is not multilinear in the dims."""


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def is_number(token: str) -> bool:
    return bool(_NUMBER.match(token))


def _is_int(token: str) -> bool:
    return is_number(token) and not any(c in token for c in ".eE")


# ---- expressions ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DimExpr:
    """A number that depends on dynamic dims: a sum of `coeff * product of dims` terms
    (multilinear: each dim at most once per term; the term with no dims is the constant)."""

    terms: tuple[tuple[tuple[str, ...], float], ...]  # (dims of the monomial, coefficient), coefficients non-zero

    @property
    def const(self):
        return dict(self.terms).get((), 0)

    def at(self, sizes: dict[str, int]):
        return sum(a * math.prod(sizes[d] for d in mono) for mono, a in self.terms)

    def __str__(self) -> str:
        """`2*batch+1`, `batch*time`, `-1+3*b*t`: the monomials by degree, the constant last."""
        out = ""
        for mono, a in sorted(self.terms, key=lambda ma: (len(ma[0]) == 0, len(ma[0]), ma[0])):
            if mono:
                body = "*".join(mono) if a == 1 else ("-" + "*".join(mono) if a == -1 else "*".join((_num(a),) + mono))
            else:
                body = _num(a)
            out += body if not out or body.startswith("-") else "+" + body
        return out or "0"

    def to_json(self) -> list:
        return [[list(mono), a] for mono, a in self.terms]


def _num(a) -> str:
    return str(a) if isinstance(a, int) else repr(float(a))


def fit_corners(names: list[str], base: dict[str, int], corner: list, integral: bool) -> DimExpr:
    """The multilinear expression through `corner[mask]`, the value at sizes `base[d] + bit j of mask`
    for `d = names[j]` (Moebius inversion, then the product `prod (d - base[d])` expanded)."""
    n = len(names)
    coeff: dict[tuple[str, ...], Any] = {}
    for t in range(1 << n):
        c_t = sum((-1) ** bin(t & ~s).count("1") * corner[s] for s in range(1 << n) if s & ~t == 0)
        if not c_t:
            continue
        members = [j for j in range(n) if t >> j & 1]
        for r in range(1 << len(members)):
            mono = tuple(names[members[i]] for i in range(len(members)) if r >> i & 1)
            rest = math.prod(-base[names[members[i]]] for i in range(len(members)) if not r >> i & 1)
            coeff[mono] = coeff.get(mono, 0) + c_t * rest
    if integral:
        coeff = {m: int(round(a)) for m, a in coeff.items()}
    return DimExpr(tuple(sorted(((m, a) for m, a in coeff.items() if a), key=lambda ma: (len(ma[0]), ma[0]))))


@dataclass(frozen=True)
class DimValue:
    """Number token `token` of the graph text is `expr` at the run-time sizes ("int", "float"), or its
    reciprocal ("recip")."""

    token: int
    kind: str
    expr: DimExpr

    def value(self, sizes: dict[str, int]):
        v = self.expr.at(sizes)
        if self.kind == "int":
            return int(v)
        if self.kind == "recip":
            return 1.0 / v if v else math.inf
        return float(v)

    def render(self, sizes: dict[str, int]) -> str:
        v = self.value(sizes)
        return str(v) if self.kind == "int" else repr(float(v))

    def to_json(self) -> dict:
        return {"token": self.token, "kind": self.kind, "terms": self.expr.to_json()}


# ---- fitting, at export ---------------------------------------------------------------------------

def sample_sizes(example: dict[str, int]) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
    """(corners, checks): the sizes to trace besides `example`. `corners[mask - 1]` has bit j of
    `mask` added to the j-th dim (sorted by name); `checks` moves each dim by 2 (and all, if several)."""
    names = sorted(example)
    if len(names) > MAX_DYNAMIC_DIMS:
        raise DynamicShapeError(f"kiln.export: {len(names)} dynamic dims ({', '.join(names)}); at most "
                                f"{MAX_DYNAMIC_DIMS} are supported")
    corners = [{d: example[d] + (mask >> j & 1) for j, d in enumerate(names)} for mask in range(1, 1 << len(names))]
    checks = [dict(example, **{d: example[d] + 2}) for d in names]
    if len(names) > 1:
        checks.append({d: s + 2 for d, s in example.items()})
    return corners, checks


def _line_of(tokens: list[str], k: int) -> str:
    start = k
    while start > 0 and "\n" not in tokens[start - 1]:
        start -= 1
    end = k
    while end < len(tokens) and "\n" not in tokens[end]:
        end += 1
    return "".join(tokens[start:end]).strip()


def fit(base_text: str, example: dict[str, int], corner_texts: list[str],
        checks: list[tuple[dict[str, int], str]]) -> list[DimValue]:
    """The stored map of `base_text`'s numbers: `corner_texts` traced at `sample_sizes(example)[0]`,
    `checks` (sizes, text) at its checks. DynamicShapeError names the line that does not fit."""
    names = sorted(example)
    corners = sample_sizes(example)[0]
    base_tokens = tokenize(base_text)
    samples = []
    for sizes, text in list(zip(corners, corner_texts)) + list(checks):
        toks = tokenize(text)
        changed = ", ".join(f"{d}={s}" for d, s in sizes.items() if s != example[d])
        if len(toks) != len(base_tokens):
            raise DynamicShapeError(f"the traced program's structure depends on the dynamic dims: tracing with "
                                    f"{changed} gives a graph of a different size; mark those axes static, or "
                                    "make the code independent of their size")
        for k, (a, b) in enumerate(zip(base_tokens, toks)):
            if a != b and not (is_number(a) and is_number(b)):
                raise DynamicShapeError(f"the traced program's structure depends on the dynamic dims: with {changed} "
                                        f"the line {_line_of(base_tokens, k)!r} becomes {_line_of(toks, k)!r}")
        samples.append((sizes, toks))
    n_corner = len(corners)
    out = []
    for k, tok in enumerate(base_tokens):
        if not is_number(tok) or all(toks[k] == tok for _, toks in samples):
            continue
        out.append(_fit_one(k, base_tokens, names, example, samples, n_corner))
    return out


def _fit_one(k: int, tokens: list[str], names: list[str], example: dict[str, int], samples, n_corner: int) -> DimValue:
    kind = "int" if _is_int(tokens[k]) and all(_is_int(t[k]) for _, t in samples) else "float"
    sizes = [example] + [s for s, _ in samples]
    values = [float(tokens[k])] + [float(t[k]) for _, t in samples]
    for cand in ([kind] if kind == "int" else ["float", "recip"]):
        ys = values if cand != "recip" else [1.0 / v if v else math.nan for v in values]
        if any(math.isnan(y) for y in ys):
            continue
        expr = fit_corners(names, example, ys[:n_corner + 1], cand == "int")
        dv = DimValue(k, cand, expr)
        if all(close(dv.value(s), v, cand) for s, v in zip(sizes, values)):
            return dv
    seen = ", ".join(f"{tok} at {', '.join(f'{d}={n}' for d, n in s.items())}"
                     for s, tok in zip(sizes, [tokens[k]] + [t[k] for _, t in samples]))
    raise DynamicShapeError(f"a value in the line {_line_of(tokens, k)!r} is not multilinear in the dynamic dims "
                            f"({seen}); the program cannot be exported with these dims dynamic")


def close(got: float, want: float, kind: str) -> bool:
    """Whether a fitted value reproduces a traced one (exactly for ints)."""
    if kind == "int":
        return got == want
    return math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12)



def fit_shape_axis(example: dict[str, int], size: int, corner_sizes: list[int]) -> int | str:
    """An output axis's size: an int if static, the dim's name if it equals a dim, else its expression."""
    names = sorted(example)
    expr = fit_corners(names, example, [size] + list(corner_sizes), True)
    if not any(mono for mono, _ in expr.terms):
        return int(size)
    return str(expr)


# ---- using the stored fit -------------------------------------------------------------------------

def instantiate_text(tokens: list[str], values: list[DimValue], sizes: dict[str, int]) -> str:
    """The template's text for concrete `sizes`."""
    toks = list(tokens)
    for dv in values:
        toks[dv.token] = dv.render(sizes)
    return "".join(toks)


def value_from_json(obj, tokens: list[str], dims: set[str], what: str, version: int) -> DimValue:
    """One stored `dim_map` entry (format version 2: `{token, kind, terms}`; version 1's affine
    `{token, kind, const, coeffs}` is read as the same expression). ValueError naming `what` if malformed."""
    keys = {"token", "kind", "terms"} if version >= 2 else {"token", "kind", "const", "coeffs"}
    if not isinstance(obj, dict) or set(obj) != keys:
        raise ValueError(f"{what} is not {{{', '.join(sorted(keys))}}}")
    tok, kind = obj["token"], obj["kind"]
    if not isinstance(tok, int) or isinstance(tok, bool) or not 0 <= tok < len(tokens) or not is_number(tokens[tok]):
        raise ValueError(f"{what}: token {tok!r} is not a number of the graph text")
    if kind not in KINDS:
        raise ValueError(f"{what}: kind must be one of {KINDS}, got {kind!r}")
    if version >= 2:
        raw = obj["terms"]
        if not isinstance(raw, list) or not all(isinstance(t, list) and len(t) == 2 and isinstance(t[0], list)
                                                for t in raw):
            raise ValueError(f"{what}: terms must be a list of [dims, coefficient]")
        terms = [(t[0], t[1]) for t in raw]
    else:
        const, coeffs = obj["const"], obj["coeffs"]
        if not isinstance(coeffs, dict):
            raise ValueError(f"{what}: coefficients must name declared dims")
        terms = [([], const)] + [([d], c) for d, c in coeffs.items()]
    seen = set()
    for mono, a in terms:
        if not all(isinstance(d, str) and d in dims for d in mono) or len(set(mono)) != len(mono):
            raise ValueError(f"{what}: coefficients must name declared dims, each once per term, got {mono!r}")
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
            raise ValueError(f"{what}: bad coefficient {a!r}")
        if kind == "int" and not isinstance(a, int):
            raise ValueError(f"{what}: an int entry needs int coefficients")
        if tuple(sorted(mono)) in seen:
            raise ValueError(f"{what}: the term {mono!r} appears twice")
        seen.add(tuple(sorted(mono)))
    expr = DimExpr(tuple(sorted(((tuple(m), a) for m, a in terms if a), key=lambda ma: (len(ma[0]), ma[0]))))
    if not any(m for m, _ in expr.terms):
        raise ValueError(f"{what}: the entry depends on no dim")
    return DimValue(tok, kind, expr)


def symbolic_attrs(graph, tokens: list[str], values: list[DimValue]) -> list[dict[str, Any]]:
    """Per node of `graph` (parsed from `tokens`), its attributes with each number the stored fit
    moves replaced by its `DimExpr` ("int" entries; a dim-dependent float stays a `DimValue`)."""
    by_token = {dv.token: dv for dv in values}
    attrs = [dict(n.attrs) for n in graph.nodes]
    if not by_token:
        return attrs
    lines = _line_starts(tokens)
    for k, node in enumerate(graph.nodes):
        start, end = lines.get(f"%{node.name}", (None, None))
        if start is None:
            raise ValueError(f"the graph text has no line for node %{node.name}")
        if not any(start <= t < end for t in by_token):
            continue
        for key, (lo, hi) in _attr_spans(tokens, start, end).items():
            moved = [t for t in range(lo, hi) if is_number(tokens[t])]
            if not any(t in by_token for t in moved) or key not in node.attrs:
                continue
            what = f"attribute {key!r} of node %{node.name}"
            leaves = iter(by_token.get(t) for t in moved)
            attrs[k][key] = _replace_leaves(node.attrs[key], leaves, what)
            if next(leaves, False) is not False:
                raise ValueError(f"{what}: its printed numbers do not match its values")
    return attrs


def _line_starts(tokens: list[str]) -> dict[str, tuple[int, int]]:
    """`%name` -> the token range of the line defining it."""
    out, start = {}, 0
    for k, tok in enumerate(tokens + ["\n"]):
        if "\n" in tok:
            first = next((t for t in range(start, k) if not tokens[t].isspace()), None)
            if first is not None and tokens[first].startswith("%") and first + 1 < k and tokens[first + 1] == ":":
                out[tokens[first]] = (start, k)
            start = k + 1
    return out


def _attr_spans(tokens: list[str], start: int, end: int) -> dict[str, tuple[int, int]]:
    """The token range of each `key=value` inside the line's trailing `{...}`."""
    brace = next((t for t in range(end - 1, start - 1, -1) if tokens[t] == "{"), None)
    if brace is None:
        return {}
    spans, depth, key, lo = {}, 0, None, 0
    for t in range(brace + 1, end):
        tok = tokens[t]
        if depth == 0 and key is None and re.match(r"[A-Za-z_]", tok) and t + 1 < end and tokens[t + 1] == "=":
            key, lo = tok, t + 2
        elif tok in "([":
            depth += 1
        elif tok in ")]":
            depth -= 1
        elif depth == 0 and tok in (",", "}") and key is not None:
            spans[key] = (lo, t)
            key = None
    return spans


def _replace_leaves(value, leaves, what: str):
    if isinstance(value, (tuple, list)):
        out = [_replace_leaves(v, leaves, what) for v in value]
        return tuple(out) if isinstance(value, tuple) else out
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    try:
        dv = next(leaves)
    except StopIteration:
        raise ValueError(f"{what}: its printed numbers do not match its values") from None
    if dv is None:
        return value
    return dv.expr if dv.kind == "int" and isinstance(value, int) else dv


def is_dynamic(value) -> bool:
    """Whether an attribute value (possibly nested) holds a `DimExpr` or `DimValue`."""
    if isinstance(value, (DimExpr, DimValue)):
        return True
    if isinstance(value, (tuple, list)):
        return any(is_dynamic(v) for v in value)
    return False


def dim_sources(exported) -> dict[str, tuple[int, int]]:
    """For each dynamic dim, the first (user input index, axis) that carries it."""
    out: dict[str, tuple[int, int]] = {}
    for k, spec in enumerate(exported.input_specs):
        for axis, s in enumerate(spec.shape):
            if isinstance(s, str):
                out.setdefault(s, (k, axis))
    return out
