"""The `kiln` command line (also `python -m kiln`): a dispatcher over subcommand modules.

Each subcommand is a module `kiln.cli.<name>` with `add_arguments(parser) -> None` and
`run(args) -> int`, imported only when that subcommand is used. A subcommand reports an error
by raising `CommandError(message)` (or letting `kiln.export.ExportFormatError` from
`kiln.load_exported` through): the dispatcher prints it as one line, `kiln <name>: <message>`,
and exits with status 1 (argparse's usage errors: 2).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

#: (name, one-line help): every subcommand, in the order `kiln --help` lists them
SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("inspect", "print an exported program's signature, IR, kernel count and weights"),
    ("run", "run an exported program on .npy inputs and write its outputs"),
    ("graph", "draw an exported program's graph"),
    ("report", "turn a KILN_DUMP directory into one self-contained HTML page"),
)


class CommandError(Exception):
    """A problem a subcommand reports as one line (`kiln <name>: <message>`), exit status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiln", description="kiln: work with exported programs (.kiln files).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in SUBCOMMANDS:
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _load(name: str):
    try:
        return importlib.import_module(f"kiln.cli.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"kiln.cli.{name}":
            return None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = [n for n, _ in SUBCOMMANDS]
    if not argv or argv[0] in ("-h", "--help"):
        _parser().print_help(file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name = argv[0]
    if name not in names:
        print(f"kiln: unknown command {name!r}; commands: {', '.join(names)} (kiln --help)", file=sys.stderr)
        return 2
    module = _load(name)
    if module is None:
        print(f"kiln {name}: this kiln has no '{name}' command installed (module kiln.cli.{name} is missing)",
              file=sys.stderr)
        return 1
    help_text = dict(SUBCOMMANDS)[name]
    parser = argparse.ArgumentParser(prog=f"kiln {name}", description=help_text[0].upper() + help_text[1:] + ".")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    from ..export.kiln_file import ExportFormatError
    try:
        return int(module.run(args))
    except (CommandError, ExportFormatError) as e:  # a file kiln cannot load names itself: "<file>: <problem>"
        print(f"kiln {name}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
