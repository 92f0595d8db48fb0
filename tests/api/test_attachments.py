"""Photos, voice notes and videos on a ticket: sniffed from their bytes, capped, and scoped like the ticket."""

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.app import create_app
from dispatch.kernel.db import get_session
from dispatch.kernel.settings import Settings
from dispatch.tickets.models import Attachment

XL_POINT = {"lat": 43.935, "lng": 116.08}


def png(width: int = 1, height: int = 1) -> bytes:
    """A valid RGB PNG, stored uncompressed so its size grows with its area."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\x00" + bytes((x * 7 + y * 13) % 256 for x in range(width * 3)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 0))
            + chunk(b"IEND", b""))


def wav(samples: int = 800) -> bytes:
    """Mono 8 kHz 16-bit PCM silence."""
    data = b"\x00\x00" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


def mp4() -> bytes:
    """An ISO-BMFF file: an `ftyp` box (isom) and an empty `mdat` box."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 512) + b"isomiso2mp41"
    return struct.pack(">I", 4 + len(ftyp)) + ftyp + struct.pack(">I", 8) + b"mdat"


def new_ticket(client: TestClient, headers: dict[str, str]) -> dict:
    body = {"type_code": "broadband_fault", "description": "光猫灯不亮", "location": XL_POINT,
            "contact": {"name": "张三", "phone": "13900000801"}}
    reply = client.post("/api/v1/tickets", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def upload(client: TestClient, ticket_id: int, headers: dict[str, str], content: bytes,
           filename: str = "upload.bin", content_type: str = "application/octet-stream"):
    return client.post(f"/api/v1/tickets/{ticket_id}/attachments", files={"file": (filename, content, content_type)},
                       headers=headers)


def attachment_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Attachment)) or 0


def files_under(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


@pytest.mark.parametrize(("content", "kind", "content_type"), [
    (png(), "image", "image/png"),
    (wav(), "audio", "audio/x-wav"),
    (mp4(), "video", "video/mp4"),
], ids=["png", "wav", "mp4"])
def test_upload_is_typed_by_its_bytes(client: TestClient, as_user, content: bytes, kind: str,
                                      content_type: str) -> None:
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(client, headers)
    reply = upload(client, ticket["id"], headers, content)
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert (body["kind"], body["content_type"], body["size"]) == (kind, content_type, len(content))
    assert body["ticket_id"] == ticket["id"]


def test_client_declared_content_type_is_not_trusted(client: TestClient, as_user) -> None:
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(client, headers)
    reply = upload(client, ticket["id"], headers, png(), filename="notes.txt", content_type="text/plain")
    assert reply.status_code == 201, reply.text
    assert (reply.json()["kind"], reply.json()["content_type"]) == ("image", "image/png")


def test_text_file_is_415(client: TestClient, as_user, db: Session) -> None:
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(client, headers)
    before = attachment_count(db)
    reply = upload(client, ticket["id"], headers, "就是一段文字,不是照片。\n".encode() * 20, filename="photo.png",
                   content_type="image/png")
    assert reply.status_code == 415
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "unsupported_media_type"
    assert attachment_count(db) == before


@pytest.fixture
def small_caps(settings: Settings, db: Session, redis: Redis, tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """An app whose photo cap is 1000 bytes, with a media directory of its own."""
    media = tmp_path / "media"
    app = create_app(settings.model_copy(update={"max_image_bytes": 1000, "media_dir": media}))

    def test_session() -> Iterator[Session]:
        with db.begin_nested():
            yield db

    app.dependency_overrides[get_session] = test_session
    with TestClient(app, raise_server_exceptions=False) as small:
        yield small, media


def test_image_over_the_cap_is_413_and_leaves_nothing(small_caps, as_user, db: Session) -> None:
    small, media = small_caps
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(small, headers)
    big = png(20, 20)
    assert len(big) > 1000
    before = attachment_count(db)
    reply = upload(small, ticket["id"], headers, big)
    assert reply.status_code == 413
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "too_large"
    assert attachment_count(db) == before
    assert files_under(media) == []
    # Below the cap the same app accepts a photo, and it lands in its media directory.
    small_one = upload(small, ticket["id"], headers, png())
    assert small_one.status_code == 201, small_one.text
    assert len(files_under(media)) == 1


def test_allowed_user_downloads_the_same_bytes(client: TestClient, as_user) -> None:
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(client, headers)
    content = png(3, 2)
    attachment = upload(client, ticket["id"], headers, content).json()
    for username in ("dispatcher.xl", "clerk.xl", "admin", "tech01"):
        reply = client.get(f"/api/v1/attachments/{attachment['id']}", headers=as_user(username))
        assert reply.status_code == 200, (username, reply.text)
        assert reply.content == content
        assert reply.headers["content-type"] == "image/png"


def test_attachment_of_another_branchs_ticket_is_404(client: TestClient, as_user) -> None:
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(client, headers)
    attachment = upload(client, ticket["id"], headers, png()).json()
    for username in ("dispatcher.eh", "tech33"):
        reply = client.get(f"/api/v1/attachments/{attachment['id']}", headers=as_user(username))
        assert reply.status_code == 404
        assert reply.headers["content-type"].startswith("application/problem+json")
    assert client.get("/api/v1/attachments/999999999", headers=headers).status_code == 404


def test_download_needs_credentials(client: TestClient, as_user) -> None:
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(client, headers)
    attachment = upload(client, ticket["id"], headers, png()).json()
    assert client.get(f"/api/v1/attachments/{attachment['id']}").status_code == 401
