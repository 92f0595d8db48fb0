"""Webhooks: made and removed by admins, fed from the live feed's events, delivered by the worker."""

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, literal_column, or_, select, text, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from dispatch.accounts.service import check_regions
from dispatch.audit.models import AuditAction
from dispatch.audit.service import record
from dispatch.kernel.auth import Actor
from dispatch.kernel.errors import InvalidInput, NotFound
from dispatch.kernel.pagination import PageParams
from dispatch.kernel.settings import WebhookSettings
from dispatch.webhooks import queries, urls
from dispatch.webhooks.errors import WebhookDisabled
from dispatch.webhooks.models import DeliveryState, Webhook, WebhookDelivery
from dispatch.webhooks.sender import Outcome, Outgoing

SECRET_PREFIX = "whsec_"
# Written into the SQL, not bound: a prepared statement's generic plan cannot use the partial indexes on
# pending deliveries for a bound state, and scanned every earlier delivery for each candidate.
PENDING: ColumnElement[str] = literal_column(f"'{DeliveryState.PENDING.value}'")
SYSTEM_LABEL = "webhooks"  # the audit log's actor when the sender disables a webhook
log = structlog.get_logger()


def create_webhook(session: Session, *, url: str, event_types: list[str], region_ids: list[int],
                   secret: str | None, description: str | None, actor: Actor,
                   cfg: WebhookSettings) -> Webhook:
    """A new webhook; its secret is generated when not given (the caller shows it once). Audited.

    Raises:
        InvalidInput: the URL is not http(s), does not resolve or points at a non-public address (unless the
            deployment allows those); an unknown region.
    """
    try:
        urls.resolve(url, allow_private=cfg.allow_private_urls)
    except urls.UnsafeUrl as exc:
        raise InvalidInput("url", str(exc)) from None
    check_regions(session, region_ids)
    webhook = Webhook(url=url, event_types=sorted(set(event_types)), region_ids=sorted(set(region_ids)),
                      secret=secret or f"{SECRET_PREFIX}{secrets.token_urlsafe(32)}", description=description,
                      created_by=actor.id, consecutive_failures=0)
    session.add(webhook)
    session.flush()
    record(session, action=AuditAction.WEBHOOK_CREATED, actor=actor, target=("webhook", webhook.id), url=url,
           event_types=webhook.event_types, region_ids=webhook.region_ids)
    return webhook


def list_webhooks(session: Session, *, page: PageParams) -> list[Webhook]:
    """Oldest first, `page.limit + 1` rows (the extra one says another page exists)."""
    query = select(Webhook).order_by(Webhook.id).limit(page.limit + 1)
    if page.after_id is not None:
        query = query.where(Webhook.id > page.after_id)
    return list(session.scalars(query))


def get_webhook(session: Session, webhook_id: int) -> Webhook:
    """Raises: NotFound."""
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return webhook


def delete_webhook(session: Session, *, webhook: Webhook, actor: Actor) -> None:
    """Remove a webhook and its deliveries at once (audited); nothing more is sent to it."""
    record(session, action=AuditAction.WEBHOOK_DELETED, actor=actor, target=("webhook", webhook.id),
           url=webhook.url)
    session.delete(webhook)
    session.flush()


def enable_webhook(session: Session, *, webhook: Webhook, actor: Actor) -> Webhook:
    """Deliver to a disabled webhook again, its failures forgotten (audited); its pending deliveries go first."""
    if webhook.disabled_at is not None:
        record(session, action=AuditAction.WEBHOOK_ENABLED, actor=actor, target=("webhook", webhook.id),
               was_disabled_for=webhook.disabled_reason)
    webhook.disabled_at = webhook.disabled_reason = webhook.failing_since = webhook.retry_at = None
    webhook.consecutive_failures = 0
    session.flush()
    return webhook


def list_deliveries(session: Session, *, webhook: Webhook, page: PageParams,
                    state: DeliveryState | None) -> list[WebhookDelivery]:
    """Newest first, `page.limit + 1` rows."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    if page.after_id is not None:
        query = query.where(WebhookDelivery.id < page.after_id)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(page.limit + 1)))


def redeliver(session: Session, *, webhook: Webhook, delivery_id: int, actor: Actor) -> WebhookDelivery:
    """A new delivery of the same event and body (the receiver sees the same event id), sent by the worker.

    It stands outside its ticket's order: it neither waits for nor holds back the ticket's other events.

    Raises:
        NotFound: no such delivery of this webhook.
        WebhookDisabled: the webhook is disabled.
    """
    original = session.get(WebhookDelivery, delivery_id)
    if original is None or original.webhook_id != webhook.id:
        raise NotFound(f"delivery {delivery_id} of webhook {webhook.id} does not exist")
    if webhook.disabled_at is not None:
        raise WebhookDisabled(f"webhook {webhook.id} is disabled: enable it first")
    again = WebhookDelivery(webhook_id=webhook.id, event_id=original.event_id, event_type=original.event_type,
                            ticket_id=original.ticket_id, body=original.body, state=DeliveryState.PENDING,
                            attempts=0, redelivery_of=original.redelivery_of or original.id)
    session.add(again)
    session.flush()
    record(session, action=AuditAction.WEBHOOK_REDELIVERED, actor=actor, target=("webhook", webhook.id),
           delivery_id=original.id, event_id=original.event_id)
    session.refresh(again)
    return again


# --- the worker's side ----------------------------------------------------------------------

def event_id_of(event: Mapping[str, Any]) -> str:
    """The event's own id; for an event queued before events had one, a digest of its content."""
    given = event.get("event_id")
    if isinstance(given, str) and given:
        return given
    return hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()[:32]


def body_of(event: Mapping[str, Any], event_id: str, now: datetime) -> str:
    """What receivers get: `{id, type, created_at, data}`, data being the feed's event."""
    data = {k: v for k, v in event.items() if k not in {"event_id", "at"}}
    return json.dumps({"id": event_id, "type": event["type"], "created_at": event.get("at") or now.isoformat(),
                       "data": data}, ensure_ascii=False, separators=(",", ":"), default=str)


def event_types_heard(session: Session) -> frozenset[str]:
    """The event types at least one enabled webhook takes."""
    return frozenset(session.scalars(select(func.unnest(Webhook.event_types)).where(Webhook.disabled_at.is_(None))
                                     .distinct()))


def fan_out(session: Session, event: Mapping[str, Any]) -> int:
    """One pending delivery per enabled webhook that hears this event (its type, in its regions); returns
    how many were added. Safe to run twice for one event: a webhook gets one delivery per event id."""
    kind, ticket_id = event.get("type"), event.get("ticket_id")
    region_id = event.get("region_id") or event.get("branch_id")
    if not isinstance(kind, str) or not isinstance(ticket_id, int) or not isinstance(region_id, int):
        return 0
    event_id = event_id_of(event)
    added = session.connection().execute(queries.FAN_OUT, {
        "event_id": event_id, "kind": kind, "ticket_id": ticket_id, "region_id": region_id,
        "body": body_of(event, event_id, datetime.now(UTC))})
    return len(added.all())


def claim_due(session: Session, *, now: datetime, limit: int, skip_webhooks: Iterable[int] = ()) -> list[Outgoing]:
    """Pending deliveries that may go now, oldest first, locked until the caller's transaction ends.

    Order per ticket: a delivery waits while an earlier one of its ticket to the same webhook is pending
    (a redelivery stands outside). Concurrent senders split the work (SKIP LOCKED): the earlier one being
    locked by another sender is still pending, so the later one is not taken before it is sent.
    """
    d, other = WebhookDelivery, aliased(WebhookDelivery)
    skip = sorted(set(skip_webhooks))
    due = select(Webhook.id).where(Webhook.disabled_at.is_(None),
                                   or_(Webhook.retry_at.is_(None), Webhook.retry_at <= now))
    if skip:
        due = due.where(Webhook.id.not_in(skip))
    # Each ticket's oldest pending delivery per webhook: computed for the whole backlog at once (the partial
    # index on pending deliveries by webhook and ticket) rather than checked candidate by candidate, which
    # the planner, with stale statistics after a burst, did by scanning every delivery of the webhook.
    heads = (select(func.min(other.id))
             .where(other.state == PENDING, other.redelivery_of.is_(None), other.webhook_id.in_(due))
             .group_by(other.webhook_id, other.ticket_id))
    # A webhook that has been failing is probed with its oldest pending delivery alone; the rest follow once
    # one goes through.
    probes = (select(func.min(other.id))
              .where(other.state == PENDING, other.webhook_id.in_(due.where(Webhook.consecutive_failures > 0)))
              .group_by(other.webhook_id))
    query = (select(d.id, d.webhook_id, Webhook.url, Webhook.secret, d.body, d.event_type, d.event_id, d.attempts)
             .join(Webhook, Webhook.id == d.webhook_id)
             .where(d.state == PENDING, d.webhook_id.in_(due),
                    or_(d.redelivery_of.is_not(None), d.id.in_(heads)),
                    or_(Webhook.consecutive_failures == 0, d.id.in_(probes)))
             .order_by(d.id).limit(limit).with_for_update(of=d, skip_locked=True))
    return [Outgoing(*row) for row in session.execute(query)]


def backoff(failures: int, cfg: WebhookSettings) -> timedelta:
    """Wait after `failures` failures in a row: 2, 4, 8 ... seconds, at most `cfg.backoff_cap_s`."""
    return timedelta(seconds=min(2 ** min(failures, 30), cfg.backoff_cap_s))


def record_outcomes(session: Session, outcomes: list[Outcome], *, now: datetime, cfg: WebhookSettings) -> None:
    """Write each attempt's outcome, back off or clear the webhooks tried; disable those that failed
    `cfg.disable_after_failures` tries in a row or have failed for `cfg.disable_after_s`."""
    by_webhook: dict[int, list[Outcome]] = {}
    for outcome in outcomes:
        by_webhook.setdefault(outcome.webhook_id, []).append(outcome)
    if outcomes:  # one executemany: bulk UPDATE by primary key
        session.execute(update(WebhookDelivery), [
            {"id": o.delivery_id, "attempts": o.attempts, "last_attempt_at": o.at, "last_status": o.status,
             "last_error": o.error, "state": DeliveryState.DELIVERED if o.delivered else DeliveryState.PENDING,
             "delivered_at": o.at if o.delivered else None} for o in outcomes])
    # Locked in id order: two senders recording for the same webhooks never wait on each other in a circle.
    for webhook in session.scalars(select(Webhook).where(Webhook.id.in_(sorted(by_webhook)))
                                   .order_by(Webhook.id).with_for_update()):
        if all(o.delivered for o in by_webhook[webhook.id]):
            webhook.consecutive_failures, webhook.failing_since, webhook.retry_at = 0, None, None
            continue
        # One failed try of the webhook, however many of its deliveries were in flight when it failed.
        webhook.consecutive_failures += 1
        webhook.failing_since = webhook.failing_since or now
        webhook.retry_at = now + backoff(webhook.consecutive_failures, cfg)
        reason = _disable_reason(webhook, now=now, cfg=cfg)
        if reason is not None:
            _disable(session, webhook, now=now, reason=reason,
                     last_error=next(o.error for o in reversed(by_webhook[webhook.id]) if o.error))
    session.flush()


def disable_failing(session: Session, *, now: datetime, cfg: WebhookSettings) -> None:
    """Disable the webhooks failing for `cfg.disable_after_s` that no try has disabled (all their deliveries
    given up meanwhile, none left to try)."""
    since = now - timedelta(seconds=cfg.disable_after_s)
    failing = list(session.scalars(select(Webhook).where(Webhook.disabled_at.is_(None), Webhook.failing_since <= since)
                                   .order_by(Webhook.id).with_for_update(skip_locked=True)))
    for webhook in failing:
        last_error = session.scalar(select(WebhookDelivery.last_error).where(
            WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.last_attempt_at.is_not(None))
            .order_by(WebhookDelivery.last_attempt_at.desc()).limit(1))
        _disable(session, webhook, now=now, reason=_disable_reason(webhook, now=now, cfg=cfg) or "",
                 last_error=last_error)
    session.flush()


def _disable_reason(webhook: Webhook, *, now: datetime, cfg: WebhookSettings) -> str | None:
    if webhook.consecutive_failures >= cfg.disable_after_failures:
        return f"{webhook.consecutive_failures} failed tries in a row"
    if webhook.failing_since is not None and now - webhook.failing_since >= timedelta(seconds=cfg.disable_after_s):
        return f"failing since {webhook.failing_since.isoformat()}"
    return None


def _disable(session: Session, webhook: Webhook, *, now: datetime, reason: str, last_error: str | None) -> None:
    webhook.disabled_at, webhook.disabled_reason = now, reason
    # The admin's notice: the audit log (GET /api/v1/audit?action=webhook.disabled) and an error line.
    record(session, action=AuditAction.WEBHOOK_DISABLED, actor=None, label=SYSTEM_LABEL,
           target=("webhook", webhook.id), url=webhook.url, reason=reason, last_error=last_error)
    log.error("webhook_disabled", webhook_id=webhook.id, url=webhook.url, reason=reason, last_error=last_error)


def give_up_stale(session: Session, *, now: datetime, cfg: WebhookSettings) -> int:
    """Pending deliveries older than `cfg.retry_for_s` become failed (their ticket's later events then go);
    returns how many. Rows another sender holds are left to it."""
    stale = (select(WebhookDelivery.id)
             .where(WebhookDelivery.state == PENDING,
                    WebhookDelivery.created_at < now - timedelta(seconds=cfg.retry_for_s))
             .with_for_update(skip_locked=True))
    done = session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(stale.scalar_subquery()))
                           .values(state=DeliveryState.FAILED,
                                   last_error=text("'gave up: not delivered within the retry period; ' "
                                                   "|| coalesce(last_error, '')"))
                           .returning(WebhookDelivery.id)
                           .execution_options(synchronize_session=False))
    return len(done.all())
