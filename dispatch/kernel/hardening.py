"""Pure ASGI middleware at the door: security headers on every response, and a cap on request bodies."""

import base64
import hashlib
import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.kernel.problems import http_problem

# What the API's own answers need: nothing. Pages get `page_policy`.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
FIXED_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                 (b"x-frame-options", b"DENY"))


def page_policy(tile_url: str | None) -> str:
    """The pages' Content-Security-Policy: their own scripts, styles and API, and the map tiles' origin if set.

    Tokens live in the pages' localStorage: an injected script could read them, so no inline script,
    no eval and nothing from another origin runs; no other site may frame a page (clickjacking).
    Styles set through the CSSOM (element.style) are not inline styles to CSP.
    """
    images = ["'self'", "data:"]  # data: photos fetched with the bearer token, and charts saved as PNG
    if tile_url:
        parts = urlsplit(tile_url)
        images.append(f"{parts.scheme}://{parts.netloc}")
    return ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            f"img-src {' '.join(images)}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class SecurityHeaders:
    """nosniff, same-origin referrers, no framing, and a Content-Security-Policy on every response.

    HTML gets the pages' policy, anything else the API's, unless the route set its own (the API docs).
    """

    def __init__(self, app: ASGIApp, *, page_csp: str) -> None:
        self.app = app
        self._page_csp = page_csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in present:
                    html = Headers(raw=headers).get("content-type", "").startswith("text/html")
                    headers.append((b"content-security-policy", self._page_csp if html else API_POLICY.encode()))
                headers.extend(h for h in FIXED_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestTooLarge(HTTPException):
    """An HTTPException, not a DomainError: raised while FastAPI reads the body, only those pass through
    its parsing unchanged (anything else becomes a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


class BodyLimit:
    """Refuses request bodies over a cap with 413 problem JSON, counted as they stream in.

    A declared Content-Length over the cap is refused before the app runs; a chunked body (or a lying
    length) is cut off at the first chunk past the cap, so a slow endless body never gets buffered.
    `larger` gives paths (regular expressions) their own cap, e.g. uploads.
    """

    def __init__(self, app: ASGIApp, *, limit: int, larger: tuple[tuple[str, int], ...] = ()) -> None:
        self.app = app
        self._limit = limit
        self._larger = tuple((re.compile(pattern), cap) for pattern, cap in larger)

    def _limit_of(self, path: str) -> int:
        return next((cap for pattern, cap in self._larger if pattern.fullmatch(path)), self._limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_of(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await http_problem(RequestTooLarge(limit))(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


DOCS_CDN = "https://cdn.jsdelivr.net"


def docs_policy(html: str) -> str:
    """The Content-Security-Policy of FastAPI's Swagger UI page (/docs): its bundle from jsDelivr, its one
    inline script allowed by hash (no 'unsafe-inline' for scripts), its inline styles."""
    inline = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
                      for body in inline)
    return (f"default-src 'none'; script-src {DOCS_CDN} {hashes}; style-src {DOCS_CDN} 'unsafe-inline'; "
            "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
