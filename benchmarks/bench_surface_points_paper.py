"""The surface-points paper's experiments in miniature, in one command: its Fig. 4 (template Dice/IoU for
N = 25, 50, 125, 250 simulated points) and its Table 1 (Weak-Net vs template alone vs full supervision).

    .venv/bin/python benchmarks/bench_surface_points_paper.py [--steps N]

Runs the two benchmarks one after the other, with their default settings (``--steps`` goes to Table 1).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        return 0
    fig4 = [sys.executable, str(HERE / "bench_surface_template_accuracy.py")]
    table1 = [sys.executable, str(HERE / "bench_weak_net.py"), *sys.argv[1:]]
    for title, command in (("Fig. 4: template accuracy", fig4), ("Table 1: Weak-Net", table1)):
        print(f"\n=== {title} ===", flush=True)
        status = subprocess.call(command)
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
