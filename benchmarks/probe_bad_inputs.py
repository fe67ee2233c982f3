"""Probe every command with bad input and count how each probe is handled.

Run: ``.venv/bin/python benchmarks/probe_bad_inputs.py [--data DIR]`` (as root, the full-disk and read-only
probes run too). Prints one row per probe area: probes tried, handled, and the unhandled ones.

A probe is *handled* when the command ends with status 1 (a failed write) or 2 (bad input), prints one line
``weakannotate CMD: error: …`` (or argparse's one line) and no traceback, writes none of its outputs, and leaves
every input file byte for byte as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "WeakAnnotate"))

from WeakAnnotateLib.cli.main import main  # noqa: E402
from WeakAnnotateLib.core.geometry import Geometry  # noqa: E402
from WeakAnnotateLib.evaluation import simulate  # noqa: E402
from WeakAnnotateLib.files.image_io import write_image  # noqa: E402
from WeakAnnotateLib.scene.markups_io import write_box, write_points  # noqa: E402


def digest(path: Path) -> str:
    if path.is_dir():
        return "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def run(argv: list[str], inputs: list[Path], outputs: list[Path]) -> tuple[bool, str]:
    before = {p: digest(p) for p in inputs}
    out, err = io.StringIO(), io.StringIO()
    code: int | str
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    except BaseException as e:  # noqa: BLE001 - an escaped exception is exactly what this counts
        return False, f"raised {type(e).__name__}: {e}"
    lines = [x for x in err.getvalue().splitlines() if x.strip() and not x.startswith("usage:") and x[0] != " "]
    problems = []
    if code not in (1, 2):
        problems.append(f"exit {code}")
    if "Traceback" in err.getvalue() or len(lines) != 1:
        problems.append(f"{len(lines)} error lines")
    written = [p for p in outputs if p.exists()]
    if written:
        problems.append(f"wrote {[p.name for p in written]}")
    changed = [p.name for p in inputs if digest(p) != before[p]]
    if changed:
        problems.append(f"changed inputs {changed}")
    return not problems, "; ".join(problems) or lines[0][:100]


@contextlib.contextmanager
def mounted(kind: str, folder: Path) -> Iterator[Path | None]:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield None
        return
    if kind == "full":
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)], capture_output=True)
    else:
        ok = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
        if not ok.returncode:
            ok = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True)
    if ok.returncode:
        yield None
        return
    try:
        if kind == "full":
            with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def build_inputs(root: Path) -> dict[str, Path]:
    shape = (24, 30, 32)
    g = Geometry.from_spacing_origin_direction((1.0, 1.2, 2.0), (0.0, 0.0, 0.0), np.eye(3), shape)
    k, j, i = np.indices(shape, dtype=float)
    mask = ((k - 12) / 6) ** 2 + ((j - 15) / 8) ** 2 + ((i - 16) / 9) ** 2 <= 1
    img = (100.0 * mask + np.random.default_rng(0).normal(0, 5, shape)).astype(np.float32)
    f: dict[str, Path] = {}
    f["image"] = write_image(root / "image.nii.gz", img, g)
    f["mask"] = write_image(root / "mask.nii.gz", mask.astype(np.uint8), g)
    pts, labels = simulate.extreme_points(mask, g)
    f["six"] = write_points(root / "six.mrk.json", pts, labels, "extreme", required=6)
    f["five"] = write_points(root / "five.mrk.json", pts[:5], labels[:5], "five")
    f["four"] = write_points(root / "four.mrk.json", pts[:4], labels[:4], "four")
    f["outside"] = write_points(root / "outside.mrk.json", pts + 500.0, labels, "outside")
    f["surface"] = write_points(root / "surface.mrk.json", simulate.surface_points(mask, g, 30), None, "s")
    f["box"] = write_box(root / "box.mrk.json", simulate.tight_box(mask, g))
    nan = img.copy()
    nan[2, 3, 4] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(root / "nan.mha"))
    f["nan"] = root / "nan.mha"
    f["corrupt"] = root / "corrupt.nii.gz"
    f["corrupt"].write_bytes(f["image"].read_bytes()[:200])
    f["text"] = root / "text.nrrd"
    f["text"].write_text("not an image", encoding="utf-8")
    sitk.WriteImage(sitk.GetImageFromArray(img[0]), str(root / "flat.nrrd"))
    f["2d"] = root / "flat.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([img, img], -1), isVector=True), str(root / "vec.mha"))
    f["vector"] = root / "vec.mha"
    other = Geometry.from_spacing_origin_direction((2.0, 2.0, 2.0), (0.0, 0.0, 0.0), np.eye(3), (10, 10, 10))
    f["other_grid"] = write_image(root / "other.nii.gz", np.ones((10, 10, 10), np.uint8), other)
    f["empty"] = write_image(root / "empty.nii.gz", np.zeros(shape, np.uint8), g)
    f["bad_json"] = root / "bad.mrk.json"
    f["bad_json"].write_text('{"markups": [', encoding="utf-8")
    (root / "model").mkdir()
    (root / "model" / "model.pt").write_bytes(os.urandom(3000))
    (root / "model" / "model.json").write_text("{}", encoding="utf-8")
    f["model"] = root / "model"
    f["spec_inf"] = root / "inf.json"
    f["spec_inf"].write_text('{"dataset": "ds", "output": "o", "learning_rate": Infinity}', encoding="utf-8")
    f["spec_unknown"] = root / "unknown.json"
    f["spec_unknown"].write_text(json.dumps({"dataset": "ds", "output": "o", "method": "nope"}), encoding="utf-8")
    return f


def probes(f: dict[str, Path], out: Path) -> dict[str, list[tuple[list[str], list[Path], list[Path]]]]:
    o = out / "o.nii.gz"
    ins = [f["image"], f["six"], f["mask"], f["surface"], f["box"]]
    areas: dict[str, list[tuple[list[str], list[Path], list[Path]]]] = {}
    bad_images = ["corrupt", "text", "2d", "vector", "nan"]
    areas["bad image files"] = [
        (["extreme-points", "--image", f[b], "--points", f["six"], "--output", o], ins, [o]) for b in bad_images
    ] + [(["surface-template", "--image", f[b], "--points", f["surface"], "--output", o], ins, [o]) for b in bad_images]
    areas["bad point files"] = [
        (["extreme-points", "--image", f["image"], "--points", f[p], "--output", o], ins, [o])
        for p in ("five", "outside", "bad_json", "box", "image")
    ] + [(["surface-template", "--image", f["image"], "--points", f[p], "--output", o], ins, [o])
         for p in ("four", "outside", "bad_json", "box")]  # fmt: skip
    areas["outputs over inputs"] = [
        (["extreme-points", "--image", f["image"], "--points", f["six"], "--output", f["image"]], ins, []),
        (
            ["extreme-points", "--image", f["image"], "--points", f["six"], "--output", o, "--probability", f["image"]],
            ins,
            [o],
        ),  # fmt: skip
        (["surface-template", "--image", f["image"], "--points", f["surface"], "--output", f["surface"]], ins, []),
        (["predict", "--model", f["model"], "--image", f["image"], "--output", f["image"]], ins, []),
        (
            ["extreme-points", "--image", f["image"], "--points", f["six"], "--output", f["model"] / "m.nii.gz"],
            ins,
            [f["model"] / "m.nii.gz"],
        ),  # fmt: skip
        (
            [
                "extreme-points",
                "--image",
                f["image"],
                "--points",
                f["six"],
                "--output",
                out / "same.nii.gz",
                "--probability",
                out / "same.nii.gz",
            ],
            ins,
            [out / "same.nii.gz"],
        ),  # fmt: skip
    ]
    numbers = [("extreme-points", "--beta", v) for v in ("-5", "nan", "inf", "0", "x")] + [
        ("extreme-points", "--padding-mm", v) for v in ("-100", "inf", "1e9")
    ]
    numbers += [("simulate", "--jitter-mm", v) for v in ("inf", "-1", "nan")]
    numbers += [("simulate", "--surface-points", v) for v in ("0", "4", "2.5", "1e12")]
    numbers += [("surface-template", "--subdivisions", v) for v in ("0", "99", "1.5")]
    numbers += [("serve", "--port", v) for v in ("-1", "70000")]
    numbers += [("train", "--nproc", v) for v in ("0", "-2", "1000")]
    base = {
        "extreme-points": ["--image", f["image"], "--points", f["six"], "--output", o],
        "simulate": ["--mask", f["mask"], "--output-dir", out / "sim"],
        "surface-template": ["--image", f["image"], "--points", f["surface"], "--output", o],
        "serve": ["--work", out / "w"],
        "train": ["--job", f["spec_inf"]],
    }
    areas["numeric options"] = [
        ([cmd, *base[cmd], opt, v], ins, [o, out / "sim", out / "w"]) for cmd, opt, v in numbers
    ]
    areas["grids and masks"] = [
        (["evaluate", "--reference", f["mask"], "--prediction", f["other_grid"]], ins, []),
        (["evaluate", "--reference", f["mask"], "--prediction", f["mask"], "--label", "7"], ins, []),
        (["simulate", "--mask", f["empty"], "--output-dir", out / "sim"], ins, [out / "sim"]),
        (["evaluate", "--reference", f["nan"], "--prediction", f["mask"]], ins, []),
    ]
    areas["models and job specs"] = [
        (["predict", "--model", f["model"], "--image", f["image"], "--output", o], ins, [o]),
        (["predict", "--model", out / "none", "--image", f["image"], "--output", o], ins, [o]),
        (["train", "--job", f["spec_inf"]], ins, []),
        (["train", "--job", f["spec_unknown"]], ins, []),
        (["train", "--job", out / "missing.json"], ins, []),
    ]
    return areas


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        (root / "out").mkdir()
        files = build_inputs(root / "in")
        areas = probes(files, root / "out")
        for kind in ("full", "readonly"):
            with mounted(kind, root / kind) as disk:
                if disk is None:
                    continue
                o = disk / "o.nii.gz"
                name = "full disk" if kind == "full" else "read-only folder"
                areas[name] = [
                    (["extreme-points", "--image", files["image"], "--points", files["six"], "--output", o], [], [o]),
                    (
                        ["surface-template", "--image", files["image"], "--points", files["surface"], "--output", o],
                        [],
                        [o],
                    ),  # fmt: skip
                    (["simulate", "--mask", files["mask"], "--output-dir", disk / "sim"], [], []),
                ]
                for area_argv, inputs, outputs in areas.pop(name):
                    ok, why = run(area_argv, inputs, outputs)
                    if kind == "full" and area_argv[0] == "simulate":
                        ok = ok and not list((disk / "sim").rglob("*.mrk.json"))
                    rows.append((name, ok, " ".join(map(str, area_argv[:1])) + ": " + why))
        for area, cases in areas.items():
            for area_argv, inputs, outputs in cases:
                ok, why = run(area_argv, inputs, outputs)
                for leftover in outputs:  # each probe starts without the others' outputs
                    if leftover.is_file():
                        leftover.unlink()
                rows.append((area, ok, " ".join(str(a) for a in area_argv if not str(a).startswith("/"))[:70]
                             + " → " + why))  # fmt: skip
    print("| probe area | tried | handled |")
    print("|---|---|---|")
    order = list(dict.fromkeys(r[0] for r in rows))
    for area in order:
        mine = [r for r in rows if r[0] == area]
        print(f"| {area} | {len(mine)} | {sum(r[1] for r in mine)} |")
    print(f"| all | {len(rows)} | {sum(r[1] for r in rows)} |")
    bad = [r for r in rows if not r[1]]
    if bad:
        print("\nNot handled:")
        for area, _, why in bad:
            print(f"- {area}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
