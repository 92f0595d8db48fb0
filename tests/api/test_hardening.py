"""At the door: security headers on every answer, the pages' Content-Security-Policy, and the body cap."""

import base64
import contextlib
import hashlib
import json
import re
import selectors
import socket
import time

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from dispatch.app import create_app
from dispatch.kernel.settings import Settings
from tests.api.test_attachments import new_ticket, png, upload
from tests.conftest import in_test_transaction

PAGES = ("/console", "/m/tech", "/m/report")
XL_POINT = {"lat": 43.935, "lng": 116.08}


def policy(reply) -> dict[str, list[str]]:
    directives = [part.split() for part in reply.headers["content-security-policy"].split(";") if part.strip()]
    return {name: values for name, *values in directives}


@pytest.mark.parametrize("path", [*PAGES, "/api/v1/me", "/healthz", "/static/common/api.js", "/no/such/page",
                                  "/openapi.json", "/docs"])
def test_every_answer_forbids_framing_sniffing_and_cross_site_referrers(client: TestClient, path: str) -> None:
    reply = client.get(path)
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "same-origin"
    assert policy(reply)["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_run_only_their_own_scripts_with_no_inline_script(client: TestClient, path: str) -> None:
    reply = client.get(path)
    csp = policy(reply)
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'none'"]
    assert "'unsafe-inline'" not in csp["style-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert csp["connect-src"] == ["'self'"]
    # Every script of the page is a file of its own: the policy would refuse an inline one anyway.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", reply.text) == []
    assert not re.search(r"\son[a-z]+=", reply.text)  # no inline event handlers either


def test_the_tile_servers_origin_alone_is_allowed_for_images(settings: Settings, redis: Redis) -> None:
    app = create_app(settings.model_copy(update={"map_tile_url": "https://tiles.example.net:8443/{z}/{x}/{y}.png"}))
    with TestClient(app) as client:
        assert policy(client.get("/console"))["img-src"] == ["'self'", "data:",
                                                               "https://tiles.example.net:8443"]


def test_api_answers_allow_nothing_to_run(client: TestClient) -> None:
    assert policy(client.get("/api/v1/tickets"))["default-src"] == ["'none'"]


def test_the_api_docs_inline_script_is_allowed_by_its_hash_alone(client: TestClient) -> None:
    reply = client.get("/docs")
    assert reply.status_code == 200
    scripts = policy(reply)["script-src"]
    assert "'unsafe-inline'" not in scripts
    inline = re.findall(r"<script>(.*?)</script>", reply.text, flags=re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in scripts


# --- the body cap -----------------------------------------------------------------------------------

def assert_too_large(reply) -> None:
    assert reply.status_code == 413, reply.text[:300]
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "too_large"
    assert reply.headers["x-request-id"] and reply.headers["x-content-type-options"] == "nosniff"


def report(description: str) -> bytes:
    return json.dumps({"type_code": "broadband_fault", "description": description, "location": XL_POINT,
                       "contact": {"name": "张三", "phone": "13900000991"}}).encode()


def test_a_10_mb_json_body_is_413(client: TestClient, as_user) -> None:
    headers = {**as_user("clerk.xl"), "content-type": "application/json"}
    assert_too_large(client.post("/api/v1/tickets", content=report("断网" * 5_000_000), headers=headers))


def test_a_chunked_body_without_length_is_cut_off_at_the_cap(client: TestClient, as_user) -> None:
    body = report("断网" * 400_000)  # about 2.4 MB
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: chunked
    headers = {**as_user("clerk.xl"), "content-type": "application/json"}
    assert_too_large(client.post("/api/v1/tickets", content=chunks, headers=headers))


def test_a_body_under_the_cap_goes_through(client: TestClient, as_user) -> None:
    headers = {**as_user("clerk.xl"), "content-type": "application/json"}
    reply = client.post("/api/v1/tickets", content=report("光猫红灯"), headers=headers)
    assert reply.status_code == 201, reply.text


def test_the_cap_is_a_setting(settings: Settings, db, redis: Redis, as_user) -> None:
    app = in_test_transaction(create_app(settings.model_copy(update={"max_body_bytes": 2000})), db)
    with TestClient(app) as client:
        headers = {**as_user("clerk.xl"), "content-type": "application/json"}
        assert_too_large(client.post("/api/v1/tickets", content=report("断" * 1000), headers=headers))
        assert client.post("/api/v1/tickets", content=report("断" * 100), headers=headers).status_code == 201


def test_an_attachment_keeps_its_own_larger_cap(client: TestClient, as_user) -> None:
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(client, headers)
    photo = png(700, 700)  # about 1.5 MB: over the JSON cap, under the photos'
    assert len(photo) > 1024 * 1024
    reply = upload(client, ticket["id"], headers, photo, "photo.png", "image/png")
    assert reply.status_code == 201, reply.text


def test_an_endless_chunked_body_is_answered_413_without_being_read_to_its_end(live_server: str) -> None:
    """A server that read the whole body first would never answer: this body never ends."""
    host, port = live_server.removeprefix("http://").split(":")
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    sent, answer = 0, b""
    with socket.create_connection((host, int(port)), timeout=10) as conn, selectors.DefaultSelector() as ready:
        conn.sendall(b"POST /api/v1/tickets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        conn.setblocking(False)
        ready.register(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
        deadline = time.monotonic() + 20
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            for _, events in ready.select(timeout=1):
                if events & selectors.EVENT_READ:
                    answer += conn.recv(65536) or b"(closed)"
                elif sent >= 64 * 1024 * 1024:  # the answer must have come long before: stop sending
                    ready.modify(conn, selectors.EVENT_READ)
                else:
                    with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                        sent += conn.send(chunk)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 8 * 1024 * 1024, sent
