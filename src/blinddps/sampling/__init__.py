"""The parallel sampler and its guidance."""
from .guidance import Regularizer, StepRule
from .sampler import IMAGE, SampleResult, Variable, sample

__all__ = ["IMAGE", "Regularizer", "SampleResult", "StepRule", "Variable", "sample"]
