"""Lua scripts kept beside the code that runs them, loaded once and called by SHA."""

from importlib.resources import files
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import AsyncScript, Script


class ScriptBook:
    """The scripts of one package's `lua/` folder.

    redis-py's Script objects call EVALSHA and load the source again on
    NOSCRIPT (after a Redis restart or failover), so a script's source is read
    from disk once per process.
    """

    def __init__(self, package: str, *, prelude: str | None = None) -> None:
        self._package = package
        # Redis has no includes: shared functions are prepended to every script.
        self._prelude = prelude
        self._sync: dict[str, Script] = {}
        self._async: dict[str, AsyncScript] = {}

    def _source(self, name: str) -> str:
        folder = files(self._package).joinpath("lua")
        prelude = folder.joinpath(f"{self._prelude}.lua").read_text() if self._prelude else ""
        return prelude + folder.joinpath(f"{name}.lua").read_text()

    def run(self, redis: Redis, name: str, keys: list[str], args: list[str | int | float]) -> Any:
        """The script's reply; when `redis` is a pipeline, the reply comes with its execute()."""
        if name not in self._sync:
            self._sync[name] = redis.register_script(self._source(name))
        return self._sync[name](keys=keys, args=args, client=redis)

    async def run_async(self, redis: AsyncRedis, name: str, keys: list[str],
                        args: list[str | int | float]) -> list[object]:
        if name not in self._async:
            self._async[name] = redis.register_script(self._source(name))
        result: list[object] = await self._async[name](keys=keys, args=args, client=redis)
        return result
