"""Pictures of a graph's fusion plan: every node, each fused kernel a labelled box around its nodes.

    from kiln.report.draw import plan_to_dot, plan_to_svg
    open("plan.dot", "w").write(plan_to_dot(graph))     # Graphviz: one `cluster_k<id>` per kernel
    open("plan.svg", "w").write(plan_to_svg(graph))     # `dot -Tsvg` when on PATH, else kiln's own layout

kiln's own layout needs nothing but networkx: kernels are placed in rows by the topological
generations of the kernel graph (graph inputs on top), and inside each kernel box its nodes in
rows by their own generations. Edges inside a kernel are grey; edges that cross kernels (values
that go through memory) are blue. Graph outputs are orange, inputs light blue. `write_png`
makes a PNG through Graphviz, cairosvg or matplotlib, whichever is installed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

__all__ = ["Cluster", "clusters_of", "plan_from_text", "plan_to_dot", "plan_to_svg", "dot_text", "svg_text",
           "write_png", "ToolUnavailable"]

NODE_W, NODE_H, NODE_GAP, ROW_GAP = 168, 34, 14, 26  # node box, gaps between nodes and rows
PAD, HEAD = 12, 22  # cluster padding and label height
KERNEL_FILLS = ("#f3f0ff", "#eefaf0", "#fff7e6", "#eef6ff", "#fdf0f5", "#f2f7e9")


@dataclass
class Cluster:
    """One box of the picture: a fused kernel (`id` >= 0) or the graph inputs (`id` -1)."""

    id: int
    label: str
    nodes: list[str] = field(default_factory=list)  # node names, in graph order


def clusters_of(graph, plan=None) -> list[Cluster]:
    """The graph's inputs and one cluster per kernel of `plan` (default: `plan_fusion(graph)`).
    A node recomputed in several kernels is drawn once, in the kernel that owns it."""
    from ..passes.fusion import plan_fusion
    from ..runtime.profiler import kernel_label
    plan = plan if plan is not None else plan_fusion(graph)
    out = [Cluster(-1, "inputs", [n.name for n in graph.inputs])]
    by_id: dict[int, Cluster] = {}
    for k in plan.kernels:
        by_id[k.id] = Cluster(k.id, kernel_label(k))
        out.append(by_id[k.id])
    loose = Cluster(len(plan.kernels), "not in a kernel")
    for n in graph.nodes:
        k = plan.kernel_of(n)
        (by_id[k.id] if k is not None else loose).nodes.append(n.name)
    if loose.nodes:
        out.append(loose)
    return out


_KERNEL = re.compile(r"^kernel (\d+) \[(\w+)\] domain=\[([\d,]*)\](?: reduce_axes=(\([\d, ]*\)))?(?: anchor=%(\S+))?$")
_NODE = re.compile(r"^    %(\S+?): ")


def plan_from_text(graph, text: str):
    """The FusionPlan a fusion-plan dump (`str(plan)`) describes, over `graph` (the graph it was
    planned on, e.g. parsed from the dump's last pass). Raises ValueError naming a line that
    does not fit the graph."""
    from ..passes.fusion import FusionPlan, Kernel, KernelKind
    nodes = {n.name: n for n in list(graph.inputs) + list(graph.nodes)}
    kernels: list[Kernel] = []

    def node(name: str, lineno: int):
        if name not in nodes:
            raise ValueError(f"fusion plan line {lineno}: %{name} is not a node of graph {graph.name}")
        return nodes[name]

    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _KERNEL.match(line)
        if m:
            kid, kind, dom, axes, anchor = m.groups()
            domain = tuple(int(d) for d in dom.split(",") if d)
            reduce_axes = tuple(int(a) for a in re.findall(r"\d+", axes)) if axes is not None else None
            kernels.append(Kernel(int(kid), KernelKind(kind), [], [], [], domain, reduce_axes,
                                  node(anchor, lineno) if anchor else None))
            continue
        if not kernels:
            continue
        k = kernels[-1]
        nm = _NODE.match(line)
        if nm:
            n = node(nm.group(1), lineno)
            k.nodes.append(n)
            if line.rstrip().endswith("# recomputed here"):
                k.recomputed.append(n)
        elif line.startswith("  inputs:  ") and line.strip() != "inputs:  -":
            k.inputs = [node(t.split(":")[0].lstrip("%"), lineno) for t in line[11:].split(", ")]
        elif line.startswith("  outputs: ") and line.strip() != "outputs: -":
            k.outputs = [node(t.split()[0].lstrip("%"), lineno) for t in line[11:].split(", ")]
        elif line.startswith("boundaries"):
            break
    return FusionPlan(graph, kernels, [])


# -- Graphviz dot ------------------------------------------------------------------------------
def _node_text(n) -> str:
    return f"%{n.name} = {n.op}\n{n.dtype.short}[{','.join(map(str, n.shape))}]"


def _dot_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_text(graph, clusters: list[Cluster]) -> str:
    """Graphviz source: each kernel a `subgraph cluster_k<id>` labelled with what it is."""
    nodes = {n.name: n for n in list(graph.inputs) + list(graph.nodes)}
    outs = {o.name for o in graph.outputs}
    lines = [f"digraph {_dot_quote(graph.name)} {{", "  rankdir=TB; compound=true; fontname=monospace;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=monospace, fontsize=10];']

    def node_line(name: str, indent: str) -> str:
        n = nodes[name]
        fill = "#ffe4b5" if name in outs else ("#ddeeff" if n.op == "input" else "white")
        return f"{indent}{_dot_quote(name)} [label={_dot_quote(_node_text(n))}, fillcolor={_dot_quote(fill)}];"

    for c in clusters:
        if c.id < 0:
            lines += [node_line(name, "  ") for name in c.nodes]
            continue
        lines.append(f"  subgraph cluster_k{c.id} {{")
        lines.append(f"    label={_dot_quote(c.label)}; style=filled; "
                     f"fillcolor={_dot_quote(KERNEL_FILLS[c.id % len(KERNEL_FILLS)])}; fontsize=11;")
        lines += [node_line(name, "    ") for name in c.nodes]
        lines.append("  }")
    owner = {name: c.id for c in clusters for name in c.nodes}
    for n in graph.nodes:
        for i in n.inputs:
            cross = owner.get(i.name) != owner.get(n.name)
            lines.append(f"  {_dot_quote(i.name)} -> {_dot_quote(n.name)}"
                         + (' [color="#3b6fd8"];' if cross else ' [color="#999999"];'))
    lines.append("}")
    return "\n".join(lines) + "\n"


def plan_to_dot(graph, plan=None) -> str:
    """Graphviz dot text of `graph` with each fused kernel of `plan` (default: its fusion plan)
    as a labelled cluster."""
    return dot_text(graph, clusters_of(graph, plan))


# -- kiln's own layout ---------------------------------------------------------------------------
@dataclass
class _Box:
    x: float
    y: float
    w: float
    h: float


@dataclass
class Layout:
    """Coordinates of every node and cluster box (SVG units, y down) and the edges."""

    width: float
    height: float
    nodes: dict[str, _Box]
    clusters: list[tuple[Cluster, _Box]]
    edges: list[tuple[str, str, bool]]  # source, target, crosses kernels


def layout(graph, clusters: list[Cluster]) -> Layout:
    """Kernels in rows by the generations of the kernel graph; inside each, nodes in rows by theirs."""
    import networkx as nx
    owner = {name: c.id for c in clusters for name in c.nodes}
    by_id = {c.id: c for c in clusters}
    kg = nx.DiGraph()
    kg.add_nodes_from(c.id for c in clusters if c.nodes)
    edges = []
    for n in graph.nodes:
        for i in n.inputs:
            a, b = owner.get(i.name), owner.get(n.name)
            edges.append((i.name, n.name, a != b))
            if a != b and a is not None and b is not None:
                kg.add_edge(a, b)
    if not nx.is_directed_acyclic_graph(kg):  # kernels that feed each other: one row per kernel, in order
        rows = [[c.id] for c in clusters if c.nodes]
    else:
        rows = [sorted(gen) for gen in nx.topological_generations(kg)]
    ng = graph.to_networkx()
    inner: dict[int, list[list[str]]] = {}
    size: dict[int, tuple[float, float]] = {}
    for c in clusters:
        if not c.nodes:
            continue
        members = set(c.nodes)
        order = {name: k for k, name in enumerate(c.nodes)}
        layers = [sorted(gen, key=order.get) for gen in nx.topological_generations(ng.subgraph(members))]
        inner[c.id] = layers
        widest = max(len(layer) for layer in layers)
        w = widest * NODE_W + (widest - 1) * NODE_GAP + (2 * PAD if c.id >= 0 else 0)
        h = len(layers) * NODE_H + (len(layers) - 1) * NODE_GAP + (2 * PAD + HEAD if c.id >= 0 else 0)
        size[c.id] = (w, h)
    nodes: dict[str, _Box] = {}
    boxes: list[tuple[Cluster, _Box]] = []
    y = PAD
    width = 0.0
    for row in rows:
        x = PAD
        for cid in row:
            w, h = size[cid]
            c = by_id[cid]
            top = y + (PAD + HEAD if cid >= 0 else 0)
            for li, layer in enumerate(inner[cid]):
                lw = len(layer) * NODE_W + (len(layer) - 1) * NODE_GAP
                lx = x + (w - lw) / 2
                for ni, name in enumerate(layer):
                    nodes[name] = _Box(lx + ni * (NODE_W + NODE_GAP), top + li * (NODE_H + NODE_GAP), NODE_W, NODE_H)
            if cid >= 0:
                boxes.append((c, _Box(x, y, w, h)))
            x += w + ROW_GAP
        width = max(width, x - ROW_GAP + PAD)
        y += max(size[cid][1] for cid in row) + ROW_GAP
    return Layout(max(width, 2 * PAD + NODE_W), max(y - ROW_GAP + PAD, 2 * PAD + NODE_H), nodes, boxes, edges)


def _fit(text: str, width: float, char_w: float) -> str:
    n = max(4, int(width / char_w))
    return text if len(text) <= n else text[:n - 1] + "…"


def svg_text(graph, clusters: list[Cluster]) -> str:
    """A standalone SVG document of `graph` drawn with kiln's own layout."""
    lay = layout(graph, clusters)
    nodes = {n.name: n for n in list(graph.inputs) + list(graph.nodes)}
    outs = {o.name for o in graph.outputs}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" height="{lay.height:.0f}" '
           f'viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" font-family="monospace" font-size="10" '
           f'class="kiln-plan">',
           f"<title>{escape(graph.name)}: {len(lay.clusters)} kernels</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#666"/></marker></defs>']
    for c, b in lay.clusters:
        fill = KERNEL_FILLS[c.id % len(KERNEL_FILLS)]
        out.append(f'<g class="kernel" id="kernel-{c.id}"><title>{escape(c.label)}</title>'
                   f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="6" '
                   f'fill="{fill}" stroke="#8877aa"/>'
                   f'<text x="{b.x + PAD:.1f}" y="{b.y + PAD + 9:.1f}" font-size="11" font-weight="bold">'
                   f'{escape(_fit(c.label, b.w - 2 * PAD, 6.7))}</text></g>')
    for src, dst, cross in lay.edges:
        a, b = lay.nodes[src], lay.nodes[dst]
        stroke = 'stroke="#3b6fd8" stroke-opacity="0.6"' if cross else 'stroke="#999999"'
        out.append(f'<line x1="{a.x + a.w / 2:.1f}" y1="{a.y + a.h:.1f}" x2="{b.x + b.w / 2:.1f}" y2="{b.y:.1f}" '
                   f'{stroke} stroke-width="1" marker-end="url(#arrow)"/>')
    for name, b in lay.nodes.items():
        n = nodes[name]
        fill = "#ffe4b5" if name in outs else ("#ddeeff" if n.op == "input" else "#ffffff")
        first, second = _node_text(n).split("\n")
        out.append(f'<g class="node"><title>{escape(first + " " + second)}</title>'
                   f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="3" fill="{fill}" '
                   f'stroke="#555"/>'
                   f'<text x="{b.x + 5:.1f}" y="{b.y + 14:.1f}">{escape(_fit(first, b.w - 10, 6.1))}</text>'
                   f'<text x="{b.x + 5:.1f}" y="{b.y + 27:.1f}" fill="#555">{escape(_fit(second, b.w - 10, 6.1))}'
                   f'</text></g>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def plan_to_svg(graph, plan=None, engine: str = "auto") -> str:
    """SVG of `graph` with each fused kernel of `plan` (default: its fusion plan) as a labelled box.
    `engine`: "dot" (Graphviz, must be on PATH), "builtin" (kiln's layout), "auto" (dot if found)."""
    if engine not in ("auto", "dot", "builtin"):
        raise ValueError(f"engine must be 'auto', 'dot' or 'builtin', got {engine!r}")
    clusters = clusters_of(graph, plan)
    if engine == "dot" or (engine == "auto" and shutil.which("dot")):
        return _graphviz(dot_text(graph, clusters), "svg").decode()
    return svg_text(graph, clusters)


def _graphviz(dot: str, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise ToolUnavailable("Graphviz `dot` is not on PATH")
    r = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=120)
    if r.returncode:
        raise RuntimeError(f"dot -T{fmt} failed: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout


# -- PNG -------------------------------------------------------------------------------------------
class ToolUnavailable(RuntimeError):
    """The tool a picture needs is not installed (Graphviz `dot`; for PNG: dot, cairosvg or matplotlib)."""


def write_png(graph, path: str | os.PathLike, plan=None, scale: float = 1.0) -> str:
    """Write a PNG of the plan picture to `path` with Graphviz `dot`, else cairosvg, else
    matplotlib (`scale`: pixels per SVG unit for the last two); returns the tool used. Raises
    ToolUnavailable when none is installed."""
    clusters = clusters_of(graph, plan)
    if shutil.which("dot"):
        with open(path, "wb") as f:
            f.write(_graphviz(dot_text(graph, clusters), "png"))
        return "graphviz"
    try:
        import cairosvg  # type: ignore[import-not-found]
    except (ImportError, OSError):
        cairosvg = None
    if cairosvg is not None:
        cairosvg.svg2png(bytestring=svg_text(graph, clusters).encode(), write_to=os.fspath(path), scale=scale)
        return "cairosvg"
    try:
        import matplotlib
    except ImportError:
        raise ToolUnavailable("a PNG needs Graphviz `dot`, cairosvg or matplotlib, and none is installed "
                             "(write .svg or .dot instead)") from None
    matplotlib.use("Agg", force=False)
    _matplotlib_png(graph, clusters, path, scale)
    return "matplotlib"


def _matplotlib_png(graph, clusters: list[Cluster], path, scale: float) -> None:
    """Draw kiln's layout with matplotlib (the same boxes, edges and labels as the SVG)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    lay = layout(graph, clusters)
    nodes = {n.name: n for n in list(graph.inputs) + list(graph.nodes)}
    outs = {o.name for o in graph.outputs}
    dpi = 100
    fig = plt.figure(figsize=(lay.width / dpi, lay.height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, lay.width)
    ax.set_ylim(lay.height, 0)
    ax.axis("off")
    pt = 72 / dpi  # font points per pixel
    for c, b in lay.clusters:
        ax.add_patch(FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0,rounding_size=6",
                                    facecolor=KERNEL_FILLS[c.id % len(KERNEL_FILLS)], edgecolor="#8877aa"))
        ax.text(b.x + PAD, b.y + PAD + 9, _fit(c.label, b.w - 2 * PAD, 6.7), fontsize=11 * pt, family="monospace",
                weight="bold", va="baseline")
    for src, dst, cross in lay.edges:
        a, b = lay.nodes[src], lay.nodes[dst]
        ax.add_patch(FancyArrowPatch((a.x + a.w / 2, a.y + a.h), (b.x + b.w / 2, b.y), arrowstyle="-|>",
                                     mutation_scale=8, color="#3b6fd8" if cross else "#999999", lw=0.8))
    for name, b in lay.nodes.items():
        n = nodes[name]
        fill = "#ffe4b5" if name in outs else ("#ddeeff" if n.op == "input" else "#ffffff")
        ax.add_patch(FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0,rounding_size=3", facecolor=fill,
                                    edgecolor="#555"))
        first, second = _node_text(n).split("\n")
        ax.text(b.x + 5, b.y + 14, _fit(first, b.w - 10, 6.1), fontsize=10 * pt, family="monospace", va="baseline")
        ax.text(b.x + 5, b.y + 27, _fit(second, b.w - 10, 6.1), fontsize=10 * pt, family="monospace",
                va="baseline", color="#555")
    fig.savefig(os.fspath(path), dpi=dpi * scale)
    plt.close(fig)
