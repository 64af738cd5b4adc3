"""The viewer's two gates, as ASGI middleware: ``AllowedHosts`` (400 unless
the Host header names a loopback host or the configured one: DNS-rebinding
defence) and ``ReadOnly`` (405 for every method but GET and HEAD, and safety
headers on every response)."""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CSP", "LOOPBACK_HOSTS", "AllowedHosts", "ReadOnly", "host_name"]

READ_METHODS = frozenset({"GET", "HEAD"})
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def host_name(value: str) -> str | None:
    """The lower-cased host of a Host header value without its port
    (``[::1]:8765`` -> ``[::1]``), or None when the value is malformed.
    (Starlette's TrustedHostMiddleware splits at the first colon, which breaks
    IPv6 literals; hence this.)"""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        name, port = (v[: end + 1], v[end + 1 :]) if end > 0 else ("", "")
    else:
        name, colon, port = v.partition(":")
        port = colon + port
    if not name or (port and not (port[0] == ":" and port[1:].isdigit() and len(port) <= 6)):
        return None
    return name


class AllowedHosts:
    """ASGI middleware: 400 unless the request carries exactly one Host header
    naming a loopback host (``127.0.0.1``, ``localhost``, ``[::1]``) or the
    configured one, with or without a port. A page of another site that
    rebinds its DNS name to 127.0.0.1 sends its own name, so it reads nothing."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1") -> None:
        self.app = app
        configured = host.strip().lower()
        self.allowed = LOOPBACK_HOSTS | {f"[{configured}]" if ":" in configured else configured}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = [v for k, v in scope["headers"] if k == b"host"]
            name = host_name(hosts[0].decode("latin-1")) if len(hosts) == 1 else None
            if name not in self.allowed:
                resp = PlainTextResponse(
                    "400 Bad Request: this viewer answers only requests for " + ", ".join(sorted(self.allowed)),
                    status_code=400,
                )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ReadOnly:
    """ASGI middleware: 405 for every method but GET and HEAD, and safety
    headers (CSP, nosniff, no referrer) on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in READ_METHODS:
            resp = PlainTextResponse(
                "405 Method Not Allowed: this viewer is read-only",
                status_code=405,
                headers={"Allow": "GET, HEAD"},
            )
            await resp(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
