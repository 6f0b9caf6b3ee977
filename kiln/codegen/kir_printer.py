"""Text form of the kernel IR: one statement a line, nested loops indented."""
from __future__ import annotations

from .kir import (Assign, Const, Expr, Fail, If, KernelFunc, Let, Load, Loop, Op, Stmt, Store, TileMMA, TransposeCopy,
                  Var)

_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "rem": "%", "lt": "<", "le": "<=", "eq": "==",
          "ne": "!=", "gt": ">", "ge": ">=", "and": "&", "or": "|", "xor": "^", "shl": "<<", "lshr": ">>>",
          "ashr": ">>"}


def format_expr(e: Expr) -> str:
    if isinstance(e, Const):
        if e.dtype.name == "int64":
            return str(e.value)
        return f"{e.value!r}:{e.dtype.short}"
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Load):
        return f"{e.buf}[{format_expr(e.index)}]"
    if isinstance(e, Op):
        if e.name in _INFIX:
            a, b = e.args
            return f"({format_expr(a)} {_INFIX[e.name]} {format_expr(b)})"
        if e.name in ("cast", "bitcast"):
            return f"{e.name}<{e.dtype.short}>({format_expr(e.args[0])})"
        return f"{e.name}({', '.join(format_expr(a) for a in e.args)})"
    raise TypeError(f"not a kernel IR expression: {e!r}")


def _stmt_lines(s: Stmt, depth: int, sched, out: list[str]) -> None:
    pad = "  " * depth
    if isinstance(s, Loop):
        ls = sched.loops.get(s.var.name)
        tags = []
        if ls is not None:
            if ls.parallel:
                tags.append("parallel")
            if ls.vector_width:
                tags.append(f"vector={ls.vector_width}")
            if ls.unroll:
                tags.append(f"unroll={ls.unroll}")
        tag = f"  # {' '.join(tags)}" if tags else ""
        out.append(f"{pad}for {s.var.name} in 0..{format_expr(s.extent)}:{tag}")
        for b in s.body:
            _stmt_lines(b, depth + 1, sched, out)
    elif isinstance(s, Let):
        out.append(f"{pad}{s.var.name}: {s.var.dtype.short} = {format_expr(s.value)}")
    elif isinstance(s, Assign):
        out.append(f"{pad}{s.var.name} = {format_expr(s.value)}")
    elif isinstance(s, Store):
        out.append(f"{pad}{s.buf}[{format_expr(s.index)}] = {format_expr(s.value)}")
    elif isinstance(s, If):
        out.append(f"{pad}if {format_expr(s.cond)}:")
        for b in s.then:
            _stmt_lines(b, depth + 1, sched, out)
        if s.orelse:
            out.append(f"{pad}else:")
            for b in s.orelse:
                _stmt_lines(b, depth + 1, sched, out)
    elif isinstance(s, Fail):
        out.append(f"{pad}fail {s.code}({', '.join(format_expr(p) for p in s.payload)})")
    elif isinstance(s, TileMMA):
        acc = "" if isinstance(s.accumulate, Const) and not s.accumulate.value else \
            f" accumulate={format_expr(s.accumulate)}"
        out.append(f"{pad}tile_mma {s.mr}x{s.nr} {s.c}[{format_expr(s.c_index)}; ldc={s.ldc}] += "
                   f"{s.a}[{format_expr(s.a_index)}] * {s.b}[{format_expr(s.b_index)}] "
                   f"k=0..{format_expr(s.kc)}{acc}"
                   + (f" a_steps={s.a_steps[0]},{s.a_steps[1]}" if s.a_steps is not None else "")
                   + (f" b_kstep={s.b_kstep}" if s.b_kstep is not None else ""))
    elif isinstance(s, TransposeCopy):
        out.append(f"{pad}transpose_copy {s.rows}x{s.cols} {s.dst}[{format_expr(s.dst_index)}; ld={s.dst_ld}] = "
                   f"{s.src}[{format_expr(s.src_index)}; ld={s.src_ld}]")
    else:
        raise TypeError(f"not a kernel IR statement: {s!r}")


def format_kernel(k: KernelFunc) -> str:
    params = ", ".join(f"{p.name}: {p.mode} {p.dtype.short}[{p.numel}]" for p in k.params)
    lines = [f"kernel {k.name}({params}):"]
    if k.source:
        lines.append(f"  # {k.source}")
    for s in k.body:
        _stmt_lines(s, 1, k.schedule, lines)
    return "\n".join(lines) + "\n"
