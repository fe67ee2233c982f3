"""Only the app's own page may drive the server: the WebSocket's Origin must be the served host, and the client
must present this launch's secret.

Why: browsers do not apply same-origin rules to WebSockets, and wslink accepts any Origin with a public default
secret (``wslink-secret``), so any web page the user opens could read the state and start jobs on a server bound
to 127.0.0.1. The guard is a wslink link protocol: wslink asks every link protocol's ``validateToken`` when a
client says hello, and a client that is not validated gets no RPC answered. The secret is random per launch and
travels in the page's URL (``?secret=…``), which ``serve`` prints.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from wslink.websocket import LinkProtocol


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def same_origin(origin: str, host: str) -> bool:
    """Whether the page that opened the WebSocket (its Origin header) was served by this server (its Host)."""
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


class AccessGuard(LinkProtocol):
    """Refuses a client whose Origin is not the served host, or whose secret is not this launch's."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.origin_ok: dict[str, bool] = {}
        self.refused: list[str] = []  # why each refused client was refused (for the log and the tests)

    def onConnect(self, request: Any, client_id: str) -> None:  # noqa: N802 - wslink's name
        headers = getattr(request, "headers", {}) or {}
        origin, host = headers.get("Origin", ""), headers.get("Host", "")
        self.origin_ok[client_id] = same_origin(origin, host)
        if not self.origin_ok[client_id]:
            self.refused.append(f"origin {origin or '(none)'} is not this server's ({host})")

    def onClose(self, client_id: str) -> None:  # noqa: N802 - wslink's name
        self.origin_ok.pop(client_id, None)

    async def validateToken(self, token: Any, client_id: str) -> bool:  # noqa: N802 - wslink's name
        if not self.origin_ok.get(client_id, False):
            return False
        if not isinstance(token, str) or not hmac.compare_digest(token, self.secret):
            self.refused.append("wrong or missing secret")
            return False
        return True


def install(server: Any, secret: str) -> AccessGuard:
    """Register the guard on a trame server before it starts; returns it."""
    guard = AccessGuard(secret)
    server.add_protocol_to_configure(lambda protocol: protocol.registerLinkProtocol(guard))
    return guard
