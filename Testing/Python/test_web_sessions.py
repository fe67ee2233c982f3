"""One session per browser tab (``serve --max-sessions``): each tab its own app process, scene and work state.

One server for the module, with two sessions at most and a 3 s grace period. Two browser contexts (two users)
interleave clicks, names and saves on the same case and each keeps its own; a third tab gets the "all in use"
page; when the first tab closes its session ends after the grace period, and the third tab (reloaded) gets a
new one, in which the first user's saved work loads back. Without a browser: the launcher's own pages and
its refusal of another site's WebSocket.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_web_app import CASE_ID, VIEW, _click_ras, _serve, _state, _wait_state, browser, browser_needed

__all__ = ["browser"]  # the module-scoped Chromium fixture of test_web_app

GRACE_S = 3
OTHER_CASE = "ibsi_STS_002_PET"


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    extra = ("--max-sessions", "2", "--session-grace", str(GRACE_S))
    with _serve(data_dir, tmp_path_factory.mktemp("web_sessions"), CASE_ID, *extra) as running:
        yield running


@pytest.fixture(scope="module")
def points(case_by_id: Any) -> np.ndarray:
    """Six points on the case's object (its simulated extreme points): where the users click."""
    from WeakAnnotateLib.evaluation.simulate import extreme_points
    from WeakAnnotateLib.files.image_io import read_image, read_mask

    case = case_by_id(CASE_ID)
    image = read_image(case.image)
    return extreme_points(read_mask(case.mask, grid=image.geometry), image.geometry)[0]


def _open_tab(browser: Any, url: str) -> tuple[Any, Any]:
    """A new browser context (its own cookies and storage: another user) with the app open in one tab."""
    context = browser.new_context(viewport={"width": 1400, "height": 760}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url, timeout=180_000)  # the launcher answers once the tab's app process is ready
    page.wait_for_selector("#save")
    _wait_state(page, "view_geometry", lambda g: bool(g) and g[VIEW]["dimensions"][0] > 50, timeout_s=60)
    return context, page


def _confirm_if_asked(page: Any) -> None:
    """Answer yes when the app asks before discarding unsaved work."""
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        if _state(page, "confirm_open"):
            page.click("#confirm-yes")
            _wait_state(page, "confirm_open", lambda v: not v)
            return
        time.sleep(0.1)


def _place(page: Any) -> None:
    if not _state(page, "placing"):
        page.click("#place-points")
        _wait_state(page, "placing", bool)


def _click(page: Any, ras: np.ndarray, expect: int) -> None:
    _click_ras(page, ras)
    _wait_state(page, "n_points", lambda v: v == expect)


def _save(page: Any, name: str) -> None:
    page.fill("#save-name", name)
    _wait_state(page, "save_name", lambda v: v == name)
    page.click("#save")
    _confirm_if_asked(page)
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Saved')")


def _saved_points(path: Path) -> int:
    from WeakAnnotateLib.scene.markups_io import read_points

    return len(read_points(path, min_count=1)[0])


def _started_ahead(server: dict[str, Any], count: int) -> str:
    """The session the launcher started ahead for the next tab (its ``count``-th such line): its id's start."""
    deadline = time.monotonic() + 120
    while True:
        found = re.findall(r"session (\S+) started ahead for the next tab", (server["base"] / "server.log").read_text())
        if len(found) >= count:
            return found[count - 1]
        assert time.monotonic() < deadline, "no session was started ahead"
        time.sleep(0.5)


@browser_needed
def test_two_users_interleave_and_each_keep_their_own(browser: Any, server: dict[str, Any], points: np.ndarray) -> None:
    context_a, a = _open_tab(browser, server["url"])
    ahead = _started_ahead(server, 1)  # once A's tab connected, the next session starts: B does not wait for it
    context_b, b = _open_tab(browser, server["url"])
    session_a, session_b = (re.search(r"/s/([^/]+)/", p.url).group(1) for p in (a, b))
    assert session_a != session_b, (a.url, b.url)
    assert session_b.startswith(ahead) and not session_a.startswith(ahead)
    for page in (a, b):
        assert page.locator("#current-case").inner_text().strip() == CASE_ID

    # Interleaved: clicks, names, saves. Each tab's point list, name and files are its own.
    _place(a)
    _click(a, points[0], 1)
    _place(b)
    _click(b, points[3], 1)
    _click(a, points[1], 2)
    b.fill("#save-name", "beta")
    _click(a, points[2], 3)
    assert _state(b, "n_points") == 1 and _state(a, "n_points") == 3
    _save(a, "alpha")  # A's save uses A's name, not the one B typed
    _save(b, "beta")
    folder: Path = server["work"] / CASE_ID
    assert _saved_points(folder / "alpha.mrk.json") == 3 and _saved_points(folder / "beta.mrk.json") == 1

    # A's Clear does not touch B's points; B switching case does not touch A's.
    _click(b, points[4], 2)
    a.click("#clear-points")
    _confirm_if_asked(a)
    _wait_state(a, "n_points", lambda v: v == 0)
    assert _state(b, "n_points") == 2
    _click(a, points[5], 1)
    b.evaluate("(c) => window.trame.state.set('case_id', c)", OTHER_CASE)
    _confirm_if_asked(b)
    _wait_state(b, "case_id", lambda v: v == OTHER_CASE)
    _wait_state(b, "n_points", lambda v: v == 0)
    assert _state(a, "case_id") == CASE_ID and _state(a, "n_points") == 1
    assert a.locator("#current-case").inner_text().strip() == CASE_ID

    # Both sessions taken: a third tab gets the page that says so.
    context_c = browser.new_context()
    c = context_c.new_page()
    c.set_default_timeout(60_000)
    response = c.goto(server["url"])
    assert response.status == 503
    assert c.locator("h1").inner_text() == "All sessions are in use"
    assert "--max-sessions" in c.locator("body").inner_text()
    if os.environ.get("WEAKANNOTATE_WEB_FULL_SCREENSHOT"):  # docs/images/web_sessions_full.png is made this way
        c.screenshot(path=os.environ["WEAKANNOTATE_WEB_FULL_SCREENSHOT"])

    # A closes their tab: after the grace period its session ends; the third tab, reloaded, gets one.
    context_a.close()
    t0 = time.monotonic()
    while True:
        response = c.goto(server["url"], timeout=180_000)
        if response.status == 200:
            break
        assert response.status == 503 and time.monotonic() - t0 < GRACE_S + 30, response.status
        time.sleep(1)
    print(f"a closed tab's session released and a new one served after {time.monotonic() - t0:.1f} s")
    session_c = re.search(r"/s/([^/]+)/", c.url).group(1)
    assert session_c not in (session_a, session_b)
    assert session_c.startswith(_started_ahead(server, 2))  # started when A's session ended (one was free again)
    assert len(re.findall("started ahead", (server["base"] / "server.log").read_text())) == 2  # never above 2
    c.wait_for_selector("#save")
    _wait_state(c, "case_id", lambda v: v == CASE_ID)
    assert _state(b, "case_id") == OTHER_CASE  # B's session is still there
    context_b.close()
    context_c.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_launcher_pages_and_another_sites_socket(server: dict[str, Any]) -> None:
    """Without the secret: a page that says what is needed (and no session); an unknown or ended session: 410;
    a WebSocket opened from another site's page: refused by the launcher before it reaches any app."""
    from aiohttp import ClientSession, WSServerHandshakeError

    status, text = _get(server["root"])
    assert status == 200 and "This address needs its secret" in text and "/s/" not in text
    status, text = _get(server["root"] + "s/not-a-session/")
    assert status == 410 and "This session has ended" in text

    async def socket(origin: str) -> int:
        # a session to aim at: the page the launcher redirects to holds its path
        async with ClientSession() as http:
            deadline = time.monotonic() + GRACE_S + 30  # the browser test's tabs' sessions are being released
            while True:
                async with http.get(server["url"], allow_redirects=False) as r:
                    if r.status == 302:
                        location = r.headers["Location"]
                        break
                assert r.status == 503 and time.monotonic() < deadline, r.status
                await asyncio.sleep(1)
            path = location.split("?")[0]
            try:
                async with http.ws_connect(server["root"][:-1] + path + "ws", headers={"Origin": origin}):
                    return 101
            except WSServerHandshakeError as e:
                return e.status

    with ThreadPoolExecutor(1) as pool:  # its own event loop: playwright's runs in this thread
        got = pool.submit(asyncio.run, socket("https://evil.example")).result()
    assert got == 403, got
