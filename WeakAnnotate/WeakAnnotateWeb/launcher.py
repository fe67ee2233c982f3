"""One app process per browser tab: the launcher that ``weakannotate serve`` runs on the served port.

Why processes and not trame's per-client state: the app's scene (the MRML scene, its volume, point lists and
segments, the views' render windows), its trame state and its training job are one object graph that trame
shares between every client of a server; two tabs on one server saw each other's points and names. A process
per tab shares nothing by construction (nothing to forget to key by client), a crash or a long computation in
one tab does not touch the others, and the app itself stays a one-scene program. The price is memory and a
start-up per tab (one app process is measured in docs/web_app.md); ``--max-sessions`` bounds both.

How: the launcher listens on the served address. ``GET /?secret=<launch secret>`` gives the tab a session: an
app process (``serve --session-child``) on a free loopback port with its own secret, and redirects the tab to
``/s/<session>/?secret=<its secret>``. Everything under ``/s/<session>/`` (the page's files and its
WebSocket) is proxied to that process, so one port serves every tab (an SSH tunnel of that port is enough) and
the app processes are never reachable from outside this machine. The WebSocket's Origin is checked here as well
as in the app process (``access.py``), and the app process still checks its own secret.

When all sessions are taken, a new tab gets a page that says so (HTTP 503) and how to free one. A session whose
tab is gone (no WebSocket for ``--session-grace`` seconds: a reload within that time keeps it) is ended: its
process stops, cancelling a training job it runs; what it saved stays in the work folder, and opening the case
again in a new tab loads that work back. The first session is started with the launcher (its start-up errors
end ``serve`` before the address is printed) and waits, ready, for the first tab. Whenever a tab takes the waiting
session (or a session ends) and fewer than ``--max-sessions`` run, the next one is started ahead — once the tab
just served has connected, so that its page load comes first on a small machine — and the next tab opens at
once instead of waiting for a start-up (an idle app process is its memory, measured in docs/web_app.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, WSMsgType, web

from .access import new_secret, same_origin

log = logging.getLogger(__name__)

START_TIMEOUT_S = 180.0  # an app process that has not answered by then is stopped and the tab told
REAP_EVERY_S = 1.0
STOP_WAIT_S = 10.0  # SIGTERM, then this long, then SIGKILL
HEARTBEAT_S = 30.0
FIRST_CONNECT_S = 60.0  # a tab sent to its session has this long (or the grace period if longer) to connect
SPARE_AFTER_S = 20.0  # the session started ahead waits for the served tab to connect, at most this long
OPEN_LINE = re.compile(r"^Open (http://127\.0\.0\.1:(\d+)/\?secret=(\S+))")
SESSION_PATH = "/s/{sid}/"
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "upgrade", "content-encoding", "content-length"}


@dataclass
class Session:
    """One app process and the tab it serves."""

    sid: str
    process: asyncio.subprocess.Process
    port: int = 0
    secret: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: str = ""  # why it did not start (its last lines)
    claimed: bool = False  # a tab was sent to it
    clients: int = 0  # open WebSockets through the proxy
    connected: bool = False  # a tab has connected at least once
    idle_since: float = field(default_factory=time.monotonic)  # last time clients dropped to 0 (or the hand-out)
    tail: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def page(title: str, body: str, status: int = 200) -> web.Response:
    """A small self-contained page (no scripts, no outside resources)."""
    text = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>WeakAnnotate: "
        f"{html.escape(title)}</title><style>body{{font:16px sans-serif;background:#121212;color:#eee;"
        "max-width:40em;margin:4em auto;line-height:1.5}}code{{color:#ffb300}}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", headers={"Cache-Control": "no-store"})


class Launcher:
    """The sessions and the aiohttp application that hands them out and proxies to them."""

    def __init__(
        self,
        child_command: Callable[[int], list[str]],
        *,
        max_sessions: int,
        grace_s: float,
        secret: str | None = None,
        env: dict[str, str] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.child_command = child_command  # the app process's argv for a port
        self.max_sessions = max_sessions
        self.grace_s = grace_s
        self.secret = secret or new_secret()
        self.env = env
        self.echo = echo or (lambda line: print(line, flush=True))
        self.sessions: dict[str, Session] = {}
        self._claim_lock = asyncio.Lock()
        self._http: ClientSession | None = None
        self._reaper: asyncio.Task | None = None
        self._closing = False  # set when the launcher stops: nothing is started after that

    # --- sessions -------------------------------------------------------------------------------------

    def live(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.alive and not s.failed]

    async def spawn(self) -> Session:
        """Start an app process on a free loopback port; ``ready`` is set once it answers HTTP."""
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            *self.child_command(port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # Ctrl-C in the terminal reaches the launcher, which stops the sessions
        )
        session = Session(sid=secrets.token_urlsafe(12), process=process, port=port)
        self.sessions[session.sid] = session
        asyncio.ensure_future(self._read_output(session))
        asyncio.ensure_future(self._wait_ready(session))
        return session

    async def _read_output(self, session: Session) -> None:
        """The app process's output, each line prefixed with its session; its address line is kept, not shown."""
        assert session.process.stdout is not None
        tag = f"[session {session.sid[:6]}]"
        while line := await session.process.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip()
            found = OPEN_LINE.match(text)
            if found and int(found.group(2)) == session.port:
                session.secret = found.group(3)
                continue
            session.tail = [*session.tail[-19:], text]
            self.echo(f"{tag} {text}")

    async def _wait_ready(self, session: Session) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self._http is not None
        while not session.ready.is_set():
            if not session.alive:
                await asyncio.sleep(0.2)  # let the output reader take the last lines
                session.failed = "\n".join(session.tail[-8:]) or f"exit status {session.process.returncode}"
                session.ready.set()
                return
            if session.secret:
                with contextlib.suppress(Exception):
                    async with self._http.get(f"http://127.0.0.1:{session.port}/", timeout=ClientTimeout(2)) as r:
                        if r.status == 200:
                            session.ready.set()
                            return
            if time.monotonic() > deadline:
                session.failed = f"no answer after {START_TIMEOUT_S:.0f} s"
                await self.stop(session)
                session.ready.set()
                return
            await asyncio.sleep(0.25)

    async def stop(self, session: Session) -> None:
        """SIGTERM (the app cancels its training job and exits), then SIGKILL after STOP_WAIT_S."""
        if session.alive:
            with contextlib.suppress(ProcessLookupError):
                session.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(session.process.wait(), STOP_WAIT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    session.process.kill()
                await session.process.wait()
        self.sessions.pop(session.sid, None)

    async def claim(self) -> Session | None:
        """A ready app process for a new tab (the waiting one, else a new one), or None when all are taken."""
        async with self._claim_lock:
            spare = next((s for s in self.live() if not s.claimed), None)
            if spare is None:
                if len(self.live()) >= self.max_sessions:
                    return None
                spare = await self.spawn()
            spare.claimed = True
        await spare.ready.wait()
        spare.idle_since = time.monotonic()  # from the hand-out: the tab still has to load the page and connect
        if not spare.failed:
            asyncio.ensure_future(self.start_ahead(after=spare))
        return spare

    async def start_ahead(self, after: Session | None = None) -> Session | None:
        """Start the session the next tab will get, unless one is waiting or ``max_sessions`` run; first let
        ``after`` (the tab just served) connect, for at most ``SPARE_AFTER_S``."""
        deadline = time.monotonic() + SPARE_AFTER_S
        while after is not None and not after.connected and after.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        async with self._claim_lock:
            live = self.live()
            if self._closing or any(not s.claimed for s in live) or len(live) >= self.max_sessions:
                return None
            session = await self.spawn()
        self.echo(f"weakannotate serve: session {session.sid[:6]} started ahead for the next tab")
        return session

    async def reap(self) -> None:
        """End sessions whose tab has been gone for the grace period; forget processes that ended."""
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            now = time.monotonic()
            for s in list(self.sessions.values()):
                if not s.alive and s.ready.is_set():
                    self.sessions.pop(s.sid, None)
                    if s.claimed and not s.failed:
                        self.echo(f"weakannotate serve: session {s.sid[:6]} ended (exit {s.process.returncode})")
                elif s.claimed and s.clients == 0 and s.ready.is_set() and now - s.idle_since > self._allowance(s):
                    self.echo(f"weakannotate serve: session {s.sid[:6]} released (its tab was closed)")
                    await self.stop(s)
                    await self.start_ahead()  # awaited: no tab can take the freed place on demand in between

    def _allowance(self, session: Session) -> float:
        """How long a session without a tab is kept: the grace period, longer before its first connection."""
        return self.grace_s if session.connected else max(self.grace_s, FIRST_CONNECT_S)

    # --- HTTP -------------------------------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.handle_root)
        app.router.add_route("*", "/s/{sid}/{tail:.*}", self.handle_session)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _: web.Application) -> None:
        self._http = ClientSession()
        self._reaper = asyncio.ensure_future(self.reap())

    async def _on_cleanup(self, _: web.Application) -> None:
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
        await asyncio.gather(*(self.stop(s) for s in list(self.sessions.values())))
        if self._http is not None:
            await self._http.close()

    async def handle_root(self, request: web.Request) -> web.StreamResponse:
        given = request.query.get("secret", "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return page(
                "This address needs its secret",
                "<p>Open the address that <code>weakannotate serve</code> printed, with its "
                "<code>?secret=…</code>. Each start of the server makes a new one.</p>",
            )
        session = await self.claim()
        if session is None:
            return page(
                "All sessions are in use",
                f"<p>This server gives each browser tab its own session, and all {self.max_sessions} are in use."
                " Close a tab you no longer need (its session ends "
                f"{self.grace_s:.0f} s later; saved work stays in the work folder), then reload this page.</p>"
                "<p>Whoever runs the server can allow more with <code>weakannotate serve --max-sessions N</code>."
                "</p>",
                status=503,
            )
        if session.failed:
            return page(
                "The session did not start",
                f"<pre>{html.escape(session.failed)}</pre><p>Reload this page to try again.</p>",
                status=500,
            )
        raise web.HTTPFound(SESSION_PATH.format(sid=session.sid) + f"?secret={session.secret}")

    async def handle_session(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.get(request.match_info["sid"])
        if session is None or not session.alive or not session.ready.is_set() or session.failed:
            return page(
                "This session has ended",
                "<p>Its tab was closed for longer than the grace period, or the server restarted. Open the "
                "address <code>weakannotate serve</code> printed again: the work you saved loads back when you "
                "open the case.</p>",
                status=410,
            )
        tail = request.match_info["tail"]
        if tail == "ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.proxy_websocket(request, session)
        if tail in ("", "index.html") and "secret" not in request.query and request.method == "GET":
            # a reload: the page drops ?secret= from its address once it has read it
            raise web.HTTPFound(SESSION_PATH.format(sid=session.sid) + f"?secret={session.secret}")
        return await self.proxy_http(request, session, tail)

    async def proxy_http(self, request: web.Request, session: Session, tail: str) -> web.StreamResponse:
        assert self._http is not None
        url = f"http://127.0.0.1:{session.port}/{tail}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS | {"host", "origin"}}
        body = await request.read()
        async with self._http.request(
            request.method, url, params=request.query, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            content = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(body=content, status=upstream.status, headers=out)

    async def proxy_websocket(self, request: web.Request, session: Session) -> web.StreamResponse:
        """Relay every frame both ways. The Origin must be this server's: another site's page is refused here."""
        if not same_origin(request.headers.get("Origin", ""), request.headers.get("Host", "")):
            return web.Response(status=403, text="origin refused")
        assert self._http is not None
        # pings every HEARTBEAT_S: a tab that vanished without closing its socket (sleep, network) is noticed
        browser = web.WebSocketResponse(max_msg_size=0, autoping=True, heartbeat=HEARTBEAT_S)
        await browser.prepare(request)
        session.clients += 1
        session.connected = True
        try:
            async with self._http.ws_connect(
                f"ws://127.0.0.1:{session.port}/ws",
                headers={"Origin": f"http://127.0.0.1:{session.port}"},  # the app's own check, on its own host
                max_msg_size=0,
            ) as app_ws:
                await asyncio.gather(_relay(browser, app_ws), _relay(app_ws, browser), return_exceptions=True)
        except Exception as e:  # the app process ended or refused: the tab sees its socket close
            log.info("session %s websocket: %s", session.sid, e)
        finally:
            session.clients -= 1
            if session.clients == 0:
                session.idle_since = time.monotonic()
            await browser.close()
        return browser


async def _relay(source: Any, target: Any) -> None:
    """Frames from one WebSocket to the other until either closes (then the other is closed too)."""
    try:
        async for msg in source:
            if msg.type == WSMsgType.TEXT:
                await target.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await target.send_bytes(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
    finally:
        await target.close()


def run_launcher(
    launcher: Launcher,
    host: str,
    port: int,
    announce: Callable[[int], Awaitable[None] | None],
) -> None:
    """Serve until SIGINT/SIGTERM: start the first session, listen, then ``announce(port)`` (prints the address);
    a first session that does not start ends this with its message (SystemExit 2)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # from the start: a stop while starting stops the sessions too
            loop.add_signal_handler(sig, stop.set)
        app = launcher.application()
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        try:
            first = await launcher.spawn()
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([asyncio.ensure_future(first.ready.wait()), stopping], return_when="FIRST_COMPLETED")
            if stop.is_set():
                return
            if first.failed:
                print(first.failed, file=sys.stderr, flush=True)
                raise SystemExit(2)
            site = web.TCPSite(runner, host, port)
            await site.start()
            result = announce(int(runner.addresses[0][1]))  # the port bound (port 0: the one chosen)
            if asyncio.iscoroutine(result):
                await result
            await stopping
        finally:
            await runner.cleanup()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    """``python -m WeakAnnotateWeb.launcher CONFIG``: what ``serve`` becomes once it has checked its options
    (``serve_command.serve_sessions``). CONFIG is JSON: the app process's argv but its port, the bounds, the
    address, the work folder (for the first line)."""
    config = json.loads((sys.argv[1:] if argv is None else argv)[0])
    base = [str(a) for a in config["child"]]
    launcher = Launcher(
        lambda port: [*base, "--port", str(port)],
        max_sessions=int(config["max_sessions"]),
        grace_s=float(config["grace_s"]),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    host = str(config["host"])
    print(f"weakannotate serve: work folder {config['work']}", flush=True)
    print(
        f"weakannotate serve: up to {launcher.max_sessions} browser tabs at once, each its own session; "
        "starting the first…",
        flush=True,
    )

    def announce(port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(f"Open http://{shown}:{port}/?secret={launcher.secret}", flush=True)

    run_launcher(launcher, host, int(config["port"]), announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
