"""Redis connections: the pool/live-index client and the rq queues' client."""

from typing import Annotated

from fastapi import Depends, Request
from redis import Redis


def connect(url: str) -> Redis:
    # Short timeouts: a dead Redis must degrade a request, not hang it.
    return Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30)


def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(get_redis)]
