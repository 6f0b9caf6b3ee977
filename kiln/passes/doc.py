"""Generate the rewrite-rule table of docs/passes.md from `RULES` (`python -m kiln.passes.doc`)."""
from __future__ import annotations

import os
import sys

from .rewrites import RULES

_BEGIN, _END = "<!-- rewrite-table -->\n", "<!-- /rewrite-table -->"


def rule_table() -> str:
    lines = ["| rule | root ops | rewrite | domain |", "|---|---|---|---|"]
    for r in RULES:
        doc, domain = r.doc.replace("|", "\\|"), r.domain.replace("|", "\\|")
        lines.append(f"| `{r.name}` | {', '.join(r.ops)} | {doc} | {domain} |")
    return "\n".join(lines) + "\n"


def update(path: str) -> None:
    text = open(path).read()
    head, rest = text.split(_BEGIN, 1)
    _, tail = rest.split(_END, 1)
    with open(path, "w") as f:
        f.write(head + _BEGIN + rule_table() + _END + tail)


if __name__ == "__main__":  # pragma: no cover
    update(sys.argv[1] if len(sys.argv) > 1 else os.path.join("docs", "passes.md"))
