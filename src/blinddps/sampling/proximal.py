"""A proximal (DiffPIR-style) parallel sampler: no gradient through any network.

Per step, schedule index i = N−1 … 0:

1. **Denoise**: x̂0_v = p_v.denoise(x_t^v) for every sampled variable v, without
   autograd (one forward pass per network, no backward).
2. **Data step**, variable by variable in the order given, each with the current
   estimates of all the others (Gauss–Seidel): for a variable in ``lam``, the
   operator's proximal map ``operator.proximal(v, value, y, params, rho, iters)``, the
   minimiser of ½‖y − A(·)‖² + ½ρ‖· − value‖² in physical units, at
   ρ_t = λ_v·(σ_y/σ̄_t)² with σ̄_t = √(1−ᾱ_t)/√ᾱ_t the denoiser's noise level in
   x0 units (DiffPIR: the prior's confidence grows as t falls); the result replaces
   x̂0_v, or with ``blend`` w_v is mixed in: x̂0_v ← (1−w)x̂0_v + w·from_physical(·).
   A variable not in ``lam`` with ``data_weight`` > 0 takes the EM blend of the
   operator's ``estimate`` (as in :func:`~blinddps.sampling.sample`).
3. **Re-noise** to the next level: ε̂ = (x_t − √ᾱ_t x̂0')/√(1−ᾱ_t),
   x_{t−1} = √ᾱ_{t−1} x̂0' + √(1−ᾱ_{t−1})(√(1−ζ) ε̂ + √ζ ε), ε ~ N(0, I).

Optionally a variable in ``guide`` (a small network, e.g. the kernel's) also takes
BlindDPS's gradient step −ζ_v(t)·∇‖y − A(·)‖ after the re-noising, through its own
network only, the others at their denoised estimates; and ``freeze`` holds every
unknown for the last steps, which the image runs alone.

The sampler knows the operator only through ``forward``, its unknowns' shapes and the
``proximal`` / ``estimate`` hooks: what a data step does for a variable (a
conjugate-gradient deconvolution, a least-squares kernel) is the operator's business.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ..diffusion import DiffusionSchedule
from ..priors import PriorOutput
from .sampler import IMAGE, Generators, SampleResult, Variable, _blend_data_estimate, _common_schedule, _noise, \
    check_variables, finish, initial_states, variable_shapes

#: The keys a preset's ``proximal:`` mapping may hold (see :func:`proximal_options`).
PROXIMAL_KEYS = ("noise", "adapt_noise", "zeta", "iters", "lam", "blend", "order", "freeze", "guide")


def proximal_options(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments of :func:`sample_proximal` from a preset's ``proximal:``
    mapping (``noise``, ``zeta``, ``iters``, ``lam: {variable: λ}``,
    ``blend: {variable: w}``); a one-line ValueError on anything else."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(PROXIMAL_KEYS))
    if unknown:
        raise ValueError(f"unknown proximal option {unknown[0]!r}; choose from {', '.join(PROXIMAL_KEYS)}")
    out: dict[str, Any] = {}
    if "noise" in spec:
        out["noise_level"] = float(spec["noise"])
    if "zeta" in spec:
        out["zeta"] = float(spec["zeta"])
    if "iters" in spec:
        it = spec["iters"]
        out["iters"] = {str(n): int(v) for n, v in it.items()} if isinstance(it, Mapping) else int(it)
    if "adapt_noise" in spec:
        out["adapt_noise"] = bool(spec["adapt_noise"])
    if "guide" in spec:
        out["guide"] = [str(n) for n in spec["guide"]]
    if "freeze" in spec:
        out["freeze"] = float(spec["freeze"])
    if "order" in spec:
        out["order"] = [str(n) for n in spec["order"]]
    for key in ("lam", "blend"):
        if key in spec:
            value = spec[key]
            if not isinstance(value, Mapping):
                raise ValueError(f"proximal.{key} must map variable names to numbers, got {value!r}")
            out[key] = {str(n): _number_or_pair(v, f"proximal.{key}.{n}") for n, v in value.items()}
    return out


def _number_or_pair(value: Any, what: str) -> float | tuple[float, float]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{what} must be a number or a [first, last] pair, got {value!r}")
        return (float(value[0]), float(value[1]))
    return float(value)


def _at(value: float | tuple[float, float], i: int, n_steps: int) -> float:
    """A setting at schedule index i: a number, or [first, last] interpolated
    geometrically from the first step (i = N−1) to the last (i = 0)."""
    if not isinstance(value, tuple):
        return float(value)
    frac = i / (n_steps - 1) if n_steps > 1 else 0.0
    first, last = value
    if first > 0 and last > 0:
        return first**frac * last ** (1.0 - frac)
    return first * frac + last * (1.0 - frac)


def _residual_rms(operator: Any, y: torch.Tensor, phys: dict[str, torch.Tensor],
                  fixed: dict[str, torch.Tensor]) -> torch.Tensor:
    params = {m: p for m, p in phys.items() if m != IMAGE}
    params.update(fixed)
    return (y - operator.forward(phys[IMAGE], **params)).flatten(1).pow(2).mean(dim=1).sqrt()


def _values(d: Mapping[str, float | tuple[float, float]]) -> list[float]:
    return [x for v in d.values() for x in (v if isinstance(v, tuple) else (v,))]


def _sigma_bar(schedule: DiffusionSchedule, i: int) -> float:
    ac = float(schedule.alphas_cumprod[i])
    return ((1.0 - ac) / ac) ** 0.5


def _renoise(schedule: DiffusionSchedule, i: int, x0: torch.Tensor, x_t: torch.Tensor, zeta: float,
             noise: torch.Tensor | None) -> torch.Tensor:
    """DiffPIR's step to index i−1 from a data-consistent x̂0' (x̂0' itself at i = 0)."""
    ac = float(schedule.alphas_cumprod[i])
    ac_prev = float(schedule.alphas_cumprod_prev[i])
    eps = (x_t - ac**0.5 * x0) / (1.0 - ac) ** 0.5
    if noise is None or zeta == 0.0:
        mix = eps
    else:
        mix = (1.0 - zeta) ** 0.5 * eps + zeta**0.5 * noise
    return ac_prev**0.5 * x0 + (1.0 - ac_prev) ** 0.5 * mix


@dataclass
class _Plan:
    """What every step of a run needs, fixed before the first."""

    operator: Any
    y: torch.Tensor
    variables: dict[str, Variable]
    fixed: dict[str, torch.Tensor]
    lam: dict[str, float | tuple[float, float]]
    blend: dict[str, float | tuple[float, float]]
    iters: dict[str, int]
    order: list[str]
    noise_level: float
    adapt_noise: bool
    zeta: float
    sched: DiffusionSchedule
    generator: Generators
    guide: tuple[str, ...] = ()


def _data_step(plan: _Plan, i: int, x0: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Step 2 of the module docstring, in place on ``x0``; returns the physical values."""
    variables, n_steps = plan.variables, plan.sched.num_steps
    phys = {n: variables[n].prior.transform.to_physical(x0[n]) for n in variables}
    sigma_y = torch.full((plan.y.shape[0],), float(plan.noise_level), device=plan.y.device, dtype=plan.y.dtype)
    if plan.adapt_noise:  # the misfit of the current estimates counts as noise (a wrong operator's error)
        sigma_y = torch.maximum(sigma_y, _residual_rms(plan.operator, plan.y, phys, plan.fixed))
    rho_scale = (sigma_y / _sigma_bar(plan.sched, i)) ** 2
    for n in plan.order:
        v = variables[n]
        if n in plan.lam:
            params = {m: p for m, p in phys.items() if m != n}
            params.update(plan.fixed)
            rho = _at(plan.lam[n], i, n_steps) * rho_scale
            est_x0 = v.prior.transform.from_physical(
                plan.operator.proximal(n, phys[n], plan.y, params, rho, plan.iters.get(n, 8)))
            if getattr(v.prior, "clip", False):
                est_x0 = est_x0.clamp(-1, 1)
            w = _at(plan.blend.get(n, 1.0), i, n_steps)
            x0[n] = est_x0 if w == 1.0 else (1 - w) * x0[n] + w * est_x0
        elif v.data_weight > 0 and i < v.data_start * n_steps:
            x0[n] = _blend_data_estimate(plan.operator, n, v, PriorOutput(x0[n]), phys, plan.fixed, plan.y).x0
        phys[n] = v.prior.transform.to_physical(x0[n])
    return phys


def _guided(plan: _Plan, states: dict[str, torch.Tensor], idx: torch.Tensor, x0: dict[str, torch.Tensor]):
    """x̂0 of the variables in ``plan.guide`` and the gradient, through their own networks
    only, of Σ_b ‖y_b − A(·)_b‖ with every other variable at its denoised estimate
    (BlindDPS's coupling, without the image network's backward pass)."""
    variables = plan.variables
    with torch.enable_grad():
        leaves = {n: states[n].detach().requires_grad_(True) for n in plan.guide}
        outs = {n: variables[n].prior.denoise(leaves[n], idx).x0 for n in plan.guide}
        phys = {n: variables[n].prior.transform.to_physical(x0[n]) for n in x0}
        phys.update({n: variables[n].prior.transform.to_physical(o) for n, o in outs.items()})
        params = {m: p for m, p in phys.items() if m != IMAGE}
        params.update(plan.fixed)
        r = (plan.y - plan.operator.forward(phys[IMAGE], **params)).flatten(1)
        grads = torch.autograd.grad(r.norm(dim=1).sum(), list(leaves.values()))
    return {n: o.detach() for n, o in outs.items()}, dict(zip(plan.guide, grads))


def _run(plan: _Plan, states: dict[str, torch.Tensor], first: int, last: int, on_step) -> dict[str, torch.Tensor]:
    """Steps ``first`` … ``last`` from ``states`` (updated in place); the last physical values."""
    B, device, dtype = plan.y.shape[0], plan.y.device, plan.y.dtype
    phys: dict[str, torch.Tensor] = {}
    for i in range(first, last - 1, -1):
        idx = torch.full((B,), i, device=device, dtype=torch.long)
        x0 = {n: v.prior.denoise(states[n], idx).x0 for n, v in plan.variables.items() if n not in plan.guide}
        grads = {}
        if plan.guide:
            x0_g, grads = _guided(plan, states, idx, x0)
            x0.update(x0_g)
        phys = _data_step(plan, i, x0)
        for n, v in plan.variables.items():
            s = v.prior.schedule
            if s is None:  # a flat prior: the data step is the state
                states[n] = x0[n]
                continue
            noise = _noise(states[n].shape, plan.generator, device, dtype) if plan.zeta > 0 else None
            states[n] = _renoise(s, i, x0[n], states[n], plan.zeta, noise)
            if n in grads:
                states[n] = states[n] - v.step(s, idx, states[n], plan.y[0].numel()) * grads[n]
        on_step(i, x0, phys)
    return phys


def sample_proximal(
    operator: Any,
    y: torch.Tensor,
    variables: dict[str, Variable],
    *,
    lam: Mapping[str, float | tuple[float, float]] | None = None,
    blend: Mapping[str, float | tuple[float, float]] | None = None,
    noise_level: float = 0.02,
    adapt_noise: bool = False,
    zeta: float = 0.5,
    iters: int | Mapping[str, int] = 8,
    order: list[str] | None = None,
    freeze: float = 0.0,
    guide: list[str] | tuple[str, ...] = (),
    fixed: dict[str, torch.Tensor] | None = None,
    schedule: DiffusionSchedule | None = None,
    generator: Generators = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    trajectory_every: int = 0,
    progress: bool = False,
) -> SampleResult:
    """Run the parallel proximal diffusions of ``variables`` coupled through ``y`` (see
    the module docstring).

    ``lam`` (default ``{"image": 7.0}``) names the variables that take the operator's
    proximal step and their λ; ``blend`` their weight of it (default 1: replace x̂0);
    either may be a [first, last] pair, interpolated geometrically over the steps.
    ``noise_level`` is the measurement noise σ_y the step sizes assume;
    ``adapt_noise`` raises it, per sample and step, to the residual RMS of the
    current estimates (the error of a still wrong operator acts as noise: early on it
    keeps the image near its prior). ``zeta`` is DiffPIR's share of fresh noise in the
    re-noising (0 = deterministic), ``iters`` the work bound handed to each proximal
    step (one number, or one per variable), ``order`` the order of the data steps
    (default: the order of ``variables``). ``freeze`` r > 0 holds every unknown at its
    estimate for the last ⌊r·N⌋ steps, which the image runs alone (a non-blind finish:
    the last steps' overfitted images otherwise pull a good kernel off). Unknowns in
    ``fixed`` are held (physical values). Returns what :func:`sample` returns, with the
    last step's data-consistent estimates."""
    fixed = dict(fixed or {})
    lam = dict({IMAGE: 7.0} if lam is None else lam)
    blend = dict(blend or {})
    check_variables(operator, variables, fixed)
    for name in list(lam) + list(blend):
        if name not in variables and name not in fixed:
            raise ValueError(f"proximal settings name {name!r}, which is not a sampled variable")
    lam = {n: v for n, v in lam.items() if n in variables}  # a held unknown takes no data step
    order = list(variables) if order is None else [n for n in order if n not in fixed]
    if sorted(order) != sorted(variables):
        raise ValueError(f"proximal order {order} must list each sampled variable once: {list(variables)}")
    iters = dict(iters) if isinstance(iters, Mapping) else {n: int(iters) for n in variables}
    if any(v < 0 for v in _values(lam)) or not all(0.0 <= w <= 1.0 for w in _values(blend)):
        raise ValueError("proximal lam must be >= 0 and blend weights in [0, 1]")
    if not 0.0 <= zeta <= 1.0:
        raise ValueError(f"zeta must be in [0, 1], got {zeta!r}")
    if not 0.0 <= freeze < 1.0:
        raise ValueError(f"freeze must be in [0, 1), got {freeze!r}")
    if not noise_level > 0:
        raise ValueError(f"noise_level must be positive, got {noise_level!r}")
    guide = tuple(n for n in guide if n not in fixed)
    if IMAGE in guide or any(n not in variables for n in guide):
        raise ValueError(f"guide names the variables besides the image that take a gradient step, got {list(guide)}")
    if lam and getattr(operator, "proximal", None) is None:
        raise ValueError(f"operator {type(operator).__name__} offers no proximal step")
    sched = _common_schedule(variables, schedule)
    n_steps = sched.num_steps
    B, device, dtype = y.shape[0], y.device, y.dtype
    shapes = variable_shapes(operator, y, list(variables))

    states = initial_states(variables, shapes, B, generator, device, dtype)

    frozen = int(math.floor(freeze * n_steps))
    trajectory: list[dict[str, torch.Tensor]] = []
    start = time.perf_counter()
    bar = tqdm(total=n_steps, desc="sampling", disable=not progress, leave=False)
    count = [0]
    residual = torch.full((B,), float("nan"), device=device)

    def on_step(i: int, x0: dict[str, torch.Tensor], phys: dict[str, torch.Tensor]) -> None:
        nonlocal residual
        residual = _residual_rms(operator, y, {**phys, **plan.fixed}, {})
        step = count[0]
        count[0] += 1
        if trajectory_every and (step % trajectory_every == 0 or i == 0):
            trajectory.append({n: p.cpu() for n, p in phys.items()})
        if callback is not None:
            callback({"i": i, "step": step, "residual": residual, "x0": dict(x0)})
        bar.update(1)
        bar.set_postfix(residual=f"{residual.mean().item():.4f}")

    plan = _Plan(operator, y, variables, fixed, lam, blend, iters, order, float(noise_level), bool(adapt_noise),
                 float(zeta), sched, generator, guide)
    with torch.no_grad():
        phys = _run(plan, states, n_steps - 1, frozen, on_step)
        if frozen:
            held = {n: p for n, p in phys.items() if n != IMAGE}
            plan = _Plan(operator, y, {IMAGE: variables[IMAGE]}, {**fixed, **held},
                         {n: v for n, v in lam.items() if n == IMAGE}, blend, iters, [IMAGE], plan.noise_level,
                         plan.adapt_noise, plan.zeta, sched, generator)
            image_state = {IMAGE: states[IMAGE]}
            phys = {**held, **_run(plan, image_state, frozen - 1, 0, on_step)}
            states[IMAGE] = image_state[IMAGE]
    bar.close()
    return finish(phys, states, residual, start, n_steps, trajectory, device)
