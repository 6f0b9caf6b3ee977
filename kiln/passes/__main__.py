"""`python -m kiln.passes FILE.txt [--dump DIR]`: run the default pipeline on an IR text file
(or stdin with `-`) and print the optimized graph, the fusion plan, the memory plan and the
summary."""
from __future__ import annotations

import argparse
import sys

from ..ir import parse_graph
from .manager import default_pipeline


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kiln.passes", description=__doc__)
    ap.add_argument("file", help="IR text file, or - for stdin")
    ap.add_argument("--dump", metavar="DIR", default=None, help="also write the numbered dump files to DIR")
    args = ap.parse_args(argv)
    text = sys.stdin.read() if args.file == "-" else open(args.file).read()
    report = default_pipeline().run_report(parse_graph(text), dump_dir=args.dump, verify=True)
    print(report.graph)
    print(report.fusion)
    print(report.memory)
    print(report.summary(), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
