"""Multi-frame turbulence: a burst of N frames of one static scene.

``y_f = k ⋆ T_{φ_f}(x) + n_f`` for frames f = 1 … N: one sharp image ``x`` shared by
every frame, one tilt map ``φ_f`` per frame (the warp of :func:`tilt_warp`) and one
blur kernel ``k`` (shared by the frames, the default, or one per frame).

A measurement is a sample of shape ``(N, C, H, W)`` (a batch ``(B, N, C, H, W)``); the
image is ``(C, H, W)``; the unknowns carry the frame axis: ``tilt`` is
``(N, 2, H, W)`` per sample and ``kernel`` ``(1, kh, kw)`` (shared) or
``(N, 1, kh, kw)`` (per frame). The sampler sees nothing of this: it asks the operator
for shapes, ``forward`` and, through the optional hooks, a data estimate of the tilt
(``estimate``: Gauss–Newton registration of every frame against the current image,
:func:`register_tilts`) and ``residual_groups`` (N: one residual norm per frame, so
that a frame that fits badly — a worse frame — pulls less, ``docs/turbulence.md``).

Gauge: only the tilts *relative to the image* are seen, so a common warp of all frames
can move into the image. With more than one frame the estimate is made zero-mean over
the frames (turbulent tilt is zero-mean), which puts the image in the frames' mean
geometry. With one frame that leaves nothing: the estimate is exactly zero, the best
one can say without more data (``docs/turbulence.md`` measures it).
"""
from __future__ import annotations

import torch

from ..transforms import KernelSimplex, Scale
from .base import Operator, Unknown
from .blur import _pair, conv_same, conv_same_adjoint, kernel_least_squares
from .turbulence import tilt_warp

__all__ = ["BurstTurbulence", "register_tilts", "image_gradients", "frame_mean_zero"]


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of ``x`` (…, H, W) along the width (d/dcol) and the height
    (d/drow), one-sided at the borders."""
    gx = torch.empty_like(x)
    gy = torch.empty_like(x)
    gx[..., 1:-1] = 0.5 * (x[..., 2:] - x[..., :-2])
    gx[..., 0] = x[..., 1] - x[..., 0]
    gx[..., -1] = x[..., -1] - x[..., -2]
    gy[..., 1:-1, :] = 0.5 * (x[..., 2:, :] - x[..., :-2, :])
    gy[..., 0, :] = x[..., 1, :] - x[..., 0, :]
    gy[..., -1, :] = x[..., -1, :] - x[..., -2, :]
    return gx, gy


def _neg_laplacian(t: torch.Tensor) -> torch.Tensor:
    """−Δ with Neumann borders (the graph Laplacian of the pixel grid): positive semidefinite."""
    p = torch.nn.functional.pad(t, (1, 1, 1, 1), mode="replicate")
    return 4 * t - p[..., :-2, 1:-1] - p[..., 2:, 1:-1] - p[..., 1:-1, :-2] - p[..., 1:-1, 2:]


def frame_mean_zero(tilt: torch.Tensor) -> torch.Tensor:
    """``tilt`` (B, N, 2, H, W) minus its mean over the N frames."""
    return tilt - tilt.mean(dim=1, keepdim=True)


def register_tilts(
    frames: torch.Tensor,
    image: torch.Tensor,
    kernel: torch.Tensor,
    tilt: torch.Tensor | None = None,
    *,
    weight: float = 2e-3,
    smooth: float = 2e-3,
    gn_steps: int = 2,
    cg_iters: int = 8,
    max_tilt: float = 2.5,
) -> torch.Tensor:
    """Tilt maps that register each frame to the blurred, warped image (Gauss–Newton).

    ``frames`` (M, C, H, W), ``image`` (M or 1, C, H, W), ``kernel`` (M or 1, 1, kh, kw),
    ``tilt`` (M, 2, H, W) a starting value (zero if None). Each of ``gn_steps``
    linearises ``k ⋆ T_φ(x)`` around the current φ (the warp's derivative is the warped
    image gradient) and solves, by ``cg_iters`` conjugate-gradient steps,

        min_φ ½‖y − k ⋆ T_φ(x)‖² + ½·weight·‖φ‖² + ½·smooth·‖∇φ‖²

    for the update, in [-1, 1] image units and pixels. ``weight`` shrinks the
    estimate toward zero where the frame does not pin it down (flat regions, detail the
    blur removed); ``smooth`` couples neighbours. Returns (M, 2, H, W) in
    ``[-max_tilt, max_tilt]``; nothing is differentiated through.
    """
    with torch.no_grad():
        M = frames.shape[0]
        phi = torch.zeros(M, 2, *frames.shape[-2:], dtype=frames.dtype, device=frames.device) if tilt is None \
            else tilt.to(frames).clone()
        gx0, gy0 = image_gradients(image)
        for _ in range(int(gn_steps)):
            w = tilt_warp(image, phi)
            gx, gy = tilt_warp(gx0, phi), tilt_warp(gy0, phi)  # d T_φ(x) / dφ₀, dφ₁

            def jac(d: torch.Tensor) -> torch.Tensor:  # J d: (M, 2, H, W) -> (M, C, H, W)
                return conv_same(d[:, :1] * gx + d[:, 1:] * gy, kernel)

            def jac_t(r: torch.Tensor) -> torch.Tensor:  # Jᵀ r
                b = conv_same_adjoint(r, kernel)
                return torch.cat(((b * gx).sum(1, keepdim=True), (b * gy).sum(1, keepdim=True)), dim=1)

            def normal(d: torch.Tensor) -> torch.Tensor:
                return jac_t(jac(d)) + weight * d + smooth * _neg_laplacian(d)

            r = frames - conv_same(w, kernel)
            rhs = jac_t(r) - weight * phi - smooth * _neg_laplacian(phi)
            d = _cg(normal, rhs, int(cg_iters))
            phi = (phi + d).clamp(-max_tilt, max_tilt)
        return phi


def _cg(normal, rhs: torch.Tensor, iters: int) -> torch.Tensor:
    """Conjugate gradients from zero, one system per leading index."""
    def dot(a, b):
        return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))

    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = dot(r, r)
    for _ in range(iters):
        q = normal(p)
        alpha = rr / dot(p, q).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * q
        rr_new = dot(r, r)
        p = r + (rr_new / rr.clamp_min(1e-30)) * p
        rr = rr_new
    return x


class BurstTurbulence(Operator):
    """N frames of one static scene through turbulence: ``y_f = k ⋆ T_{φ_f}(x)``.

    Unknowns: ``kernel`` — ``(1, kh, kw)`` shared by the frames (``per_frame_kernel``
    False, the default) or ``(N, 1, kh, kw)``; ``tilt`` ``(N, 2, H, W)`` (the
    declared ``(N, 2, -1, -1)``) with ``Scale(tilt_scale)``. Zero-padded 'same' blur
    (the paper's model). ``register`` holds :func:`register_tilts`' settings for the
    ``estimate`` hook; ``zero_mean`` makes the estimated tilts zero-mean over the frames
    (module docstring). ``residual_groups`` is N when ``frame_norms`` is True.
    ``final_register`` > 0: after sampling, :func:`~blinddps.burst.solve_burst`
    registers every frame to the restored image with that many Gauss–Newton steps (the
    tilt output; the shipped burst preset holds the tilts at zero while it restores the
    image and registers afterwards, which measured best: docs/turbulence.md).
    """

    def __init__(
        self,
        frames: int = 1,
        kernel_size: int | tuple[int, int] = 32,
        tilt_scale: float = 2.5,
        per_frame_kernel: bool = False,
        frame_norms: bool = True,
        zero_mean: bool = True,
        register: dict | None = None,
        mode: str = "same",
        final_register: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive int, got {frames!r}")
        if mode != "same":
            raise ValueError("the burst model is zero-padded: mode must be 'same'")
        self.frames = int(frames)
        self.kernel_size = _pair(kernel_size)
        self.tilt_scale = float(tilt_scale)
        self.per_frame_kernel = bool(per_frame_kernel)
        self.frame_norms = bool(frame_norms)
        self.zero_mean = bool(zero_mean)
        self.mode = mode
        if isinstance(final_register, bool) or not isinstance(final_register, int) or final_register < 0:
            raise ValueError(f"final_register must be an int >= 0, got {final_register!r}")
        self.final_register = int(final_register)
        self.register = dict(register or {})
        bad = set(self.register) - {"weight", "smooth", "gn_steps", "cg_iters"}
        if bad:
            raise ValueError(f"unknown register setting {sorted(bad)[0]!r} (weight, smooth, gn_steps, cg_iters)")
        kshape = (self.frames, 1, *self.kernel_size) if self.per_frame_kernel else (1, *self.kernel_size)
        self.declare(
            Unknown("kernel", kshape, KernelSimplex(), "blur kernel(s), each sums to 1"),
            Unknown("tilt", (self.frames, 2, -1, -1), Scale(self.tilt_scale),
                    "per-frame pixel displacements: channel 0 width, 1 height"),
        )

    # shapes ---------------------------------------------------------------
    @property
    def frame_unknowns(self) -> tuple[str, ...]:
        """The unknowns with a leading frame axis (one value per frame): a prior trained
        on single values evaluates them as a batch of N (``blinddps.burst.FramePrior``)."""
        return ("kernel", "tilt") if self.per_frame_kernel else ("tilt",)

    def with_frames(self, frames: int) -> "BurstTurbulence":
        """The same model for a burst of ``frames`` frames."""
        return BurstTurbulence(frames, self.kernel_size, self.tilt_scale, self.per_frame_kernel, self.frame_norms,
                               self.zero_mean, self.register, self.mode, self.final_register)

    @property
    def residual_groups(self) -> int:
        """How many residual norms a sample's loss sums (one per frame, or one)."""
        return self.frames if self.frame_norms else 1

    def image_shape(self, measurement_shape):
        if len(measurement_shape) != 4 or int(measurement_shape[0]) != self.frames:
            raise ValueError(f"a burst measurement is ({self.frames}, C, H, W) per sample, "
                             f"got {tuple(measurement_shape)}")
        return tuple(int(s) for s in measurement_shape[1:])

    def measurement_shape(self, image_shape):
        return (self.frames, *(int(s) for s in image_shape))

    # the model --------------------------------------------------------------
    def _frame_kernels(self, kernel: torch.Tensor, B: int) -> torch.Tensor:
        """Kernels as (B·N, 1, kh, kw) or (1, 1, kh, kw)."""
        if self.per_frame_kernel:
            return kernel.expand(B, *kernel.shape[1:]).reshape(-1, 1, *kernel.shape[-2:])
        if kernel.shape[0] == 1:
            return kernel
        return kernel.repeat_interleave(self.frames, dim=0)

    def forward(self, x: torch.Tensor, kernel: torch.Tensor, tilt: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) image → (B, N, C, H, W) frames."""
        B, C, H, W = x.shape
        self.check_params({"kernel": kernel, "tilt": tilt}, image_shape=(C, H, W), batch=B if B > 1 else None)
        Bt = max(B, tilt.shape[0], kernel.shape[0])
        xs = x.expand(Bt, -1, -1, -1).repeat_interleave(self.frames, dim=0)
        t = tilt.expand(Bt, *tilt.shape[1:]).reshape(Bt * self.frames, 2, H, W)
        z = tilt_warp(xs, t)
        out = conv_same(z, self._frame_kernels(kernel.expand(Bt, *kernel.shape[1:]), Bt))
        return out.view(Bt, self.frames, C, H, W)

    def adjoint(self, y: torch.Tensor, kernel: torch.Tensor, tilt: torch.Tensor) -> torch.Tensor:
        """The exact adjoint with respect to the image: Σ_f T_f^T k^T y_f."""
        from .turbulence import tilt_warp_adjoint

        B, N, C, H, W = y.shape
        k = self._frame_kernels(kernel.expand(B, *kernel.shape[1:]), B)
        a = conv_same_adjoint(y.reshape(B * N, C, H, W), k)
        a = tilt_warp_adjoint(a, tilt.expand(B, *tilt.shape[1:]).reshape(B * N, 2, H, W))
        return a.view(B, N, C, H, W).sum(1)

    # hooks ------------------------------------------------------------------
    def initial_value(self, name: str):
        """Tilt: zero; kernel: a centred Gaussian blob (one per frame if per frame)."""
        if name == "tilt":
            return torch.zeros(1, self.frames, 2, 1, 1)
        if name == "kernel":
            from .blur import gaussian_kernel

            kh, kw = self.kernel_size
            k = gaussian_kernel((kh, kw), max(min(kh, kw) / 16.0, 0.5))
            return k.expand(1, self.frames, kh, kw).unsqueeze(2) if self.per_frame_kernel else k
        return None

    def estimate(self, name: str, x: torch.Tensor, y: torch.Tensor, params: dict) -> torch.Tensor:
        """``tilt``: every frame registered to the blurred, warped image by
        :func:`register_tilts`, warm-started at the current tilt (zero-mean over frames
        if ``zero_mean``). ``kernel``: the least-squares kernel of the unwarped frames."""
        B, N, C, H, W = y.shape
        kernel = params["kernel"].expand(B, *params["kernel"].shape[1:])
        tilt = params["tilt"].expand(B, *params["tilt"].shape[1:]) if "tilt" in params else None
        if name == "tilt":
            return self.register_frames(y, x, kernel, tilt)
        if name == "kernel":
            z = tilt_warp(x.repeat_interleave(N, 0), tilt.reshape(B * N, 2, H, W)) if tilt is not None \
                else x.repeat_interleave(N, 0)
            if self.per_frame_kernel:
                k = kernel_least_squares(z, y.reshape(B * N, C, H, W), self.kernel_size, self.mode)
                return k.view(B, N, 1, *self.kernel_size)
            zz = z.view(B, N * C, H, W)
            return kernel_least_squares(zz, y.reshape(B, N * C, H, W), self.kernel_size, self.mode)
        raise ValueError(f"{type(self).__name__} offers no data estimate for {name!r}")

    def proximal(self, name: str, value: torch.Tensor, y: torch.Tensor, params: dict,
                 rho: float | torch.Tensor, iters: int = 8) -> torch.Tensor:
        """A data-consistency step for the proximal sampler, in physical units.

        ``image``: the minimiser of ½·mean_f‖y_f − k⋆T_f(x)‖² + ½ρ‖x − value‖² by
        ``iters`` conjugate-gradient steps from ``value`` with the exact burst model and
        adjoint, preconditioned by (mean_f|K̂_f|² + ρ)⁻¹ (the circulant model without the
        tilts). The mean over frames keeps a λ tuned on one frame for any N (with the
        sum, 8 frames at the one-frame λ measured 1.1 dB worse: the few CG steps do not
        converge at the 8× weaker relative ρ).
        ``kernel``: least squares on the frames' and the warped image's differences,
        all frames together (or per frame), warm-started at ``value``, pulled to it by
        ρ, recentred. ``tilt``: :func:`register_tilts` from ``value``."""
        from .blur import _conjugate_gradients, _per_sample, gradient_pair, kernel_least_squares_cached, \
            recentre_kernel

        B, N, C, H, W = y.shape
        kernel = params["kernel"].expand(B, *params["kernel"].shape[1:]) if "kernel" in params else value
        tilt = params["tilt"].expand(B, *params["tilt"].shape[1:]) if "tilt" in params else value
        if name == "image":
            rho = _per_sample(rho, value)
            kf = self._frame_kernels(kernel, B)
            kk = kf.view(B, N, 1, *kf.shape[-2:]) if kf.shape[0] == B * N else kf.view(-1, 1, 1, *kf.shape[-2:])
            Kh = torch.fft.rfft2(kk, s=(H, W)).abs().pow(2).sum(1)  # (B|1, 1, H, W//2+1): Σ_f |K̂_f|²
            if kk.shape[1] != 1:  # per-frame kernels: their mean
                Kh = Kh / N
            denom = Kh + rho

            def precond(r: torch.Tensor) -> torch.Tensor:
                return torch.fft.irfft2(torch.fft.rfft2(r) / denom, s=(H, W))

            def normal(u: torch.Tensor) -> torch.Tensor:
                return self.adjoint(self.forward(u, kernel=kernel, tilt=tilt), kernel=kernel, tilt=tilt) / N + rho * u

            rhs = self.adjoint(y, kernel=kernel, tilt=tilt) / N + rho * value
            return _conjugate_gradients(normal, rhs, value.detach(), iters, precond)
        if name == "kernel":
            x = params["image"]
            z = tilt_warp(x.repeat_interleave(N, 0), tilt.reshape(B * N, 2, H, W))
            if self.per_frame_kernel:
                xg, yg = gradient_pair(z, y.reshape(B * N, C, H, W), self.mode, self.kernel_size)
                k = kernel_least_squares_cached(xg, yg, self.kernel_size, "valid", iters=iters,
                                                init=value.reshape(B * N, 1, *self.kernel_size),
                                                rho=_per_sample(rho, value).repeat_interleave(N, 0))
                return recentre_kernel(k).view(B, N, 1, *self.kernel_size)
            xg, yg = gradient_pair(z.reshape(B, N * C, H, W), y.reshape(B, N * C, H, W), self.mode, self.kernel_size)
            k = kernel_least_squares_cached(xg, yg, self.kernel_size, "valid", iters=iters, init=value, rho=rho)
            return recentre_kernel(k)
        if name == "tilt":
            return self.register_frames(y, params["image"], kernel, value)
        raise ValueError(f"{type(self).__name__} has no proximal step for {name!r}")

    def register_frames(self, y: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor,
                        tilt: torch.Tensor | None = None, **settings) -> torch.Tensor:
        """(B, N, 2, H, W) tilts registering frames ``y`` (B, N, C, H, W) to image ``x``
        (B, C, H, W) under ``kernel`` (physical, per the declared shape); ``settings``
        override the operator's ``register`` ones."""
        B, N, C, H, W = y.shape
        if N == 1 and self.zero_mean:
            return torch.zeros(B, 1, 2, H, W, dtype=y.dtype, device=y.device)
        k = self._frame_kernels(kernel.expand(B, *kernel.shape[1:]), B)
        t0 = None if tilt is None else tilt.expand(B, *tilt.shape[1:]).reshape(B * N, 2, H, W)
        phi = register_tilts(y.reshape(B * N, C, H, W), x.repeat_interleave(N, 0), k, t0,
                             max_tilt=self.tilt_scale, **{**self.register, **settings})
        phi = phi.view(B, N, 2, H, W)
        return frame_mean_zero(phi).clamp(-self.tilt_scale, self.tilt_scale) if self.zero_mean else phi

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(frames={self.frames}, kernel_size={self.kernel_size}, "
                f"tilt_scale={self.tilt_scale}, per_frame_kernel={self.per_frame_kernel})")
