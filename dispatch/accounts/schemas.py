from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dispatch.accounts.models import Importance
from dispatch.kernel.auth import Role
from dispatch.kernel.inputs import JsonId, Phone, Text

Username = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")


class TokenRead(BaseModel):
    access_token: str
    token_type: str = "bearer"
    role: Role
    user_id: int
    expires_in: int


# Subscribers sign in through WeChat and API clients hold keys: neither is a log-in someone creates.
LoginRole = Literal[Role.ADMIN, Role.DISPATCHER, Role.CLERK, Role.PAYROLL, Role.TECHNICIAN]


class UserCreate(BaseModel):
    username: str = Username
    name: Text | None = Field(default=None, max_length=100)
    password: Text = Field(min_length=4, max_length=128)
    role: LoginRole
    region_ids: list[JsonId] = Field(default_factory=list, max_length=100)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    name: str
    role: Role
    region_ids: list[int]
    active: bool
    created_at: datetime
    locked_at: datetime | None


class UserPatch(BaseModel):
    """Only the fields sent change."""

    name: Text | None = Field(default=None, min_length=1, max_length=100)
    role: LoginRole | None = None
    region_ids: list[JsonId] | None = Field(default=None, max_length=100)
    active: bool | None = None


class MeRead(BaseModel):
    kind: str
    id: int
    role: Role
    label: str
    region_ids: list[int]
    name: str | None = Field(default=None, description="The person's name, as a page greets them (not the log-in).")


class ApiKeyCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=100)
    region_ids: list[JsonId] = Field(min_length=1, max_length=100)


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    region_ids: list[int]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyIssued(ApiKeyRead):
    key: str = Field(description="The secret, shown this once; only its hash is stored.")


class SubscriberMark(BaseModel):
    phone: Phone
    importance: Importance | None = Field(description="vip, enterprise or hospital: their reports are raised "
                                                      "(PRIORITY__RAISE_TO); null: no longer important.")


class SubscriberRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    phone: str | None
    name: str | None
    importance: Importance | None
