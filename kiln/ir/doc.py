"""Generate the primitive table for docs/ir.md: `python -m kiln.ir.doc`."""
from __future__ import annotations

from .primitives import PRIMITIVES


def primitive_table() -> str:
    """A markdown table of every primitive: kind, arity, attributes, gradient, what the VJP saves."""
    rows = ["| primitive | kind | inputs | attributes | VJP | saves |", "|---|---|---|---|---|---|"]
    for name in sorted(PRIMITIVES, key=lambda n: (PRIMITIVES[n].kind, n)):
        p = PRIMITIVES[name]
        arity = "n" if p.arity is None else str(p.arity)
        grad = "yes" if p.vjp is not None else "—"
        saves = p.saves if p.vjp is not None else ""
        rows.append(f"| `{name}` | {p.kind} | {arity} | {', '.join(p.attrs) or '—'} | {grad} | {saves or '—'} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(primitive_table(), end="")
