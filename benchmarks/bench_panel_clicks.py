"""Seconds per corrective click in the ExtremePointSeg panel against the library alone, from a PET lesion to a brain.

Run: ``.venv/bin/python benchmarks/bench_panel_clicks.py [--data DIR] [--clicks 3]``

What the panel adds to a click is node I/O: the segment read back from its segmentation node (to recognise
the state an undo left), the volume read from its node, the mask written into the segment with its clicks tag,
and the scene's undo snapshot. This benchmark measures that cost, in process on a headless Slicer core:

* panel: ``ExtremePointSegLogic.addCorrectiveClick``, which is what a click placed in the add / remove list runs.
  ExtremePointSeg.py is loaded with stand-ins for the scripted-module base classes, which only desktop Slicer
  has. The six points are applied first with ``process`` (Apply), which starts the click series.
* library (the peer): :class:`~WeakAnnotateLib.methods.extreme_points.corrective.CorrectionSession` on arrays,
  from the same six-point result, given the same clicks in the same order.

The clicks come from the robot user of ``bench_corrective_clicks.py``: the centre of the largest error region.
The boxes are those of ``bench_extreme_points_speed.py``. Printed per case: seconds per click for each side
(click 1 is solved cold, later clicks warm), the panel's overhead, Dice after the last click, and whether the
panel's mask is the library's voxel for voxel.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_corrective_clicks import robot_click  # noqa: E402  (the benchmark's robot user)
from bench_extreme_points_speed import CASES  # noqa: E402  (the same boxes)

CHOSEN = ["PET lesion (STS_001)", "BraTS tumour (pat0001 FLAIR)", "organ: brain (pat0001 FLAIR)"]


def panel_logic(runtime):  # noqa: ANN001, ANN201
    """ExtremePointSegLogic from ExtremePointSeg.py on ``runtime``'s scene (stand-ins for the Qt template only)."""
    import slicer
    from WeakAnnotateLib.scene import slicer_runtime

    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget"):
        setattr(slm, name, type(name, (), {"__init__": lambda self, parent=None: None}))
    slm.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (), {})
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = lambda cls: cls
    for name, module in (("slicer.ScriptedLoadableModule", slm), ("slicer.parameterNodeWrapper", pnw)):
        sys.modules.setdefault(name, module)
        setattr(slicer, name.split(".")[1], sys.modules[name])
    slicer_runtime.get_runtime = lambda: runtime
    spec = importlib.util.spec_from_file_location("ExtremePointSeg", REPO / "ExtremePointSeg" / "ExtremePointSeg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ExtremePointSegLogic()


def run_case(data: Path, case: str, n_clicks: int) -> dict:
    from WeakAnnotateLib.evaluation.metrics import dice
    from WeakAnnotateLib.evaluation.simulate import extreme_points
    from WeakAnnotateLib.files.image_io import read_image
    from WeakAnnotateLib.methods.extreme_points.corrective import Click, CorrectionSession
    from WeakAnnotateLib.methods.extreme_points.segmenter import ExtremePointParams, ExtremePointSegmenter
    from WeakAnnotateLib.scene.mrml_adapter import (
        add_points_node,
        add_segmentation_node,
        add_volume_node,
        segment_mask,
    )
    from WeakAnnotateLib.scene.slicer_runtime import new_headless_runtime

    image_rel, mask_rel = CASES[case][:2]  # the panel's Apply pads by its default (20 mm), as does the peer
    image = read_image(data / image_rel)
    ref = read_image(data / mask_rel).array != 0
    g = image.geometry
    points, labels = extreme_points(ref, g)

    rt = new_headless_runtime()
    logic = panel_logic(rt)
    volume = add_volume_node(rt, image, "image")
    six_node = add_points_node(rt, points, labels, "six")
    seg = add_segmentation_node(rt, "segmentation", volume)
    logic.process(volume, six_node, seg, "object")
    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("object")

    six = ExtremePointSegmenter(image.array, g, ExtremePointParams()).segment(points)
    session = CorrectionSession(image.array, g, six.mask, intensity_range=six.diagnostics["intensity_range"])
    panel_s, library_s, same = [], [], True
    mask = segment_mask(seg, sid, g)
    same &= bool(np.array_equal(mask, six.mask))
    for _ in range(n_clicks):
        nxt = robot_click(ref, mask, g.array_spacing)
        if nxt is None:
            break
        index, positive = nxt
        ras = g.index_to_ras(np.asarray(index)[None])[0]
        t = time.perf_counter()
        logic.addCorrectiveClick(volume, seg, sid, ras, positive)
        panel_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        library = session.add(Click.make(ras, positive).point, positive)
        library_s.append(time.perf_counter() - t)
        mask = segment_mask(seg, sid, g)
        same &= bool(np.array_equal(mask, library.mask))
    return {
        "shape": image.array.shape,
        "panel_s": panel_s,
        "library_s": library_s,
        "dice_six": dice(ref, six.mask),
        "dice": dice(ref, mask),
        "same": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--clicks", type=int, default=3, choices=range(1, 11), metavar="1..10")
    args = ap.parse_args()
    if not (args.data / "cases.json").is_file():
        sys.exit(f"bench_panel_clicks: error: no cases.json in {args.data}")
    print(
        f"{args.clicks} robot clicks per case, in process; load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'case':29} {'grid (k,j,i)':>13} {'Mvox':>5} | {'panel s/click':>13} {'library s/click':>15} "
        f"{'overhead s':>10} | {'Dice six':>8} {'Dice':>6} {'same mask':>9}"
    )
    for case in CHOSEN:
        r = run_case(args.data, case, args.clicks)
        shape = "x".join(map(str, r["shape"]))
        panel = " ".join(f"{s:.2f}" for s in r["panel_s"])
        library = " ".join(f"{s:.2f}" for s in r["library_s"])
        overhead = float(np.mean(np.subtract(r["panel_s"], r["library_s"])))
        print(
            f"{case:29} {shape:>13} {np.prod(r['shape']) / 1e6:5.1f} | {panel:>13} {library:>15} "
            f"{overhead:10.2f} | {r['dice_six']:8.3f} {r['dice']:6.3f} {'yes' if r['same'] else 'NO':>9}"
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
