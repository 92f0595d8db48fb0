from pydantic import BaseModel, Field, model_validator

from dispatch.kernel.inputs import JsonId


class BindingCreate(BaseModel):
    """A technician's binding, or a staff user's (`user_id`: their own, or anyone's by an admin)."""

    technician_id: JsonId | None = None
    user_id: JsonId | None = None

    @model_validator(mode="after")
    def _one(self) -> "BindingCreate":
        if (self.technician_id is None) == (self.user_id is None):
            raise ValueError("give technician_id or user_id")
        return self


class BindingRead(BaseModel):
    technician_id: int | None
    user_id: int | None = None
    code: str
    url: str = Field(description="Open inside WeChat to bind; one use.")
    expires_in: int = Field(description="Seconds the link stays valid.")


class JssdkConfig(BaseModel):
    appId: str  # wx.config's own names
    timestamp: int
    nonceStr: str
    signature: str
    jsApiList: list[str]
