"""Forward models ``y = A(x; θ)`` and the unknowns θ they declare.

An operator is the only place that knows what its parameters mean. The sampler sees
it through a small contract:

* ``unknowns`` — an ordered ``dict[str, Unknown]``: each unknown's name, per-sample
  shape and the :class:`~blinddps.transforms.Transform` from its prior's diffusion
  space to the physical value the operator takes;
* ``image_shape(measurement_shape)`` — the per-sample shape ``(C, H, W)`` of the
  unknown image that explains a measurement (the same by default; larger for a
  'valid' blur, where the scene continues past the frame);
* ``unknown_shapes(image_shape)`` — each unknown's concrete per-sample shape for that
  image. In :class:`Unknown.shape`, a ``-1`` stands for "the image's size along this
  axis, counted from the end": a tilt map declared ``(2, -1, -1)`` becomes
  ``(2, H, W)`` for an image ``(C, H, W)``;
* ``forward(x, **params)`` — the measurement, with params given by unknown name, in
  physical units, batched ``(B, *shape)`` (a batch of 1 broadcasts);
* ``adjoint(y, **params)`` — the exact adjoint with respect to ``x`` (operators that
  are linear in ``x``);
* optional hooks: ``image_offset()`` (where the measurement's frame sits inside the
  image), ``initial_value(name)`` (a physical starting value for an unknown sampled
  without a learned prior) and ``estimate(name, x, y, params)`` (a data-driven
  estimate of one unknown given everything else, for EM-style updates).

Declaring a new blind problem
-----------------------------
Subclass :class:`Operator`, declare the unknowns in ``__init__`` and write
``forward``; everything else has a default::

    from blinddps.operators import Operator, Unknown
    from blinddps.transforms import Identity

    class Vignetting(Operator):
        '''y = g ⊙ x with an unknown smooth gain map g (one per sample).'''

        def __init__(self):
            super().__init__()
            self.declare(Unknown("gain", (1, -1, -1), Identity(), "multiplicative gain"))

        def forward(self, x, gain):
            self.check_params({"gain": gain}, image_shape=tuple(x.shape[1:]))
            return x * gain

        def adjoint(self, y, gain):      # linear in x: the exact adjoint
            return y * gain

Then give each unknown a prior (a diffusion model trained in the transform's diffusion
space, or a flat prior) and hand the operator to the sampler.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..transforms import Transform

__all__ = ["Unknown", "Operator"]


@dataclass(frozen=True)
class Unknown:
    """One unknown parameter of a forward model.

    ``shape`` is per sample (no batch axis), e.g. ``(1, 64, 64)`` for a kernel; a ``-1``
    takes the image's size along the same axis counted from the end (``(2, -1, -1)``
    is a two-channel map the size of the image). ``transform`` maps its prior's
    diffusion space to the physical value ``forward`` takes.
    """

    name: str
    shape: tuple[int, ...]
    transform: Transform
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if any(s == 0 or s < -1 for s in self.shape):
            raise ValueError(f"unknown {self.name!r}: sizes must be positive or -1, got {self.shape}")

    def resolve(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The concrete per-sample shape for an image of per-sample ``image_shape``."""
        if -1 not in self.shape:
            return self.shape
        image_shape = tuple(image_shape)
        out = []
        for i, s in enumerate(self.shape):
            if s != -1:
                out.append(s)
                continue
            back = len(self.shape) - i  # position counted from the end
            if back > len(image_shape):
                raise ValueError(
                    f"unknown {self.name!r}: shape {self.shape} has a -1 with no matching axis "
                    f"in the image shape {image_shape}"
                )
            out.append(int(image_shape[-back]))
        return tuple(out)


class Operator(ABC):
    """A forward model ``y = A(x; θ)`` that declares its unknowns θ.

    Subclasses call :meth:`declare` in ``__init__`` and implement :meth:`forward`
    (and :meth:`adjoint` when linear in ``x``). See the module docstring.
    """

    unknowns: dict[str, Unknown]
    #: True when the image may extend past the part the measurement sees (rows/columns
    #: added at the bottom/right are scene outside the view, shaped by the image prior
    #: only): lets :class:`ImageWindow` give a prior the image size it needs without
    #: inventing measurement values. False for models with zero borders ('same').
    extendable_image: bool = False

    def __init__(self) -> None:
        self.unknowns = {}

    # ------------------------------------------------------------------ declaring
    def declare(self, *unknowns: Unknown) -> None:
        """Add unknowns, in order; names must be unique and not ``'image'``."""
        for u in unknowns:
            if not isinstance(u, Unknown):
                raise TypeError(f"declare() takes Unknown objects, got {type(u).__name__}")
            if u.name == "image":
                raise ValueError("'image' is the operator's input, not an unknown parameter")
            if u.name in self.unknowns:
                raise ValueError(f"unknown {u.name!r} declared twice")
            self.unknowns[u.name] = u

    @property
    def transforms(self) -> dict[str, Transform]:
        """Each unknown's transform, by name."""
        return {n: u.transform for n, u in self.unknowns.items()}

    # ------------------------------------------------------------------ shapes
    def image_shape(self, measurement_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample shape of the unknown image that explains a measurement of
        per-sample shape ``measurement_shape`` (the same by default)."""
        return tuple(int(s) for s in measurement_shape)

    def measurement_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample shape of the measurement of an image of per-sample ``image_shape``
        (the inverse of :meth:`image_shape`; the same by default)."""
        return tuple(int(s) for s in image_shape)

    def image_offset(self) -> tuple[int, int]:
        """(row, column) of the measurement's top-left pixel inside the image."""
        return (0, 0)

    def unknown_shapes(self, image_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Each unknown's per-sample shape for an image of per-sample ``image_shape``."""
        return {n: u.resolve(image_shape) for n, u in self.unknowns.items()}

    def check_params(
        self,
        params: Mapping[str, torch.Tensor],
        image_shape: tuple[int, ...] | None = None,
        batch: int | None = None,
    ) -> None:
        """Raise a one-line ValueError if ``params`` misses or adds an unknown, or if a
        value is not a tensor of shape ``(B, *shape)`` (B = ``batch`` or 1). Without
        ``image_shape``, ``-1`` axes accept any size."""
        missing = [n for n in self.unknowns if n not in params]
        if missing:
            raise ValueError(f"{type(self).__name__}: missing parameter {missing[0]!r} (expects {list(self.unknowns)})")
        extra = [n for n in params if n not in self.unknowns]
        if extra:
            raise ValueError(f"{type(self).__name__}: unexpected parameter {extra[0]!r} (expects {list(self.unknowns)})")
        for name, u in self.unknowns.items():
            value = params[name]
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{type(self).__name__}: parameter {name!r} must be a tensor, got {type(value).__name__}")
            want = u.resolve(image_shape) if image_shape is not None else u.shape
            got = tuple(value.shape)
            ok = len(got) == len(want) + 1 and all(w == -1 or w == g for w, g in zip(want, got[1:]))
            if ok and batch is not None:
                ok = got[0] in (1, batch)
            if not ok:
                b = "B" if batch is None else f"{batch} or 1"
                raise ValueError(
                    f"{type(self).__name__}: parameter {name!r} has shape {got}, expected ({b}, "
                    f"{', '.join('*' if s == -1 else str(s) for s in want)})"
                )

    # ------------------------------------------------------------------ the model
    @abstractmethod
    def forward(self, x: torch.Tensor, **params: torch.Tensor) -> torch.Tensor:
        """The measurement of image ``x`` (B, C, H, W) under physical ``params``."""

    def adjoint(self, y: torch.Tensor, **params: torch.Tensor) -> torch.Tensor:
        """The exact adjoint with respect to ``x`` (for operators linear in ``x``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define an adjoint")

    def initial_value(self, name: str) -> torch.Tensor | None:
        """A physical starting value ``(1, ...)`` for an unknown sampled without a
        learned prior, or None (start from noise)."""
        return None

    def __call__(self, x: torch.Tensor, **params: torch.Tensor) -> torch.Tensor:
        """``forward`` after :meth:`check_params` (a one-line ValueError on a missing,
        extra or misshaped parameter, where a bare ``forward`` call may raise TypeError)."""
        self.check_params(params, image_shape=tuple(x.shape[1:]), batch=x.shape[0] if x.shape[0] > 1 else None)
        return self.forward(x, **params)

    def __repr__(self) -> str:
        unk = ", ".join(f"{n}{u.shape}" for n, u in self.unknowns.items())
        return f"{type(self).__name__}(unknowns: {unk or 'none'})"


class ImageWindow(Operator):
    """``inner`` applied to the top-left ``window`` (h, w) of a larger image of per-sample
    spatial size ``image_hw``: the rows and columns past the window are scene the
    measurement does not see. Used to pad the image of an :attr:`Operator.extendable_image`
    model (e.g. a 'valid' blur) to a size the image prior's UNet accepts — instead of
    padding the measurement with made-up (reflected) values that the unknowns would then
    have to explain. Unknowns, offsets and the data estimate are the inner operator's."""

    @staticmethod
    def applies(operator: Operator) -> bool:
        """Whether ``operator`` can be wrapped: its image may extend past the view, and it
        has no image-sized unknowns (they would have to grow with the image)."""
        return bool(getattr(operator, "extendable_image", False)) and not any(
            -1 in tuple(u.shape)[-2:] for u in operator.unknowns.values())

    def __init__(self, inner: Operator, window: tuple[int, int], image_hw: tuple[int, int]) -> None:
        super().__init__()
        if not inner.extendable_image:
            raise ValueError(f"{type(inner).__name__} does not allow an image larger than its measurement's view")
        if not self.applies(inner):
            raise ValueError("ImageWindow takes operators without image-sized unknowns")
        (h, w), (H, W) = window, image_hw
        if H < h or W < w:
            raise ValueError(f"image {H}x{W} is smaller than the window {h}x{w}")
        self.inner = inner
        self.window = (int(h), int(w))
        self.image_hw = (int(H), int(W))
        self.unknowns = inner.unknowns
        if callable(getattr(inner, "proximal", None)):  # the proximal sampler's hook, when the model has one
            self.proximal = self._proximal

    def image_shape(self, measurement_shape):
        c = int(self.inner.image_shape(measurement_shape)[0])
        return (c, *self.image_hw)

    def measurement_shape(self, image_shape):
        return self.inner.measurement_shape((image_shape[0], *self.window))

    def image_offset(self):
        return self.inner.image_offset()

    def unknown_shapes(self, image_shape):
        return self.inner.unknown_shapes((image_shape[0], *self.window))

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.window[0], : self.window[1]]

    def forward(self, x, **params):
        return self.inner.forward(self._crop(x), **params)

    def adjoint(self, y, **params):
        a = self.inner.adjoint(y, **params)
        return torch.nn.functional.pad(a, (0, self.image_hw[1] - a.shape[-1], 0, self.image_hw[0] - a.shape[-2]))

    def estimate(self, name, x, y, params):
        return self.inner.estimate(name, self._crop(x), y, params)

    def initial_value(self, name):
        return self.inner.initial_value(name)

    def _proximal(self, name, value, y, params, rho, iters=8):
        """The inner model's proximal step on the window; the unseen rest of the image
        has no data term, so its proximal point is ``value`` itself."""
        p = {k: (self._crop(v) if k == "image" else v) for k, v in params.items()}
        if name != "image":
            return self.inner.proximal(name, value, y, p, rho, iters)
        out = value.clone()
        out[..., : self.window[0], : self.window[1]] = self.inner.proximal(name, self._crop(value), y, p, rho, iters)
        return out

    def __repr__(self) -> str:
        return f"ImageWindow({self.inner!r}, window={self.window}, image={self.image_hw})"
