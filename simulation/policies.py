"""The dispatch policies compared: how a ticket finds its technician. Each only calls the engine's verbs (grab,
assign, look), which call the real services, or sets the branches' real dispatch mode and lets the service
assign."""

from enum import StrEnum

import numpy as np
from scipy.optimize import linear_sum_assignment

from dispatch.tickets.models import DispatchMode
from simulation import travel
from simulation.engine import Job, Person, Policy, World

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
    mode: DispatchMode = DispatchMode.GRAB

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
        _grab_first(world, person, world.pool_near(person, world.settings.offer.max_radius_m))


class NearestPush(_Browsing):
    """Today's: each ring offers the ticket to the K nearest eligible technicians; an offered one grabs it, and
    a free technician grabs from the pool near them (as the phone lists it) when nothing is offered."""

    name: str = PolicyName.NEAREST_PUSH

    def on_offers(self, world: World, people: list[Person]) -> None:
        for person in people:
            world.notify(person)

    def decide(self, world: World, person: Person) -> None:
        # The phone lists the pool within the server's default radius: the page sends none.
        listed = world.open_offers(person) or world.pool_near(person, world.settings.pool.near_radius_m)
        _grab_first(world, person, listed)


class SystemDispatch(NearestPush):
    """Every branch in `assign` mode: intake assigns each ticket to the best eligible technician (the service's
    own search and fairness tie-break: below max_active, so possibly one busy on another job, who goes after it);
    a ticket nobody could take is offered and pooled as in grab mode, and grabbed as under nearest-push."""

    name: str = PolicyName.SYSTEM
    mode: DispatchMode = DispatchMode.ASSIGN


class Hybrid(NearestPush):
    """Every branch in `hybrid` mode: offers first, as nearest-push; the service's ring sweep assigns a ticket
    still unanswered after `hybrid_after_s` (to the best eligible, as `assign` does)."""

    name: str = PolicyName.HYBRID
    mode: DispatchMode = DispatchMode.HYBRID


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
