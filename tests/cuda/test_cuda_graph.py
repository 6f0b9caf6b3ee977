"""mode="reduce-overhead": a cuda-backend program captured into a CUDA graph and replayed.

Without a device: what is captured (plan_graph) and the driver calls the capture makes, through a
driver that records them. With one (needs_gpu): results equal an ordinary run's, replays reuse
the graph, a failed check raises the ordinary run's IndexError."""
import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.runtime import cuda_graph
from kiln.runtime.cuda_graph import STATUS, GraphNode, capture, plan_graph


def _lowered(fn, *specs):
    (ex,) = kiln.compile(fn, backend="cuda").lower(*[kiln.ShapeDtype(*s) for s in specs])._executables()
    return ex


def mlp(x, w1, b1, w2):
    return F.log_softmax(kiln.relu(x @ w1 + b1) @ w2, dim=-1)


def test_plan_is_a_status_reset_then_every_launch_in_order():
    ex = _lowered(mlp, ((8, 20),), ((20, 16),), ((16,),), ((16, 5),))
    plan = plan_graph(ex.cuda)
    assert plan.nodes[0] == GraphNode("memset", args=(STATUS,))
    launches = [n for n in plan.nodes[1:]]
    assert [(n.func, n.grid, n.block, n.args[:-1]) for n in launches] == \
        [(ln.func, ln.grid, ln.block, ln.args) for ln in ex.cuda.launches]
    assert all(n.kind == "launch" and n.args[-1] == STATUS for n in launches)
    assert "gemm" in {ln.mode for ln in ex.cuda.launches}
    names = [b.name for b in ex.program.buffers]
    assert [names[k] for k in plan.inputs] == ex.program.inputs
    assert [names[k] for k in plan.outputs] == ex.program.outputs
    assert plan.buffers == tuple(range(len(names)))   # every buffer static, intermediates too


class RecordingDriver:
    """The driver calls a capture makes, recorded (CUDA_SUCCESS for each)."""

    class CUresult:
        CUDA_SUCCESS = 0

    class CUstreamCaptureMode:
        CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = "thread-local"

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def _rec(self, name, *args):
        self.calls.append((name,) + args)
        return (1 if name == self.fail_on else 0,) + {"cuStreamEndCapture": ("graph",),
                                                        "cuGraphInstantiate": ("exec",)}.get(name, ())

    def cuStreamBeginCapture(self, stream, mode):
        return self._rec("cuStreamBeginCapture", stream, mode)

    def cuMemsetD8Async(self, ptr, value, n, stream):
        return self._rec("cuMemsetD8Async", ptr, value, n, stream)

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        import ctypes
        count = {"f0": 4, "f1": 2}[fn]
        holders = (ctypes.c_uint64 * count).from_address(params)
        ptrs = [ctypes.c_uint64.from_address(h).value for h in holders]
        return self._rec("cuLaunchKernel", fn, gx, bx, stream, ptrs)

    def cuStreamEndCapture(self, stream):
        return self._rec("cuStreamEndCapture", stream)

    def cuGraphInstantiate(self, graph, flags):
        return self._rec("cuGraphInstantiate", graph, flags)

    def cuGetErrorString(self, err):
        return 0, b"recorded failure"


def _toy_plan():
    nodes = (GraphNode("memset", args=(STATUS,)), GraphNode("launch", "f0", 3, 256, (0, 1, 2, STATUS)),
             GraphNode("launch", "f1", 1, 128, (2, STATUS)))
    return cuda_graph.GraphPlan("toy", (0, 1), (2,), (0, 1, 2), nodes)


def test_capture_issues_the_plan_between_begin_and_end(monkeypatch):
    drv = RecordingDriver()
    monkeypatch.setattr("kiln.runtime.cuda_driver._bindings", lambda: drv)
    ptrs = {0: 0x1000, 1: 0x2000, 2: 0x3000, STATUS: 0x9000}
    graph, exec_ = capture(drv, "stream", _toy_plan(), ptrs, {"f0": "f0", "f1": "f1"})
    assert (graph, exec_) == ("graph", "exec")
    assert drv.calls == [
        ("cuStreamBeginCapture", "stream", "thread-local"),
        ("cuMemsetD8Async", 0x9000, 0, cuda_graph.STATUS_BYTES, "stream"),
        ("cuLaunchKernel", "f0", 3, 256, "stream", [0x1000, 0x2000, 0x3000, 0x9000]),
        ("cuLaunchKernel", "f1", 1, 128, "stream", [0x3000, 0x9000]),
        ("cuStreamEndCapture", "stream"),
        ("cuGraphInstantiate", "graph", 0),
    ]


def test_a_failed_launch_ends_the_capture_and_names_the_kernel(monkeypatch):
    from kiln.runtime.cuda_driver import CudaError
    drv = RecordingDriver(fail_on="cuLaunchKernel")
    monkeypatch.setattr("kiln.runtime.cuda_driver._bindings", lambda: drv)
    ptrs = {0: 1, 1: 2, 2: 3, STATUS: 4}
    with pytest.raises(CudaError, match=r"cuLaunchKernel\(f0\) in capture failed"):
        capture(drv, "s", _toy_plan(), ptrs, {"f0": "f0", "f1": "f1"})
    assert drv.calls[-1] == ("cuStreamEndCapture", "s")   # the stream leaves capture mode


def test_mode_is_checked_and_kept():
    f = kiln.compile(lambda x: x + 1, backend="cuda", mode="reduce-overhead")
    assert f.mode == "reduce-overhead"
    assert kiln.compile(lambda x: x + 1).mode == "default"
    with pytest.raises(ValueError, match="mode must be one of default, reduce-overhead"):
        kiln.compile(lambda x: x + 1, mode="fast")


def test_reduce_overhead_on_the_cpu_is_the_ordinary_run():
    f = kiln.compile(lambda x: x * 2 + 1, mode="reduce-overhead")
    x = kiln.arange(6.0)
    np.testing.assert_array_equal(f(x).numpy(), np.arange(6.0) * 2 + 1)


def test_reduce_overhead_without_a_device_says_why():
    from kiln.runtime import cuda_driver
    if cuda_driver.is_available():
        pytest.skip("a device is usable here")
    f = kiln.compile(lambda x: x * 2, backend="cuda", mode="reduce-overhead")
    with pytest.raises(RuntimeError, match="needs a CUDA device, and none is usable"):
        f(kiln.ones(4))


def test_graph_replays_match_an_ordinary_run(needs_gpu):
    rng = np.random.default_rng(0)
    specs = [(8, 20), (20, 16), (16,), (16, 5)]
    f_graph = kiln.compile(mlp, backend="cuda", mode="reduce-overhead")
    f_plain = kiln.compile(mlp, backend="cuda")
    for step in range(3):
        xs = [kiln.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in specs]
        np.testing.assert_allclose(f_graph(*xs).numpy(), f_plain(*xs).numpy(), rtol=1e-6, atol=1e-6)
    (entry,) = f_graph._cache.values()
    exe = next(iter(entry.graph.__dict__["_executables"].values()))
    assert exe._captured is not None and len(exe._captured.plan.nodes) == len(exe.cuda.launches) + 1


def test_graph_replay_reports_a_bad_index_and_stays_usable(needs_gpu):
    f = kiln.compile(lambda w, i: w[i] * 2, backend="cuda", mode="reduce-overhead")
    w = kiln.from_numpy(np.arange(12, dtype=np.float32).reshape(6, 2))
    with pytest.raises(IndexError, match="out of bounds"):
        f(w, kiln.from_numpy(np.array([1, 9])))
    np.testing.assert_array_equal(f(w, kiln.from_numpy(np.array([1, 5]))).numpy(), w.numpy()[[1, 5]] * 2)
