"""Draw a compiled graph's fusion plan (each fused kernel a labelled box) as SVG, PNG or dot.

    kiln graph model.kiln -o plan.svg        # an exported program (kiln.load_exported(path).graph)
    kiln graph step.txt -o plan.png          # a graph in kiln's IR text form (e.g. a KILN_DUMP file)
    kiln graph step.txt -o plan.dot

SVG is drawn by kiln itself (Graphviz `dot` lays it out instead when it is on PATH); PNG needs
Graphviz, cairosvg or matplotlib.
"""
from __future__ import annotations

import argparse
import os
import sys

FORMATS = (".svg", ".png", ".dot")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .kiln exported program, or a graph in kiln's IR text form")
    parser.add_argument("-o", "--output", required=True, help="out.svg, out.png or out.dot")
    parser.add_argument("--engine", choices=("auto", "dot", "builtin"), default="auto",
                        help="SVG layout: Graphviz dot, kiln's own, or dot when on PATH (default)")


class GraphFileError(Exception):
    """A FILE kiln cannot read a graph from (the message says why)."""


def load_graph(path: str):
    """The graph in `path`: a `.kiln` exported program's optimized graph, or IR text."""
    if not os.path.exists(path):
        raise GraphFileError("no such file")
    if path.endswith(".kiln"):
        from ..export import ExportFormatError, load_exported
        try:
            return load_exported(path).graph
        except (OSError, ValueError, ExportFormatError) as e:
            raise GraphFileError(f"not a readable exported program ({e})") from None
    from ..ir.parser import IRParseError, parse_graph
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise GraphFileError(f"cannot read it ({e})") from None
    try:
        return parse_graph(text)
    except IRParseError as e:
        raise GraphFileError(f"not a .kiln program nor kiln IR text: {e}") from None


def run(args: argparse.Namespace) -> int:
    from ..report.draw import ToolUnavailable, plan_to_dot, plan_to_svg, write_png
    out = args.output
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        print(f"kiln graph: {out}: unknown output format {ext or '(none)'!r}; use .svg, .png or .dot", file=sys.stderr)
        return 2
    try:
        graph = load_graph(args.file)
    except GraphFileError as e:
        print(f"kiln graph: {args.file}: {e}", file=sys.stderr)
        return 1
    try:
        if ext == ".png":
            write_png(graph, out)
        else:
            text = plan_to_dot(graph) if ext == ".dot" else plan_to_svg(graph, engine=args.engine)
            with open(out, "w", encoding="utf-8") as f:
                f.write(text)
    except ToolUnavailable as e:
        print(f"kiln graph: {out}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"kiln graph: {out}: cannot write it ({e.strerror or e})", file=sys.stderr)
        return 1
    return 0
