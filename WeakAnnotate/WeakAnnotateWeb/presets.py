"""Window/level presets for CT, MR and PET: display settings only (no image processing)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WindowLevel:
    name: str
    window: float | None  # None: Slicer's automatic window/level for the volume
    level: float | None


PRESETS: tuple[WindowLevel, ...] = (
    WindowLevel("Auto", None, None),
    WindowLevel("CT soft tissue (W 400 / L 40)", 400.0, 40.0),
    WindowLevel("CT lung (W 1500 / L -600)", 1500.0, -600.0),
    WindowLevel("CT bone (W 1800 / L 400)", 1800.0, 400.0),
    WindowLevel("CT brain (W 80 / L 40)", 80.0, 40.0),
    WindowLevel("MR (automatic, per volume)", None, None),
    WindowLevel("PET SUV 0-5", 5.0, 2.5),
    WindowLevel("PET SUV 0-10", 10.0, 5.0),
    WindowLevel("PET SUV 0-20", 20.0, 10.0),
)

_DEFAULT_FOR_MODALITY = {
    "CT": "CT soft tissue (W 400 / L 40)",
    "MR": "MR (automatic, per volume)",
    "PET": "PET SUV 0-10",
}


def preset(name: str) -> WindowLevel:
    for p in PRESETS:
        if p.name == name:
            return p
    return PRESETS[0]


def default_preset(modality: str) -> str:
    """The preset a case opens with: by modality prefix (``CT-DICOM`` → CT), else automatic."""
    for prefix, name in _DEFAULT_FOR_MODALITY.items():
        if modality.upper().startswith(prefix):
            return name
    return PRESETS[0].name
