"""blinddps: blind inverse problems with parallel diffusion priors (BlindDPS)."""
__version__ = "0.1.0"


def solve(*args, **kwargs):
    """See :func:`blinddps.api.solve`."""
    from .api import solve as _solve

    return _solve(*args, **kwargs)


__all__ = ["solve", "__version__"]
