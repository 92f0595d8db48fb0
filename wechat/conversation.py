"""A subscriber's short conversation with the account, kept in Redis with a TTL.

A report told in pieces (a few words, a location, a photo, a phone number)
is gathered here until it has what intake needs; the most recent position
(a location message, or the LOCATION event WeChat sends on entering the
account) is kept apart, for as long as it says where the subscriber is.
Deliveries are handled once: WeChat resends a message it got no answer to
within 5 s, with the same MsgId.
"""

import json
from dataclasses import dataclass, field

from redis import Redis

from dispatch.kernel.settings import WechatSettings
from geo.latlng import LatLng

PREFIX = "fp:wechat"
SEEN_TTL_S = 600  # WeChat retries three times within about 15 s; the margin covers slow peers


@dataclass
class Report:
    """What the subscriber told so far; positions are GCJ-02, as WeChat gives them."""

    description: str = ""
    phone: str | None = None
    media: list[tuple[str, str]] = field(default_factory=list)  # (media_id, "image" | "voice")


def _report_key(openid: str) -> str:
    return f"{PREFIX}:report:{openid}"


def _position_key(openid: str) -> str:
    return f"{PREFIX}:position:{openid}"


def first_delivery(redis: Redis, delivery_id: str) -> bool:
    """True the first time a delivery id is seen within the retry window (SET NX with TTL)."""
    return bool(redis.set(f"{PREFIX}:seen:{delivery_id}", 1, nx=True, ex=SEEN_TTL_S))


def forget_delivery(redis: Redis, delivery_id: str) -> None:
    """Handling failed: let WeChat's retry of this delivery be handled."""
    redis.delete(f"{PREFIX}:seen:{delivery_id}")


def load(redis: Redis, openid: str) -> Report | None:
    raw = redis.get(_report_key(openid))
    if raw is None:
        return None
    data = json.loads(raw)
    return Report(description=data["description"], phone=data["phone"],
                  media=[(m, k) for m, k in data["media"]])


def save(redis: Redis, openid: str, report: Report, cfg: WechatSettings) -> None:
    redis.set(_report_key(openid), json.dumps({"description": report.description, "phone": report.phone,
                                               "media": report.media}, ensure_ascii=False),
              ex=cfg.conversation_ttl_s)


def end(redis: Redis, openid: str) -> None:
    redis.delete(_report_key(openid))


def keep_position(redis: Redis, openid: str, point: LatLng, cfg: WechatSettings) -> None:
    redis.set(_position_key(openid), f"{point.lat},{point.lng}", ex=cfg.position_ttl_s)


def recent_position(redis: Redis, openid: str) -> LatLng | None:
    raw = redis.get(_position_key(openid))
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    lat, lng = (float(part) for part in text.split(","))
    return LatLng(lat, lng)
