"""GET /api/v1/stream: the live feed as server-sent events, the one async endpoint.

Async because a stream holds its connection for hours: a thread per phone
would exhaust the thread pool, while a coroutine blocked in XREAD costs a
Redis connection and a few kilobytes.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from dispatch.kernel.auth import ActorDep
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, ServiceUnavailable, Unauthorized
from dispatch.kernel.problems import problem_docs
from dispatch.tickets import feed

BLOCK_MS = 15_000  # also the keep-alive period: proxies drop connections silent for ~60 s
RETRY_MS = 3_000  # how long an EventSource waits before reconnecting

router = APIRouter(prefix="/api/v1", tags=["live"])
log = structlog.get_logger()
T = TypeVar("T")


def subscription(actor: ActorDep, session: SessionDep) -> feed.Subscription:
    # A sync dependency: its session is closed before the stream starts, so a
    # long-lived stream holds no database connection.
    return feed.subscription_for(session, actor)


SubscriptionDep = Annotated[feed.Subscription, Depends(subscription)]


@router.get("/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "ticket events as server-sent events"},
                       **problem_docs(Unauthorized, Forbidden, ServiceUnavailable)})
async def stream(request: Request, followed: SubscriptionDep,
                 last_event_id: Annotated[str | None, Header(max_length=4000)] = None) -> StreamingResponse:
    """Server-sent events for the caller's scope: a technician's own offers and tickets, or every ticket
    event of a dispatcher's (clerk's, payroll's, API key's) branches; all branches for an admin.

    Each message is `id:` (the position in every followed stream), `event:` (ticket.created,
    ticket.offered, ticket.accepted, ticket.timed_out, ...) and `data:` (the event as JSON); a
    `: keep-alive` comment comes every 15 s. Reconnecting with `Last-Event-ID` replays what was
    published meanwhile (up to 30 minutes back); without it the stream starts with new events only.
    """
    redis: AsyncRedis = request.app.state.redis_async
    resume = feed.decode_cursor(last_event_id, followed.streams)
    positions = await feed.start_positions(redis, followed, resume)
    return StreamingResponse(_messages(request, redis, followed, positions), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _messages(request: Request, redis: AsyncRedis, followed: feed.Subscription,
                    positions: dict[str, str]) -> AsyncIterator[str]:
    stopping: asyncio.Event = request.app.state.stopping
    # The starting position as an id-only message: a client that reconnects
    # before any event arrived still resumes from here instead of from "now".
    yield f"retry: {RETRY_MS}\nid: {feed.encode_cursor(positions)}\n\n"
    while not stopping.is_set() and not await request.is_disconnected():
        try:
            entries = await _unless_stopping(feed.read(redis, followed, positions, block_ms=BLOCK_MS), stopping)
        except RedisError as exc:
            # End the stream: the client reconnects with its Last-Event-ID and misses nothing.
            log.warning("feed_read_failed", error=f"{type(exc).__name__}: {exc}")
            return
        if entries is None:
            return
        if not entries:
            yield ": keep-alive\n\n"
            continue
        for entry in entries:
            positions[entry.label] = entry.position
            shown = followed.view(entry.label, entry.event)
            if shown is not None:
                data = json.dumps(shown, ensure_ascii=False)
                yield f"id: {feed.encode_cursor(positions)}\nevent: {entry.type}\ndata: {data}\n\n"


async def _unless_stopping(read: Awaitable[T], stopping: asyncio.Event) -> T | None:
    """The read's result, or None as soon as the app shuts down (the blocked XREAD is cancelled)."""
    reading = asyncio.ensure_future(read)
    # Retrieved here so that a read failing after we stopped waiting is not logged as unhandled.
    reading.add_done_callback(lambda task: task.cancelled() or task.exception())
    waiting = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({reading, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also on cancellation (the client went away): never leave an XREAD behind.
        waiting.cancel()
        _cancel_until_done(reading)
    if not reading.done() or reading.cancelled():
        return None  # stopping: the read is being cancelled
    return reading.result()


def _cancel_until_done(task: asyncio.Future[Any]) -> None:
    # One cancel() is not always enough: Python 3.11's wait_for (redis-py sends
    # through it) swallows a cancellation that arrives just as the send
    # completes, and the XREAD would then block on for up to BLOCK_MS.
    if not task.done():
        task.cancel()
        with contextlib.suppress(RuntimeError):  # the loop is already closing
            asyncio.get_running_loop().call_later(0.05, _cancel_until_done, task)
