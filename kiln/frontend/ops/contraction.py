"""Tensor contraction (torch.einsum): subscripts parsed, diagonals taken, operands contracted pairwise
as batched matmuls.
"""
from __future__ import annotations

import builtins
import math

from ..creation import arange
from ..operands import _cast, _promote
from ..tensor import Tensor
from .linalg import matmul
from .reductions import sum
from .shape import movedim, permute, reshape


def einsum(equation: str, *operands) -> Tensor:
    """torch.einsum: explicit ('ij,jk->ik') or implicit ('ij,jk') output, '...', repeated subscripts
    (diagonals). Operands are contracted pairwise, each pair as one batched matmul."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise RuntimeError("einsum(): must provide at least one operand")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise RuntimeError(f"einsum(): {len(terms)} subscripts in the equation ({equation!r}) but "
                           f"{len(operands)} operands were given")
    # '...' becomes one upper-case-free placeholder letter per broadcast dim
    ell_nd = 0
    for t, x in zip(terms, operands):
        if "..." in t:
            ell_nd = builtins.max(ell_nd, x.ndim - len(t.replace("...", "")))
    ell = [chr(0x100 + i) for i in range(ell_nd)]  # never collide with user letters
    subs = []
    for t, x in zip(terms, operands):
        if t.count("...") > 1 or (t.replace("...", "") and not t.replace("...", "").isalpha()):
            raise RuntimeError(f"einsum(): invalid subscript {t!r} in {equation!r}")
        if "..." in t:
            n = x.ndim - len(t.replace("...", ""))
            a, b = t.split("...")
            letters = list(a) + ell[ell_nd - n:] + list(b)
        else:
            letters = list(t)
        if len(letters) != x.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in {t!r} does not match the number of "
                               f"dimensions ({x.ndim}) of operand {len(subs)}")
        subs.append(letters)
    counts = {}
    for letters in subs:
        for c in letters:
            counts[c] = counts.get(c, 0) + 1
    if arrow:
        if rhs.count("...") > 1 or not rhs.replace("...", "").isalpha() and rhs.replace("...", ""):
            raise RuntimeError(f"einsum(): invalid output subscript {rhs!r}")
        a, _, b = rhs.partition("...")
        out = list(a) + (ell if "..." in rhs else []) + list(b)
        for c in out:
            if c not in counts:
                raise RuntimeError(f"einsum(): output subscript {c} does not appear in the equation for any input "
                                   "operand")
        if len(set(out)) != len(out):
            raise RuntimeError(f"einsum(): output subscript appears more than once in {rhs!r}")
    else:
        out = ell + sorted(c for c in counts if counts[c] == 1 and c not in ell)
    sizes = {}
    xs = []
    for x, letters in zip(operands, subs):
        x, letters = _einsum_diagonal(x, letters)
        for c, n in zip(letters, x.shape):
            if sizes.get(c, 1) != 1 and n != 1 and sizes[c] != n:
                raise RuntimeError(f"einsum(): operands do not broadcast with remapped shapes: subscript {c} has "
                                   f"size {sizes[c]} and {n}")
            sizes[c] = builtins.max(sizes.get(c, 1), n)
        xs.append((x, letters))
    x, letters = xs[0]
    for k in range(1, len(xs)):
        keep = set(out) | {c for _, ls in xs[k + 1:] for c in ls}
        x, letters = _einsum_pair(x, letters, *xs[k], keep)
    # sum letters not in the output, then order as the output
    gone = [i for i, c in enumerate(letters) if c not in out]
    if gone:
        x = sum(x, tuple(gone))
        letters = [c for c in letters if c in out]
    x = permute(x, [letters.index(c) for c in out]) if letters != out else x
    return x


def _einsum_diagonal(x: Tensor, letters: list):
    """Take the diagonal over repeated subscripts of one operand ('ii->i')."""
    while len(set(letters)) != len(letters):
        c = next(c for c in letters if letters.count(c) > 1)
        i, j = [k for k, l in enumerate(letters) if l == c][:2]
        if x.shape[i] != x.shape[j]:
            raise RuntimeError(f"einsum(): subscript {c} is repeated for operand but the sizes don't match, "
                               f"{x.shape[i]} != {x.shape[j]}")
        x = movedim(x, (i, j), (-2, -1))
        letters = [l for k, l in enumerate(letters) if k not in (i, j)] + [c]
        idx = arange(x.shape[-1])
        x = x[(Ellipsis, idx, idx)]
    return x, letters


def _einsum_pair(a: Tensor, la: list, b: Tensor, lb: list, keep: set):
    """Contract two operands as one batched matmul: (batch, M, K) @ (batch, K, N)."""
    # letters only in one operand and needed nowhere else are summed out first
    for t, ls, other in ((0, la, lb), (1, lb, la)):
        gone = [i for i, c in enumerate(ls) if c not in keep and c not in other]
        if gone:
            if t == 0:
                a = sum(a, tuple(gone))
                la = [c for c in la if c in keep or c in lb]
            else:
                b = sum(b, tuple(gone))
                lb = [c for c in lb if c in keep or c in la]
    batch = [c for c in la if c in lb and c in keep]
    contract = [c for c in la if c in lb and c not in keep]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]

    def size(x, ls, c):
        return x.shape[ls.index(c)] if c in ls else 1

    bshape = tuple(builtins.max(size(a, la, c), size(b, lb, c)) for c in batch)
    a = permute(a, [la.index(c) for c in batch + left + contract])
    b = permute(b, [lb.index(c) for c in batch + contract + right])
    ab = tuple(a.shape[:len(batch)])
    bb = tuple(b.shape[:len(batch)])
    m = math.prod(a.shape[len(batch):len(batch) + len(left)])
    kk = math.prod(a.shape[len(batch) + len(left):])
    n = math.prod(b.shape[len(batch) + len(contract):])
    lshape = tuple(a.shape[len(batch):len(batch) + len(left)])
    rshape = tuple(b.shape[len(batch) + len(contract):])
    if kk != math.prod(b.shape[len(batch):len(batch) + len(contract)]):
        raise RuntimeError("einsum(): contracted subscripts have different sizes in the two operands")
    a = reshape(a, ab + (m, kk))
    b = reshape(b, bb + (kk, n))
    if a.dtype != b.dtype:
        d = _promote(a, b)
        a, b = _cast(a, d), _cast(b, d)
    r = matmul(a, b)
    r = reshape(r, bshape + lshape + rshape)
    return r, batch + left + right
