from pydantic import BaseModel, Field

from dispatch.kernel.inputs import JsonId


class BindingCreate(BaseModel):
    technician_id: JsonId


class BindingRead(BaseModel):
    technician_id: int
    code: str
    url: str = Field(description="Open inside WeChat to bind; one use.")
    expires_in: int = Field(description="Seconds the link stays valid.")


class JssdkConfig(BaseModel):
    appId: str  # wx.config's own names
    timestamp: int
    nonceStr: str
    signature: str
    jsApiList: list[str]
