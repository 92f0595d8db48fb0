"""Keyset pagination: `limit` and an opaque `cursor`, answered as `{items, next_cursor}`."""

import base64
import re
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


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError, or a cursor that is not ASCII at all
        raise InvalidInput("cursor", "not a cursor this server issued") from exc
    kind, _, value = raw.partition(":")
    if kind != "id" or not re.fullmatch("[0-9]{1,10}", value) or int(value) > MAX_ID:
        raise InvalidInput("cursor", "not a cursor this server issued")
    return int(value)


@raises(InvalidInput)
async def page_params(limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      cursor: Annotated[Text | None, Query(max_length=100)] = None) -> PageParams:
    return PageParams(limit=limit, after_id=_decode_cursor(cursor) if cursor else None)


PageDep = Annotated[PageParams, Depends(page_params)]


def page_of(items: list[T], params: PageParams) -> dict[str, object]:
    """Wrap rows fetched with `limit + 1`: the extra row only says another page exists."""
    more = len(items) > params.limit
    items = items[: params.limit]
    last = getattr(items[-1], "id", None) if items and more else None
    return {"items": items, "next_cursor": encode_cursor(last) if last is not None else None}
