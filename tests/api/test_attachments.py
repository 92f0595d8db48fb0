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
from dispatch.kernel.settings import Settings
from dispatch.tickets.models import Attachment
from tests.conftest import in_test_transaction, on_duty, subscriber_headers

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


def new_ticket(client: TestClient, headers: dict[str, str], phone: str = "13900000801") -> dict:
    body = {"type_code": "broadband_fault", "description": "光猫灯不亮", "location": XL_POINT,
            "contact": {"name": "张三", "phone": phone}}
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
    """An app whose photo cap is 1000 bytes and whose tickets hold 3 files and 2000 bytes, with a media
    directory of its own."""
    media = tmp_path / "media"
    app = create_app(settings.model_copy(update={"max_image_bytes": 1000, "max_attachments_per_ticket": 3,
                                                 "max_attachment_bytes_per_ticket": 2000, "media_dir": media}))

    in_test_transaction(app, db)
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


# --- the ticket's budget -------------------------------------------------------------------

def test_a_ticket_holds_so_many_files_and_the_next_is_409_with_the_budget(small_caps, as_user, db: Session) -> None:
    small, media = small_caps
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(small, headers)
    for _ in range(3):
        assert upload(small, ticket["id"], headers, png()).status_code == 201

    reply = upload(small, ticket["id"], headers, png())

    assert reply.status_code == 409
    assert reply.headers["content-type"].startswith("application/problem+json")
    problem = reply.json()
    assert problem["code"] == "attachment_budget_exceeded"
    assert (problem["max_files"], problem["max_bytes"], problem["files"]) == (3, 2000, 3)
    assert "3 files" in problem["detail"] and "no room for another file" in problem["detail"]
    assert attachment_count(db) == 3
    assert len(files_under(media)) == 3


def test_a_file_that_would_pass_the_tickets_total_size_is_409_and_leaves_nothing(small_caps, as_user,
                                                                                 db: Session) -> None:
    small, media = small_caps
    headers = as_user("dispatcher.xl")
    ticket = new_ticket(small, headers)
    photo = png(15, 15)
    assert 700 < len(photo) < 1000  # under the photo cap; three pass the ticket's 2000 bytes
    for _ in range(2):
        assert upload(small, ticket["id"], headers, photo).status_code == 201

    reply = upload(small, ticket["id"], headers, photo)

    assert reply.status_code == 409
    problem = reply.json()
    assert problem["code"] == "attachment_budget_exceeded"
    assert (problem["files"], problem["bytes"]) == (2, 2 * len(photo))
    assert "total size" in problem["detail"]
    assert attachment_count(db) == 2
    assert len(files_under(media)) == 2
    # The budget is the ticket's: another ticket takes the same photo.
    assert upload(small, new_ticket(small, as_user("clerk.xl"), phone="13900000802")["id"], headers,
                  photo).status_code == 201


# --- who may upload --------------------------------------------------------------------------

@pytest.mark.parametrize("username", ["dispatcher.xl", "clerk.xl", "admin"])
def test_staff_who_act_on_tickets_upload(client: TestClient, as_user, username: str) -> None:
    ticket = new_ticket(client, as_user("dispatcher.xl"))
    assert upload(client, ticket["id"], as_user(username), png()).status_code == 201


def test_the_reporting_subscriber_uploads_and_another_subscriber_finds_no_ticket(
        client: TestClient, as_user, db: Session, settings: Settings) -> None:
    reporter = subscriber_headers(db, settings, phone="13900000801", name="张三")
    ticket = new_ticket(client, reporter)
    assert upload(client, ticket["id"], reporter, png()).status_code == 201
    stranger = subscriber_headers(db, settings, phone="13900000899", name="路人")
    assert upload(client, ticket["id"], stranger, png()).status_code == 404


def test_payroll_and_a_technician_who_does_not_hold_it_are_refused_and_nothing_is_kept(
        client: TestClient, as_user, db: Session, settings: Settings) -> None:
    ticket = new_ticket(client, as_user("dispatcher.xl"))
    before, files_before = attachment_count(db), files_under(settings.media_dir)
    for username, code in (("payroll", "forbidden"), ("manager.xl", "forbidden"), ("tech02", "not_your_ticket")):
        reply = upload(client, ticket["id"], as_user(username), png())
        assert reply.status_code == 403, (username, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert reply.json()["code"] == code
    assert attachment_count(db) == before
    assert files_under(settings.media_dir) == files_before


def test_the_holder_uploads_while_working_and_after_completing_others_find_no_ticket(
        client: TestClient, as_user) -> None:
    ticket = new_ticket(client, as_user("dispatcher.xl"))
    holder = on_duty(client, as_user("tech01"))
    assert client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=holder).status_code == 200
    assert upload(client, ticket["id"], holder, png()).status_code == 201
    done = client.post(f"/api/v1/tickets/{ticket['id']}/complete", json={"note": "修好了"}, headers=holder)
    assert done.status_code == 200, done.text

    assert upload(client, ticket["id"], holder, png(2, 2)).status_code == 201  # completion photos
    assert upload(client, ticket["id"], as_user("tech02"), png()).status_code == 404
