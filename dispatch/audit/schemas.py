from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from dispatch.audit.models import AuditAction


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_kind: str | None
    actor_id: int | None
    actor_label: str
    action: AuditAction
    target_type: str | None
    target_id: int | None
    address: str | None
    detail: dict[str, Any]
