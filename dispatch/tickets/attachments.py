"""Photos, voice and video on a ticket: sniffed, size-capped, budgeted per ticket, stored under the media directory."""

import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import filetype
from sqlalchemy import Integer, cast, event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from dispatch.kernel.auth import Actor
from dispatch.kernel.errors import NotFound
from dispatch.kernel.settings import Settings
from dispatch.tickets import queries
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


def store(session: Session, *, ticket: Ticket, actor: Actor, upload: BinaryIO, media_dir: Path,
          caps: Caps) -> Attachment:
    """Keep an uploaded file with the ticket; the content type comes from its bytes, not the client.

    Raises:
        UnsupportedMedia: not an image, audio or video.
        TooLarge: over 10 MB for images or 20 MB for audio and video (configurable).
        AttachmentBudgetSpent: the ticket holds its files already, or this one would pass its total size.
    """
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
