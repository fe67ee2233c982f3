"""The extension's sample data in Slicer's Sample Data module: a small phantom shipped with the extension.

The phantom is the self-tests' synthetic sample (:func:`WeakAnnotateLib.evaluation.selftest_support.sample`
without the real data: an ellipsoid on an oblique, anisotropic grid), stored as a NRRD volume and its reference
``.seg.nrrd`` in ``Resources/SampleData`` (~105 KB together). Nothing is downloaded: the Sample Data module
copies the files from their ``file://`` URIs into its cache, checked against a SHA-256 computed from the
shipped files. Registering needs the standard library only (it runs at Slicer's start-up, before the
extension's Python dependencies may be installed); :func:`write_sample_files`, which rebuilds the files,
needs the logic library and the headless Slicer core (a test checks the shipped files against it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .dependencies import RESOURCES

CATEGORY = "WeakAnnotate"
SAMPLE_NAME = "WeakAnnotatePhantom"
SAMPLE_FOLDER = RESOURCES / "SampleData"
THUMBNAIL = RESOURCES / "Icons" / "WeakAnnotate.png"
# (file name, node name, Slicer's file type) of each file of the sample.
FILES = (
    ("WeakAnnotatePhantom.nrrd", "WeakAnnotatePhantom", "VolumeFile"),
    ("WeakAnnotatePhantom-reference.seg.nrrd", "WeakAnnotatePhantom reference", "SegmentationFile"),
)
SEGMENT_NAME = "object"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def source_arguments(folder: Path = SAMPLE_FOLDER) -> dict:
    """The keyword arguments of ``SampleData.SampleDataLogic.registerCustomSampleDataSource`` for the phantom."""
    paths = [Path(folder) / name for name, _node, _kind in FILES]
    return {
        "category": CATEGORY,
        "sampleName": SAMPLE_NAME,
        "uris": [p.resolve().as_uri() for p in paths],
        "fileNames": [name for name, _node, _kind in FILES],
        "nodeNames": [node for _name, node, _kind in FILES],
        "checksums": [f"SHA256:{sha256(p)}" for p in paths],
        "thumbnailFileName": str(THUMBNAIL),
        "loadFileType": [kind for _name, _node, kind in FILES],
    }


def register_sample_data() -> None:
    """Add the phantom to the Sample Data module (once: registering the same source again changes nothing)."""
    import SampleData  # Why here: Slicer's Sample Data module, loaded only in the desktop application.

    SampleData.SampleDataLogic.registerCustomSampleDataSource(**source_arguments())


def load_sample() -> list:
    """Register and load the phantom into the scene (the modules' desktop self-tests): [volume, segmentation]."""
    import SampleData  # Why here: Slicer's Sample Data module, loaded only in the desktop application.

    register_sample_data()
    return SampleData.SampleDataLogic().downloadSamples(SAMPLE_NAME)


def write_sample_files(folder: Path | str = SAMPLE_FOLDER) -> list[Path]:
    """Rebuild the shipped files from the self-tests' synthetic phantom (voxels rounded to int16, a fifth of
    the float32 size once compressed); returns their paths. ``python -m WeakAnnotateDesktop.sample_data``."""
    from unittest import mock

    import numpy as np  # Why here: registering the sample must work before numpy-based packages are installed.
    from WeakAnnotateLib.evaluation import selftest_support
    from WeakAnnotateLib.files.image_io import write_image
    from WeakAnnotateLib.scene.segmentation_io import segmentation_from_labelmap, write_segmentation
    from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime

    # The synthetic phantom, also where the real data set is present (sample() would then pick a real case).
    with mock.patch.object(selftest_support, "default_data_dir", lambda: None):
        image, mask = selftest_support.sample()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume_path, segmentation_path = (folder / name for name, _node, _kind in FILES)
    write_image(volume_path, np.rint(image.array).astype(np.int16), image.geometry)
    rt = new_headless_runtime()
    node = segmentation_from_labelmap(
        rt, mask.astype(np.uint8), image.geometry, name=FILES[1][1], names={1: SEGMENT_NAME}
    )
    write_segmentation(segmentation_path, node)
    return [volume_path, segmentation_path]


if __name__ == "__main__":
    for written in write_sample_files():
        print(f"{written} ({written.stat().st_size} bytes)")
