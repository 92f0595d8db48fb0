"""One adapter per channel: each sends one message to one address in its provider's documented format.

An adapter raises `notify.Undeliverable` when retrying cannot help (the robot was removed, the number is
not a mobile number, the mailbox does not exist) and anything else when it might (a timeout, a 5xx,
flow control); the outbox then retries with its backoff. Base URLs come from the settings, so tests talk
to loopback peers through exactly this code.
"""

import base64
import hashlib
import hmac
import json
import re
import smtplib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from redis import Redis

from dispatch.accounts.models import NoticeChannel
from dispatch.kernel.settings import NoticeSettings, Settings, WechatSettings
from dispatch.tickets import notify
from dispatch.tickets.tips import render
from wechat.channel import send_template
from wechat.client import AccountClient

_MARKUP = re.compile(r"(\*\*|__|^#+\s*|^>\s*|`)", re.MULTILINE)
_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


@dataclass(frozen=True)
class Message:
    """What a notice says: a title, a markdown body (with the console link in it) and the link alone."""

    title: str
    markdown: str
    link: str | None = None
    # Short values for an SMS template (Aliyun's variables) or a WeChat template's keywords.
    params: Mapping[str, str] | None = None

    @property
    def text(self) -> str:
        """The body as plain text: links written out, emphasis and headings dropped."""
        return _MARKUP.sub("", _LINK.sub(r"\1 \2", self.markdown)).strip()


@dataclass(frozen=True)
class Address:
    target: str
    secret: str | None = None


class Adapter(Protocol):
    def send(self, address: Address, message: Message) -> None: ...


def _http(cfg: NoticeSettings) -> httpx.Client:
    return httpx.Client(timeout=cfg.timeout_s, follow_redirects=False)


def _json_reply(reply: httpx.Response, provider: str) -> dict[str, Any]:
    """The provider's JSON answer; a 5xx or 429 raises (retried), another 4xx is undeliverable."""
    if reply.status_code >= 500 or reply.status_code == 429:
        reply.raise_for_status()
    if reply.status_code >= 400:
        raise notify.Undeliverable(f"{provider} answered HTTP {reply.status_code}")
    try:
        body = reply.json()
    except ValueError as exc:
        raise ValueError(f"{provider} answered no JSON: {reply.text[:200]!r}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"{provider} answered {body!r}")
    return body


def _refused(provider: str, code: object, text: object, permanent: frozenset[int]) -> Exception:
    error = f"{provider} {code}: {text}"
    return notify.Undeliverable(error) if code in permanent else RuntimeError(error)


# --- group robots ------------------------------------------------------------------------------------

class WecomRobot:
    """企业微信 group robot: POST {base}/cgi-bin/webhook/send?key=KEY, a markdown message."""

    # 93000: the webhook key is not valid (robot removed); 93008: not in the group any more.
    PERMANENT = frozenset({93000, 93008, 40008})

    def __init__(self, cfg: NoticeSettings) -> None:
        self._url = f"{cfg.wecom_base_url.rstrip('/')}/cgi-bin/webhook/send"
        self._http = _http(cfg)

    def send(self, address: Address, message: Message) -> None:
        body = {"msgtype": "markdown", "markdown": {"content": f"**{message.title}**\n{message.markdown}"}}
        answer = _json_reply(self._http.post(self._url, params={"key": address.target}, json=body), "WeCom")
        if answer.get("errcode") != 0:
            raise _refused("WeCom", answer.get("errcode"), answer.get("errmsg"), self.PERMANENT)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's 加签: base64(HmacSHA256(key=secret, "{timestamp}\\n{secret}")); the URL encodes it once more."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingtalkRobot:
    """钉钉 custom robot: POST {base}/robot/send?access_token=..&timestamp=..&sign=.., a markdown message."""

    # 300001 token invalid, 310000 sign / keyword / IP check failed, 400102 robot stopped.
    PERMANENT = frozenset({300001, 310000, 400101, 400102})

    def __init__(self, cfg: NoticeSettings, clock: Callable[[], float] = time.time) -> None:
        self._url = f"{cfg.dingtalk_base_url.rstrip('/')}/robot/send"
        self._http = _http(cfg)
        self._clock = clock

    def send(self, address: Address, message: Message) -> None:
        params: dict[str, str | int] = {"access_token": address.target}
        if address.secret:
            timestamp = int(self._clock() * 1000)
            params.update(timestamp=timestamp, sign=dingtalk_sign(address.secret, timestamp))
        body = {"msgtype": "markdown", "markdown": {"title": message.title,
                                                    "text": f"#### {message.title}\n{message.markdown}"}}
        answer = _json_reply(self._http.post(self._url, params=params, json=body), "DingTalk")
        if answer.get("errcode") != 0:
            raise _refused("DingTalk", answer.get("errcode"), answer.get("errmsg"), self.PERMANENT)


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's signature: base64(HmacSHA256(key="{timestamp}\\n{secret}", empty message))."""
    return base64.b64encode(hmac.new(f"{timestamp_s}\n{secret}".encode(), digestmod=hashlib.sha256).digest()).decode()


class FeishuBot:
    """飞书 / Lark custom bot: POST {base}/open-apis/bot/v2/hook/{id}, an interactive card with markdown."""

    # 19021 signature mismatch, 19022 IP not allowed, 19024 keyword missing, 9499 bad request.
    PERMANENT = frozenset({19021, 19022, 19024, 9499})

    def __init__(self, cfg: NoticeSettings, clock: Callable[[], float] = time.time) -> None:
        self._base = f"{cfg.feishu_base_url.rstrip('/')}/open-apis/bot/v2/hook/"
        self._http = _http(cfg)
        self._clock = clock

    def send(self, address: Address, message: Message) -> None:
        body: dict[str, Any] = {"msg_type": "interactive", "card": {
            "header": {"title": {"tag": "plain_text", "content": message.title}, "template": "red"},
            "elements": [{"tag": "markdown", "content": message.markdown}]}}
        if address.secret:
            timestamp = int(self._clock())
            body.update(timestamp=str(timestamp), sign=feishu_sign(address.secret, timestamp))
        answer = _json_reply(self._http.post(self._base + quote(address.target, safe=""), json=body), "Feishu")
        code = answer.get("code", answer.get("StatusCode"))
        if code != 0:
            raise _refused("Feishu", code, answer.get("msg", answer.get("StatusMessage")), self.PERMANENT)


# --- SMS -------------------------------------------------------------------------------------------------

class SmsProvider(Protocol):
    """Sends one templated text message; a second provider fits beside Aliyun's under its own name."""

    def send_sms(self, phone: str, params: Mapping[str, str]) -> None: ...


def aliyun_percent(value: str) -> str:
    """Aliyun's percentEncode: RFC 3986, only A-Z a-z 0-9 - _ . ~ left as they are (space %20, * %2A)."""
    return quote(value, safe="~")


def aliyun_signature(secret: str, params: Mapping[str, str], method: str = "GET") -> str:
    """Aliyun RPC signature v1.0: base64(HMAC-SHA1(secret + "&", METHOD&%2F&percent(sorted canonical query)))."""
    canonical = "&".join(f"{aliyun_percent(k)}={aliyun_percent(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{aliyun_percent('/')}&{aliyun_percent(canonical)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


class AliyunSms:
    """Aliyun SMS (dysmsapi 2017-05-25) SendSms: a signed GET with the sign name, template code and params."""

    # The number is no mobile number, or a template variable is too long for its template.
    PERMANENT = frozenset({"isv.MOBILE_NUMBER_ILLEGAL", "isv.PARAM_LENGTH_LIMIT", "isv.INVALID_PARAMETERS"})

    def __init__(self, cfg: NoticeSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._cfg = cfg
        self._http = _http(cfg)
        self._clock = clock

    def send_sms(self, phone: str, params: Mapping[str, str]) -> None:
        cfg = self._cfg
        query = {"AccessKeyId": cfg.sms_access_key_id, "Action": "SendSms", "Format": "JSON",
                 "PhoneNumbers": phone, "RegionId": cfg.sms_region, "SignName": cfg.sms_sign_name,
                 "SignatureMethod": "HMAC-SHA1", "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
                 "TemplateCode": cfg.sms_template_code,
                 "TemplateParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
                 "Timestamp": self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": "2017-05-25"}
        signed = "&".join(f"{aliyun_percent(k)}={aliyun_percent(v)}" for k, v in
                          [("Signature", aliyun_signature(cfg.sms_access_key_secret, query)), *sorted(query.items())])
        answer = _json_reply(self._http.get(f"{cfg.sms_base_url.rstrip('/')}/?{signed}"), "Aliyun SMS")
        if answer.get("Code") != "OK":
            code = answer.get("Code")
            error = f"Aliyun SMS {code}: {answer.get('Message')}"
            raise notify.Undeliverable(error) if code in self.PERMANENT else RuntimeError(error)


SMS_PROVIDERS: dict[str, Callable[[NoticeSettings], SmsProvider]] = {"aliyun": AliyunSms}


class Sms:
    """The SMS channel: the message's short params through the configured provider."""

    def __init__(self, provider: SmsProvider) -> None:
        self._provider = provider

    def send(self, address: Address, message: Message) -> None:
        self._provider.send_sms(address.target, message.params or {"title": message.title[:20]})


# --- e-mail and WeChat -----------------------------------------------------------------------------------

class Email:
    """SMTP (stdlib): a text part and an HTML part rendered from the markdown (raw HTML shown as text)."""

    def __init__(self, cfg: NoticeSettings) -> None:
        self._cfg = cfg

    def send(self, address: Address, message: Message) -> None:
        cfg = self._cfg
        if not cfg.smtp_host:
            raise notify.Undeliverable("no SMTP server is configured (NOTICES__SMTP_HOST)")
        mail = EmailMessage()
        mail["Subject"], mail["From"], mail["To"] = message.title, cfg.mail_from, address.target
        mail.set_content(message.text)
        mail.add_alternative(f"<html><body><h3>{render(message.title)}</h3>{render(message.markdown)}</body></html>",
                             subtype="html")
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
            if cfg.smtp_starttls:
                smtp.starttls()
            if cfg.smtp_username:
                smtp.login(cfg.smtp_username, cfg.smtp_password)
            try:
                smtp.send_message(mail)
            except smtplib.SMTPRecipientsRefused as exc:
                raise notify.Undeliverable(f"the mail server refused {address.target}: {exc.recipients}") from exc


class WechatStaff:
    """A template message (WECHAT__TEMPLATE_NOTICE) to a staff member's bound WeChat."""

    def __init__(self, cfg: WechatSettings, redis: Redis) -> None:
        self._cfg = cfg
        self._client = AccountClient(cfg, redis) if cfg.enabled else None

    def send(self, address: Address, message: Message) -> None:
        if self._client is None or not self._cfg.template_notice:
            raise notify.Undeliverable("no WeChat account or no WECHAT__TEMPLATE_NOTICE template is configured")
        params = dict(message.params or {})
        data = {"first": message.title, "remark": params.get("state", ""),
                **{f"keyword{i}": params.get(key, "") for i, key in enumerate(("number", "type", "grid", "due"), 1)}}
        send_template(self._client, self._cfg, {"openid": address.target, "kind": "notice", "url": message.link,
                                                "data": {k: {"value": v} for k, v in data.items()}})


def adapters(settings: Settings, redis: Redis) -> dict[NoticeChannel, Adapter]:
    """Every channel's adapter as the settings configure them."""
    cfg = settings.notices
    return {NoticeChannel.WECOM: WecomRobot(cfg), NoticeChannel.DINGTALK: DingtalkRobot(cfg),
            NoticeChannel.FEISHU: FeishuBot(cfg), NoticeChannel.SMS: Sms(SMS_PROVIDERS[cfg.sms_provider](cfg)),
            NoticeChannel.EMAIL: Email(cfg), NoticeChannel.WECHAT: WechatStaff(settings.wechat, redis)}
