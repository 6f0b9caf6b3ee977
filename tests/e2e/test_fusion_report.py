"""Issue 4: the fusion plan of a whole MLP training step has few kernels."""
import importlib.util
import os


def test_mlp_training_step_fuses_into_few_kernels(tmp_path):
    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "inspect_training_step.py")
    spec = importlib.util.spec_from_file_location("inspect_training_step", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    counts = mod.main(str(tmp_path))
    assert counts["traced primitives"] >= 100
    assert counts["after simplification"] < counts["traced primitives"]
    # 3 forward matmuls, 5 backward matmuls (dW x3, dX x2), softmax/cross-entropy reductions, bias-grad sums
    assert counts["kernels"] <= 16
    files = os.listdir(tmp_path)
    assert any(f.endswith("fusion-plan.txt") for f in files) and any(f.endswith("summary.txt") for f in files)
