"""One session per tab: what a tab waits for and what a session costs in memory.

    .venv/bin/python benchmarks/bench_web_sessions.py [--tabs 3] [--case ibsi_STS_001_PET] [--gap 15]

Starts ``weakannotate serve --max-sessions TABS`` (the launcher) on a free loopback port and opens TABS tabs,
one after the other, each in its own headless Chromium context: for each, the seconds from ``goto`` to the page
answering (the case's views published), and the resident memory of its app process; ``--gap`` seconds pass
between one tab working and the next opened (the launcher starts the next tab's session ahead once a tab has
connected; with ``--gap 0`` the next tab waits for what is left of that start-up). The peer, measured in
the same run: one app process served directly (``serve --session-child``, what ``serve`` was before the
launcher), its start-up to the page answering and its memory. Prints a table and the load average.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def start(cmd: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start a server; return it and the address it prints, once its port answers."""
    handle = open(log, "w")  # noqa: SIM115 - the server's log, closed with the process
    env = {**os.environ, "PYTHONPATH": str(ROOT / "WeakAnnotate")}
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = re.search(r"^Open (http://127\.0\.0\.1:\d+/\?secret=\S+)", log.read_text(), re.M)
        if found:
            try:
                urllib.request.urlopen(found.group(1).split("?")[0], timeout=2)
                return proc, found.group(1)
            except OSError:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log.read_text()[-2000:]}")


def open_tab(browser, url: str) -> tuple[object, float]:
    context = browser.new_context(viewport={"width": 1400, "height": 760})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url, timeout=300_000)
    page.wait_for_function(
        "() => { const g = window.trame && window.trame.state && window.trame.state.get('view_geometry');"
        " return g && g.Red && g.Red.dimensions[0] > 50; }",
        timeout=300_000,
    )
    return context, time.perf_counter() - t0


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tabs", type=int, default=3)
    p.add_argument("--case", default="ibsi_STS_001_PET")
    p.add_argument("--gap", type=float, default=15.0, help="seconds between one tab working and the next opened")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_web_sessions_"))
    serve = [sys.executable, "-m", "WeakAnnotateLib.cli.main", "serve", "--work", str(tmp / "work")]
    serve += ["--case", args.case]
    rows: list[tuple[str, float, float]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # peer: one app process served directly (the server's own start-up counted, as a user waits for it)
        t0 = time.perf_counter()
        proc, url = start([*serve, "--session-child", "--port", str(free_port())], tmp / "direct.log")
        context, seconds = open_tab(browser, url)
        rows.append(("one app process, served directly (peer)", time.perf_counter() - t0, rss_mb(proc.pid)))
        context.close()
        stop(proc)
        # the launcher: the first session is started with it, each next one once the previous tab connected
        t0 = time.perf_counter()
        proc, url = start([*serve, "--port", str(free_port()), "--max-sessions", str(args.tabs)], tmp / "l.log")
        launcher_ready = time.perf_counter() - t0
        contexts = []
        for n in range(args.tabs):
            if n:
                time.sleep(args.gap)
            context, seconds = open_tab(browser, url)
            contexts.append(context)
            ready = seconds + (launcher_ready if n == 0 else 0.0)
            apps = children(proc.pid)
            what = "tab 1 (server start + page)" if n == 0 else f"tab {n + 1} (its session started ahead)"
            rows.append((what, ready, rss_mb(apps[n]) if n < len(apps) else float("nan")))
        rows.append(("the launcher itself", float("nan"), rss_mb(proc.pid)))
        for context in contexts:
            context.close()
        stop(proc)
        browser.close()
    print(f"\n{'':45} {'seconds to a working page':>26} {'memory (RSS, MB)':>17}")
    for what, seconds, mb in rows:
        s = f"{seconds:.1f}" if seconds == seconds else "–"
        print(f"{what:45} {s:>26} {mb:>17.0f}")
    print(f"\nload average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip


if __name__ == "__main__":
    main()
