"""The worker's jobs for staff notices: the SLA sweep that sends them, and the warning digests."""

from datetime import UTC, datetime

from dispatch.kernel.db import session_scope
from dispatch.kernel.queues import Periodic
from dispatch.kernel.settings import Settings, get_settings
from dispatch.notices import service
from dispatch.tickets import jobs


def sweep_sla() -> int:
    """The SLA sweep with escalation steps and warnings sent as staff notices, in the sweep's transaction."""
    return jobs.sweep_sla(reach=service.Reacher(get_settings()))


def flush_digests() -> int:
    """Send the warning digests that are due; returns how many."""
    settings = get_settings()
    with session_scope() as session:
        return service.flush_digests(session, settings=settings, now=datetime.now(UTC))


def periodic(settings: Settings) -> list[Periodic]:
    """The ticket jobs with this sweep in place of the plain one, and the digests."""
    return [*jobs.periodic(settings, sla_sweep=sweep_sla),
            Periodic(flush_digests, "notice-digests", settings.notices.digest_interval_s * settings.periodic_scale)]
