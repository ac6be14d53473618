"""The parallel sampler and its guidance."""
from .combine import COMBINE_RULES, agreement_factor, combine_samples
from .guidance import Regularizer, StepRule
from .proximal import PROXIMAL_KEYS, proximal_options, sample_proximal
from .sampler import IMAGE, SampleResult, Variable, sample

__all__ = ["COMBINE_RULES", "IMAGE", "PROXIMAL_KEYS", "Regularizer", "SampleResult", "StepRule", "Variable",
           "agreement_factor", "combine_samples", "proximal_options", "sample", "sample_proximal"]
