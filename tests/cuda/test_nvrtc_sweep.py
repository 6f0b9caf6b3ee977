"""Every kernel the test suite's programs produce renders to CUDA C that NVRTC compiles (sm_90),
so an emitter regression fails here without a GPU. The corpus programs' compiled training steps
(tests/programs) and random graphs over every primitive (tests/graph_gen.py) are lowered for the
cuda backend; their distinct kernels go to NVRTC in one translation unit.

NVRTC's front end checks every kernel (`--fdevice-syntax-only`: names, types, overloads -- what an
emitter regression breaks; under a second for the corpus's ~760 kernels); a sample of them (every
`FULL_EVERY`-th, and all of the random graphs') is also compiled to PTX with -G, through NVVM, which
takes ~18 ms a kernel."""
import pytest
from graph_gen import random_graphs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiln.codegen.cuda_render import PRELUDE, render_program
from kiln.codegen.kir_printer import format_kernel
from kiln.codegen.lower import lower_plan
from kiln.passes.fusion import plan_fusion
from kiln.runtime import backend as be
from kiln.runtime.nvrtc_compiler import CudaCompileError, available, compile_cuda

pytestmark = pytest.mark.skipif(available() is None, reason="needs NVRTC (kiln[cuda]) or nvcc")


def _distinct_kernels(graphs, into: dict) -> None:
    for i, g in enumerate(graphs):
        prog = lower_plan(plan_fusion(g), f"g{len(into)}_{i}", cpu_blocking=False)
        for k in prog.kernels:
            into.setdefault(format_kernel(k).replace(k.name, "@kernel", 1), k)


FULL_EVERY = 8


def _sweep(kernels, full_every: int = 1) -> None:
    kernels = list(kernels)
    source, rendered = render_program(kernels)
    assert sum(len(r.stages) for r in rendered) >= len(rendered)
    if full_every > 1 and available().startswith("nvrtc"):
        compile_cuda(source, "sweep.cu", arch="compute_90", cubin=False, extra_options=("--fdevice-syntax-only",))
        kernels = kernels[::full_every]
        source, _ = render_program(kernels)
    # -G: no device optimisation -- the sweep checks that the C is valid, and compiles 3x faster
    compile_cuda(source, "sweep.cu", arch="compute_90", cubin=False, extra_options=("-G",))


def test_corpus_programs_compile_with_nvrtc(monkeypatch):
    """The graphs are recorded where the reference backend compiles them: the passes before a
    backend's compile are the same for every backend, and the interpreter runs the one step each
    program needs without compiling it for the CPU first."""
    import kiln
    from programs import runner
    graphs = []
    compile_reference = be.ReferenceBackend.compile

    def record(self, graph):
        graphs.append(graph)
        return compile_reference(self, graph)
    monkeypatch.setattr(be.ReferenceBackend, "compile", record)
    with kiln.config.override(backend="reference"):
        for name in runner.PROGRAMS:
            runner.run(runner.load(name), "compiled", steps=1)
    assert len(graphs) >= len(runner.PROGRAMS)
    kernels: dict = {}
    _distinct_kernels(graphs, kernels)
    assert len(kernels) > 200
    _sweep(kernels.values(), FULL_EVERY)


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.data())
def test_random_graphs_compile_with_nvrtc(data):
    graphs = [data.draw(random_graphs()) for _ in range(60)]
    kernels: dict = {}
    _distinct_kernels(graphs, kernels)
    _sweep(kernels.values())


def test_the_front_end_check_catches_what_an_emitter_regression_breaks():
    """An undefined name, a prelude helper given the wrong type, a type mismatch: each refused."""
    if not available().startswith("nvrtc"):
        pytest.skip("--fdevice-syntax-only is NVRTC's")
    for body in ("a[0] = undefined_name;", "a[0] = kiln_f2i32(a);", "float4 v = a[0];"):
        with pytest.raises(CudaCompileError, match="NVRTC_ERROR_COMPILATION"):
            compile_cuda(f'{PRELUDE}\nextern "C" __global__ void k(float* a) {{ {body} }}', "bad.cu", arch="compute_90",
                         cubin=False, extra_options=("--fdevice-syntax-only",))


def test_nvrtc_error_names_the_code_and_log():
    with pytest.raises(CudaCompileError) as e:
        compile_cuda('extern "C" __global__ void k(float* a) { a[0] = undefined_name; }', "bad.cu")
    assert "NVRTC_ERROR_COMPILATION" in str(e.value) and "undefined_name" in str(e.value)


def test_cubin_and_ptx_for_sm90():
    c = compile_cuda('extern "C" __global__ void k(float* a) { a[threadIdx.x] *= 2.0f; }', "k.cu", arch="sm_90")
    assert ".target sm_90" in c.ptx and ".entry k" in c.ptx
    if c.compiler.startswith("nvrtc"):
        assert c.cubin and c.cubin[:4] == b"\x7fELF"
