"""Ahead-of-time shared library: an exported program as `libNAME.so` plus `NAME.h`.

    path = write_shared_library(exported, "build", name="mlp")   # build/libmlp.so, build/mlp.h

The library holds the native backend's object code for the program (the kernels and the entry
point `kiln/runtime/llvm_backend.py` compiles, emitted position independent), the program's
weights and literal arrays (embedded, read-only), and the small C runtime of `c_runtime/`
(argument checks, the memory plan's workspace, pthreads for the entry's `tid/n` contract, error
messages). It needs no Python and no LLVM at run time; linking uses the system C compiler (`cc`,
or the one KILN_CC names). Shapes are static: the library is built for the program's example sizes (or the sizes
given as `dims`). The object code targets the exporting machine's CPU (its vector extensions).
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import numpy as np

RUNTIME_DIR = pathlib.Path(__file__).resolve().parent / "c_runtime"
_BLOB_ALIGN = 64
_C_TYPES = {"bool": "uint8_t", "int32": "int32_t", "int64": "int64_t", "float16": "uint16_t", "float32": "float",
            "float64": "double"}
# the error codes, as the runtime's header defines them: (name, code, meaning)
_ERRORS = tuple((m[0], int(m[1]), m[2]) for m in re.findall(r"#define KILN_(\w+) (\d+)\s+/\* (.*?) \*/",
                                                            (RUNTIME_DIR / "kiln_runtime.h").read_text()))


class SharedLibraryError(RuntimeError):
    """The shared library could not be built (no C compiler, a failed link)."""


def c_compiler() -> str:
    """The C compiler to link with (the `cc` setting, KILN_CC: default `cc`); SharedLibraryError says
    what to install."""
    from .. import config
    cc = config.get().cc
    path = shutil.which(cc)
    if path is None:
        raise SharedLibraryError(f"write_shared_library needs a C compiler to link the library, and {cc!r} was not "
                                 "found on PATH: install one (Debian/Ubuntu: apt-get install gcc; Fedora: dnf install "
                                 "gcc; macOS: xcode-select --install) or set KILN_CC to its path")
    return path


def _c_ident(s: str) -> str:
    out = re.sub(r"\W", "_", s)
    return out if out and not out[0].isdigit() else "_" + out


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _concrete(exported, dims: dict | None):
    """The graph at concrete sizes: `exported.graph` (the example's), or instantiated at `dims`."""
    dynamic = sorted({s for spec in list(exported.input_specs) + list(exported.output_specs) for s in spec.shape
                      if isinstance(s, str)})
    if dims:
        unknown = sorted(set(dims) - set(dynamic))
        if unknown:
            raise ValueError(f"write_shared_library: dims {unknown} are not dynamic dims of the program "
                             f"(its dynamic dims: {dynamic or 'none'})")
        graph = exported.instantiate(**dims)
    else:
        graph = exported.graph  # at the example sizes
    return graph


def write_shared_library(exported, directory: str | os.PathLike, name: str = "model", *,
                         dims: dict[str, int] | None = None) -> pathlib.Path:
    """Build `directory/libNAME.so` and `directory/NAME.h` from `exported` (an ExportedProgram).

    The header declares `int NAME_run(inputs..., outputs...)` (raw pointers to C-contiguous arrays of
    the shapes it documents) and `const char *NAME_error_message(void)`. `dims` fixes dynamic dims
    (default: the example's sizes). Returns the library's path."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"write_shared_library: name must be a C identifier (letters, digits, _), got {name!r}")
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"write_shared_library: directory {str(directory)!r} does not exist")
    cc = c_compiler()
    graph = _concrete(exported, dims)
    n_user = len(exported.input_specs)
    state = exported.state
    if len(graph.inputs) != n_user + len(state):
        raise ValueError(f"write_shared_library: the graph has {len(graph.inputs)} inputs, but the program declares "
                         f"{n_user} inputs and {len(state)} state tensors")
    from ..runtime.llvm_backend import compile_object
    native = compile_object(graph)
    program = native.program
    index = {b.name: k for k, b in enumerate(program.buffers)}

    # ---- where every buffer lives
    places: list[tuple[str, int, int]] = [("KILN_WORKSPACE", 0, 0)] * len(program.buffers)
    blob = bytearray()

    def embed(arr: np.ndarray) -> int:
        pad = -len(blob) % _BLOB_ALIGN
        blob.extend(b"\0" * pad)
        at = len(blob)
        blob.extend(np.ascontiguousarray(arr).tobytes())
        return at

    inputs = []
    for k, (node, bname) in enumerate(zip(graph.inputs, program.inputs)):
        b = program.buffers[index[bname]]
        if k < n_user:
            spec = exported.input_specs[k]
            places[index[bname]] = ("KILN_USER_INPUT", k, 0)
            inputs.append((_c_ident(spec.name), spec.name, index[bname], b))
        else:
            if node.name not in state:
                raise ValueError(f"write_shared_library: state input %{node.name} has no entry in the program's state")
            arr = np.asarray(state[node.name])
            if arr.shape != tuple(node.shape) or arr.dtype != node.dtype.np_dtype:
                raise ValueError(f"write_shared_library: state {node.name!r} is {arr.dtype}{list(arr.shape)}, the "
                                 f"graph expects {node.dtype.name}{list(node.shape)}")
            places[index[bname]] = ("KILN_BLOB", 0, embed(arr.astype(node.dtype.np_dtype, copy=False)))
    for k, b in enumerate(program.buffers):
        if b.role == "const":
            places[k] = ("KILN_BLOB", 0, embed(np.asarray(b.data, dtype=b.dtype.np_dtype)))
        elif k in native.workspace:
            places[k] = ("KILN_WORKSPACE", 0, native.workspace[k])
    outputs = []
    bound: set[int] = set()
    for k, (spec, bname) in enumerate(zip(exported.output_specs, program.outputs)):
        bk = index[bname]
        b = program.buffers[bk]
        copy = not (b.role == "output" and bk not in bound)
        if not copy:
            places[bk] = ("KILN_USER_OUTPUT", k, 0)
            bound.add(bk)
        outputs.append((_c_ident(spec.name), spec.name, bk, b, copy))
    names = [c for c, *_ in inputs] + [c for c, *_ in outputs]
    if len(set(names)) != len(names):
        raise ValueError(f"write_shared_library: argument names {names} collide as C identifiers; give the inputs "
                         "and outputs distinct names")

    header = _header(name, exported, inputs, outputs, graph)
    glue = _glue(name, native, places, inputs, outputs)
    so_path = directory / f"lib{name}.so"
    with tempfile.TemporaryDirectory(prefix="kiln-so-") as tmp:
        tmp_path = pathlib.Path(tmp)
        (tmp_path / f"{name}.h").write_text(header)
        (tmp_path / "weights.bin").write_bytes(bytes(blob) or b"\0")
        (tmp_path / f"{name}_glue.c").write_text(glue)
        (tmp_path / "kernels.o").write_bytes(native.obj)
        (tmp_path / "exports.map").write_text(f"{{ global: {name}_run; {name}_error_message; "
                                              f"{name}_set_num_threads; local: *; }};\n")
        cmd = [cc, "-shared", "-fPIC", "-O2", "-std=c11", "-I", str(RUNTIME_DIR), "-I", str(tmp_path),
               "-o", str(tmp_path / so_path.name), str(tmp_path / f"{name}_glue.c"),
               str(RUNTIME_DIR / "kiln_runtime.c"), str(tmp_path / "kernels.o"),
               f"-Wl,--version-script={tmp_path / 'exports.map'}", "-lpthread", "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
        if proc.returncode != 0:
            raise SharedLibraryError(f"write_shared_library: linking lib{name}.so failed ({' '.join(cmd)}):\n"
                                     f"{proc.stderr.strip()}")
        shutil.copyfile(tmp_path / so_path.name, so_path)
    (directory / f"{name}.h").write_text(header)
    return so_path


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _header(name: str, exported, inputs, outputs, graph) -> str:
    up = name.upper()
    lines = [f"/* {name}.h: the kiln program {graph.name!r} compiled ahead of time into lib{name}.so.", " *",
             f" * int {name}_run(...) runs it once. Every argument is a raw pointer to a C-contiguous",
             " * (row-major) array of exactly the shape below, aligned to its element size; inputs are only",
             " * read, outputs are written in full. bool is one byte (0 or 1), float16 is IEEE half in a",
             " * uint16_t. Shapes are fixed: the library was built for these sizes.", " *"]
    for c, spec_name, _, b in inputs:
        lines.append(f" *   input  {c}: {b.dtype.name}{_shape_text(b.shape)}"
                     + (f" (from {spec_name!r})" if c != spec_name else ""))
    for c, spec_name, _, b, _ in outputs:
        lines.append(f" *   output {c}: {b.dtype.name}{_shape_text(b.shape)}"
                     + (f" (from {spec_name!r})" if c != spec_name else ""))
    lines += [" *", f" * It returns {up}_OK (0) or an error code below; {name}_error_message() then says what",
              " * failed (for this thread's last call). Calls may run concurrently: each allocates its own",
              " * workspace. Programs whose work is mostly in parallel loops use one thread per CPU",
              f" * (sysconf(_SC_NPROCESSORS_ONLN)) unless {name}_set_num_threads(n) chose n; others use one.",
              " * Built for the exporting machine's CPU. No Python or LLVM is needed at run time. */",
              f"#ifndef {up}_H", f"#define {up}_H", "", "#include <stdint.h>", "",
              "#ifdef __cplusplus", 'extern "C" {', "#endif", ""]
    for err, code, what in _ERRORS:
        lines.append(f"#define {up}_{err} {code}  /* {what.replace('NAME', name)} */")
    lines.append("")
    for c, _, _, b in inputs:
        lines.append(f"#define {up}_{c.upper()}_NUMEL {b.numel}")
    for c, _, _, b, _ in outputs:
        lines.append(f"#define {up}_{c.upper()}_NUMEL {b.numel}")
    params = [f"const {_C_TYPES[b.dtype.name]} *{c}" for c, _, _, b in inputs] + \
             [f"{_C_TYPES[b.dtype.name]} *{c}" for c, _, _, b, _ in outputs]
    lines += ["", f"int {name}_run({', '.join(params)});",
              f"const char *{name}_error_message(void);",
              f"void {name}_set_num_threads(int n);  /* n <= 0: the default */", "",
              "#ifdef __cplusplus", "}", "#endif", "", f"#endif  /* {up}_H */", ""]
    return "\n".join(lines)


_SENTINEL = 7310949587261


def _glue(name: str, native, places, inputs, outputs) -> str:
    program = native.program
    lines = [f"/* generated by kiln: the tables of lib{name}.so */", '#include "kiln_runtime.h"',
             f'#include "{name}.h"', "", "#include <stdint.h>", "",
             f"int32_t {native.entry}(void **, int64_t *, int64_t, int64_t, int64_t *);", "",
             "__asm__(\".section .rodata\\n.balign 64\\n.globl kiln_blob\\n.hidden kiln_blob\\n"
             "kiln_blob:\\n.incbin \\\"weights.bin\\\"\\n.previous\\n\");",  # found in the build directory (cwd)
             "extern const unsigned char kiln_blob[];", ""]
    lines.append("static const kiln_buffer buffers[] = {")
    for place, idx, off in places:
        lines.append(f"    {{{place}, {idx}, {off}}},")
    lines.append("};")

    def args(table, rows):
        out = [f"static const kiln_argument {table}[] = {{"]
        for c, b_index, b, copy in rows:
            out.append(f"    {{{_c_string(c)}, {b_index}, {b.dtype.itemsize}, {b.numel * b.dtype.itemsize}, "
                       f"{int(copy)}}},")
        out.append("    {0, 0, 0, 0, 0}" if not rows else "")
        out.append("};")
        return out

    lines += args("inputs", [(c, bk, b, False) for c, _, bk, b in inputs])
    lines += args("outputs", [(c, bk, b, copy) for c, _, bk, b, copy in outputs])
    lines.append("static const kiln_check checks[] = {")
    for chk in program.checks:
        before, after = chk.message(_SENTINEL).split(str(_SENTINEL), 1)
        lines.append(f"    {{{_c_string(before)}, {_c_string(after)}}},")
    if not program.checks:
        lines.append("    {0, 0}")
    lines.append("};")
    lines += ["", "static const kiln_program program = {",
              f"    {_c_string(name)}, {native.entry}, {len(places)}, buffers, {len(inputs)}, inputs, {len(outputs)},",
              f"    outputs, kiln_blob, {native.workspace_bytes}, {int(native.parallel)}, {len(program.checks)}, checks",
              "};", "", "static int num_threads = 0;", "",
              f"void {name}_set_num_threads(int n) {{ num_threads = n; }}", "",
              f"const char *{name}_error_message(void) {{ return kiln_error_message(); }}", ""]
    params = [f"const {_C_TYPES[b.dtype.name]} *{c}" for c, _, _, b in inputs] + \
             [f"{_C_TYPES[b.dtype.name]} *{c}" for c, _, _, b, _ in outputs]
    ins = ", ".join(f"(const void *){c}" for c, *_ in inputs) or "0"
    outs = ", ".join(f"(void *){c}" for c, *_ in outputs) or "0"
    lines += [f"int {name}_run({', '.join(params) or 'void'}) {{",
              f"    const void *in[] = {{{ins}}};", f"    void *out[] = {{{outs}}};",
              "    return kiln_run(&program, in, out, num_threads);", "}", ""]
    return "\n".join(lines)
