"""The pass manager: run named `Graph -> Graph` passes in order, verify and dump between them.

    pipeline = default_pipeline()
    graph = pipeline.run(graph, dump_dir="dumps", verify=True)

With a dump directory (argument, or the `dump` setting, `KILN_DUMP`; see kiln.config), the graph after every pass is
written as `NNN-<prefix><pass>.txt` in pipeline order, then the fusion plan
(`NNN-<prefix>fusion-plan.txt`), the memory plan (`NNN-<prefix>memory-plan.txt`) and a
summary (`NNN-<prefix>summary.txt`: nodes before/after and time per pass, kernel
count, peak bytes). `start` is the first number used, so a caller can number these
after files it already wrote; or the caller passes its own `DumpWriter`, whose numbering
the files continue. The verifier runs on the input and after every pass when
`verify=True`, or when `verify` is None and the `verify` setting (`KILN_VERIFY=1`) is on.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from .. import config
from ..ir.graph import Graph
from ..ir.verifier import VerificationError, verify as verify_graph
from .conv_padding import explicit_conv_padding
from .cse import cse
from .dce import dce
from .fold import fold
from .fusion import FusionPlan, plan_fusion
from .matmul_merge import merge_matmul_sums, merge_shared_operand_matmuls
from .matmul_sums import merge_reduced_sums
from .memory import MemoryPlan, plan_memory
from .rewrites import rewrite

PassFn = Callable[[Graph], Graph]


class DumpWriter:
    """Numbered text files `NNN-<name>.txt` in one directory, numbered in the order written.

    The next number is the writer's own state, so everything written through one writer
    (traced graphs, the graph after each pass, plans, summaries) comes out in pipeline
    order. With `directory=None` nothing is written, but numbers are still handed out.
    """

    def __init__(self, directory: str | os.PathLike | None, start: int = 1):
        self.directory = os.fspath(directory) if directory else None
        self.next_index = start

    def write(self, name: str, obj: object) -> int:
        """Write `obj` (a string, or its `str`) as the next numbered file; returns its number."""
        index = self.next_index
        if self.directory:
            os.makedirs(self.directory, exist_ok=True)
            with open(os.path.join(self.directory, f"{index:03d}-{name}.txt"), "w") as f:
                f.write(obj if isinstance(obj, str) else str(obj))
        self.next_index += 1
        return index


_dump_writers: dict[str, DumpWriter] = {}  # one per dump directory: its files are numbered in pipeline order


def dump_writer() -> DumpWriter | None:
    """The writer for the `dump` directory now set (None when not dumping), shared by every
    stage that dumps (traces, passes, plans, code generation)."""
    d = config.get().dump
    if not d:
        return None
    key = os.path.abspath(d)
    if key not in _dump_writers:
        _dump_writers[key] = DumpWriter(d)
    return _dump_writers[key]


@dataclass(frozen=True)
class Pass:
    name: str
    fn: PassFn


@dataclass(frozen=True)
class Repeat:
    """Run `passes` in order again and again until none changes the graph (at most `max_iter` rounds)."""

    passes: tuple[Pass, ...]
    max_iter: int = 4


@dataclass
class PassRecord:
    index: int  # dump file number
    name: str
    nodes_before: int
    nodes_after: int
    seconds: float
    changed: bool


@dataclass
class PipelineReport:
    graph: Graph
    records: list[PassRecord]
    fusion: FusionPlan | None
    memory: MemoryPlan | None
    nodes_in: int
    next_index: int  # first dump number not used

    def summary(self) -> str:
        lines = [f"pipeline summary for graph {self.graph.name}: {self.nodes_in} nodes in, "
                 f"{len(self.graph.nodes)} nodes out"]
        lines.append(f"{'#':>4}  {'pass':<14}{'before':>8}{'after':>8}{'ms':>10}")
        for r in self.records:
            lines.append(f"{r.index:>4}  {r.name:<14}{r.nodes_before:>8}{r.nodes_after:>8}{r.seconds * 1e3:>10.2f}"
                         + ("" if r.changed else "   (no change)"))
        if self.fusion is not None:
            kinds: dict[str, int] = {}
            for k in self.fusion.kernels:
                kinds[k.kind] = kinds.get(k.kind, 0) + 1
            lines.append(f"kernels: {len(self.fusion.kernels)} "
                         f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})")
        if self.memory is not None:
            m = self.memory
            lines.append(f"memory: peak {m.peak_bytes} bytes, {m.num_buffers} buffers totalling {m.total_bytes} "
                         f"bytes (naive {m.naive_bytes} bytes), {len(m.inplace)} in-place")
        return "\n".join(lines) + "\n"


Entry = Union[Pass, Repeat, tuple]


def _as_entry(e: Entry) -> Pass | Repeat:
    if isinstance(e, (Pass, Repeat)):
        return e
    name, fn = e
    return Pass(name, fn)


class Pipeline:
    """Named passes (or `Repeat` groups of them) run in order; `plans=True` also plans fusion and memory."""

    def __init__(self, passes: Sequence[Entry], plans: bool = True):
        self.passes = [_as_entry(e) for e in passes]
        self.plans = plans

    def names(self) -> list[str]:
        out = []
        for e in self.passes:
            out += [p.name for p in e.passes] if isinstance(e, Repeat) else [e.name]
        return out

    def run(self, graph: Graph, dump_dir: str | None = None, verify: bool | None = None, start: int = 1,
            prefix: str = "") -> Graph:
        """Run every pass; returns the final graph (the input graph is never mutated)."""
        return self.run_report(graph, dump_dir, verify, start, prefix, plans=False).graph

    def run_report(self, graph: Graph, dump_dir: str | None = None, verify: bool | None = None, start: int = 1,
                   prefix: str = "", plans: bool = True, writer: DumpWriter | None = None) -> PipelineReport:
        """Like `run`, also returning per-pass records and the fusion and memory plans.

        The plans are computed when `plans` (and the pipeline's own `plans`) is true, or
        whenever dumping, since they are part of the dump. `writer` replaces `dump_dir`
        and `start`: the files continue its numbering.
        """
        settings = config.get()
        if writer is None:
            writer = DumpWriter(dump_dir if dump_dir is not None else settings.dump, start)
        elif dump_dir is not None:
            raise TypeError("run_report takes dump_dir or writer, not both")
        dumping = writer.directory is not None
        if verify is None:
            verify = settings.verify
        records: list[PassRecord] = []

        def dump(name: str, obj) -> None:
            writer.write(prefix + name, obj)

        def apply(p: Pass, g: Graph) -> Graph:
            t0 = time.perf_counter()
            out = p.fn(g)
            dt = time.perf_counter() - t0
            if not isinstance(out, Graph):
                raise TypeError(f"pass {p.name!r} returned {type(out).__name__}, expected a Graph")
            if verify:
                try:
                    verify_graph(out)
                except VerificationError as e:
                    raise VerificationError(f"after pass {p.name!r}: {e}") from None
            records.append(PassRecord(writer.next_index, p.name, len(g.nodes), len(out.nodes), dt, out is not g))
            dump(p.name, out)
            return out

        if verify:
            try:
                verify_graph(graph)
            except VerificationError as e:
                raise VerificationError(f"pipeline input: {e}") from None
        nodes_in = len(graph.nodes)
        g = graph
        for e in self.passes:
            if isinstance(e, Pass):
                g = apply(e, g)
                continue
            for _ in range(e.max_iter):
                before = g
                for p in e.passes:
                    g = apply(p, g)
                if g is before:
                    break
        fusion = memory = None
        if self.plans and (plans or dumping):
            fusion = plan_fusion(g)
            dump("fusion-plan", fusion)
            memory = plan_memory(g, fusion)
            dump("memory-plan", memory)
        report = PipelineReport(g, records, fusion, memory, nodes_in, writer.next_index)
        if dumping:
            dump("summary", report.summary())
            report.next_index = writer.next_index
        return report


def default_pipeline() -> Pipeline:
    """dce, cse, then fold / rewrite / cse / dce until nothing changes; matmul merging (with rewrite /
    cse / dce) until nothing changes; convolution padding made explicit (and the pads a forward
    conv and its weight gradient share merged by cse); then fusion and memory plans."""
    return Pipeline([Pass("dce", dce), Pass("cse", cse),
                     Repeat((Pass("fold", fold), Pass("rewrite", rewrite), Pass("cse", cse), Pass("dce", dce))),
                     Repeat((Pass("matmul-sums", merge_matmul_sums), Pass("matmul-shared", merge_shared_operand_matmuls),
                             Pass("sum-reductions", merge_reduced_sums), Pass("rewrite", rewrite), Pass("cse", cse),
                             Pass("dce", dce))),
                     Pass("conv-padding", explicit_conv_padding), Pass("cse", cse)])


def optimize(graph: Graph, dump_dir: str | None = None, verify: bool | None = None, start: int = 1,
             prefix: str = "") -> Graph:
    """The single entry point: simplify `graph` with the default pipeline (plans are dumped, not returned)."""
    return default_pipeline().run(graph, dump_dir=dump_dir, verify=verify, start=start, prefix=prefix)
