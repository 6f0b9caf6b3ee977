"""Generate the primitive table for docs/ir.md: `python -m kiln.ir.doc`."""
from __future__ import annotations

from .primitives import PRIMITIVES, Prop


def _prop_names(props: Prop) -> str:
    return ", ".join(m.name.lower() for m in Prop if m.value and m in props)


def primitive_table() -> str:
    """A markdown table of every primitive: kind, arity, attributes, gradient, what the VJP saves, properties."""
    rows = ["| primitive | kind | inputs | attributes | VJP | saves | properties |",
            "|---|---|---|---|---|---|---|"]
    for name in sorted(PRIMITIVES, key=lambda n: (PRIMITIVES[n].kind, n)):
        p = PRIMITIVES[name]
        arity = "n" if p.arity is None else str(p.arity)
        grad = "yes" if p.vjp is not None else "—"
        saves = p.saves if p.vjp is not None else ""
        rows.append(f"| `{name}` | {p.kind} | {arity} | {', '.join(p.attrs) or '—'} | {grad} | {saves or '—'} "
                    f"| {_prop_names(p.props) or '—'} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(primitive_table(), end="")
