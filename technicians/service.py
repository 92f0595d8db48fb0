"""The technician registry."""

from collections.abc import Collection
from dataclasses import dataclass

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts import service as accounts
from dispatch.audit import service as audit
from dispatch.audit.models import AuditAction
from dispatch.kernel.auth import Actor, Role
from dispatch.kernel.cache import Remembered
from dispatch.kernel.errors import InvalidInput, NotFound, OutOfScope
from geo import regions
from geo.latlng import LatLng
from geo.points import to_wkb
from technicians.errors import NotATechnician
from technicians.models import Technician
from technicians.presence import TechnicianRef, ref_of, republish

# A technician's region, branch, name and phone change rarely; a minute's delay is fine there.
_refs: Remembered[int, TechnicianRef] = Remembered(ttl_s=60)
_cards: Remembered[int, "Card"] = Remembered(ttl_s=60)


@dataclass(frozen=True)
class TechnicianChanges:
    """What an admin or dispatcher changes of a technician; None: unchanged."""

    name: str | None = None
    phone: str | None = None
    skills: list[str] | None = None
    max_active: int | None = None
    region_id: int | None = None


@dataclass(frozen=True)
class Card:
    """How a technician is named to a dispatcher."""

    name: str
    phone: str


def create_technician(session: Session, *, actor: Actor, name: str, phone: str, username: str, password: str,
                      skills: list[str], region_id: int, max_active: int = 5,
                      home: LatLng | None = None) -> Technician:
    """Register a technician with their phone log-in, bound to a region they may grab in.

    Raises:
        InvalidInput: unknown region or taken username.
        Forbidden: the region is outside the caller's scope.
    """
    _check_region(session, actor, region_id)
    user = accounts.create_user(session, username=username, password=password, role=Role.TECHNICIAN,
                                name=name, region_ids=[region_id], actor=actor)
    technician = Technician(user_id=user.id, name=name, phone=phone, skills=sorted(set(skills)),
                            region_id=region_id, max_active=max_active,
                            home=to_wkb(home) if home else None)
    session.add(technician)
    session.flush()
    return technician


def change_technician(session: Session, redis: Redis, *, technician: Technician, actor: Actor,
                      changes: TechnicianChanges) -> Technician:
    """Change a technician's name, phone, skills, limit or region; audited with each value before and after.
    An on-duty technician's live entry follows at once; a new region is also their log-in's scope.

    Raises:
        InvalidInput: unknown region.
        OutOfScope: the new region is outside the caller's scope.
    """
    if changes.region_id is not None:
        _check_region(session, actor, changes.region_id)
    was = ref_of(session, technician)
    wanted = {name: sorted(set(value)) if name == "skills" else value
              for name, value in vars(changes).items() if value is not None}
    changed = {name: [getattr(technician, name), value] for name, value in wanted.items()
               if value != getattr(technician, name)}
    if not changed:
        return technician
    for name, (_, value) in changed.items():
        setattr(technician, name, value)
    session.flush()
    if "region_id" in changed:
        accounts.change_user(session, user=accounts.get_user(session, technician.user_id), actor=actor,
                             region_ids=[technician.region_id])
    _refs.forget(technician.user_id)
    _cards.forget(technician.id)
    republish(session, redis, technician=technician, was=was)
    audit.record(session, action=AuditAction.TECHNICIAN_CHANGED, actor=actor, target=("technician", technician.id),
                 changes=changed)
    return technician


def _check_region(session: Session, actor: Actor, region_id: int) -> None:
    """Raises: InvalidInput (no such region), OutOfScope (outside the caller's regions)."""
    if session.get(regions.Region, region_id) is None:
        raise InvalidInput("region_id", f"region {region_id} does not exist")
    if actor.scope is not None and not regions.covers_any(region_id, actor.scope, session):
        raise OutOfScope(f"region {region_id} is outside your regions")


def require_wechat_bound(technician: Technician, *, account_configured: bool) -> None:
    """Where a WeChat account pushes the work, only a technician bound to it can be force-assigned (seed 002).

    Raises:
        InvalidInput: the account is configured and the technician has not bound their WeChat.
    """
    if account_configured and technician.wechat_openid is None:
        raise InvalidInput("technician_id", f"technician {technician.name} has not bound WeChat yet: "
                                            "issue a binding link first")


def get_technician(session: Session, technician_id: int, *, scope: tuple[int, ...] | None) -> Technician:
    """Raises: NotFound (also when outside the caller's scope)."""
    technician = session.scalar(select(Technician).where(
        Technician.id == technician_id, regions.within(Technician.region_id, scope)))
    if technician is None:
        raise NotFound(f"technician {technician_id} does not exist")
    return technician


def technician_of(session: Session, actor: Actor) -> Technician:
    """The technician record behind a technician's log-in.

    Raises:
        NotATechnician: the caller is not a technician.
    """
    technician = session.scalar(select(Technician).where(Technician.user_id == actor.id)) \
        if actor.role is Role.TECHNICIAN else None
    if technician is None or not technician.active:
        raise NotATechnician("this action is for technicians")
    return technician


def list_technicians(session: Session, *, scope: tuple[int, ...] | None, limit: int,
                     after_id: int | None) -> list[Technician]:
    query = select(Technician).where(regions.within(Technician.region_id, scope)).order_by(Technician.id)
    if after_id is not None:
        query = query.where(Technician.id > after_id)
    return list(session.scalars(query.limit(limit)))


def cached_ref(user_id: int) -> TechnicianRef | None:
    return _refs.get(user_id)


def technician_ref(session: Session, actor: Actor) -> TechnicianRef:
    """The caller's live-index reference, remembered briefly: pings arrive every few seconds."""
    return _refs.get_or_load(actor.id, lambda: ref_of(session, technician_of(session, actor)))


def cards(session: Session, technician_ids: Collection[int], *, branch_id: int) -> dict[int, Card]:
    """Names and phones by technician id, remembered: a nearest search names the same people all day.

    A miss loads the whole branch's cards in one statement: a search names a few of the branch's
    technicians at a time, and learning them one search at a time cost a statement per search for the
    first minutes (and again each time the memory expired).
    """
    found = {tid: card for tid in technician_ids if (card := _cards.get(tid)) is not None}
    missing = [tid for tid in technician_ids if tid not in found]
    if missing:
        for tid, name, phone in session.execute(
                select(Technician.id, Technician.name, Technician.phone).where(
                    Technician.id.in_(missing) | regions.within(Technician.region_id, (branch_id,)))):
            card = _cards.put(tid, Card(name=name, phone=phone))
            if tid in missing:
                found[tid] = card
    return found
