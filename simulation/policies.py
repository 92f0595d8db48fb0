"""The dispatch policies compared: how a ticket finds its technician. Each only calls the engine's verbs (grab,
assign, look), which call the real services."""

from enum import StrEnum

import numpy as np
from scipy.optimize import linear_sum_assignment

from simulation import travel
from simulation.engine import Job, Person, Policy, Status, World

# A pairing the batch must never choose (wrong branch or skills): far above any real cost.
FORBIDDEN = 1e9


class PolicyName(StrEnum):
    PURE_POOL = "pure-pool"
    NEAREST_PUSH = "nearest-push"
    SYSTEM = "system"
    HYBRID = "hybrid"
    BATCH = "batch-optimal"


class _Quiet:
    """Hooks a policy does not use, on the service as deployed."""

    offer: dict[str, object] = {}  # noqa: RUF012 (read, never changed)

    def on_tickets(self, world: World, jobs: list[Job]) -> None:
        return None

    def on_offers(self, world: World, people: list[Person]) -> None:
        return None

    def on_free(self, world: World, person: Person) -> None:
        return None

    def on_glance(self, world: World, person: Person) -> None:
        return None

    def on_tick(self, world: World) -> None:
        return None

    def decide(self, world: World, person: Person) -> None:
        return None


def _grab_first(world: World, person: Person, ticket_ids: list[int]) -> None:
    for ticket_id in ticket_ids:
        if world.grab(person, ticket_id):
            return


class _Browsing(_Quiet):
    """Technicians who pick up their phone whenever they are free, and at a glance while idle."""

    def on_free(self, world: World, person: Person) -> None:
        world.look(person)

    def on_glance(self, world: World, person: Person) -> None:
        world.look(person)


class PurePool(_Browsing):
    """Everyone sees every ticket of their branch; the first tap wins, however far the tapper is."""

    name: str = PolicyName.PURE_POOL
    # Everyone sees everything: the pool lists a ticket to all, whatever its ring has reached.
    offer: dict[str, object] = {"pool_within_ring": False}  # noqa: RUF012 (read, never changed)

    def on_tickets(self, world: World, jobs: list[Job]) -> None:
        for job in jobs:
            for person in world.idle():
                if world.can_do(person, job):
                    world.notify(person)

    def decide(self, world: World, person: Person) -> None:
        _grab_first(world, person, world.pool_near(person))


class NearestPush(_Browsing):
    """Today's: each ring offers the ticket to the K nearest eligible technicians; an offered one grabs it, and
    a free technician grabs from the pool near them when nothing is offered."""

    name: str = PolicyName.NEAREST_PUSH

    def on_offers(self, world: World, people: list[Person]) -> None:
        for person in people:
            world.notify(person)

    def decide(self, world: World, person: Person) -> None:
        _grab_first(world, person, world.open_offers(person) or world.pool_near(person))


def _dispatch(world: World, jobs: list[Job]) -> None:
    for job in jobs:
        person = world.best_free(job)
        if person is not None:
            world.assign(person, job.id)


class SystemDispatch(_Quiet):
    """The service assigns each ticket at once to the best free eligible technician; a ticket nobody could take
    waits for the next one to come free."""

    name: str = PolicyName.SYSTEM

    def on_tickets(self, world: World, jobs: list[Job]) -> None:
        _dispatch(world, jobs)

    def on_free(self, world: World, person: Person) -> None:
        _dispatch(world, world.waiting_jobs())


class Hybrid(NearestPush):
    """Offers first; a ticket still unanswered after `hybrid_after_s` is assigned by the system."""

    name: str = PolicyName.HYBRID

    def on_free(self, world: World, person: Person) -> None:
        _dispatch(world, self._overdue(world))
        if person.status is Status.IDLE:
            world.look(person)

    def on_tick(self, world: World) -> None:
        _dispatch(world, self._overdue(world))

    @staticmethod
    def _overdue(world: World) -> list[Job]:
        return [j for j in world.waiting_jobs()
                if (world.now - j.created_at).total_seconds() >= world.cfg.hybrid_after_s]


class BatchOptimal(_Quiet):
    """Every `batch_every_s`, a min-cost matching of the open tickets to the free technicians: driving time, less
    a credit for the share of its response SLA a ticket has waited (the most urgent go first when short)."""

    name: str = PolicyName.BATCH

    def on_tick(self, world: World) -> None:
        jobs, free = world.waiting_jobs(), world.idle()
        if not jobs or not free:
            return
        cost = np.array([[self._cost(world, job, person) for person in free] for job in jobs])
        for row, col in zip(*linear_sum_assignment(cost), strict=True):
            if cost[row, col] < FORBIDDEN:
                world.assign(free[col], jobs[row].id)

    @staticmethod
    def _cost(world: World, job: Job, person: Person) -> float:
        if not world.can_do(person, job):
            return FORBIDDEN
        drive = travel.drive_s(person.where(world.now), job.site, at=world.now, tz=world.settings.timezone,
                               cfg=world.cfg)
        sla_s = (job.response_due_at - job.created_at).total_seconds()
        waited = min(2.0, (world.now - job.created_at).total_seconds() / sla_s)
        return drive - world.cfg.urgency_weight_s * waited


POLICIES: dict[str, type[Policy]] = {PolicyName.PURE_POOL: PurePool, PolicyName.NEAREST_PUSH: NearestPush,
                                     PolicyName.SYSTEM: SystemDispatch, PolicyName.HYBRID: Hybrid,
                                     PolicyName.BATCH: BatchOptimal}
