"""Exported programs: `kiln.export(fn_or_module, *example_args, dynamic_shapes=...)` and the `.kiln` file.

`kiln.export` is this module, and calling it calls `export` (as `torch.export.export`):

    prog = kiln.export(model.eval(), x, dynamic_shapes=({0: kiln.Dim("batch")},))
    prog.save("model.kiln"); prog = kiln.load_exported("model.kiln")

Errors loading a file are `kiln.export.ExportFormatError`. docs/export.md is the guide.
"""
from __future__ import annotations

import sys
import types

from .dynamic_dims import DynamicShapeError
from .dims import Dim
from .kiln_file import FORMAT_VERSION, ExportFormatError
from .program import ExportedProgram, export, load_exported
from .signature import TensorSpec

__all__ = ["export", "load_exported", "ExportedProgram", "ExportFormatError", "DynamicShapeError", "Dim",
           "TensorSpec", "FORMAT_VERSION"]


class _CallableModule(types.ModuleType):
    """`kiln.export(...)` calls `kiln.export.export(...)`; the module's names stay reachable."""

    def __call__(self, *args, **kwargs) -> ExportedProgram:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
