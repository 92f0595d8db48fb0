"""Keyset pagination: `limit` and an opaque `cursor`, answered as `{items, next_cursor}`."""

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from dispatch.kernel.errors import InvalidInput
from dispatch.kernel.inputs import MAX_ID, Text
from dispatch.kernel.problems import raises

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class CountedPage(Page[T], Generic[T]):
    total: int | None = Field(default=None, description="How many match the filters in all pages; only when "
                                                        "asked for (`with_total=true`), as counting costs a query.")


class PageParams(BaseModel):
    limit: int
    after_id: int | None
    # A list sorted on a small whole number first (a rank, such as a priority's level), then id: the last
    # row's rank. None for lists on id alone.
    after_rank: int | None = None
    # A list sorted on rank, then a moment (such as a deadline), then id: the last row's moment.
    after_at: datetime | None = None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def encode_cursor(last_id: int, rank: int | None = None, at: datetime | None = None) -> str:
    if at is not None:
        micros = (at - EPOCH) // MICROSECOND  # exact: a float timestamp would drift a microsecond and skip a row
        raw = f"at:{rank or 0}:{micros}:{last_id}"
    else:
        raw = f"id:{last_id}" if rank is None else f"rank:{rank}:{last_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


_CURSOR = re.compile("id:(?P<id>[0-9]{1,10})|rank:(?P<rank>[0-9]{1,2}):(?P<rid>[0-9]{1,10})"
                     "|at:(?P<arank>[0-9]{1,2}):(?P<at>-?[0-9]{1,17}):(?P<aid>[0-9]{1,10})")


def _decode_cursor(cursor: str) -> PageParams:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError, or a cursor that is not ASCII at all
        raise InvalidInput("cursor", "not a cursor this server issued") from exc
    found = _CURSOR.fullmatch(raw)
    if found is None or int(found["id"] or found["rid"] or found["aid"]) > MAX_ID:
        raise InvalidInput("cursor", "not a cursor this server issued")
    after_id = int(found["id"] or found["rid"] or found["aid"])
    try:
        at = EPOCH + int(found["at"]) * MICROSECOND if found["at"] else None
    except (OverflowError, OSError, ValueError) as exc:  # a moment past what a datetime holds
        raise InvalidInput("cursor", "not a cursor this server issued") from exc
    rank = found["rank"] or found["arank"]
    return PageParams(limit=1, after_id=after_id, after_rank=int(rank) if rank else None, after_at=at)


@raises(InvalidInput)
async def page_params(limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      cursor: Annotated[Text | None, Query(max_length=100)] = None) -> PageParams:
    if not cursor:
        return PageParams(limit=limit, after_id=None)
    return _decode_cursor(cursor).model_copy(update={"limit": limit})


PageDep = Annotated[PageParams, Depends(page_params)]


def page_of(items: list[T], params: PageParams, rank: Callable[[T], int] | None = None,
            at: Callable[[T], datetime] | None = None) -> dict[str, object]:
    """Wrap rows fetched with `limit + 1`: the extra row only says another page exists. `rank` gives a row's
    rank in a list sorted on rank, then id; `at` its moment in a list sorted on (rank,) moment, then id."""
    more = len(items) > params.limit
    items = items[: params.limit]
    last = getattr(items[-1], "id", None) if items and more else None
    cursor = None if last is None else encode_cursor(last, rank(items[-1]) if rank is not None else None,
                                                     at(items[-1]) if at is not None else None)
    return {"items": items, "next_cursor": cursor}
