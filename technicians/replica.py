"""Each process's copy of the branches' open sets, kept up to date by a follower thread.

The open sets in Redis stay the truth (lua/offerable.lua keeps them); every change to them is also
appended to the branch's change log, a stream. A thread per process follows the logs of the branches
it holds copies of with a blocking read, so a change made anywhere reaches every copy in about a
round trip, and a search runs on the copy without asking Redis anything. A search asks first (one
round trip) only when the copy may be behind what it must see: this process changed the branch since
the copy last caught up (so its own writes are always seen), the follower has not answered lately
(Redis unreachable, the thread gone), or the log began anew (Redis flushed or restarted) or was
trimmed past the copy. A copy that fell too far behind reloads the set in steps and replays the log
from before the first step.
"""

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from math import cos, radians, sin
from typing import TypeVar

import numpy as np
from redis import Redis
from redis.exceptions import RedisError

from geo.hexindex import HexIndex
from technicians import live

ANY_SKILL = "*"
Found = TypeVar("Found")
# Changes replayed at most before a reload is the cheaper way (each costs about what loading one
# member does); a small set reloads in a few steps anyway.
MOST_REPLAYED = 2_000
SNAPSHOT_STEP = 2_000
RELOAD_TRIES = 5
# The follower's blocking read returns at least this often; a copy it has not confirmed for longer
# than CONFIRMED_FOR_S (Redis unreachable, the thread gone) is caught up by the search itself.
FOLLOW_BLOCK_MS = 500
CONFIRMED_FOR_S = 2.0


class Codes:
    """Small numbers for the skills and scopes a copy holds, which packed cells carry instead of text:
    a bit per skill, an index per grab scope."""

    def __init__(self) -> None:
        self._bits: dict[str, int] = {}
        self._scopes: dict[str, int] = {}
        self._covering: dict[str, np.ndarray] = {}

    def bits_of(self, skills: frozenset[str]) -> int:
        for skill in skills:
            if skill not in self._bits:
                if len(self._bits) == 52:  # the search packs them as bits of a float64
                    raise ValueError("a branch's technicians may have at most 52 different skills")
                self._bits[skill] = 1 << len(self._bits)
        return sum(self._bits[skill] for skill in skills)

    def needed(self, skills: frozenset[str]) -> int:
        """The bits of these skills, each one someone here has."""
        return sum(self._bits[skill] for skill in skills)

    def scope_of(self, scope: str) -> int:
        return self._scopes.setdefault(scope, len(self._scopes))

    def covering(self, ticket_path: str) -> np.ndarray:
        """By scope index: whether a technician of that scope may take a ticket in this grid."""
        covering = self._covering.get(ticket_path)
        if covering is None or len(covering) < len(self._scopes):
            covering = np.array([ticket_path.startswith(scope) for scope in self._scopes], dtype=bool)
            self._covering[ticket_path] = covering
        return covering


class Open:
    """One technician who could be offered a ticket, as the open set holds them."""

    __slots__ = ("active", "hours", "ident", "lat", "lng", "scope_code", "seen", "shifts", "skill_bits", "skills",
                 "x", "y", "z")

    def __init__(self, member: str, lng: float, lat: float, codes: Codes) -> None:
        ident, seen, active, hours, scope, roster, skills = member.split("|", 6)
        self.ident, self.seen, self.active, self.hours = int(ident), int(seen), int(active), float(hours)
        self.scope_code = codes.scope_of(scope)
        self.shifts = parse_roster(roster)
        self.skills = frozenset(filter(None, skills.split(",")))
        self.skill_bits = codes.bits_of(self.skills)
        self.lat, self.lng = lat, lng
        self.x, self.y, self.z = unit_vector(lat, lng)


def unit_vector(lat: float, lng: float) -> tuple[float, float, float]:
    """The point on the unit sphere: the search measures squared chords between these."""
    phi, lam = radians(lat), radians(lng)
    return cos(phi) * cos(lam), cos(phi) * sin(lam), sin(phi)


def parse_roster(roster: str) -> tuple[tuple[int, int, int], ...]:
    """ "wd:from-to,..." (local minutes) as (weekday, from, to) shifts; () = always on shift."""
    shifts = []
    for shift in filter(None, roster.split(",")):
        weekday, span = shift.split(":")
        start, end = span.split("-")
        shifts.append((int(weekday), int(start), int(end)))
    return tuple(shifts)


def on_shift(shifts: tuple[tuple[int, int, int], ...], weekday: int, minute: int) -> bool:
    for day, start, end in shifts:
        if start < end:
            if day == weekday and start <= minute < end:
                return True
        elif (day == weekday and minute >= start) or ((day + 1) % 7 == weekday and minute < end):
            return True  # runs past midnight: the evening part today, the morning part tomorrow
    return not shifts


@dataclass
class OpenCopy:
    """One branch's open sets in memory: an H3 index per skill (and one of any skill)."""

    epoch: str = ""
    last: int = 0  # the last change of the log applied
    members: dict[int, Open] = field(default_factory=dict)
    grids: dict[str, HexIndex[Open]] = field(default_factory=dict)
    codes: Codes = field(default_factory=Codes)
    with_roster: int = 0
    sent: int = -1  # this process's changes to the branch (live.sent_to) as of the last catch-up
    confirmed: float = 0.0  # monotonic time as of which the follower found the copy up to date
    broken: bool = False  # the follower found the log begun anew or a gap in it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self, sent: int) -> bool:
        """Whether a search may use the copy as it is: it has every change this process made, the follower
        confirmed it lately, and found nothing wrong."""
        return (sent == self.sent and not self.broken
                and time.monotonic() - self.confirmed < CONFIRMED_FOR_S)

    def caught_up(self, *, sent: int, asked: float) -> None:
        self.sent, self.confirmed, self.broken = sent, asked, False

    def follow(self, changes: list[live.OpenChange], *, epoch: str, asked: float) -> None:
        """Apply what the follower read (asked at `asked`); a change of epoch or a gap breaks the copy
        until a search catches it up."""
        for change in changes:
            if change.seq <= self.last:
                continue  # a search caught up past it meanwhile
            if change.epoch != self.epoch or change.seq != self.last + 1:
                self.broken = True
                return
            self.put(change.technician_id, change.member, change.lng, change.lat)
            self.last = change.seq
        if epoch != self.epoch:
            self.broken = True
        elif not self.broken:
            self.confirmed = max(self.confirmed, asked)

    @property
    def rostered(self) -> bool:
        """Whether anyone here works to a roster (the search then judges shifts)."""
        return self.with_roster > 0

    def rarest(self, skills: Sequence[str]) -> tuple[str, HexIndex[Open]] | None:
        """The rarest of these skills (any skill when none) with the grid of whoever has it: the fewest to
        look at; None when nobody has one of them."""
        grids = [(skill, self.grids.get(skill)) for skill in skills or [ANY_SKILL]]
        present = [(skill, grid) for skill, grid in grids if grid]
        return min(present, key=lambda found: len(found[1])) if len(present) == len(grids) else None

    def put(self, ident: int, member: str, lng: float, lat: float) -> None:
        """The technician's member and position now ("" member: out of the sets)."""
        self.leave(ident)
        if not member:
            return
        entry = Open(member, lng, lat, self.codes)
        self.members[ident] = entry
        self.with_roster += bool(entry.shifts)
        for skill in (ANY_SKILL, *entry.skills):
            self.grids.setdefault(skill, HexIndex()).add(ident, lat, lng, entry)

    def leave(self, ident: int) -> None:
        entry = self.members.pop(ident, None)
        if entry is None:
            return
        self.with_roster -= bool(entry.shifts)
        for skill in (ANY_SKILL, *entry.skills):
            self.grids[skill].remove(ident, entry.lat, entry.lng)

    def clear(self) -> None:
        self.members.clear()
        self.grids.clear()
        self.codes = Codes()
        self.with_roster = 0


def _replay(copy: OpenCopy, changes: list[live.OpenChange]) -> None:
    for change in changes:
        copy.put(change.technician_id, change.member, change.lng, change.lat)


def _reload(redis: Redis, keys: live.LiveKeys, copy: OpenCopy, epoch: str, last: int) -> None:
    """Copy the set in steps; what changes meanwhile is in the log after `last`, replayed next."""
    copy.clear()
    copy.epoch, copy.last = epoch, last
    cursor = "0"
    while True:
        cursor, members = live.snapshot_step(redis, keys, cursor=cursor, count=SNAPSHOT_STEP)
        for member, lng, lat in members:
            copy.put(int(member.split("|", 1)[0]), member, lng, lat)
        if cursor == "0":
            return


def _most(copy: OpenCopy) -> int:
    return max(MOST_REPLAYED, len(copy.members))


def catch_up(redis: Redis, keys: live.LiveKeys, copy: OpenCopy) -> None:
    """Apply every change logged since the copy last looked, reloading when replaying cannot do."""
    for _ in range(RELOAD_TRIES):
        epoch, last, changes = live.changes(redis, keys, epoch=copy.epoch, after=copy.last, most=_most(copy))
        if changes is not None:
            _replay(copy, changes)
            copy.last = last
            return
        _reload(redis, keys, copy, epoch, last)
    raise RuntimeError(f"the open sets of {keys.tag} changed faster than they could be copied")


class _Copies:
    """This process's copies of one Redis server's branches, and the thread that follows their logs."""

    def __init__(self, redis: Redis) -> None:
        pool = redis.connection_pool
        # Its own connection, with a timeout above the blocking read's.
        self._redis = Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **{
            **pool.connection_kwargs, "socket_timeout": FOLLOW_BLOCK_MS / 1000 + 5}))
        self.branches: dict[live.LiveKeys, OpenCopy] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def of(self, keys: live.LiveKeys) -> OpenCopy:
        with self.lock:
            copy = self.branches.get(keys)
            if copy is None:
                copy = self.branches[keys] = OpenCopy()
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._follow, name="open-sets-follower", daemon=True)
                self.thread.start()
            return copy

    def _follow(self) -> None:
        while True:
            with self.lock:
                followed = {keys: copy for keys, copy in self.branches.items() if copy.epoch}
            if not followed:
                time.sleep(FOLLOW_BLOCK_MS / 1000)
                continue
            try:
                asked = time.monotonic()
                changes = live.follow(self._redis, {keys: copy.last for keys, copy in followed.items()},
                                      block_ms=FOLLOW_BLOCK_MS)
                epochs = live.epochs(self._redis, list(followed))
            except RedisError:
                time.sleep(FOLLOW_BLOCK_MS / 1000)  # the copies go unconfirmed: searches ask Redis themselves
                continue
            for (keys, copy), epoch in zip(followed.items(), epochs, strict=True):
                with copy.lock:
                    copy.follow(changes.get(keys.tag, []), epoch=epoch, asked=asked)


_servers: dict[tuple[object, ...], _Copies] = {}
_servers_lock = threading.Lock()


def _before_fork() -> None:
    # Fork with every copy whole: the follower and searches change copies only under these locks.
    _servers_lock.acquire()
    for copies in _servers.values():
        copies.lock.acquire()
        for copy in copies.branches.values():
            copy.lock.acquire()


def _after_fork_in_parent() -> None:
    for copies in _servers.values():
        for copy in copies.branches.values():
            copy.lock.release()
        copies.lock.release()
    _servers_lock.release()


def _after_fork_in_child() -> None:
    # A forked child (an rq job) keeps the copies as they were, but not the follower thread: each
    # copy goes unconfirmed, so its first search catches up with what changed since, a few changes
    # where loading a big branch takes a second.
    global _servers_lock
    _servers_lock = threading.Lock()
    for copies in _servers.values():
        copies.lock, copies.thread = threading.Lock(), None
        for copy in copies.branches.values():
            copy.lock, copy.confirmed = threading.Lock(), 0.0


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def preload(redis: Redis, branch_ids: list[int]) -> None:
    """Copy these branches now and follow them: a process that forks its jobs (the worker) hands them
    copies that are nearly current."""
    for branch_id in branch_ids:
        search(redis, branch_id, lambda copy: None)


def forget() -> None:
    """Drop every copy this process holds: the next search of a branch loads it afresh."""
    with _servers_lock:
        servers = list(_servers.values())
    for copies in servers:
        with copies.lock:
            copies.branches.clear()


def search(redis: Redis, branch_id: int, look: Callable[[OpenCopy], Found]) -> Found:
    """What `look` finds in the branch's copy, which holds every change this process made to the branch
    and every other process's that the follower has brought (about a round trip after it was made)."""
    keys = live.LiveKeys.of(branch_id)
    server = live.server_of(redis)
    with _servers_lock:
        copies = _servers.get(server)
        if copies is None:
            copies = _servers[server] = _Copies(redis)
    copy = copies.of(keys)
    with copy.lock:
        sent = live.sent_to(redis, keys)
        if not copy.current(sent):
            asked = time.monotonic()
            catch_up(redis, keys, copy)
            copy.caught_up(sent=sent, asked=asked)
        return look(copy)
