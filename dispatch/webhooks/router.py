from fastapi import APIRouter, Response

from dispatch.kernel.auth import AdminDep
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from dispatch.kernel.inputs import Id
from dispatch.kernel.pagination import Page, PageDep, page_of
from dispatch.kernel.problems import problem_docs
from dispatch.kernel.settings import SettingsDep
from dispatch.webhooks import jobs, service
from dispatch.webhooks.deps import WebhookDep
from dispatch.webhooks.errors import WebhookDisabled
from dispatch.webhooks.models import DeliveryState, Webhook, WebhookDelivery
from dispatch.webhooks.schemas import DeliveryRead, WebhookCreate, WebhookIssued, WebhookRead

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"],
                   responses=problem_docs(Unauthorized, Forbidden))


@router.post("", response_model=WebhookIssued, status_code=201, responses=problem_docs(InvalidInput))
def create_webhook(body: WebhookCreate, session: SessionDep, admin: AdminDep, settings: SettingsDep) -> WebhookIssued:
    """Send the events of these types in these regions to a URL, each signed with the webhook's secret
    (`X-Fieldpool-Signature`); the secret is returned only here. Admin only; audited."""
    webhook = service.create_webhook(session, url=body.url, event_types=list(body.event_types),
                                     region_ids=body.region_ids, secret=body.secret, description=body.description,
                                     actor=admin, cfg=settings.webhooks)
    return WebhookIssued(**WebhookRead.model_validate(webhook).model_dump(exclude={"enabled"}),
                         secret=webhook.secret)


@router.get("", response_model=Page[WebhookRead])
def list_webhooks(session: SessionDep, admin: AdminDep, page: PageDep) -> dict[str, object]:
    """Every webhook, disabled ones included, oldest first (admin only)."""
    return page_of(service.list_webhooks(session, page=page), page)


@router.get("/{webhook_id}", response_model=WebhookRead)
def read_webhook(webhook: WebhookDep, admin: AdminDep) -> Webhook:
    """One webhook: whether it is enabled, failing since when, retried when (admin only)."""
    return webhook


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook: WebhookDep, session: SessionDep, admin: AdminDep) -> Response:
    """Remove a webhook and its deliveries; nothing more is sent to it (admin only; audited)."""
    service.delete_webhook(session, webhook=webhook, actor=admin)
    return Response(status_code=204)


@router.post("/{webhook_id}/enable", response_model=WebhookRead)
def enable_webhook(webhook: WebhookDep, session: SessionDep, admin: AdminDep) -> Webhook:
    """Deliver again to a webhook disabled after repeated failures; its failures are forgotten and its pending
    deliveries go first (admin only; audited)."""
    enabled = service.enable_webhook(session, webhook=webhook, actor=admin)
    jobs.send_after_commit(session)
    return enabled


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryRead])
def list_deliveries(webhook: WebhookDep, session: SessionDep, admin: AdminDep, page: PageDep,
                    state: DeliveryState | None = None) -> dict[str, object]:
    """The webhook's deliveries, newest first: attempts, the receiver's last status and error (admin only)."""
    return page_of(service.list_deliveries(session, webhook=webhook, page=page, state=state), page)


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", response_model=DeliveryRead, status_code=202,
             responses=problem_docs(NotFound, WebhookDisabled))
def redeliver(webhook: WebhookDep, delivery_id: Id, session: SessionDep, admin: AdminDep) -> WebhookDelivery:
    """Send a delivery's event again (same event id and body, a new signature) as a new delivery, from the
    worker; it stands outside its ticket's order (admin only; audited)."""
    again = service.redeliver(session, webhook=webhook, delivery_id=delivery_id, actor=admin)
    jobs.send_after_commit(session)
    return again
