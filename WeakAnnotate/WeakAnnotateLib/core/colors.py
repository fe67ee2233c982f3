"""Segment colours a radiologist recognises: anatomy colours for known structures, a fixed palette otherwise."""

from __future__ import annotations

# RGB in 0..1, close to Slicer's GenericAnatomyColors for the structures in our data.
_ANATOMY = {
    "liver": (0.87, 0.51, 0.31),
    "spleen": (0.62, 0.42, 0.36),
    "kidney": (0.72, 0.36, 0.22),
    "pancreas": (0.98, 0.71, 0.49),
    "stomach": (0.85, 0.58, 0.51),
    "gallbladder": (0.55, 0.71, 0.39),
    "aorta": (0.88, 0.35, 0.30),
    "vena": (0.0, 0.59, 0.86),
    "bowel": (0.80, 0.65, 0.45),
    "colon": (0.80, 0.60, 0.40),
    "duodenum": (1.0, 0.8, 0.6),
    "cord": (1.0, 0.94, 0.61),
    "brain": (0.98, 0.98, 0.86),
    "edema": (0.55, 0.86, 0.36),
    "oedema": (0.55, 0.86, 0.36),
    "necrosis": (0.35, 0.35, 0.35),
    "enhancing": (0.93, 0.13, 0.13),
    "tumour": (0.96, 0.80, 0.12),
    "tumor": (0.96, 0.80, 0.12),
    "lesion": (0.96, 0.80, 0.12),
    "gtv": (0.96, 0.80, 0.12),
}

# Distinct, colour-blind-friendly (Okabe–Ito) for everything else.
PALETTE = (
    (0.90, 0.62, 0.0),
    (0.34, 0.71, 0.91),
    (0.0, 0.62, 0.45),
    (0.94, 0.89, 0.26),
    (0.0, 0.45, 0.70),
    (0.84, 0.37, 0.0),
    (0.80, 0.47, 0.65),
)


def segment_color(name: str, value: int = 1) -> tuple[float, float, float]:
    """Colour for a segment: by anatomical name when recognised, else by label value from the palette."""
    lowered = name.lower()
    for key, rgb in _ANATOMY.items():
        if key in lowered:
            return rgb
    return PALETTE[(max(int(value), 1) - 1) % len(PALETTE)]
