"""Turn a KILN_DUMP directory into one self-contained HTML page (stages, plan pictures, kernels, profile).

    KILN_DUMP=dumps KILN_PROFILE=1 python train.py
    kiln report dumps -o report.html

The page (docs/report.md) shows, per compiled graph in pipeline order, its pass timings and
node counts, its fusion plan drawn with each kernel a labelled box, each kernel's kernel IR and
LLVM IR, the profiler's table where one was recorded, and every numbered stage file. It fetches
nothing: styles and pictures are inline.
"""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a KILN_DUMP directory")
    parser.add_argument("-o", "--output", default=None, help="the HTML file to write (default: DIR/report.html)")


def run(args: argparse.Namespace) -> int:
    from ..report.html import DumpError, read_dump, render_report
    try:
        page = render_report(read_dump(args.dir))
    except DumpError as e:
        print(f"kiln report: {args.dir}: {e}", file=sys.stderr)
        return 1
    out = args.output or os.path.join(args.dir, "report.html")
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        print(f"kiln report: {out}: cannot write it ({e.strerror or e})", file=sys.stderr)
        return 1
    print(f"kiln report: wrote {out}", file=sys.stderr)
    return 0
