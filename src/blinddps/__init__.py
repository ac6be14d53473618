"""blinddps: blind inverse problems with parallel diffusion priors."""
__version__ = "0.1.0"
