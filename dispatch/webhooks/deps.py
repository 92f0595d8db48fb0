from typing import Annotated

from fastapi import Depends

from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import NotFound
from dispatch.kernel.inputs import Id
from dispatch.kernel.problems import raises
from dispatch.webhooks import service
from dispatch.webhooks.models import Webhook


@raises(NotFound)
def webhook_of_path(webhook_id: Id, session: SessionDep) -> Webhook:
    return service.get_webhook(session, webhook_id)


WebhookDep = Annotated[Webhook, Depends(webhook_of_path)]
