"""Afshari et al., "Weakly supervised FCN for PET lesion segmentation": the box losses, formulas (1)–(7).

Why its own module: the losses are the method; the worker, the tests and the benchmark all use the same
functions, which are written as close to the printed formulas as possible (the reading of each formula is in
the function's docstring and in ``docs/pet_boxes.md``).

Shapes: ``prob`` (B, 1, D, H, W) in [0, 1] (the sigmoid of the network output); ``image`` (B, 1, D, H, W), the
network input intensity I; ``box_mask`` (B, K, D, H, W) in {0, 1}: K box regions per scan, one channel each,
disjoint (overlapping boxes are merged into one region by union, see :mod:`..pet_boxes`), all zeros for the
unused channels of a scan with fewer boxes. With K = 1 (the union of all boxes) every formula is the paper's
verbatim; with K > 1 only the Heaviside switch of (3)–(4) is evaluated per region (see
:func:`modified_dice_loss`). Every loss returns the mean over the batch of per-scan values (paper: batch 1).

No numpy, no I/O: pure torch, differentiable end to end except where the paper puts a hard Heaviside.
"""

from __future__ import annotations

import math

import torch

ALPHA = 0.1  # paper: at least 10 % of each box must be predicted foreground before the switch
EPSILON = 0.03  # regularised Heaviside width (paper, after Hu et al.)
OMEGA1, OMEGA2 = 1.0, 3.0  # paper: weights of the inside / outside terms of (5)
BETA, LAMBDA = 10.0, 1.0  # paper: L = β·L_MDice + λ·L_MS
_TINY = 1e-12  # guards 0/0 in C1, C2 (an empty class has mean 0) and 1/Σb (a scan without boxes)


def _check(prob: torch.Tensor, box_mask: torch.Tensor, image: torch.Tensor | None = None) -> None:
    if prob.dim() != 5 or prob.shape[1] != 1:
        raise ValueError(f"prob must be (B, 1, D, H, W), got {tuple(prob.shape)}")
    if box_mask.dim() != 5 or box_mask.shape[0] != prob.shape[0] or box_mask.shape[2:] != prob.shape[2:]:
        raise ValueError(
            f"box_mask must be (B, K, D, H, W) on prob's grid {tuple(prob.shape)}, got {tuple(box_mask.shape)}"
        )
    if image is not None and image.shape != prob.shape:
        raise ValueError(f"image must have prob's shape {tuple(prob.shape)}, got {tuple(image.shape)}")


def heaviside_alpha(x: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """H(x) of (4): 1 where x > α, 0 where x ≤ α; a step, so no gradient flows through it."""
    return (x > alpha).to(x.dtype)


def modified_dice_loss(
    prob: torch.Tensor, box_mask: torch.Tensor, alpha: float = ALPHA, smooth: float = 1e-5
) -> torch.Tensor:
    """L_MDice of (3)–(4), per scan, averaged over the batch.

    Reading of (3)–(4), with b = union of the boxes, S = Σ p·b (foreground predicted inside the boxes):

        L_MDice = 1 − 2S / (Σ p + Σ b − M · H(S / Σ b)),   M = Σ b − S,   H(x) = [x > α].

    * S / Σ b ≤ α (at most α of the box is predicted foreground): H = 0, the plain Dice (2) against the box
      mask; unfilled box voxels are penalised, which pulls the prediction into the box.
    * S / Σ b > α: H = 1, the denominator becomes Σ p + S, so box voxels predicted background cost nothing;
      only foreground outside the box (in Σ p, not in S) still lowers the score. The shape inside the box is
      then left to L_MS.

    H is a hard step (no gradient through the fill fraction); M keeps its gradient. With K > 1 regions the
    switch is evaluated per region k (a scan with one large, well-filled box and one small empty box still
    pulls the small one into the Dice regime): denominator = Σ p + Σ b − Σ_k M_k · H(S_k / Σ b_k). With K = 1
    this is (3) exactly. ``smooth`` is added to numerator and denominator (0 gives the printed formula; the
    default keeps a scan with no box and no prediction finite).
    """
    _check(prob, box_mask)
    dims = (2, 3, 4)
    b = box_mask.to(prob.dtype)
    union = b.sum(dim=1, keepdim=True).clamp(max=1.0)
    p_sum = prob.sum(dim=(1, 2, 3, 4))
    b_sum = union.sum(dim=(1, 2, 3, 4))
    s = (prob * union).sum(dim=(1, 2, 3, 4))
    s_k = (prob * b).sum(dim=dims)  # (B, K)
    b_k = b.sum(dim=dims)  # (B, K)
    m_k = b_k - s_k
    h_k = heaviside_alpha(s_k.detach() / b_k.clamp(min=_TINY), alpha) * (b_k > 0).to(prob.dtype)
    denominator = p_sum + b_sum - (m_k * h_k).sum(dim=1)
    dice = (2.0 * s + smooth) / (denominator + smooth).clamp(min=_TINY)
    return (1.0 - dice).mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Plain Dice loss (2) per scan, averaged: the box-only baseline when ``target`` is the box mask."""
    _check(prob, target)
    t = target.to(prob.dtype).sum(dim=1, keepdim=True).clamp(max=1.0)
    dims = (1, 2, 3, 4)
    num = 2.0 * (prob * t).sum(dim=dims) + smooth
    den = prob.sum(dim=dims) + t.sum(dim=dims) + smooth
    return (1.0 - num / den.clamp(min=_TINY)).mean()


def regularised_heaviside(x: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """H_ε of (6): ½ (1 + (2/π) arctan(x / ε)); its derivative is the regularised Dirac δ_ε."""
    return 0.5 * (1.0 + (2.0 / math.pi) * torch.atan(x / eps))


def level_set(prob: torch.Tensor) -> torch.Tensor:
    """φ: the prediction map shifted linearly from [0, 1] to [−0.5, 0.5]; the lesion boundary is φ = 0."""
    return prob - 0.5


def mumford_shah_loss(
    prob: torch.Tensor,
    image: torch.Tensor,
    box_mask: torch.Tensor,
    eps: float = EPSILON,
    omega1: float = OMEGA1,
    omega2: float = OMEGA2,
    hard_means: bool = False,
) -> torch.Tensor:
    """L_MS of (5)–(7), per scan, averaged over the batch; only voxels inside the boxes count.

    With h = H_ε(φ), φ = p − 0.5, b = union of the boxes, I = image::

        L_MS = (1 / Σ b) · ( ω1 Σ (|I·h − C1| − |I·h − C2|) · b  +  ω2 Σ (|I·(1 − h) − C2| − |I·(1 − h) − C1|) · b )
        C1 = Σ I·H(φ)·b / Σ H(φ)·b,    C2 = Σ I·(1 − H(φ))·b / Σ (1 − H(φ))·b

    (7) writes H(φ) for the class means; we use the regularised H_ε there too (Chan–Vese practice; the means
    then carry gradient) unless ``hard_means`` (H(φ) = [φ > 0], means without gradient). An empty class has
    mean 0. Each sum is the paper's, so the value is *not* a non-negative energy: for a perfect split of a
    two-valued image it is negative (e.g. −(a − c)(2 n0 + 4 n1) / n with ω = (1, 3), lesion value a > c ≥ 0,
    n1 lesion and n0 background voxels in the box, ε → 0); what matters for training is that the perfect
    split is lower than the splits around it (tested).
    """
    _check(prob, box_mask, image)
    b = box_mask.to(prob.dtype).sum(dim=1, keepdim=True).clamp(max=1.0)
    img = image.to(prob.dtype)
    phi = level_set(prob)
    h = regularised_heaviside(phi, eps)
    hm = (phi > 0).to(prob.dtype) if hard_means else h
    dims = (1, 2, 3, 4)
    c1 = (img * hm * b).sum(dim=dims) / (hm * b).sum(dim=dims).clamp(min=_TINY)
    c2 = (img * (1 - hm) * b).sum(dim=dims) / ((1 - hm) * b).sum(dim=dims).clamp(min=_TINY)
    c1 = c1.view(-1, 1, 1, 1, 1)
    c2 = c2.view(-1, 1, 1, 1, 1)
    inside = img * h
    outside = img * (1 - h)
    term1 = ((inside - c1).abs() - (inside - c2).abs()) * b
    term2 = ((outside - c2).abs() - (outside - c1).abs()) * b
    value = (omega1 * term1.sum(dim=dims) + omega2 * term2.sum(dim=dims)) / b.sum(dim=dims).clamp(min=_TINY)
    return value.mean()


def total_loss(
    prob: torch.Tensor,
    image: torch.Tensor,
    box_mask: torch.Tensor,
    *,
    beta: float = BETA,
    lam: float = LAMBDA,
    alpha: float = ALPHA,
    eps: float = EPSILON,
    omega1: float = OMEGA1,
    omega2: float = OMEGA2,
) -> torch.Tensor:
    """L = β·L_MDice + λ·L_MS, formula (1) (paper: β = 10, λ = 1)."""
    return beta * modified_dice_loss(prob, box_mask, alpha) + lam * mumford_shah_loss(
        prob, image, box_mask, eps, omega1, omega2
    )


def region_channels(labels: torch.Tensor, max_regions: int | None = None) -> torch.Tensor:
    """(B, 1, D, H, W) integer region labels (0 outside the boxes) → (B, K, D, H, W) one-hot box channels.

    K is the largest label in the batch (at least 1), so a scan with fewer boxes gets empty channels.
    """
    lab = labels.round().long()
    k = int(lab.max().item()) if lab.numel() else 0
    k = max(k, 1) if max_regions is None else max_regions
    ids = torch.arange(1, k + 1, device=labels.device).view(1, k, 1, 1, 1)
    return (lab == ids).to(torch.float32)
