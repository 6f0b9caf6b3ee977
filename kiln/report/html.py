"""A `KILN_DUMP` directory as one self-contained HTML page (in the spirit of PyTorch's tlparse).

    from kiln.report.html import read_dump, render_report
    html = render_report(read_dump("dumps"))

Per compiled graph (a run of the pass pipeline, and the code generated for it), in pipeline
order: its pass timings and node counts (the dump's `summary`), a picture of its fusion plan
with each kernel a labelled box, each kernel's kernel IR and generated LLVM IR, the profiler's
table for it when one was recorded (`KILN_PROFILE=1` with `KILN_DUMP`), and every numbered
stage file. Styles and pictures are inline: the page fetches nothing.
"""
from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field
from html import escape

__all__ = ["DumpFile", "DumpGroup", "Dump", "read_dump", "render_report", "DumpError"]

MAX_STAGE_CHARS = 2_000_000  # a stage longer than this is cut in the page (the file has it all)
_FILE = re.compile(r"^(\d{3,})-(.+)\.txt$")
CODEGEN_STAGES = ("plan", "kernels", "llvm", "llvm-opt", "asm")


class DumpError(ValueError):
    """A directory that is not a readable KILN_DUMP directory (the message says why)."""


@dataclass
class DumpFile:
    index: int
    name: str | None  # the graph it belongs to (None: process-wide, e.g. the profile)
    stage: str
    filename: str
    text: str


@dataclass
class DumpGroup:
    """One compiled graph: its traced graph (if dumped), its passes, plans and generated code."""

    name: str
    files: list[DumpFile] = field(default_factory=list)

    def stage(self, stage: str) -> DumpFile | None:
        """The last file of this stage."""
        found = [f for f in self.files if f.stage == stage]
        return found[-1] if found else None

    def has(self, stage: str) -> bool:
        return any(f.stage == stage for f in self.files)


@dataclass
class Dump:
    directory: str
    groups: list[DumpGroup]
    process_files: list[DumpFile]  # files of no graph (the profile)

    @property
    def files(self) -> list[DumpFile]:
        return sorted([f for g in self.groups for f in g.files] + self.process_files, key=lambda f: f.index)


def read_dump(directory: str | os.PathLike) -> Dump:
    """The numbered files of a dump directory, grouped per compiled graph in pipeline order."""
    d = os.fspath(directory)
    if not os.path.isdir(d):
        raise DumpError("not a directory")
    files = []
    for fn in os.listdir(d):
        m = _FILE.match(fn)
        if not m:
            continue
        try:
            with open(os.path.join(d, fn), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            raise DumpError(f"cannot read {fn} ({e.strerror or e})") from None
        name, sep, stage = m.group(2).partition("-")
        files.append(DumpFile(int(m.group(1)), name if sep else None, stage if sep else name, fn, text))
    if not files:
        raise DumpError("no numbered dump files (NNN-<graph>-<stage>.txt) in it; run with KILN_DUMP=DIR first")
    files.sort(key=lambda f: f.index)
    groups: list[DumpGroup] = []
    current: dict[str, DumpGroup] = {}
    process = []
    for f in files:
        if f.name is None:
            process.append(f)
            continue
        g = current.get(f.name)
        if g is None or _starts_new_group(g, f.stage):
            g = current[f.name] = DumpGroup(f.name)
            groups.append(g)
        g.files.append(f)
    return Dump(d, groups, process)


def _starts_new_group(g: DumpGroup, stage: str) -> bool:
    """A traced graph, or a pass stage after the group's pipeline finished, begins a new compile."""
    if stage == "traced":
        return True
    if not g.has("summary"):
        return False
    summary_at = max(k for k, f in enumerate(g.files) if f.stage == "summary")
    return any(f.stage == stage for f in g.files[:summary_at])


# -- pieces of a group -------------------------------------------------------------------------
_PASS_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+([\d.]+)(\s+\(no change\))?\s*$")


def pass_rows(summary: str) -> list[tuple[int, str, int, int, float, bool]]:
    """(dump number, pass, nodes before, nodes after, ms, changed) from a pipeline summary."""
    out = []
    for line in summary.splitlines():
        m = _PASS_ROW.match(line)
        if m:
            out.append((int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)), float(m.group(5)),
                        m.group(6) is None))
    return out


def kernel_blocks(kernels_text: str) -> dict[str, str]:
    """Kernel name -> its kernel IR, from a `kernels` stage (the program header, then one block each)."""
    out: dict[str, str] = {}
    for block in re.split(r"\n(?=kernel )", kernels_text):
        m = re.match(r"kernel (\S+?)\(", block)
        if m:
            out[m.group(1)] = block.strip("\n")
    return out


def llvm_functions(llvm_text: str) -> dict[str, str]:
    """Function name -> its definition, from LLVM IR text."""
    out: dict[str, str] = {}
    name, lines = None, []
    for line in llvm_text.splitlines():
        if line.startswith("define "):
            m = re.search(r'@"?([\w.$]+)"?\(', line)
            name, lines = (m.group(1) if m else "?"), [line]
        elif name is not None:
            lines.append(line)
            if line.startswith("}"):
                out[name] = "\n".join(lines)
                name = None
    return out


def profile_sections(text: str) -> list[tuple[str, str]]:
    """(graph name, table section) per program of a profiler table."""
    out = []
    for section in text.strip().split("\n\n"):
        lines = [ln for ln in section.splitlines() if ln != "kiln profile"]
        if lines and lines[0].startswith("program "):
            m = re.search(r"\bgraph (\S+)", lines[0])
            out.append((m.group(1) if m else "", "\n".join(lines)))
    return out


_PROFILE_ROW = re.compile(r"^\s+\d+\s+k(\d+) .*?\s{2,}\d+\s+[\d.]+\s+([\d.]+)\s+\S+\s+\S+\s+([\d.]+)%$")


def profile_rows(section: str) -> dict[int, tuple[float, float]]:
    """Plan kernel id -> (mean ms, share %) from one program's profiler table."""
    out = {}
    for line in section.splitlines():
        m = _PROFILE_ROW.match(line)
        if m:
            out[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return out


def _graph_picture(g: DumpGroup) -> tuple[str | None, list, str | None]:
    """(inline SVG, the plan's kernels, why there is no picture) of a group's fusion plan."""
    from ..ir.parser import IRParseError, parse_graph
    from .draw import plan_from_text, plan_to_svg
    plan_file = g.stage("fusion-plan") or g.stage("plan")
    if plan_file is None:
        return None, [], "no fusion plan in this group"
    at = g.files.index(plan_file)
    graph_file = next((f for f in reversed(g.files[:at]) if f.stage not in ("summary", "memory-plan",
                                                                          "fusion-plan")), None)
    if graph_file is None:
        return None, [], "no graph was dumped before the fusion plan"
    try:
        graph = parse_graph(graph_file.text)
        plan = plan_from_text(graph, plan_file.text)
        return plan_to_svg(graph, plan, engine="builtin"), plan.kernels, None
    except (IRParseError, ValueError, KeyError) as e:
        return None, [], f"{graph_file.filename} / {plan_file.filename} could not be drawn: {e}"


# -- the page ----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#3a2d5c;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{padding:8px 24px;background:#eee;font-size:13px}nav a{margin-right:12px;color:#3a2d5c}
main{padding:8px 24px 40px}section.fn{background:#fff;border:1px solid #ddd;border-radius:6px;margin:16px 0;
padding:4px 16px 12px}h2{font-size:17px;color:#3a2d5c}h3{font-size:14px;margin:16px 0 6px}
pre{background:#f6f6f8;border:1px solid #e4e4ea;padding:8px;overflow:auto;font-size:12px;max-height:480px}
details{margin:3px 0}summary{cursor:pointer;font-family:monospace;font-size:12.5px}
table{border-collapse:collapse;font-size:12.5px}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th{background:#f0eef6}td.l,th.l{text-align:left}.muted{color:#888}
.picture{overflow:auto;max-height:900px;border:1px solid #e4e4ea;background:#fff}
.kernel-code{display:grid;grid-template-columns:1fr 1fr;gap:8px}.kernel-code pre{max-height:360px}
"""


def _pre(text: str) -> str:
    if len(text) > MAX_STAGE_CHARS:
        text = text[:MAX_STAGE_CHARS] + f"\n… cut at {MAX_STAGE_CHARS} characters (the dump file has it all)"
    return f"<pre>{escape(text)}</pre>"


def _group_section(k: int, g: DumpGroup, profiles: list[str]) -> str:
    out = [f'<section class="fn" id="fn-{k}"><h2>{escape(g.name)} '
           f'<span class="muted">(files {g.files[0].index:03d}–{g.files[-1].index:03d})</span></h2>']
    summary = g.stage("summary")
    if summary is not None:
        rows = pass_rows(summary.text)
        first = summary.text.splitlines()[0] if summary.text else ""
        out.append(f"<h3>Passes</h3><p>{escape(first)}</p>")
        if rows:
            out.append('<table><tr><th>#</th><th class="l">pass</th><th>nodes before</th><th>nodes after</th>'
                       "<th>ms</th><th>changed</th></tr>")
            for idx, name, before, after, ms, changed in rows:
                out.append(f'<tr><td>{idx:03d}</td><td class="l">{escape(name)}</td><td>{before}</td><td>{after}'
                           f'</td><td>{ms:.2f}</td><td>{"yes" if changed else "no"}</td></tr>')
            out.append("</table>")
        tail = [ln for ln in summary.text.splitlines() if ln.startswith(("kernels:", "memory:"))]
        if tail:
            out.append(f"<p>{'<br>'.join(escape(t) for t in tail)}</p>")
    svg, kernels, why = _graph_picture(g)
    out.append("<h3>Fusion plan</h3>")
    if svg is not None:
        out.append('<p class="muted">Each box is one fused kernel; blue edges are values read from memory '
                   "(graph inputs, other kernels' outputs), grey ones stay inside a kernel; orange nodes are "
                   "graph outputs.</p>")
        out.append(f'<div class="picture">{svg}</div>')
    else:
        out.append(f'<p class="muted">{escape(why or "")}</p>')
    kir = kernel_blocks(g.stage("kernels").text) if g.has("kernels") else {}
    llvm = llvm_functions(g.stage("llvm").text) if g.has("llvm") else {}
    rows: dict[int, tuple[float, float]] = {}
    for text in profiles:
        rows.update(profile_rows(text))
    shown: dict[str, list[str]] = {"kernels": [], "llvm": []}  # texts the Kernels section shows in full
    if kir:
        out.append("<h3>Kernels</h3>")
        labels = {k.id: k for k in kernels}
        from ..runtime.profiler import kernel_label
        for name, block in kir.items():
            m = re.search(r"_k(\d+)$", name)
            kid = int(m.group(1)) if m else None
            pk = labels.get(kid)
            title = f"{name} — {kernel_label(pk)}" if pk is not None else name
            if kid in rows:
                mean_ms, share = rows[kid]
                title += f" — {mean_ms:.4f} ms per call, {share:.1f}% of the program"
            code = llvm.get(name)
            shown["kernels"].append(block)
            if code:
                shown["llvm"].append(code)
            out.append(f"<details><summary>{escape(title)}</summary><div class=\"kernel-code\"><div>"
                       f"<b>kernel IR</b>{_pre(block)}</div><div><b>LLVM IR</b>"
                       + (_pre(code) if code else '<p class="muted">not in the llvm stage</p>')
                       + "</div></div></details>")
    if profiles:
        out.append("<h3>Profile</h3>" + "".join(_pre(t) for t in profiles))
    out.append("<h3>Stages</h3><ol class=\"stages\">")
    for f in g.files:
        text = f.text
        if f is g.stage(f.stage) and shown.get(f.stage):  # the kernels' own text is in the Kernels section
            for block in shown[f.stage]:
                first = block.splitlines()[0]
                text = text.replace(block, first + ("  ; " if f.stage == "llvm" else "  # ") + "shown under Kernels")
        lines = len(f.text.splitlines())
        out.append(f'<li value="{f.index}"><details><summary>{escape(f.filename)} '
                   f'<span class="muted">({lines} lines)</span></summary>{_pre(text)}</details></li>')
    out.append("</ol></section>")
    return "\n".join(out)


def render_report(dump: Dump) -> str:
    """The HTML page of a dump (see the module doc)."""
    profile = next((f for f in reversed(dump.process_files) if f.stage == "profile"), None)
    profiles = profile_sections(profile.text) if profile is not None else []
    # each program's table goes to the last group of its graph with generated code (else its last group)
    shown_for: dict[str, int] = {}
    for k, g in enumerate(dump.groups):
        if g.has("kernels") or g.name not in shown_for or not dump.groups[shown_for[g.name]].has("kernels"):
            shown_for[g.name] = k
    nav = ['<nav>'] + ([f'<a href="#profile">profile</a>'] if profile is not None else [])
    nav += [f'<a href="#fn-{k}">{escape(g.name)}</a>' for k, g in enumerate(dump.groups)] + ["</nav>"]
    body = []
    if profile is not None:
        body.append(f'<section class="fn" id="profile"><h2>Profile <span class="muted">({escape(profile.filename)})'
                    f"</span></h2>{_pre(profile.text)}</section>")
    for k, g in enumerate(dump.groups):
        body.append(_group_section(k, g, [t for name, t in profiles if name == g.name and shown_for.get(name) == k]))
    for f in dump.process_files:
        if f is not profile:
            body.append(f'<section class="fn"><h2>{escape(f.filename)}</h2>{_pre(f.text)}</section>')
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>kiln report: {escape(dump.directory)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>kiln compile report</h1><p>{escape(os.path.abspath(dump.directory))}: "
            f"{len(dump.files)} dump files, {len(dump.groups)} compiled graphs — made {when}</p></header>"
            + "\n".join(nav) + "<main>" + "\n".join(body) + "</main></body></html>\n")
