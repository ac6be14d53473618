"""The parallel sampler and its guidance."""
from .guidance import Regularizer, StepRule
from .proximal import PROXIMAL_KEYS, proximal_options, sample_proximal
from .sampler import IMAGE, SampleResult, Variable, sample

__all__ = ["IMAGE", "PROXIMAL_KEYS", "Regularizer", "SampleResult", "StepRule", "Variable", "proximal_options",
           "sample", "sample_proximal"]
