from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dispatch.accounts.schemas import Username

Phone = Field(min_length=5, max_length=20, pattern=r"^\+?[0-9][0-9\- ]{3,18}[0-9]$")
Skill = Field(min_length=1, max_length=32)


class TechnicianCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    phone: str = Phone
    username: str = Username
    password: str = Field(min_length=4, max_length=128)
    skills: list[str] = Field(default_factory=list, max_length=20)
    region_id: int
    max_active: int = Field(default=5, ge=1, le=50)


class TechnicianRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    name: str
    phone: str
    skills: list[str]
    region_id: int
    max_active: int
    bound: bool = Field(description="Has a WeChat openid bound, so can be pushed and force-assigned.")
    active: bool
    created_at: datetime
