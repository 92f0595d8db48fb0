"""rq queues on their own Redis URL (rq does not run on Redis Cluster; the pool and live index will)."""

from functools import lru_cache

from redis import Redis
from rq import Queue

from dispatch.kernel.settings import get_settings


@lru_cache
def queue(name: str = "default") -> Queue:
    """The process's queue `name`, with short timeouts: a dead Redis must not hang a request."""
    connection = Redis.from_url(get_settings().queue_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return Queue(name, connection=connection)
