"""The evaluator: applies a compiled plan to a sample with the gating kernels."""

from gating._evaluate._apply import COUNT_COLUMNS, GatingResult, apply_plan, evaluate_plan
from gating._evaluate._evaluator import Evaluator

__all__ = ["COUNT_COLUMNS", "Evaluator", "GatingResult", "apply_plan", "evaluate_plan"]
