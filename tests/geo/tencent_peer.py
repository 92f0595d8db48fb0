"""A loopback stand-in for Tencent Location Service's WebService API: records requests, answers canned JSON."""

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

REVERSE_PATH = "/ws/geocoder/v1/"
SUGGESTION_PATH = "/ws/place/v1/suggestion/"


@dataclass(frozen=True)
class Seen:
    """One request the peer received: its path and its query parameters (first value each)."""

    path: str
    params: dict[str, str]


@dataclass
class _State:
    replies: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    # Cleared: requests hang without an answer until it is set (a peer too slow for the timeout).
    answering: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        state = self.server.state
        state.requests.append(Seen(url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
        if not state.answering.wait(timeout=10):
            return
        status, body = state.replies.get(url.path, (404, b'{"status": 404, "message": "no such path"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout test) is expected, not a failure


class TencentPeer:
    """`with TencentPeer() as peer:` serves on 127.0.0.1, a port of its own, in a thread."""

    def __init__(self) -> None:
        self.state = _State()
        self.state.answering.set()
        self._server = _Server(self.state)
        # A short poll interval: shutdown() waits up to one interval (0.5 s by default) per test.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[Seen]:
        return self.state.requests

    def answer(self, path: str, body: dict[str, Any] | str, *, status: int = 200) -> None:
        """Reply to every GET of `path` with this JSON object (or raw text) and HTTP status."""
        raw = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        self.state.replies[path] = (status, raw.encode("utf-8"))

    def stall(self) -> None:
        """Hold every request without an answer until the peer stops."""
        self.state.answering.clear()

    def __enter__(self) -> "TencentPeer":
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.state.answering.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL nobody listens on: the peer being down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def reverse_reply(address: str, recommend: str | None, *, lat: float, lng: float) -> dict[str, Any]:
    """A successful reverse-geocoding answer, shaped as Tencent documents it (GCJ-02 location)."""
    result: dict[str, Any] = {"location": {"lat": lat, "lng": lng}, "address": address,
                              "address_component": {"nation": "中国", "province": "内蒙古自治区",
                                                    "city": "锡林郭勒盟", "district": "锡林浩特市"}}
    if recommend is not None:
        result["formatted_addresses"] = {"recommend": recommend, "rough": recommend}
    return {"status": 0, "message": "query ok", "request_id": "peer-1", "result": result}


def suggestion_reply(*items: tuple[str, str, float, float]) -> dict[str, Any]:
    """A successful suggestion answer from (title, address, gcj_lat, gcj_lng) items."""
    data = [{"id": f"peer-{i}", "title": title, "address": address, "category": "房产小区:住宅区", "type": 0,
             "location": {"lat": lat, "lng": lng}, "adcode": 152502, "province": "内蒙古自治区",
             "city": "锡林郭勒盟", "district": "锡林浩特市"}
            for i, (title, address, lat, lng) in enumerate(items)]
    return {"status": 0, "message": "query ok", "count": len(data), "request_id": "peer-2", "data": data}


ERROR_REPLY = {"status": 311, "message": "key格式错误"}
