"""The simulated day: an event queue on a simulated clock that drives the real services in-process.

Every step a person or a periodic job takes in production is the same call here: the branches' dispatch mode
(`modes.set_mode`), intake (`service.create_ticket`, which assigns at once in `assign` mode), the ring, hybrid
and SLA sweeps (`offers.sweep`, `modes.sweep_hybrid`, `sla.sweep`), a grab (the pool's claim, then
`grabs.settle`), a dispatcher's assignment (`grabs.assign`), arrival and completion (which writes the work
record), duty and pings (`technicians.presence`). Only the people are simulated: when they look at their phone,
how long they take to decide, how fast they drive. time-machine moves Python's clock to each event's time (it
does not tick in between), so every timestamp the services write comes from the simulated clock.
"""

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import time_machine
from redis import Redis
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.kernel.cache import Remembered
from dispatch.kernel.db import Database
from dispatch.kernel.errors import DomainError
from dispatch.kernel.settings import Settings
from dispatch.tickets import grabs, modes, offers, service, sla
from dispatch.tickets.lifecycle import GRABBABLE
from dispatch.tickets.models import DispatchMode, Offer, OfferOutcome, Ticket, TicketState
from dispatch.tickets.schemas import CompleteBody, Contact, Location, TicketCreate
from geo.latlng import LatLng
from geo.models import Region
from geo.points import from_wkb
from simulation import travel
from simulation.city import City
from simulation.config import SimulationSettings
from simulation.demand import Report
from technicians import presence, replica
from technicians.errors import OffShift
from technicians.models import Technician
from technicians.presence import TechnicianRef

SIMULATION = Actor(kind=PrincipalKind.USER, id=0, role=Role.ADMIN, label="simulation")
S = TicketState
# What the sweeps act on, and the first moment each ticket has something due (see dispatch/tickets/sla.py and
# offers.py for what each sweep does at these times).
_SWEPT = (S.PENDING, S.TIMED_OUT, S.ACCEPTED, S.GROUPED)
_NEXT_DUE = func.least(
    case((Ticket.state.in_(GRABBABLE), Ticket.next_ring_at)),
    case((Ticket.state.in_(GRABBABLE), Ticket.system_assign_at)),
    case((and_(Ticket.state == S.PENDING, Ticket.response_warned_at.is_(None)), Ticket.response_warn_at)),
    case((Ticket.state == S.PENDING, Ticket.response_due_at)),
    case((and_(Ticket.state == S.ACCEPTED, Ticket.resolution_warned_at.is_(None)), Ticket.resolution_warn_at)),
    case((Ticket.sla_breached_at.is_(None), Ticket.resolution_due_at)),
    Ticket.next_escalation_at)
# A day that has not settled by then never will: the run stops and the scorecard says what was left.
LONGEST_DAY = timedelta(hours=40)


def late_shift_of(crew: dict[int, tuple[str, frozenset[str]]], needs: list[frozenset[str]]) -> set[int]:
    """Who works the late shift: every other technician of each branch, then moved so that each shift of a branch
    has someone for every ticket type the branch can do at all."""
    late = {tid for i, tid in enumerate(sorted(crew, key=lambda t: (crew[t][0], t))) if i % 2}
    for branch in sorted({path for path, _ in crew.values()}):
        ids = sorted(t for t in crew if crew[t][0] == branch)
        for need in sorted(needs, key=sorted):
            able = [t for t in ids if need <= crew[t][1]]
            for short, spare in ((set(ids) & late, set(ids) - late), (set(ids) - late, set(ids) & late)):
                if able and not short & set(able) and len(spare & set(able)) >= 2:
                    moved = min(spare & set(able))
                    late.symmetric_difference_update({moved})
    return late


class Status(StrEnum):
    OFF = "off"
    IDLE = "idle"
    DRIVING = "driving"
    WORKING = "working"


@dataclass
class Person:
    """A technician as the simulation moves them; the services know them by `id`."""

    id: int
    user_id: int
    username: str
    ref: TechnicianRef
    skills: frozenset[str]
    home: LatLng
    shift_start: datetime
    shift_end: datetime
    at: LatLng
    status: Status = Status.OFF
    deciding: bool = False
    leg: tuple[LatLng, LatLng, datetime, datetime] | None = None
    on_duty_since: datetime | None = None
    duty_s: float = 0.0
    # Tickets the system gave them while busy (system_assign counts anyone below max_active): done in turn.
    queue: list[int] = field(default_factory=list)

    @property
    def actor(self) -> Actor:
        return Actor(kind=PrincipalKind.USER, id=self.user_id, role=Role.TECHNICIAN, label=self.username)

    def where(self, now: datetime) -> LatLng:
        if self.leg is None:
            return self.at
        start, end, left, due = self.leg
        return travel.along(start, end, (now - left) / (due - left) if due > left else 1.0)


@dataclass(frozen=True)
class Job:
    """A ticket someone has to go to, as the simulation needs it."""

    id: int
    site: LatLng
    type_code: str
    branch_id: int
    path: str
    created_at: datetime
    response_due_at: datetime
    next_due: datetime  # the first moment a sweep has something to do for it


class Policy(Protocol):
    """How tickets find technicians; the engine calls these hooks, the policy calls the engine's verbs."""

    name: str
    offer: dict[str, object]  # OFFER__* settings the policy's service runs with, beside the deployment's
    mode: DispatchMode  # every branch's dispatch mode for the day

    def on_tickets(self, world: "World", jobs: list[Job]) -> None: ...
    def on_offers(self, world: "World", people: list[Person]) -> None: ...
    def on_free(self, world: "World", person: Person) -> None: ...
    def on_glance(self, world: "World", person: Person) -> None: ...
    def on_tick(self, world: "World") -> None: ...
    def decide(self, world: "World", person: Person) -> None: ...


@dataclass
class Outcome:
    """What the run leaves beside the database: duty hours and the burst's tickets."""

    duty_hours: float
    burst_ticket_ids: list[int]


@dataclass(order=True)
class _Event:
    at: datetime
    seq: int
    action: Callable[..., None] = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)


class World:
    """One policy's day on one city: the queue of events, the people, and the services' handles."""

    def __init__(self, *, database: Database, redis: Redis, settings: Settings, cfg: SimulationSettings,
                 city: City, day: date, reports: list[Report], policy: Policy, seed: int) -> None:
        self.db, self.redis, self.settings, self.cfg, self.city = database, redis, settings, cfg, city
        self.policy, self.reports = policy, reports
        self.rng = random.Random(f"{seed}:{policy.name}")
        self.tz = ZoneInfo(settings.timezone)
        self.day = day
        self._queue: list[_Event] = []
        self._seq = 0
        self.now = datetime.combine(day, cfg.early_shift.starts, tzinfo=self.tz).astimezone(ZoneInfo("UTC"))
        self.people: dict[int, Person] = {}
        self.burst: list[int] = []
        self._reports_left = len(reports)
        self._paths: dict[int, str] = {}
        self._start = self.now
        self._sweeps = 0
        self._next_sweep: datetime | None = None
        self.open_tickets = 0
        self._followed: set[int] = set()  # tickets the system assigned whose technician was sent

    # --- the clock ---------------------------------------------------------------------------------------------

    def at(self, when: datetime, action: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Event(max(when, self.now), self._seq, action, args))

    def after(self, seconds: float, action: Callable[..., None], *args: Any) -> None:
        self.at(self.now + timedelta(seconds=round(seconds, 3)), action, *args)

    def run(self) -> Outcome:
        """Play the day until every report is in and every ticket done (or LONGEST_DAY passed)."""
        Remembered.forget_everything()
        replica.forget()  # the copies of the open sets belong to the Redis flushed before this day
        start = self.now
        with time_machine.travel(start, tick=False) as traveller:
            self._set_up()
            while self._queue and self.now - start < LONGEST_DAY:
                event = heapq.heappop(self._queue)
                self.now = event.at
                traveller.move_to(event.at)
                event.action(*event.args)
            for person in self.people.values():
                self._close_duty(person)
        return Outcome(duty_hours=sum(p.duty_s for p in self.people.values()) / 3600,
                       burst_ticket_ids=sorted(self.burst))

    # --- set-up ----------------------------------------------------------------------------------------------

    def _set_up(self) -> None:
        homes = {w.username: w for w in self.city.workers}
        with self.db.session_scope() as session:
            hybrid_after_s = self.cfg.hybrid_after_s if self.policy.mode is DispatchMode.HYBRID else None
            for branch, _ in modes.branch_modes(session, actor=SIMULATION, settings=self.settings):
                modes.set_mode(session, region_id=branch.id, actor=SIMULATION, mode=self.policy.mode,
                               hybrid_after_s=hybrid_after_s, settings=self.settings)
            found = session.execute(select(Technician, User.username, Region.path)
                                    .join(User, User.id == Technician.user_id)
                                    .join(Region, Region.id == Technician.region_id).order_by(Technician.id))
            rows = [(technician, username, path) for technician, username, path in found]
            late = late_shift_of({t.id: (path, frozenset(t.skills)) for t, _, path in rows},
                                 [k.skills for k in self.city.kinds.values()])
            for technician, username, path in rows:
                shift = self.cfg.late_shift if technician.id in late else self.cfg.early_shift
                starts = datetime.combine(self.day, shift.starts, tzinfo=self.tz)
                ends = datetime.combine(self.day, shift.ends, tzinfo=self.tz)
                overtime_end = (ends + timedelta(hours=self.cfg.overtime_h)).time()
                presence.set_roster(session, self.redis, technician=technician, shifts=[
                    presence.Shift(self.day.weekday(), shift.starts, overtime_end)])
                home = homes[username].home
                person = Person(id=technician.id, user_id=technician.user_id, username=username,
                                ref=presence.ref_at(technician, path), skills=frozenset(technician.skills),
                                home=home, shift_start=starts.astimezone(ZoneInfo("UTC")),
                                shift_end=ends.astimezone(ZoneInfo("UTC")), at=home)
                self.people[person.id] = person
                self.at(person.shift_start, self._start_shift, person)
                self.at(person.shift_end, self._end_shift, person)
        for index, report in enumerate(self.reports):
            self.at(report.at, self._intake, index, report)
        self.after(0, self._glance)
        self.after(0, self._tick)

    # --- what people do --------------------------------------------------------------------------------------

    def _start_shift(self, person: Person) -> None:
        with self.db.session_scope() as session:
            presence.set_duty(session, self.redis, technician=session.get_one(Technician, person.id), on_duty=True)
        person.status, person.on_duty_since = Status.IDLE, self.now
        self._ping(person)
        self.policy.on_free(self, person)

    def _end_shift(self, person: Person) -> None:
        if person.status is Status.IDLE:
            self._leave_unless_needed(person, self.waiting_jobs())  # one at work decides when the job is done

    def _leave_unless_needed(self, person: Person, waiting: list[Job]) -> bool:
        """Off duty past the shift's end, unless tickets they can do still wait (and overtime is not over)."""
        overtime_over = self.now >= person.shift_end + timedelta(hours=self.cfg.overtime_h)
        if overtime_over or not any(self.can_do(person, job) for job in waiting):
            self._go_off_duty(person)
            return True
        return False

    def _go_off_duty(self, person: Person) -> None:
        with self.db.session_scope() as session:
            presence.set_duty(session, self.redis, technician=session.get_one(Technician, person.id), on_duty=False)
        self._close_duty(person)
        person.status = Status.OFF

    def _close_duty(self, person: Person) -> None:
        if person.on_duty_since is not None:
            person.duty_s += (self.now - person.on_duty_since).total_seconds()
            person.on_duty_since = None

    def _ping(self, person: Person) -> None:
        try:
            presence.record_ping(self.redis, ref=person.ref, point=person.where(self.now), accuracy_m=10.0,
                                 now=self.now, tz=self.settings.timezone, cfg=self.settings.presence)
        except OffShift:
            # Past the roster window (overtime included) the server stores no position, as for a real phone; a
            # ticket the system queued on them meanwhile is still theirs, and done.
            return

    def decide_s(self) -> float:
        return self.cfg.decide_median_s * math.exp(self.rng.gauss(0, self.cfg.decide_sigma))

    def notify(self, person: Person) -> None:
        """A push reached the phone: looked at after a while, or never."""
        if person.status is not Status.IDLE or person.deciding:
            return
        if self.rng.random() < self.cfg.never_answer_share:
            return
        self.look(person)

    def look(self, person: Person) -> None:
        """The technician picks up the phone and decides after their own time."""
        if person.status is Status.IDLE and not person.deciding:
            person.deciding = True
            self.after(self.decide_s(), self._decide, person)

    def _decide(self, person: Person) -> None:
        person.deciding = False
        if person.status is Status.IDLE:
            self.policy.decide(self, person)

    def grab(self, person: Person, ticket_id: int) -> bool:
        """A tap on 抢单, as the endpoint does it: the pool's claim, then PostgreSQL's commit."""
        grabber = grabs.grabber_of(person.ref)
        assert grabber is not None  # every demo technician works in a branch
        try:
            claimed = grabs.claim(self.redis, grabber, ticket_id, self.settings)
            grabs.refuse(claimed, ticket_id, grabber)
            grabs.settle(self.db.session_scope, self.redis, claimed=claimed, grabber=grabber, ticket_id=ticket_id,
                         actor=person.actor, settings=self.settings)
        except DomainError:
            return False  # taken meanwhile, or otherwise refused: the phone says so and they look again
        self._drive(person, ticket_id)
        return True

    def assign(self, person: Person, ticket_id: int) -> bool:
        """The system assigns, through the dispatcher's path; the technician sets off once they have read it."""
        try:
            with self.db.session_scope() as session:
                grabs.assign(session, self.redis, ticket=session.get_one(Ticket, ticket_id), technician_id=person.id,
                             actor=SIMULATION, note=f"system dispatch ({self.policy.name})", settings=self.settings)
        except DomainError:
            return False
        self._take(person, ticket_id)
        return True

    def _take(self, person: Person, ticket_id: int) -> None:
        """A ticket became theirs without a tap: they set off once they have read it, or, busy, after the jobs
        they hold."""
        assert person.status is not Status.OFF  # off duty is out of the live index: nobody assigns to them
        if person.status is not Status.IDLE:
            person.queue.append(ticket_id)
            return
        person.status = Status.DRIVING  # taken: no offer reaches them meanwhile
        read = self.decide_s()
        if self.rng.random() < self.cfg.never_answer_share:
            read = self.cfg.phoned_after_s
        self.after(min(read, self.cfg.phoned_after_s), self._drive, person, ticket_id)

    def _drive(self, person: Person, ticket_id: int) -> None:
        job = self.job(ticket_id)
        start = person.where(self.now)
        seconds = travel.drive_s(start, job.site, at=self.now, tz=self.settings.timezone, cfg=self.cfg)
        due = self.now + timedelta(seconds=round(seconds, 3))
        person.status, person.leg = Status.DRIVING, (start, job.site, self.now, due)
        self.at(due, self._arrive, person, job)

    def _arrive(self, person: Person, job: Job) -> None:
        person.leg, person.at, person.status = None, job.site, Status.WORKING
        self._ping(person)
        with self.db.session_scope() as session:
            service.arrive(session, ticket=session.get_one(Ticket, job.id), actor=person.actor, location=job.site)
        self.after(self.city.kinds[job.type_code].standard_hours * 3600, self._complete, person, job)

    def _complete(self, person: Person, job: Job) -> None:
        with self.db.session_scope() as session:
            service.complete(session, self.redis, ticket=session.get_one(Ticket, job.id), actor=person.actor,
                             body=CompleteBody(note="模拟：已修复"), settings=self.settings)
        if person.queue:
            self._drive(person, person.queue.pop(0))
            return
        person.status = Status.IDLE
        if self.now >= person.shift_end and self._leave_unless_needed(person, self.waiting_jobs()):
            return
        self.policy.on_free(self, person)

    # --- what the services and the day do -------------------------------------------------------------------

    def _intake(self, index: int, report: Report) -> None:
        body = TicketCreate(type_code=report.type_code, description="模拟报修",
                            location=Location(lat=report.point.lat, lng=report.point.lng),
                            contact=Contact(name=f"用户{index:04d}", phone=f"139{index:08d}"))
        with self.db.session_scope() as session:
            intake = service.create_ticket(session, self.redis, actor=SIMULATION, body=body, settings=self.settings)
            ticket_id = intake.ticket.id
        self._reports_left -= 1
        if report.burst:
            self.burst.append(ticket_id)
        self.open_tickets += self._follow_the_system()
        new = self.jobs_created_now()
        self.open_tickets += len(new)
        for job in new:
            self.sweep_by(job.next_due)
        if new:
            self.policy.on_tickets(self, new)
        self.policy.on_offers(self, self.offered_now())

    def _sweep(self, generation: int) -> None:
        """The worker's ring and SLA sweeps. The worker runs them every `sweep_interval_s`; here they run on the
        same ticks but only on those where something is due (the others would find nothing to do)."""
        if generation != self._sweeps:
            return  # an earlier sweep was brought forward in its place
        self._next_sweep = None
        # Units of work as the worker's jobs have them: the rings, then the hybrid assignments (sweep_rings); SLA.
        with self.db.session_scope() as session:
            offers.sweep(session, self.redis, settings=self.settings, now=self.now, limit=200)
        with self.db.session_scope() as session:
            modes.sweep_hybrid(session, self.redis, settings=self.settings, now=self.now, limit=200)
        with self.db.session_scope() as session:
            sla.sweep(session, self.redis, cfg=self.settings.sla, now=self.now, limit=self.settings.sla.sweep_batch)
            due, still_open = session.execute(select(func.min(_NEXT_DUE), func.count())
                                              .where(Ticket.state.in_(_SWEPT))).one()
        self._follow_the_system()
        self.policy.on_offers(self, self.offered_now())
        self.open_tickets = still_open
        if due is not None:
            self.sweep_by(due)

    def _follow_the_system(self) -> int:
        """Send each technician the service assigned a ticket at this moment (intake in `assign` mode, the hybrid
        sweep) on their way, as a dispatcher's assignment does; returns how many."""
        with self.db.session_scope() as session:
            assigned = session.execute(select(Ticket.id, Ticket.technician_id, _NEXT_DUE).where(
                Ticket.accepted_at == self.now, Ticket.system_assigned, Ticket.state == S.ACCEPTED,
                Ticket.technician_id.is_not(None)).order_by(Ticket.id)).all()
        followed = 0
        for ticket_id, technician_id, due in assigned:
            if ticket_id in self._followed:
                continue
            self._followed.add(ticket_id)
            self._take(self.people[technician_id], ticket_id)
            if due is not None:
                self.sweep_by(due)  # its SLA checkpoints: assigned at intake, no ring brings a sweep
            followed += 1
        return followed

    def sweep_by(self, due: datetime) -> None:
        """Make sure a sweep runs on the first of the worker's ticks at or after `due`."""
        interval = self.settings.offer.sweep_interval_s
        ticks = math.ceil(max((due - self._start).total_seconds(), 0) / interval)
        at = max(self._start + timedelta(seconds=ticks * interval), self.now + timedelta(seconds=interval))
        if self._next_sweep is not None and self._next_sweep <= at:
            return
        self._sweeps += 1
        self._next_sweep = at
        self.at(at, self._sweep, self._sweeps)

    def _glance(self) -> None:
        """Idle technicians' phones send their position (one at work or driving is not offered anything: their
        position may go stale); idle technicians look at them while the pool holds anything."""
        for person in self.people.values():
            if person.status is Status.IDLE:
                self._ping(person)
        waiting = self.waiting_jobs()
        for person in self.people.values():
            if person.status is Status.IDLE and self.now >= person.shift_end and \
                    self._leave_unless_needed(person, waiting):
                continue
            if person.status is Status.IDLE and any(self.can_do(person, job) for job in waiting):
                self.policy.on_glance(self, person)
        if self.going_on():
            self.after(self.cfg.glance_every_s, self._glance)

    def _tick(self) -> None:
        self.policy.on_tick(self)
        if self.going_on():
            self.after(self.cfg.batch_every_s, self._tick)

    def going_on(self) -> bool:
        """Reports still to come, or open tickets (as of the last sweep) and someone on duty to take them."""
        if self._reports_left:
            return True
        return bool(self.open_tickets) and any(p.status is not Status.OFF for p in self.people.values())

    # --- reads for the policies ------------------------------------------------------------------------------

    def _job_of(self, session: Session, ticket: Ticket) -> Job:
        path = self._paths.get(ticket.region_id)
        if path is None:
            path = self._paths[ticket.region_id] = session.execute(
                select(Region.path).where(Region.id == ticket.region_id)).scalar_one()
        return Job(id=ticket.id, site=from_wkb(ticket.location), type_code=ticket.type_code,
                   branch_id=ticket.branch_id, path=path, created_at=ticket.created_at,
                   response_due_at=ticket.response_due_at,
                   next_due=min(t for t in (ticket.next_ring_at, ticket.system_assign_at, ticket.response_warn_at,
                                            ticket.response_due_at) if t is not None))

    def job(self, ticket_id: int) -> Job:
        with self.db.session_scope() as session:
            return self._job_of(session, session.get_one(Ticket, ticket_id))

    def jobs_created_now(self) -> list[Job]:
        """Tickets that entered the pool at this moment: a report's own, or an outage incident's."""
        with self.db.session_scope() as session:
            return [self._job_of(session, t) for t in session.scalars(
                select(Ticket).where(Ticket.created_at == self.now, Ticket.state.in_(GRABBABLE)).order_by(Ticket.id))]

    def can_do(self, person: Person, job: Job) -> bool:
        """Of the ticket's branch, with its type's skills."""
        return person.ref.branch_id == job.branch_id and self.city.kinds[job.type_code].skills <= person.skills

    def waiting_jobs(self) -> list[Job]:
        """Grabbable tickets, the most urgent first, then the oldest."""
        with self.db.session_scope() as session:
            return [self._job_of(session, t) for t in session.scalars(
                select(Ticket).where(Ticket.state.in_(GRABBABLE)).order_by(Ticket.priority, Ticket.created_at,
                                                                           Ticket.id))]

    def offered_now(self) -> list[Person]:
        """Technicians a ring reached at this moment (intake's first ring, or the sweep's next)."""
        with self.db.session_scope() as session:
            ids = session.scalars(select(Offer.technician_id).where(
                Offer.offered_at == self.now, Offer.outcome == OfferOutcome.OPEN).distinct()
                .order_by(Offer.technician_id))
            return [self.people[i] for i in ids if i in self.people]

    def open_offers(self, person: Person) -> list[int]:
        with self.db.session_scope() as session:
            return [ticket.id for _, ticket in offers.open_offers(session, technician_id=person.id)]

    def pool_near(self, person: Person, radius_m: int) -> list[int]:
        """What the pool lists to the technician within `radius_m` (the most urgent, then the nearest), of the types
        they can do."""
        with self.db.session_scope() as session:
            listed = grabs.near_me(session, self.redis, ref=person.ref, radius_m=radius_m,
                                   limit=self.settings.pool.near_limit,
                                   within_ring=self.settings.offer.pool_within_ring)
            return [t.id for t, _ in listed.found if self.city.kinds[t.type_code].skills <= person.skills]

    def idle(self) -> list[Person]:
        return [p for p in self.people.values() if p.status is Status.IDLE and not p.deciding]
