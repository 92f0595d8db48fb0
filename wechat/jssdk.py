"""The JS-SDK config a page inside WeChat needs before it may call wx.getLocation."""

import secrets
import time
from typing import Any

from dispatch.kernel.errors import InvalidInput
from dispatch.kernel.settings import WechatSettings
from wechat.client import AccountClient, answering_for

JS_APIS = ["getLocation", "openLocation", "chooseImage", "uploadImage", "startRecord", "stopRecord", "uploadVoice"]


def config(client: AccountClient, cfg: WechatSettings, *, url: str) -> dict[str, Any]:
    """`wx.config` for the page at `url` (signed over the URL without its fragment, as WeChat checks it).

    Raises:
        InvalidInput: the URL is not a page of this deployment.
    """
    base = cfg.public_base_url.rstrip("/") + "/"
    if not url.startswith(base):
        raise InvalidInput("url", f"must be a page under {base}")
    page = url.split("#", 1)[0]
    with answering_for("the JS-SDK ticket"):
        ticket = str(client.call(client.jsapi.get_jsapi_ticket))
    nonce, timestamp = secrets.token_hex(8), int(time.time())
    return {"appId": cfg.app_id, "timestamp": timestamp, "nonceStr": nonce,
            "signature": client.jsapi.get_jsapi_signature(nonce, ticket, timestamp, page), "jsApiList": JS_APIS}
