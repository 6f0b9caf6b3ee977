"""`kiln run FILE --input x.npy [--input ...] [-o out.npy | -o out.npz | -o a.npy -o b.npy]`."""
from __future__ import annotations

import argparse

import numpy as np

from . import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .kiln file (written by ExportedProgram.save)")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="X.npy",
                        help="one .npy file per tensor input, in the signature's order (kiln inspect shows it)")
    parser.add_argument("-o", "--output", action="append", default=[], metavar="OUT",
                        help="where to write the outputs: one .npy for a single output, one .npz for all "
                             "(named output0, output1, ...), or one .npy per output (repeat -o); "
                             "without -o the outputs are printed")
    parser.add_argument("--save-state", metavar="FILE.kiln",
                        help="after the run, save the program with its updated state (an exported training step)")


def _load_input(path: str, k: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CommandError(f"{path}: no such input file") from None
    except (ValueError, OSError, EOFError) as e:
        why = "it is not in the .npy format" if "pickle" in str(e) else str(e)
        raise CommandError(f"{path}: not a .npy array file ({why})") from None
    if not isinstance(arr, np.ndarray):
        raise CommandError(f"{path}: input {k} must be a .npy file holding one array, not an .npz archive")
    return arr


def _write_outputs(paths: list[str], names: list[str], arrays: list[np.ndarray]) -> None:
    if len(paths) == 1 and paths[0].endswith(".npz"):
        np.savez(paths[0], **dict(zip(names, arrays)))
        return
    if len(paths) != len(arrays):
        raise CommandError(f"the program has {len(arrays)} outputs ({', '.join(names)}); give one -o per output, "
                           "or a single .npz")
    for p in paths:
        if not p.endswith(".npy"):
            raise CommandError(f"{p}: an output file must end in .npy (or give one .npz for all outputs)")
    for p, a in zip(paths, arrays):
        np.save(p, a)


def run(args: argparse.Namespace) -> int:
    from ..export import ExportFormatError, load_exported
    from ..export.signature import build_tree
    from ..frontend.pytree import tree_flatten
    from ..frontend.tensor import Tensor
    try:
        prog = load_exported(args.file)
    except ExportFormatError as e:
        raise CommandError(str(e)) from None
    specs = prog.input_specs
    if len(args.input) != len(specs):
        want = ", ".join(str(s) for s in specs) or "none"
        raise CommandError(f"{args.file}: the program takes {len(specs)} tensor inputs ({want}); "
                           f"got {len(args.input)} --input files")
    arrays = [_load_input(p, k) for k, p in enumerate(args.input)]
    call_args, call_kwargs = build_tree(prog.metadata["input_tree"], arrays)
    try:
        out = prog(*call_args, **call_kwargs)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as e:
        raise CommandError(f"{args.file}: {e}") from None
    leaves = tree_flatten(out)[0]
    results = [x.numpy() if isinstance(x, Tensor) else np.asarray(x) for x in leaves]
    names = [s.name for s in prog.output_specs] if len(results) == len(prog.output_specs) else \
        [f"output{k}" for k in range(len(results))]
    if args.output:
        try:
            _write_outputs(args.output, names, results)
        except OSError as e:
            raise CommandError(f"{e.filename or args.output[0]}: cannot write the output ({e.strerror or e})") from None
    else:
        for nm, a in zip(names, results):
            print(f"{nm}: {a.dtype}{list(a.shape)}")
            print(np.array2string(a, threshold=50, edgeitems=3))
    if args.save_state:
        try:
            prog.save(args.save_state)
        except OSError as e:
            raise CommandError(f"{args.save_state}: cannot write ({e.strerror or e})") from None
    return 0
