"""Shared test settings: one intra-op thread for the whole suite (tiny tensors run faster so, and the suite
does not fight other processes for the cores)."""
import torch

torch.set_num_threads(1)
