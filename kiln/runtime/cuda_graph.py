"""CUDA graphs for `kiln.compile(fn, mode="reduce-overhead")` on the cuda backend.

The first call of a program captures its launches into one CUDA graph: every program buffer gets a
static device buffer (inputs, outputs, intermediates, constants, the status words), the stream is
put in capture mode (`cuStreamBeginCapture`), the status reset and the launches are issued exactly
as an ordinary run issues them, and `cuStreamEndCapture` + `cuGraphInstantiate` give an executable
graph. Every call (the first included) copies its inputs into the static input buffers, replays the
graph with one `cuGraphLaunch`, reads the status (the same IndexError as an ordinary run) and copies
the outputs out (fresh arrays: the next replay overwrites the static buffers).

`plan_graph` (what is captured: buffers and nodes, in order) and `capture` (the driver calls, made
through whatever driver object it is given) need no device, so the capture logic is tested with a
recording driver; the replay itself needs one (tests/cuda/test_cuda_graph.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

STATUS = -1  # the status buffer, in a node's arguments
STATUS_BYTES = 32


@dataclass(frozen=True)
class GraphNode:
    """One captured operation: "memset" (the status words to zero) or "launch" of `func`."""
    kind: str
    func: str = ""
    grid: int = 0
    block: int = 0
    args: tuple[int, ...] = ()   # program buffer indices, STATUS last


@dataclass(frozen=True)
class GraphPlan:
    """What a captured program holds: static buffers (program buffer indices) and its nodes."""
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    buffers: tuple[int, ...]
    nodes: tuple[GraphNode, ...]


def plan_graph(cuda) -> GraphPlan:
    """The graph of a CudaProgram: a status reset, then its launches in order."""
    program = cuda.program
    index = {b.name: k for k, b in enumerate(program.buffers)}
    nodes = [GraphNode("memset", args=(STATUS,))]
    for ln in cuda.launches:
        nodes.append(GraphNode("launch", ln.func, ln.grid, ln.block, tuple(ln.args) + (STATUS,)))
    return GraphPlan(program.name, tuple(index[n] for n in program.inputs), tuple(index[n] for n in program.outputs),
                     tuple(range(len(program.buffers))), tuple(nodes))


def capture(drv, stream, plan: GraphPlan, pointers: dict[int, int], functions: dict[str, object]):
    """Capture `plan`'s nodes on `stream` into a graph and instantiate it: (graph, graph_exec).
    `pointers`: device address per program buffer index and STATUS; `functions`: kernel handles."""
    from .cuda_driver import check
    check(drv.cuStreamBeginCapture(stream, drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
          "cuStreamBeginCapture")
    try:
        for node in plan.nodes:
            if node.kind == "memset":
                check(drv.cuMemsetD8Async(pointers[STATUS], 0, STATUS_BYTES, stream), "cuMemsetD8Async")
            else:
                holders = [np.array([int(pointers[a])], dtype=np.uint64) for a in node.args]
                params = np.array([h.ctypes.data for h in holders], dtype=np.uint64)
                check(drv.cuLaunchKernel(functions[node.func], node.grid, 1, 1, node.block, 1, 1, 0, stream,
                                         params.ctypes.data, 0), f"cuLaunchKernel({node.func}) in capture")
    except BaseException:
        drv.cuStreamEndCapture(stream)  # leave the stream usable; the half-made graph is dropped
        raise
    graph = check(drv.cuStreamEndCapture(stream), "cuStreamEndCapture")
    exec_ = check(drv.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
    return graph, exec_


class CapturedProgram:
    """A CudaExecutable's program captured once into a CUDA graph and replayed per call."""

    def __init__(self, exe):
        from . import cuda_driver
        self.exe = exe
        self.source = exe.cuda.source   # the rendering captured (the TF32 switch may change it)
        self.plan = plan_graph(exe.cuda)
        st = cuda_driver.require_device("capturing a CUDA graph")
        self._drv, self._stream = st["drv"], st["stream"]
        program = exe.program
        self._bufs = {}
        for k in self.plan.buffers:
            b = program.buffers[k]
            nbytes = max(b.numel * b.dtype.itemsize, 1)
            if b.role == "const":
                self._bufs[k] = cuda_driver.to_device(np.asarray(b.data, b.dtype.np_dtype))
            else:
                self._bufs[k] = cuda_driver.alloc(nbytes)
        self._status = cuda_driver.alloc(STATUS_BYTES)
        pointers = {k: buf.ptr for k, buf in self._bufs.items()}
        pointers[STATUS] = self._status.ptr
        cuda_driver.synchronize()  # the constants are on the device before the capture starts
        self._graph, self._exec = capture(self._drv, self._stream, self.plan, pointers, exe._module.functions)

    def replay(self, inputs: Sequence) -> list:
        from . import cuda_driver
        from .cuda_backend import outputs_from_status
        program = self.exe.program
        if len(inputs) != len(self.plan.inputs):
            raise ValueError(f"program {program.name} takes {len(self.plan.inputs)} inputs, got {len(inputs)}")
        drv, stream = self._drv, self._stream
        on_device = False
        for k, arr in zip(self.plan.inputs, inputs):
            b = program.buffers[k]
            if isinstance(arr, cuda_driver.DeviceArray):
                if arr.shape != tuple(b.shape) or np.dtype(arr.dtype) != b.dtype.np_dtype:
                    raise ValueError(f"input {b.name} expects {b.dtype.name}{list(b.shape)}, got "
                                     f"{np.dtype(arr.dtype)}{list(arr.shape)}")
                n = b.numel * b.dtype.itemsize
                if n:
                    cuda_driver.check(drv.cuMemcpyDtoDAsync(self._bufs[k].ptr, arr.ptr, n, stream), "cuMemcpyDtoDAsync")
                on_device = True
            else:
                a = np.asarray(arr)
                if a.shape != tuple(b.shape) or a.dtype != b.dtype.np_dtype:
                    raise ValueError(f"input {b.name} expects {b.dtype.name}{list(b.shape)}, got {a.dtype}{list(a.shape)}")
                cuda_driver.to_device(a, self._bufs[k])
        cuda_driver.check(drv.cuGraphLaunch(self._exec, stream), "cuGraphLaunch")
        outputs_from_status(program, cuda_driver.to_host(self._status, (4,), np.int64))
        outs = []
        for k in self.plan.outputs:
            b = program.buffers[k]
            if on_device:  # a copy on the device: the next replay overwrites the static buffer
                n = b.numel * b.dtype.itemsize
                buf = cuda_driver.alloc(max(n, 1))
                if n:
                    cuda_driver.check(drv.cuMemcpyDtoDAsync(buf.ptr, self._bufs[k].ptr, n, stream), "cuMemcpyDtoDAsync")
                outs.append(cuda_driver.DeviceArray(buf, tuple(b.shape), b.dtype.np_dtype))
            else:
                outs.append(cuda_driver.to_host(self._bufs[k], b.shape, b.dtype.np_dtype))
        return outs

    def __del__(self):
        drv = getattr(self, "_drv", None)
        if drv is None:
            return
        try:
            drv.cuGraphExecDestroy(self._exec)
            drv.cuGraphDestroy(self._graph)
        except Exception:  # interpreter shutdown: the driver may be gone
            pass
