"""Dynamic dims over static-shape IR: the graph text as a template whose numbers are affine in the dims.

kiln's IR has static shapes. A program exported with dynamic dims is traced at the example
sizes and at two more sizes per dim (and once with every dim changed, when there are several).
The texts must agree token for token except for numbers; each number that differs must be
`const + sum(coeff[d] * d)` (ints and floats), or the reciprocal of one (a mean's `1/n`).
That map is stored; `instantiate` substitutes the numbers for concrete sizes and parses the
text, so the shape rules check the result.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"%[\w.]+|[A-Za-z_][\w.]*|-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\s+|.", re.S)
_NUMBER = re.compile(r"^-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?$")
KINDS = ("int", "float", "recip")


class DynamicShapeError(ValueError):
    """The traced program's structure depends on a dynamic dim, or a value is not affine in it."""


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def is_number(token: str) -> bool:
    return bool(_NUMBER.match(token))


def _is_int(token: str) -> bool:
    return is_number(token) and not any(c in token for c in ".eE")


@dataclass(frozen=True)
class AffineValue:
    """Token `token` of the template is `const + sum(coeffs[d] * size(d))` ("int" or "float"),
    or its reciprocal ("recip")."""

    token: int
    kind: str
    const: float
    coeffs: dict

    def value(self, sizes: dict[str, int]):
        v = self.const + sum(c * sizes[d] for d, c in self.coeffs.items())
        if self.kind == "int":
            return int(round(v))
        if self.kind == "recip":
            return 1.0 / v if v else math.inf
        return float(v)

    def render(self, sizes: dict[str, int]) -> str:
        v = self.value(sizes)
        return str(v) if self.kind == "int" else repr(float(v))

    def to_json(self) -> dict:
        return {"token": self.token, "kind": self.kind, "const": self.const, "coeffs": dict(self.coeffs)}


def _line_of(tokens: list[str], k: int) -> str:
    start = k
    while start > 0 and "\n" not in tokens[start - 1]:
        start -= 1
    end = k
    while end < len(tokens) and "\n" not in tokens[end]:
        end += 1
    return "".join(tokens[start:end]).strip()


def fit(base_text: str, base: dict[str, int], samples: list[tuple[dict[str, int], str]]) -> list[AffineValue]:
    """The affine map of `base_text`'s numbers, from the texts traced at other sizes.

    `samples`: (sizes, text); for each dim, two samples that change only that dim (by +1 and +2),
    then optionally a sample changing every dim (checks there are no products of dims)."""
    base_tokens = tokenize(base_text)
    sample_tokens = []
    for sizes, text in samples:
        toks = tokenize(text)
        changed = ", ".join(f"{d}={s}" for d, s in sizes.items() if s != base[d])
        if len(toks) != len(base_tokens):
            raise DynamicShapeError(f"the traced program's structure depends on the dynamic dims: tracing with "
                                    f"{changed} gives a graph of a different size; mark those axes static, or "
                                    "make the code independent of their size")
        for k, (a, b) in enumerate(zip(base_tokens, toks)):
            if a != b and not (is_number(a) and is_number(b)):
                raise DynamicShapeError(f"the traced program's structure depends on the dynamic dims: with {changed} "
                                        f"the line {_line_of(base_tokens, k)!r} becomes {_line_of(toks, k)!r}")
        sample_tokens.append((sizes, toks))
    out = []
    for k, tok in enumerate(base_tokens):
        if not is_number(tok) or all(toks[k] == tok for _, toks in sample_tokens):
            continue
        out.append(_fit_one(k, base_tokens, base, sample_tokens))
    return out


def _fit_one(k: int, tokens: list[str], base: dict[str, int], samples) -> AffineValue:
    kind = "int" if _is_int(tokens[k]) and all(_is_int(t[k]) for _, t in samples) else "float"
    values = [float(tokens[k])] + [float(t[k]) for _, t in samples]
    sizes = [base] + [s for s, _ in samples]
    candidates = [kind] if kind == "int" else ["float", "recip"]
    for cand in candidates:
        ys = values if cand != "recip" else [1.0 / v if v else math.nan for v in values]
        coeffs = {}
        for d in base:
            pts = [(s[d], y) for s, y in zip(sizes, ys) if all(s[e] == base[e] for e in base if e != d)]
            if len(pts) < 2:
                continue
            (x0, y0), (x1, y1) = pts[0], pts[1]
            slope = (y1 - y0) / (x1 - x0)
            if slope:
                coeffs[d] = int(round(slope)) if cand == "int" else slope
        const = ys[0] - sum(c * base[d] for d, c in coeffs.items())
        if cand == "int":
            const = int(round(const))
        av = AffineValue(k, cand, const, coeffs)
        if all(_close(av.value(s), v, cand) for s, v in zip(sizes, values)):
            return av
    seen = ", ".join(f"{tok} at {', '.join(f'{d}={n}' for d, n in s.items())}"
                     for s, tok in zip(sizes, [tokens[k]] + [t[k] for _, t in samples]))
    raise DynamicShapeError(f"a value in the line {_line_of(tokens, k)!r} is not affine in the dynamic dims "
                            f"({seen}); the program cannot be exported with these dims dynamic")


def _close(got: float, want: float, kind: str) -> bool:
    if kind == "int":
        return got == want
    return math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12)


def instantiate_text(tokens: list[str], values: list[AffineValue], sizes: dict[str, int]) -> str:
    """The template's text for concrete `sizes`."""
    toks = list(tokens)
    for av in values:
        toks[av.token] = av.render(sizes)
    return "".join(toks)


def affine_from_json(obj, n_tokens: int, tokens: list[str], dims: set[str], what: str) -> AffineValue:
    """One stored map entry; ValueError naming `what` if malformed or not pointing at a number token."""
    if not isinstance(obj, dict) or set(obj) != {"token", "kind", "const", "coeffs"}:
        raise ValueError(f"{what} is not {{token, kind, const, coeffs}}")
    tok, kind, const, coeffs = obj["token"], obj["kind"], obj["const"], obj["coeffs"]
    if not isinstance(tok, int) or isinstance(tok, bool) or not 0 <= tok < n_tokens or not is_number(tokens[tok]):
        raise ValueError(f"{what}: token {tok!r} is not a number of the graph text")
    if kind not in KINDS or isinstance(const, bool) or not isinstance(const, (int, float)):
        raise ValueError(f"{what}: bad kind or constant")
    if not isinstance(coeffs, dict) or not coeffs or not set(coeffs) <= dims or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in coeffs.values()):
        raise ValueError(f"{what}: coefficients must name declared dims")
    if kind == "int" and (not isinstance(const, int) or not all(isinstance(c, int) for c in coeffs.values())):
        raise ValueError(f"{what}: an int entry needs int coefficients")
    return AffineValue(tok, kind, const, dict(coeffs))
