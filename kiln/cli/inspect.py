"""`kiln inspect FILE`: an exported program's signature, dims, specialisations, kernel count, weights and IR."""
from __future__ import annotations

import argparse

import numpy as np

from . import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .kiln file (written by ExportedProgram.save)")
    parser.add_argument("--no-ir", action="store_true", help="leave out the IR listing")
    parser.add_argument("--weights", type=int, default=20, metavar="N",
                        help="list at most N state tensors (default 20; the totals cover all)")


def describe(prog, path: str, ir: bool = True, max_weights: int = 20) -> str:
    """The text `kiln inspect` prints for `prog` (loaded from `path`)."""
    meta = prog.metadata
    lines = [f"file: {path} (.kiln format version {meta['format_version']}, written by kiln {meta['kiln_version']})",
             f"signature: {prog.signature()}"]
    if prog.dims:
        dims = ", ".join(f"{n} in [{d.min}, {'inf' if d.max is None else d.max}] (exported at "
                         f"{prog.example_sizes[n]})" for n, d in prog.dims.items())
        lines.append(f"dynamic dims: {dims}")
    else:
        lines.append("dynamic dims: none (every shape is static)")
    if meta["training"] is not None:
        lines.append(f"module mode: {'training' if meta['training'] else 'eval (frozen)'}")
    lines.append("state updates: " + (", ".join(prog.state_updates) if prog.state_updates else "none"))
    if meta["specialized_on"]:
        seen = []
        for g in meta["specialized_on"]:
            item = f"{g['what']} = {g['value']}"
            if item not in seen:
                seen.append(item)
        lines.append("specialized on: " + "; ".join(seen))
    values = meta["python_values"]
    if values:
        shown = ", ".join(f"{k}={v}" for k, v in list(values.items())[:12])
        lines.append(f"python values: {shown}" + (f", ... ({len(values) - 12} more)" if len(values) > 12 else ""))
    lines.append(f"kernels: {prog.kernel_count()} (fusion plan at the exported sizes)")
    n_values = sum(int(a.size) for a in prog.state.values())
    n_bytes = sum(int(a.nbytes) for a in prog.state.values())
    lines.append(f"weights: {len(prog.state)} tensors, {n_values:,} values, {_size(n_bytes)}")
    width = max((len(n) for n in prog.state), default=0)
    twidth = max((len(f"{a.dtype}{list(a.shape)}") for a in prog.state.values()), default=0)
    for k, (name, arr) in enumerate(prog.state.items()):
        if k == max_weights:
            lines.append(f"  ... {len(prog.state) - max_weights} more")
            break
        stats = ""
        if arr.size and arr.dtype.kind == "f":
            stats = f"  mean {float(np.mean(arr)):.4g}  std {float(np.std(arr)):.4g}"
        lines.append(f"  {name:<{width}}  {f'{arr.dtype}{list(arr.shape)}':<{twidth}}  {arr.size:>10,}{stats}")
    if ir:
        lines.append("IR:")
        lines.append(str(prog.graph).rstrip("\n"))
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def run(args: argparse.Namespace) -> int:
    from ..export import ExportFormatError, load_exported
    try:
        prog = load_exported(args.file)
    except ExportFormatError as e:
        raise CommandError(str(e)) from None
    print(describe(prog, args.file, ir=not args.no_ir, max_weights=max(args.weights, 0)))
    return 0
