"""Photos, voice and video on a ticket: sniffed, size-capped, stored under the media directory."""

import contextlib
import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO

import filetype
from sqlalchemy import event, select
from sqlalchemy.orm import Session, SessionTransaction

from dispatch.kernel.auth import Actor
from dispatch.kernel.errors import NotFound
from dispatch.tickets import queries
from dispatch.tickets.errors import TooLarge, UnsupportedMedia
from dispatch.tickets.models import Attachment, Ticket

CHUNK = 64 * 1024
# filetype needs at most this many leading bytes to recognise a format.
SNIFF_BYTES = 8192


def _kind_of(head: bytes) -> tuple[str, str, str]:
    guess = filetype.guess(head)
    kind = guess.mime.split("/", 1)[0] if guess else ""
    if guess is None or kind not in {"image", "audio", "video"}:
        raise UnsupportedMedia("file", "not a recognised photo, voice or video file")
    return kind, guess.mime, guess.extension


def store(session: Session, *, ticket: Ticket, actor: Actor, upload: BinaryIO, media_dir: Path,
          max_image_bytes: int, max_media_bytes: int) -> Attachment:
    """Keep an uploaded file with the ticket; the content type comes from its bytes, not the client.

    Raises:
        UnsupportedMedia: not an image, audio or video.
        TooLarge: over 10 MB for images or 20 MB for audio and video (configurable).
    """
    head = upload.read(SNIFF_BYTES)
    kind, mime, extension = _kind_of(head)
    limit = max_image_bytes if kind == "image" else max_media_bytes
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
                    raise TooLarge("file", f"{kind} files may be at most {limit / (1024 * 1024):.3g} MB")
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


def get_visible(session: Session, attachment_id: int, *, actor: Actor) -> Attachment:
    """Raises: NotFound (also when its ticket is outside the caller's scope)."""
    attachment = session.scalars(select(Attachment).join(Ticket, Ticket.id == Attachment.ticket_id).where(
        Attachment.id == attachment_id, queries.visible_to(actor))).first()
    if attachment is None:
        raise NotFound(f"attachment {attachment_id} does not exist")
    return attachment
