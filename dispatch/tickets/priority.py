"""Priority: P1 紧急, P2 高, P3 中, P4 低.

A report takes its type's priority unless its subscriber or a site it lies
at is marked important (PRIORITY__RAISE_TO says to what); a dispatcher may
change it later. Priority picks the SLA profile, the first ring, the order of
the pool and of lists, and how a breach escalates.
"""

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts.models import Importance
from dispatch.audit import service as audit
from dispatch.audit.models import AuditAction
from dispatch.kernel.auth import Actor
from dispatch.kernel.cache import Remembered
from dispatch.kernel.errors import NotFound, OutOfScope
from dispatch.kernel.settings import PrioritySettings, SlaSettings
from dispatch.tickets.models import ImportantSite, Priority
from dispatch.tickets.permissions import require_manager
from geo import regions
from geo.distance import haversine_m
from geo.latlng import LatLng
from geo.models import Region
from geo.points import from_wkb, to_wkb


class PricedType(Protocol):
    """A ticket type's SLA terms: the ORM row, or the values a process remembers of it."""

    @property
    def response_sla_min(self) -> int: ...

    @property
    def resolution_sla_min(self) -> int: ...

    @property
    def sla_by_priority(self) -> dict[str, dict[str, int]]: ...


class SlaProfile(NamedTuple):
    response_sla_min: int
    resolution_sla_min: int


def sla_profile(ticket_type: PricedType, priority: Priority, cfg: SlaSettings) -> SlaProfile:
    """The type's minutes at this priority: as the type names them, else its own (its P3 profile) scaled."""
    named = ticket_type.sla_by_priority.get(priority.value)
    if named is not None:
        return SlaProfile(named["response_sla_min"], named["resolution_sla_min"])
    factor = cfg.priority_factors[priority.value]
    return SlaProfile(max(1, round(ticket_type.response_sla_min * factor)),
                      max(1, round(ticket_type.resolution_sla_min * factor)))


@dataclass(frozen=True)
class Site:
    importance: Importance
    point: LatLng
    radius_m: int


# Sites change a few times a year; intake reads them for every report without a statement.
_sites: Remembered[int, tuple[Site, ...]] = Remembered(ttl_s=10, maxsize=10_000)


def sites_of(session: Session, branch_id: int) -> tuple[Site, ...]:
    def load() -> tuple[Site, ...]:
        rows = session.execute(select(ImportantSite.importance, ImportantSite.location, ImportantSite.radius_m)
                               .where(ImportantSite.branch_id == branch_id))
        return tuple(Site(importance, from_wkb(location), radius_m) for importance, location, radius_m in rows)

    return _sites.get_or_load(branch_id, load)


def of_report(session: Session, *, type_priority: Priority, importance: Importance | None, point: LatLng,
              branch_id: int, cfg: PrioritySettings) -> Priority:
    """The priority a new report takes: the highest of its type's, its subscriber's and its sites'."""
    marks = [importance] if importance is not None else []
    marks += [site.importance for site in sites_of(session, branch_id)
              if haversine_m(point, site.point) <= site.radius_m]
    raised = [Priority(cfg.raise_to[mark.value]) for mark in marks if mark.value in cfg.raise_to]
    return min([type_priority, *raised])  # "P1" < "P2": the values sort as the levels do


# --- important sites ------------------------------------------------------------------------------------

def add_site(session: Session, *, actor: Actor, name: str, importance: Importance, point: LatLng,
             radius_m: int) -> ImportantSite:
    """Mark a place as important; it belongs to the branch its point lies in. Audited.

    Raises: Forbidden, OutOfScope.
    """
    require_manager(actor, "mark important sites")
    placement = regions.place(session, point)
    if actor.scope is not None and not placement.lies_within(actor.scope):
        raise OutOfScope("that point lies outside your regions")
    site = ImportantSite(name=name, importance=importance, location=to_wkb(point), radius_m=radius_m,
                         branch_id=placement.branch_id, created_by=actor.label)
    session.add(site)
    session.flush()
    audit.record(session, action=AuditAction.SITE_MARKED, actor=actor, target=("important_site", site.id),
                 name=name, importance=importance, radius_m=radius_m)
    _sites.forget(site.branch_id)
    return site


def list_sites(session: Session, *, actor: Actor) -> list[ImportantSite]:
    """The sites of every branch the caller's regions lie in or cover."""
    require_manager(actor, "list important sites")
    query = select(ImportantSite).order_by(ImportantSite.id)
    if actor.scope is not None:
        on_path = {i for path in session.scalars(select(Region.path).where(Region.id.in_(actor.scope)))
                   for i in regions.path_ids(path)}
        query = query.where(regions.within(ImportantSite.branch_id, actor.scope) | ImportantSite.branch_id.in_(on_path))
    return list(session.scalars(query))


def remove_site(session: Session, *, actor: Actor, site_id: int) -> None:
    """Raises: Forbidden, NotFound (also outside the caller's regions)."""
    site = next((s for s in list_sites(session, actor=actor) if s.id == site_id), None)
    if site is None:
        raise NotFound(f"important site {site_id} does not exist")
    session.delete(site)
    audit.record(session, action=AuditAction.SITE_MARKED, actor=actor, target=("important_site", site_id),
                 removed=True, name=site.name)
    session.flush()
    _sites.forget(site.branch_id)
