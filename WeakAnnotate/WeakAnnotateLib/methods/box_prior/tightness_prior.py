"""Box constraints for training a segmentation network from boxes (paper: tightness_prior_logbarrier).

A box says three things about the object, and each becomes an inequality on the network's foreground
probabilities ``s`` (summed, so that every constraint is differentiable and on the same scale):

* **tightness** (Eq. 2): every line crossing the box parallel to one of its sides crosses the object at least
  once. Lines are grouped into *bands* of ``w`` neighbouring lines (paper: w = 5), and a band of ``n`` lines
  must hold ``Σ s ≥ n`` — ``n = w`` except for the last band of a side whose length ``w`` does not divide,
  which has the remainder ``n < w`` lines;
* **emptiness** outside the box (Eq. 1): ``Σ_{outside} s ≤ 0``; masked cross-entropy ``−Σ_{outside}
  log(1 − s)`` is the paper's weaker alternative;
* **size** (Eq. 3): ``ε·|box| ≤ Σ s ≤ |box|``.

Each constraint ``z ≤ 0`` is turned into a loss by the log-barrier extension ψ_t (Eq. 5), whose ``t`` grows
during training (:func:`barrier_t`: from 5, ×1.1 per epoch) so that the barrier approaches a hard wall.
The final loss is Eq. 6: ``L_O + λ·Σ ψ_t(tightness) + ψ_t(size low) + ψ_t(size high)`` with λ = 1e-4 as in
the paper.

Why band *index tensors* (:class:`TightnessBands`): the paper's code loops over constraints in Python and
reports that as its main overhead (Appendix B). Here each (pixel, band) membership is one entry of two long
tensors built once per box; all band sums of a batch are then one ``index_add`` and all barriers one
vectorised ψ_t.

Conventions: probabilities are ``(N, H, W)`` tensors (N 2D images, e.g. the slices of a volume); a 2D box is
``(row_lo, col_lo, row_hi, col_hi)``, inclusive array indices, as :class:`~.simulate.SliceBox` holds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...core.errors import InputError

PAPER_BAND_WIDTH = 5  # "w was set to 5 in all the experiments"
PAPER_LAMBDA = 1e-4  # "We set λ (from Eq. (6)) as 0.0001 for both datasets"
PAPER_T0, PAPER_T_FACTOR = 5.0, 1.1  # log-barrier schedule of Kervadec et al. 2019c, shared by all barriers
DEFAULT_SIZE_EPSILON = 0.1  # the lower size bound's fraction ε; the paper's text does not give its value
# Σ s ≤ 0 (emptiness; the upper size bound of an image without a box) cannot hold for a sigmoid: such a
# constraint stays on ψ_t's linear branch, whose slope t grows every epoch until it drowns every other term
# (measured: predictions collapse to empty). We allow this much foreground (in pixels) per image instead.
DEFAULT_EMPTINESS_TOLERANCE = 1.0

Box2D = tuple[int, int, int, int]  # (row_lo, col_lo, row_hi, col_hi), inclusive


def log_barrier(z: torch.Tensor, t: float) -> torch.Tensor:
    """ψ_t(z) of Eq. 5, element-wise: a log barrier for ``z ≤ −1/t²``, its tangent line beyond.

    ``−(1/t)·log(−z)`` if ``z ≤ −1/t²``, else ``t·z − (1/t)·log(1/t²) + 1/t``. Value and slope are continuous
    at ``−1/t²`` (both pieces give ``−(1/t)·log(1/t²)`` and slope ``t``), and the linear piece makes a violated
    constraint (``z > 0``) a finite, differentiable penalty instead of ``+∞``.
    """
    if t <= 0:
        raise InputError(f"The log-barrier parameter t must be > 0, got {t}.")
    threshold = -1.0 / (t * t)
    inside = z <= threshold
    # log of a value clamped to the barrier side: the unused branch of torch.where must not produce NaN
    # gradients (0 · NaN = NaN in autograd).
    safe = torch.where(inside, z, torch.full_like(z, threshold))
    barrier = -torch.log(-safe) / t
    linear = t * z - math.log(1.0 / (t * t)) / t + 1.0 / t
    return torch.where(inside, barrier, linear)


def barrier_t(epoch: int, t0: float = PAPER_T0, factor: float = PAPER_T_FACTOR) -> float:
    """The barrier's ``t`` at ``epoch`` (0-based): ``t0 · factor^epoch``."""
    return float(t0 * factor**epoch)


def check_box2d(box: Sequence[int], shape: tuple[int, int]) -> Box2D:
    """A box clipped to the image; a box with no pixel in the image is an error."""
    r0, c0, r1, c1 = (int(v) for v in box)
    h, w = shape
    if r1 < r0 or c1 < c0:
        raise InputError(f"The 2D box {tuple(box)} has zero extent (high index below low index).")
    if r1 < 0 or c1 < 0 or r0 > h - 1 or c0 > w - 1:
        raise InputError(f"The 2D box {tuple(box)} lies outside the {h}x{w} image.")
    return max(r0, 0), max(c0, 0), min(r1, h - 1), min(c1, w - 1)


@dataclass(frozen=True)
class TightnessBands:
    """All tightness constraints of a batch as a sparse (pixel, band) membership list.

    ``pixel`` indexes the flattened ``(N, H, W)`` probabilities, ``band`` the constraint each pixel counts
    towards (a pixel inside a box belongs to one vertical and one horizontal band of that box); ``width[b]``
    is the number of lines of band ``b``, i.e. the foreground it must hold.
    """

    pixel: torch.Tensor  # (M,) int64
    band: torch.Tensor  # (M,) int64
    width: torch.Tensor  # (B,) float32
    shape: tuple[int, ...]  # (N, H, W), or (N, D, H, W) for 3D slabs

    @property
    def count(self) -> int:
        return int(self.width.numel())

    def sums(self, probs: torch.Tensor) -> torch.Tensor:
        """Σ s over each band, (B,), in one ``index_add``."""
        if tuple(probs.shape) != self.shape:
            raise InputError(f"Probabilities of shape {tuple(probs.shape)} do not match the bands' {self.shape}.")
        flat = probs.reshape(-1)
        out = torch.zeros(self.count, dtype=probs.dtype, device=probs.device)
        return out.index_add(0, self.band.to(probs.device), flat[self.pixel.to(probs.device)])

    def to(self, device: str | torch.device) -> TightnessBands:
        return TightnessBands(self.pixel.to(device), self.band.to(device), self.width.to(device), self.shape)


def _side_bands(n_lines: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Band of each of ``n_lines`` lines, and each band's line count (the last may be a remainder)."""
    band_of_line = np.arange(n_lines) // width
    n_bands = -(-n_lines // width)
    counts = np.minimum(width, n_lines - np.arange(n_bands) * width)
    return band_of_line, counts


def build_bands(
    boxes: Sequence[Sequence[Box2D]], shape: tuple[int, int], width: int = PAPER_BAND_WIDTH
) -> TightnessBands:
    """Tightness bands of ``boxes[n]`` (the 2D boxes of image ``n``) on images of ``shape`` (H, W).

    Boxes are clipped to the image first: a line outside the image cannot be asked to cross the object. Built
    once per batch of boxes (vectorised per box); evaluating the constraints is then loop-free.
    """
    if width < 1:
        raise InputError(f"The band width w must be ≥ 1, got {width}.")
    h, w = (int(s) for s in shape)
    pixels: list[np.ndarray] = []
    bands: list[np.ndarray] = []
    widths: list[np.ndarray] = []
    next_band = 0
    for n, image_boxes in enumerate(boxes):
        for box in image_boxes:
            r0, c0, r1, c1 = check_box2d(box, (h, w))
            rows, cols = np.arange(r0, r1 + 1), np.arange(c0, c1 + 1)
            flat = (n * h + rows[:, None]) * w + cols[None, :]  # (R, C) flat indices of the box's pixels
            col_band, col_counts = _side_bands(len(cols), width)  # vertical lines = columns
            row_band, row_counts = _side_bands(len(rows), width)  # horizontal lines = rows
            pixels += [flat.ravel(), flat.ravel()]
            bands.append(np.broadcast_to(next_band + col_band[None, :], flat.shape).ravel())
            next_band += len(col_counts)
            bands.append(np.broadcast_to(next_band + row_band[:, None], flat.shape).ravel())
            next_band += len(row_counts)
            widths += [col_counts, row_counts]
    cat = np.concatenate if pixels else (lambda _: np.zeros(0, dtype=np.int64))
    return TightnessBands(
        pixel=torch.as_tensor(cat(pixels), dtype=torch.int64),
        band=torch.as_tensor(cat(bands), dtype=torch.int64),
        width=torch.as_tensor(np.concatenate(widths) if widths else np.zeros(0), dtype=torch.float32),
        shape=(len(boxes), h, w),
    )


def box_masks(boxes: Sequence[Sequence[Box2D]], shape: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) bool: pixels inside any box of each image (Ω_I); its complement is Ω_O."""
    h, w = shape
    mask = torch.zeros((len(boxes), h, w), dtype=torch.bool)
    for n, image_boxes in enumerate(boxes):
        for box in image_boxes:
            r0, c0, r1, c1 = check_box2d(box, (h, w))
            mask[n, r0 : r1 + 1, c0 : c1 + 1] = True
    return mask


Box3D = tuple[int, int, int, int, int, int]  # (k_lo, j_lo, i_lo, k_hi, j_hi, i_hi), inclusive


def build_slabs(
    boxes: Sequence[Box3D | None], shape: tuple[int, int, int], width: int = PAPER_BAND_WIDTH
) -> TightnessBands:
    """3D tightness of one 3D box per volume (``None``: no box): every plane through the box perpendicular to an
    axis crosses the object, so each *slab* of ``n`` neighbouring planes must hold ``Σ s ≥ n`` — the paper's
    bands one dimension up (its future work), along all three axes.

    Why planes and not lines: a 3D object touching all six faces of its box need not meet every line through
    the box (a sphere misses the lines near the box's edges), but it meets every plane between two opposite
    faces. The constraint is therefore weaker per voxel than the 2D one: it is what a raw 3D box says.
    """
    if width < 1:
        raise InputError(f"The band width w must be ≥ 1, got {width}.")
    dims = tuple(int(v) for v in shape)
    pixels: list[np.ndarray] = []
    bands: list[np.ndarray] = []
    widths: list[np.ndarray] = []
    next_band = 0
    for n, box in enumerate(boxes):
        if box is None:
            continue
        lo = [max(int(box[a]), 0) for a in range(3)]
        hi = [min(int(box[a + 3]), dims[a] - 1) for a in range(3)]
        if any(h < v for v, h in zip(lo, hi, strict=True)):
            raise InputError(f"The 3D box {tuple(box)} has zero extent or lies outside the {dims} volume.")
        ranges = [np.arange(v, h + 1) for v, h in zip(lo, hi, strict=True)]
        k, j, i = np.meshgrid(*ranges, indexing="ij")
        flat = (((n * dims[0] + k) * dims[1] + j) * dims[2] + i).ravel()
        for axis in range(3):
            band_of_plane, counts = _side_bands(len(ranges[axis]), width)
            index = (k, j, i)[axis] - lo[axis]
            pixels.append(flat)
            bands.append(next_band + band_of_plane[index.ravel()])
            widths.append(counts)
            next_band += len(counts)
    cat = np.concatenate if pixels else (lambda _: np.zeros(0, dtype=np.int64))
    return TightnessBands(
        pixel=torch.as_tensor(cat(pixels), dtype=torch.int64),
        band=torch.as_tensor(cat(bands), dtype=torch.int64),
        width=torch.as_tensor(np.concatenate(widths) if widths else np.zeros(0), dtype=torch.float32),
        shape=(len(boxes), *dims),
    )


def tightness_loss(probs: torch.Tensor, bands: TightnessBands, t: float) -> torch.Tensor:
    """Σ_bands ψ_t(n_b − Σ_{p∈b} s_p): Eq. 2 through Eq. 5."""
    if bands.count == 0:
        return probs.sum() * 0.0
    return log_barrier(bands.width.to(probs) - bands.sums(probs), t).sum()


def _image_dims(probs: torch.Tensor) -> tuple[int, ...]:
    """The dims summed per image: (1, 2) for (N, H, W), (1, 2, 3) for (N, D, H, W) volumes."""
    return tuple(range(1, probs.dim()))


def emptiness_loss(probs: torch.Tensor, inside: torch.Tensor, t: float, tolerance: float = 0.0) -> torch.Tensor:
    """Σ_images ψ_t(Σ_{p∉box} s_p − tolerance): Eq. 1 (tolerance 0), one constraint per image."""
    outside = (~inside).to(probs.dtype)
    return log_barrier((probs * outside).sum(dim=_image_dims(probs)) - tolerance, t).sum()


def masked_cross_entropy(probs: torch.Tensor, inside: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L_mCE = −Σ_{p∉box} log(1 − s_p): the paper's alternative to the emptiness constraint."""
    outside = (~inside).to(probs.dtype)
    return -(torch.log((1.0 - probs).clamp_min(eps)) * outside).sum()


def size_loss(
    probs: torch.Tensor,
    inside: torch.Tensor,
    t: float,
    epsilon: float = DEFAULT_SIZE_EPSILON,
    tolerance: float = 0.0,
) -> torch.Tensor:
    """Σ_{images with a box} ψ_t(ε|Ω_I| − Σ s) + ψ_t(Σ s − |Ω_I|): Eq. 3, two constraints per image.

    Images without a box (|Ω_I| = 0) have no box size to bound: their "no object" is the emptiness
    constraint's, and counting it again here would pull them down twice as hard as the others.
    """
    dims = _image_dims(probs)
    area = inside.sum(dim=dims).to(probs.dtype)
    total = probs.sum(dim=dims)
    per_image = log_barrier(epsilon * area - total, t) + log_barrier(total - area - tolerance, t)
    return (per_image * (area > 0).to(probs.dtype)).sum()


def box_entropy(probs: torch.Tensor, inside: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Σ_{p∈box} H(s_p), the binary entropy inside the boxes (nats): our addition, not the paper's.

    Why: every constraint of Eq. 4 is a *sum* of probabilities, so a diffuse prediction (s ≈ 1/ℓ over an object
    ℓ pixels across) satisfies them all, and with the emptiness term pulling shared features down that is
    where training ends (measured: predictions below 0.5 everywhere). Minimising the entropy inside the box
    asks each pixel to decide; the constraints then decide which way."""
    s = probs.clamp(eps, 1.0 - eps)
    h = -(s * torch.log(s) + (1.0 - s) * torch.log(1.0 - s))
    return (h * inside.to(probs.dtype)).sum()


@dataclass
class BoxPriorLoss:
    """Eq. 6: ``L_O + λ·Σψ(tightness) + ψ(size low) + ψ(size high)``, all barriers sharing ``t``.

    ``background`` picks L_O: "emptiness" (the paper's better choice) or "masked_ce".
    """

    band_width: int = PAPER_BAND_WIDTH
    lam: float = PAPER_LAMBDA
    size_epsilon: float = DEFAULT_SIZE_EPSILON
    background: str = "emptiness"
    use_size: bool = True
    entropy_weight: float = 0.0  # weight of box_entropy (0: the paper's Eq. 6 exactly)
    tolerance: float = 0.0  # foreground pixels allowed per image by emptiness and the upper size bound (paper: 0)

    def __post_init__(self) -> None:
        if self.background not in ("emptiness", "masked_ce"):
            raise InputError(f"background: use 'emptiness' or 'masked_ce', got {self.background!r}.")
        if not 0.0 <= self.size_epsilon <= 1.0:
            raise InputError(f"size_epsilon: must be in [0, 1], got {self.size_epsilon}.")
        if self.lam < 0:
            raise InputError(f"lam: must be ≥ 0, got {self.lam}.")
        if self.entropy_weight < 0:
            raise InputError(f"entropy_weight: must be ≥ 0, got {self.entropy_weight}.")

    def terms(
        self, probs: torch.Tensor, bands: TightnessBands, inside: torch.Tensor, t: float
    ) -> dict[str, torch.Tensor]:
        inside = inside.to(probs.device)
        if self.background == "emptiness":
            background = emptiness_loss(probs, inside, t, self.tolerance)
        else:
            background = masked_cross_entropy(probs, inside)
        terms = {"background": background, "tightness": tightness_loss(probs, bands.to(probs.device), t)}
        terms["size"] = (
            size_loss(probs, inside, t, self.size_epsilon, self.tolerance) if self.use_size else probs.sum() * 0.0
        )
        terms["entropy"] = box_entropy(probs, inside) if self.entropy_weight else probs.sum() * 0.0
        terms["total"] = (
            terms["background"] + self.lam * terms["tightness"] + terms["size"] + self.entropy_weight * terms["entropy"]
        )
        return terms

    def __call__(self, probs: torch.Tensor, bands: TightnessBands, inside: torch.Tensor, t: float) -> torch.Tensor:
        return self.terms(probs, bands, inside, t)["total"]


def constraint_violations(
    probs: torch.Tensor, bands: TightnessBands, inside: torch.Tensor, size_epsilon: float = DEFAULT_SIZE_EPSILON
) -> dict[str, float]:
    """How far the hard constraints are from holding (0 = all satisfied), for logs and tests."""
    with torch.no_grad():
        dims = _image_dims(probs)
        tight = (bands.width.to(probs) - bands.sums(probs)).clamp_min(0)
        outside = (probs * (~inside).to(probs)).sum(dim=dims)
        area = inside.sum(dim=dims).to(probs)
        total = probs.sum(dim=dims)
        return {
            "tightness_max": float(tight.max()) if tight.numel() else 0.0,
            "tightness_violated": int((tight > 0).sum()),
            "emptiness_max": float(outside.max()),
            "size_low_max": float((size_epsilon * area - total).clamp_min(0).max()),
            "size_high_max": float((total - area).clamp_min(0).max()),
        }


def slice_box_problem(
    slice_boxes: Sequence[object], shape_2d: tuple[int, int], width: int = PAPER_BAND_WIDTH
) -> tuple[TightnessBands, torch.Tensor, list[int]]:
    """Bands and Ω_I masks for the per-slice boxes of a volume (:class:`~.simulate.SliceBox` or any object
    with ``slice_index``, ``lo``, ``hi``): one 2D problem per slice, slices in the order given."""
    boxes = [[(int(b.lo[0]), int(b.lo[1]), int(b.hi[0]), int(b.hi[1]))] for b in slice_boxes]  # type: ignore[attr-defined]
    return build_bands(boxes, shape_2d, width), box_masks(boxes, shape_2d), [int(b.slice_index) for b in slice_boxes]  # type: ignore[attr-defined]
