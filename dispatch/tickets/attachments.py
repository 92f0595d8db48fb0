"""Photos, voice and video on a ticket: sniffed, size-capped, budgeted per ticket, stored under the media directory."""

import contextlib
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import filetype
from sqlalchemy import Integer, cast, event, func, select, text
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.attributes import set_committed_value

from dispatch.kernel.auth import Actor
from dispatch.kernel.errors import NotFound
from dispatch.kernel.settings import Settings
from dispatch.tickets import idempotency, queries
from dispatch.tickets.errors import AttachmentBudgetSpent, TooLarge, UnsupportedMedia
from dispatch.tickets.models import Attachment, Ticket
from dispatch.tickets.permissions import Viewer

CHUNK = 64 * 1024
# filetype needs at most this many leading bytes to recognise a format.
SNIFF_BYTES = 8192
MB = 1024 * 1024


@dataclass(frozen=True)
class Caps:
    """What one file may weigh, and what one ticket may hold in all."""

    image_bytes: int
    media_bytes: int
    files_per_ticket: int
    bytes_per_ticket: int

    @classmethod
    def of(cls, settings: Settings) -> "Caps":
        return cls(image_bytes=settings.max_image_bytes, media_bytes=settings.max_media_bytes,
                   files_per_ticket=settings.max_attachments_per_ticket,
                   bytes_per_ticket=settings.max_attachment_bytes_per_ticket)


@dataclass(frozen=True)
class Usage:
    files: int
    bytes: int


def _kind_of(head: bytes) -> tuple[str, str, str]:
    guess = filetype.guess(head)
    kind = guess.mime.split("/", 1)[0] if guess else ""
    if guess is None or kind not in {"image", "audio", "video"}:
        raise UnsupportedMedia("file", "not a recognised photo, voice or video file")
    return kind, guess.mime, guess.extension


def _locked_usage(session: Session, ticket: Ticket) -> Usage:
    """What the ticket holds already, with its uploads queued behind this one until it commits.

    A transaction-scoped advisory lock rather than the ticket's row: two uploads
    cannot both count the last free slot, while grabs and transitions, which
    compare-and-set that row, never wait on a file being written.
    """
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext("attachment budget"),
                                                      cast(ticket.id, Integer))))
    files, total = session.execute(select(func.count(), func.coalesce(func.sum(Attachment.size), 0))
                                   .where(Attachment.ticket_id == ticket.id)).one()
    return Usage(files=files, bytes=total)


def _budget_spent(ticket: Ticket, caps: Caps, used: Usage, why: str) -> AttachmentBudgetSpent:
    return AttachmentBudgetSpent(
        f"ticket {ticket.number} may hold {caps.files_per_ticket} files and {caps.bytes_per_ticket / MB:.3g} MB "
        f"in all; it holds {used.files} files and {used.bytes / MB:.3g} MB: {why}",
        max_files=caps.files_per_ticket, max_bytes=caps.bytes_per_ticket, files=used.files, bytes=used.bytes)


def ref_of(attachment: Attachment) -> str:
    """How a ticket's `attachments` names a file it holds: the address its viewers download it from."""
    return f"/api/v1/attachments/{attachment.id}"


# Appended in SQL, each reference once: no reference written meanwhile by another upload is lost, and
# the ticket's version is left alone, so an upload never makes a grab or a completion racing it lose.
_LINK = text("""
UPDATE ticket SET attachment_refs = attachment_refs || (
    SELECT coalesce(jsonb_agg(ref ORDER BY place), '[]'::jsonb)
    FROM jsonb_array_elements(cast(:refs AS jsonb)) WITH ORDINALITY AS given(ref, place)
    WHERE NOT ticket.attachment_refs @> jsonb_build_array(ref))
WHERE id = :ticket_id
RETURNING attachment_refs
""")


def link(session: Session, ticket: Ticket, refs: list[str]) -> None:
    """List files on the ticket (`attachments` of its API view), each once, oldest first."""
    if not refs:
        return
    session.flush()
    listed = session.execute(_LINK, {"refs": json.dumps(refs), "ticket_id": ticket.id}).scalar_one()
    set_committed_value(ticket, "attachment_refs", listed)


def _request_of(key: str | None, ticket: Ticket, upload: BinaryIO) -> idempotency.Request | None:
    """The same key, ticket and bytes are the same upload."""
    if key is None:
        return None
    digest = hashlib.sha256()
    for chunk in iter(lambda: upload.read(CHUNK), b""):
        digest.update(chunk)
    upload.seek(0)
    return idempotency.Request.of(key, "upload", str(ticket.id), digest.hexdigest())


def store(session: Session, *, ticket: Ticket, actor: Actor, upload: BinaryIO, media_dir: Path,
          caps: Caps, idempotency_key: str | None = None) -> Attachment:
    """Keep an uploaded file with the ticket and list it in the ticket's `attachments`; the content type comes
    from its bytes, not the client. The same Idempotency-Key and bytes within 24 h answer with the first file.

    Raises:
        UnsupportedMedia: not an image, audio or video.
        TooLarge: over 10 MB for images or 20 MB for audio and video (configurable).
        AttachmentBudgetSpent: the ticket holds its files already, or this one would pass its total size.
        IdempotencyKeyReused: the key came before with another request.
    """
    request = _request_of(idempotency_key, ticket, upload)
    key_row = None
    if request is not None:
        key_row = idempotency.claim(session, actor, request, ticket_id=ticket.id)
        if key_row is None:
            return session.get_one(Attachment, idempotency.earlier(session, actor, request).attachment_id)
    head = upload.read(SNIFF_BYTES)
    kind, mime, extension = _kind_of(head)
    limit = caps.image_bytes if kind == "image" else caps.media_bytes
    used = _locked_usage(session, ticket)
    if used.files >= caps.files_per_ticket:
        raise _budget_spent(ticket, caps, used, "no room for another file")
    room = caps.bytes_per_ticket - used.bytes
    storage_key = f"{ticket.id}/{uuid.uuid4().hex}.{extension}"
    target = media_dir / storage_key
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    digest, size = hashlib.sha256(), 0
    try:
        with partial.open("wb") as out:
            chunk = head
            while chunk:
                size += len(chunk)
                if size > limit:
                    raise TooLarge("file", f"{kind} files may be at most {limit / MB:.3g} MB")
                if size > room:
                    raise _budget_spent(ticket, caps, used, "this file would pass the total size")
                digest.update(chunk)
                out.write(chunk)
                chunk = upload.read(CHUNK)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
        _remove_empty(target.parent)
    _remove_on_rollback(session, target)
    attachment = Attachment(ticket_id=ticket.id, kind=kind, content_type=mime, size=size,
                            sha256=digest.hexdigest(), storage_key=storage_key, uploaded_by=actor.label)
    session.add(attachment)
    session.flush()
    link(session, ticket, [ref_of(attachment)])
    if key_row is not None:
        key_row.attachment_id = attachment.id
        session.flush()
    return attachment


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: other attachments of the ticket live there
        folder.rmdir()


def _remove_on_rollback(session: Session, path: Path) -> None:
    """The row and the file live or die together: a rolled-back upload leaves no orphan file."""
    written_in = session.get_nested_transaction() or session.get_transaction()

    def discard(session: Session, previous_transaction: SessionTransaction) -> None:
        undone: SessionTransaction | None = written_in
        while undone is not None and undone is not previous_transaction:
            undone = undone.parent
        if undone is not None:
            path.unlink(missing_ok=True)
            _remove_empty(path.parent)
            event.remove(session, "after_soft_rollback", discard)

    event.listen(session, "after_soft_rollback", discard)


def path_of(attachment: Attachment, media_dir: Path) -> Path:
    return media_dir / attachment.storage_key


def list_for(session: Session, ticket: Ticket) -> list[Attachment]:
    return list(session.scalars(select(Attachment).where(Attachment.ticket_id == ticket.id).order_by(Attachment.id)))


def get_visible(session: Session, attachment_id: int, *, viewer: Viewer) -> Attachment:
    """Raises: NotFound (also when its ticket is outside the caller's scope)."""
    attachment = session.scalars(select(Attachment).join(Ticket, Ticket.id == Attachment.ticket_id).where(
        Attachment.id == attachment_id, queries.visible_to(viewer))).first()
    if attachment is None:
        raise NotFound(f"attachment {attachment_id} does not exist")
    return attachment
