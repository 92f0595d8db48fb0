"""Redis connections: the pool/live-index client and the rq queues' client."""

from typing import Annotated

from fastapi import Depends, Request
from redis import Redis
from redis.asyncio import Redis as AsyncRedis


def connect(url: str) -> Redis:
    # Short timeouts: a dead Redis must degrade a request, not hang it.
    return Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30)


def connect_async(url: str, *, max_connections: int = 2000) -> AsyncRedis:
    """The asyncio client for long blocking reads (the SSE feed's XREAD BLOCK)."""
    # The socket timeout must outlast the longest BLOCK (15 s); connecting stays short.
    # Every open SSE stream holds a connection while it blocks: redis-py's default
    # pool of 100 would turn the 101st phone away.
    return AsyncRedis.from_url(url, socket_timeout=30.0, socket_connect_timeout=2.0, health_check_interval=30,
                               max_connections=max_connections)


async def get_redis(request: Request) -> Redis:
    # async: a sync dependency costs every request a hop to a worker thread.
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(get_redis)]


def as_text(value: object) -> str:
    """A Redis reply item as text (clients without decode_responses return bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
