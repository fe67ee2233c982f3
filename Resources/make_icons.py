"""Regenerate the extension's and the modules' 128x128 PNG icons.

Run from the repository root: ``.venv/bin/python Resources/make_icons.py``. Writes
``Resources/Icons/WeakAnnotate.png`` (extension icon) and ``<Module>/Resources/Icons/<Module>.png``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle, Ellipse, Polygon, Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZE_PX = 128
DPI = 64

ORANGE = "#f08a24"
BLUE = "#2f6fb5"
GREEN = "#3aa655"
PURPLE = "#7a4fb0"
DARK = "#222222"


def _canvas():
    fig = plt.figure(figsize=(SIZE_PX / DPI, SIZE_PX / DPI), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def _blob(n: int = 200) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 0.30 + 0.04 * np.sin(3 * t) + 0.025 * np.cos(5 * t + 0.7)
    return np.column_stack([0.5 + 1.1 * r * np.cos(t), 0.5 + 0.9 * r * np.sin(t)])


def extreme_point_seg(ax) -> None:
    outline = _blob()
    ax.add_patch(Polygon(outline, closed=True, facecolor=ORANGE, edgecolor=DARK, linewidth=2, alpha=0.9))
    x, y = outline[:, 0], outline[:, 1]
    extremes = [outline[np.argmin(x)], outline[np.argmax(x)], outline[np.argmin(y)], outline[np.argmax(y)]]
    extremes += [(0.40, 0.58), (0.60, 0.42)]  # the third axis' pair, seen end-on
    for px, py in extremes:
        ax.add_patch(Circle((px, py), 0.05, facecolor="#ffffff", edgecolor=DARK, linewidth=2))
        ax.add_patch(Circle((px, py), 0.022, facecolor="#d62728", edgecolor="none"))


def box_correction(ax) -> None:
    ax.add_patch(Ellipse((0.47, 0.47), 0.42, 0.34, facecolor=ORANGE, edgecolor=DARK, linewidth=1.5, alpha=0.9))
    # Loose box with its depth edges (a 3D box), then the tight box the correction finds.
    front = np.array([[0.12, 0.12], [0.78, 0.12], [0.78, 0.78], [0.12, 0.78]])
    back = front + 0.1
    for a, b in zip(front, back, strict=True):
        ax.plot([a[0], b[0]], [a[1], b[1]], color=BLUE, linewidth=2.5)
    ax.add_patch(Polygon(back, closed=True, fill=False, edgecolor=BLUE, linewidth=2.5))
    ax.add_patch(Polygon(front, closed=True, fill=False, edgecolor=BLUE, linewidth=3.5))
    ax.add_patch(Rectangle((0.26, 0.30), 0.42, 0.34, fill=False, edgecolor=GREEN, linewidth=3, linestyle="--"))


def surface_template(ax) -> None:
    # A shaded sphere: concentric discs from dark rim to a light highlight.
    for k, r in enumerate(np.linspace(0.40, 0.04, 12)):
        shade = 0.35 + 0.55 * k / 11
        centre = (0.5 - 0.12 * k / 11, 0.5 + 0.12 * k / 11)
        ax.add_patch(Circle(centre, r, facecolor=(0.2 * shade, 0.65 * shade, 0.35 * shade + 0.1), edgecolor="none"))
    ax.add_patch(Circle((0.5, 0.5), 0.40, fill=False, edgecolor=DARK, linewidth=2))
    rng = np.random.default_rng(3)
    for _ in range(9):
        theta, phi = rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 1.35)
        px, py = 0.5 + 0.40 * np.sin(phi) * np.cos(theta), 0.5 + 0.40 * np.sin(phi) * np.sin(theta)
        ax.add_patch(Circle((px, py), 0.035, facecolor="#d62728", edgecolor="#ffffff", linewidth=1.5))


def weak_annotate(ax) -> None:
    satellites = [((0.5, 0.86), ORANGE), ((0.17, 0.27), BLUE), ((0.83, 0.27), GREEN)]
    for (sx, sy), _ in satellites:
        ax.plot([0.5, sx], [0.47, sy], color=DARK, linewidth=4, solid_capstyle="round")
    for (sx, sy), colour in satellites:
        ax.add_patch(Circle((sx, sy), 0.12, facecolor=colour, edgecolor=DARK, linewidth=2))
    ax.add_patch(Circle((0.5, 0.47), 0.2, facecolor=PURPLE, edgecolor=DARK, linewidth=2.5))
    ax.add_patch(Circle((0.5, 0.47), 0.08, facecolor="#ffffff", edgecolor="none"))


ICONS = {
    "ExtremePointSeg": extreme_point_seg,
    "BoxCorrection": box_correction,
    "SurfaceTemplate": surface_template,
    "WeakAnnotate": weak_annotate,
}


def write_icon(draw, path: Path) -> None:
    fig, ax = _canvas()
    draw(ax)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, transparent=True)
    plt.close(fig)


def main() -> None:
    for module, draw in ICONS.items():
        write_icon(draw, ROOT / module / "Resources" / "Icons" / f"{module}.png")
    write_icon(weak_annotate, ROOT / "Resources" / "Icons" / "WeakAnnotate.png")


if __name__ == "__main__":
    main()
