"""Speaking to the app as WeChat does: signed queries, message XML, plain and safe mode; draining the outbox."""

import hashlib
import time
from typing import Any
from urllib.parse import urlencode

from fastapi.testclient import TestClient
from httpx import Response
from redis import Redis
from rq import SimpleWorker
from wechatpy.crypto import WeChatCrypto

from dispatch.kernel.queues import queue
from dispatch.tickets import outbox
from tests.wechat.peer import APP_ID

TOKEN = "spamtest"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
PUBLIC = "https://fp.example.cn"
TEMPLATES = {"template_offer": "TPL-OFFER", "template_accepted": "TPL-ACCEPTED", "template_arrived": "TPL-ARRIVED",
             "template_completed": "TPL-COMPLETED", "template_urged": "TPL-URGED"}
ACCOUNT = "gh_10f6c3c3ac5a"


def signed_query(*, timestamp: int | None = None, nonce: str = "1320562132", token: str = TOKEN) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    signature = hashlib.sha1("".join(sorted([token, ts, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": ts, "nonce": nonce}


def message_xml(openid: str, msg_type: str, msg_id: int | None = None, **fields: str | float) -> str:
    parts = [f"<ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>", f"<FromUserName><![CDATA[{openid}]]></FromUserName>",
             f"<CreateTime>{int(time.time())}</CreateTime>", f"<MsgType><![CDATA[{msg_type}]]></MsgType>"]
    parts += [f"<{name}><![CDATA[{value}]]></{name}>" if isinstance(value, str) else f"<{name}>{value}</{name}>"
              for name, value in fields.items()]
    if msg_id is not None:
        parts.append(f"<MsgId>{msg_id}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


def post_message(client: TestClient, xml: str, *, encrypted: bool = False, **query: Any) -> Response:
    """Deliver a message as WeChat does: signed query, plain or safe mode."""
    params = {**signed_query(), **query}
    body = xml
    if encrypted:
        sealed = WeChatCrypto(TOKEN, AES_KEY, APP_ID).encrypt_message(xml, params["nonce"], params["timestamp"])
        encrypt = sealed.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
        params.setdefault("msg_signature", hashlib.sha1(
            "".join(sorted([TOKEN, params["timestamp"], params["nonce"], encrypt])).encode()).hexdigest())
        params["encrypt_type"] = "aes"
        body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return client.post(f"/wechat/callback?{urlencode(params)}", content=body.encode(),
                       headers={"Content-Type": "text/xml"})


def reply_content(response: Response) -> str:
    """The Content of a plain-mode passive reply."""
    assert response.status_code == 200, response.text
    return response.text.split("<Content><![CDATA[")[1].split("]]></Content>")[0]


def drain() -> int:
    """Deliver the outbox until it is empty of due messages (feed, fan-out, template pushes)."""
    total = 0
    while (sent := outbox.drain_outbox_job()) > 0:
        total += sent
    return total


def run_jobs(redis: Redis) -> None:
    SimpleWorker([queue()], connection=queue().connection).work(burst=True)
