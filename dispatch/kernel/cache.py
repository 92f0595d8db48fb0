"""Per-process memory of reference data read on every request but changed a few times a day."""

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import ClassVar, Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """Values kept `ttl_s` seconds in this process (grids, ticket types' skills, technicians' names).

    The writer of a change forgets the entry in its own process at once; the
    other processes see the change within the TTL. Thread-safe: the sync
    endpoints run in a thread pool.
    """

    _every: ClassVar[weakref.WeakSet["Remembered[object, object]"]] = weakref.WeakSet()

    def __init__(self, *, ttl_s: float, maxsize: int = 50_000) -> None:
        self._values: TTLCache[K, V] = TTLCache(maxsize=maxsize, ttl=ttl_s)
        self._lock = threading.Lock()
        Remembered._every.add(self)  # type: ignore[arg-type]

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._values.get(key)

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._values[key] = value
        return value

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The remembered value, else `load()`'s (called outside the lock: loads may read the database)."""
        value = self.get(key)
        return self.put(key, load()) if value is None else value

    def forget(self, key: K | None = None) -> None:
        """Drop one entry, or every entry when `key` is None."""
        with self._lock:
            if key is None:
                self._values.clear()
            else:
                self._values.pop(key, None)

    @classmethod
    def forget_everything(cls) -> None:
        """Every memory of this process (tests roll back what they wrote; so must what was remembered)."""
        for memory in list(cls._every):
            memory.forget()
