"""A webhook receiver on loopback, as another system would write one from the README: it checks the
signature over the raw body and the replay window, answers 500 to the first `fail_first` requests, and
records what it accepted in the order it accepted it."""

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLAY_WINDOW_S = 300


def verified(secret: str, header: str, body: bytes, *, now: float) -> bool:
    """The README's recipe: t and v1 from the header, HMAC-SHA256 of "t.body", constant-time compare,
    t within the replay window."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in fields or "v1" not in fields or not fields["t"].isdigit():
        return False
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(now - int(fields["t"])) <= REPLAY_WINDOW_S


@dataclass
class Receiver:
    secret: str = "whsec_test_receiver_secret_0123456789"
    fail_first: int = 0
    always_fail: bool = False
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0  # answered 500 on purpose
    forged: list[str] = field(default_factory=list)  # requests whose signature did not verify
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self.headers.append(headers)
            if not verified(self.secret, headers.get("x-fieldpool-signature", ""), body, now=time.time()):
                self.forged.append(body.decode(errors="replace"))
                return 400
            if self.always_fail or self.refused < self.fail_first:
                self.refused += 1
                return 500
            self.accepted.append(json.loads(body))
            return 200

    def event_ids(self) -> list[str]:
        with self._lock:
            return [event["id"] for event in self.accepted]

    def types_by_ticket(self) -> dict[int, list[str]]:
        with self._lock:
            seen: dict[int, list[str]] = {}
            for event in self.accepted:
                seen.setdefault(event["data"]["ticket_id"], []).append(event["type"])
            return seen


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind nginx would

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/fieldpool/events"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
