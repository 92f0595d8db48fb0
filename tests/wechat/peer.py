"""A loopback stand-in for the WeChat official account API: the endpoints Fieldpool calls, with WeChat's
documented JSON and error codes, recording what it received.

Implemented: GET /cgi-bin/token, POST /cgi-bin/stable_token, POST /cgi-bin/message/template/send,
GET /cgi-bin/media/get, GET /sns/oauth2/access_token, POST /cgi-bin/menu/create,
GET /cgi-bin/ticket/getticket. Access tokens are checked on every call: unknown → 40001, expired → 42001.
"""

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

APP_ID = "wx2c2769f8efd9abc2"
SECRET = "peer-secret-0123456789abcdef0123"
JSAPI_TICKET = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    params: dict[str, str]
    body: Any


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[Seen] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    expired_tokens: set[str] = field(default_factory=set)
    current: str | None = None
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    codes: dict[str, str] = field(default_factory=dict)  # OAuth code -> openid (used once)
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # media_id -> (content type, bytes)
    unfollowed: set[str] = field(default_factory=set)
    menus: list[Any] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    garbage: bool = False  # every answer an HTML error page, as a broken proxy in front of WeChat gives


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json; charset=utf-8", json.dumps(body, ensure_ascii=False).encode()


OK = {"errcode": 0, "errmsg": "ok"}


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:
        self._serve("GET", None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            body = raw
        self._serve("POST", body)

    def _serve(self, method: str, body: Any) -> None:
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        state = self.server.state
        with state.lock:
            state.requests.append(Seen(method, url.path, params, body))
            status, content_type, payload = self.server.peer.route(method, url.path, params, body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, peer: "WechatPeer") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.peer = peer
        self.state = peer.state


class WechatPeer:
    """`with WechatPeer() as peer:` serves on 127.0.0.1, a port of its own, in a thread."""

    def __init__(self) -> None:
        self.state = _State()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    # --- what a test arranges ---------------------------------------------------------------

    def expire_token(self) -> None:
        """The current access token lapses: calls with it now get 42001."""
        with self.state.lock:
            if self.state.current:
                self.state.valid_tokens.discard(self.state.current)
                self.state.expired_tokens.add(self.state.current)

    def oauth_code(self, code: str, openid: str) -> None:
        with self.state.lock:
            self.state.codes[code] = openid

    def media_file(self, media_id: str, content: bytes, content_type: str = "image/jpeg") -> None:
        with self.state.lock:
            self.state.media[media_id] = (content_type, content)

    def unfollow(self, openid: str) -> None:
        with self.state.lock:
            self.state.unfollowed.add(openid)

    # --- what a test reads ------------------------------------------------------------------

    def seen(self, path: str) -> list[Seen]:
        with self.state.lock:
            return [r for r in self.state.requests if r.path == path]

    @property
    def templates(self) -> list[dict[str, Any]]:
        """Template messages accepted (errcode 0), in order."""
        with self.state.lock:
            return list(self.state.delivered)

    # --- WeChat's behaviour -----------------------------------------------------------------

    def answer_garbage(self) -> None:
        self.state.garbage = True

    def stop(self) -> None:
        """Gone: connections to its port are refused from now on."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def route(self, method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, str, bytes]:
        if self.state.garbage:
            return 200, "text/html", b"<html><body>502 Bad Gateway</body></html>"
        if path == "/cgi-bin/token":
            return self._token(params.get("appid"), params.get("secret"), force=False)
        if path == "/cgi-bin/stable_token" and isinstance(body, dict):
            return self._token(body.get("appid"), body.get("secret"), force=bool(body.get("force_refresh")))
        if path == "/sns/oauth2/access_token":
            return self._oauth(params)
        token_error = self._check_token(params.get("access_token"))
        if token_error is not None:
            return _json(200, token_error)
        if path == "/cgi-bin/message/template/send" and isinstance(body, dict):
            return self._template(body)
        if path == "/cgi-bin/media/get":
            if params.get("media_id") not in self.state.media:
                return _json(200, {"errcode": 40007, "errmsg": "invalid media_id"})
            content_type, content = self.state.media[params["media_id"]]
            return 200, content_type, content
        if path == "/cgi-bin/menu/create":
            self.state.menus.append(body)
            return _json(200, OK)
        if path == "/cgi-bin/ticket/getticket":
            return _json(200, {**OK, "ticket": JSAPI_TICKET, "expires_in": 7200})
        return _json(404, {"errcode": 404, "errmsg": "no such endpoint on the peer"})

    def _token(self, appid: str | None, secret: str | None, *, force: bool) -> tuple[int, str, bytes]:
        if appid != APP_ID:
            return _json(200, {"errcode": 40013, "errmsg": "invalid appid"})
        if secret != SECRET:
            return _json(200, {"errcode": 40125, "errmsg": "invalid appsecret"})
        state = self.state
        if force or state.current not in state.valid_tokens:
            if state.current:
                state.valid_tokens.discard(state.current)
            state.current = f"TOKEN-{next(state.counter)}"
            state.valid_tokens.add(state.current)
        return _json(200, {"access_token": state.current, "expires_in": 7200})

    def _check_token(self, token: str | None) -> dict[str, Any] | None:
        if token in self.state.valid_tokens:
            return None
        if token in self.state.expired_tokens:
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}

    def _template(self, body: dict[str, Any]) -> tuple[int, str, bytes]:
        touser = body.get("touser", "")
        if not touser.startswith("o"):
            return _json(200, {"errcode": 40003, "errmsg": "invalid openid"})
        if touser in self.state.unfollowed:
            return _json(200, {"errcode": 43004, "errmsg": "require subscribe"})
        self.state.delivered.append(body)
        return _json(200, {**OK, "msgid": next(self.state.counter)})

    def _oauth(self, params: dict[str, str]) -> tuple[int, str, bytes]:
        if params.get("appid") != APP_ID or params.get("secret") != SECRET:
            return _json(200, {"errcode": 40125, "errmsg": "invalid appsecret"})
        openid = self.state.codes.pop(params.get("code", ""), None)
        if openid is None:
            return _json(200, {"errcode": 40029, "errmsg": "invalid code"})
        return _json(200, {"access_token": "WEB-TOKEN", "expires_in": 7200, "refresh_token": "REFRESH",
                           "openid": openid, "scope": "snsapi_base"})

    def __enter__(self) -> "WechatPeer":
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._thread.is_alive():
            self.stop()
