"""What the modules' self-tests share: the sample (a real PET sarcoma, or a synthetic phantom), a check that
raises AssertionError with a message, and the display nodes a point list adds to the scene.

The self-tests run in desktop Slicer (each module's Test class) and under pytest on the headless core; the
sample is a real PET sarcoma from ``shared/data`` when present, otherwise a synthetic ellipsoid on an oblique,
anisotropic grid, so the tests never need a network.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.geometry import Geometry
from ..files.cases import default_data_dir, find_case
from ..files.image_io import Image, read_image, read_mask

SAMPLE_CASE = "ibsi_STS_001_PET"


def sample() -> tuple[Image, np.ndarray]:
    """(image, object mask): the real PET sarcoma STS_001 if the data is here, else a synthetic ellipsoid."""
    data = default_data_dir()
    if data is not None:
        case = find_case(SAMPLE_CASE, data)
        image = read_image(case.image)
        return image, read_mask(case.reference_mask("the self-test"), grid=image.geometry)
    shape = (40, 48, 56)
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    geometry = Geometry.from_spacing_origin_direction((0.9, 1.1, 2.5), (-30.0, 12.0, 40.0), rotation, shape)
    k, j, i = np.indices(shape, dtype=float)
    mask = ((k - 20) / 8) ** 2 + ((j - 24) / 14) ** 2 + ((i - 28) / 18) ** 2 <= 1.0
    rng = np.random.default_rng(0)
    array = (100.0 * mask + rng.normal(0.0, 10.0, shape)).astype(np.float32)
    return Image(array, geometry, "synthetic"), mask


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def display_nodes(node: Any) -> list:
    return [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]
