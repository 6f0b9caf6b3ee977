"""Graph passes: simplification (dce, cse, fold, rewrite), the fusion and memory plans, and
the pass manager. Imports only kiln.ir. See docs/passes.md."""
from .cse import cse
from .dce import dce
from .fold import fold
from .fusion import Boundary, FusionPlan, Kernel, KernelKind, plan_fusion
from .manager import Pass, Pipeline, PipelineReport, Repeat, default_pipeline, optimize
from .memory import MemoryPlan, MemoryPlanError, plan_memory, verify_memory_plan
from .rewrites import RULES, Rule, rewrite

__all__ = ["cse", "dce", "fold", "rewrite", "Rule", "RULES", "plan_fusion", "FusionPlan", "Kernel",
           "KernelKind", "Boundary", "plan_memory", "MemoryPlan", "verify_memory_plan", "MemoryPlanError", "Pipeline",
           "Pass", "Repeat", "PipelineReport", "default_pipeline", "optimize"]
