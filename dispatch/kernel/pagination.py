"""Keyset pagination: `limit` and an opaque `cursor`, answered as `{items, next_cursor}`."""

import base64
import re
from collections.abc import Callable
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from dispatch.kernel.errors import InvalidInput
from dispatch.kernel.inputs import MAX_ID, Text
from dispatch.kernel.problems import raises

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    after_id: int | None
    # A list sorted on a small whole number first (a rank, such as a priority's level), then id: the last
    # row's rank. None for lists on id alone.
    after_rank: int | None = None


def encode_cursor(last_id: int, rank: int | None = None) -> str:
    raw = f"id:{last_id}" if rank is None else f"rank:{rank}:{last_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int | None, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError, or a cursor that is not ASCII at all
        raise InvalidInput("cursor", "not a cursor this server issued") from exc
    found = re.fullmatch("id:([0-9]{1,10})|rank:([0-9]{1,2}):([0-9]{1,10})", raw)
    if found is None or int(found[1] or found[3]) > MAX_ID:
        raise InvalidInput("cursor", "not a cursor this server issued")
    return (None, int(found[1])) if found[1] else (int(found[2]), int(found[3]))


@raises(InvalidInput)
async def page_params(limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      cursor: Annotated[Text | None, Query(max_length=100)] = None) -> PageParams:
    rank, after_id = _decode_cursor(cursor) if cursor else (None, None)
    return PageParams(limit=limit, after_id=after_id, after_rank=rank)


PageDep = Annotated[PageParams, Depends(page_params)]


def page_of(items: list[T], params: PageParams, rank: Callable[[T], int] | None = None) -> dict[str, object]:
    """Wrap rows fetched with `limit + 1`: the extra row only says another page exists. `rank` gives a row's
    rank in a list sorted on rank, then id."""
    more = len(items) > params.limit
    items = items[: params.limit]
    last = getattr(items[-1], "id", None) if items and more else None
    cursor = None if last is None else encode_cursor(last, rank(items[-1]) if rank is not None else None)
    return {"items": items, "next_cursor": cursor}
