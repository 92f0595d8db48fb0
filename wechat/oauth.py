"""Sign-in for the pages inside WeChat (`snsapi_base`: the openid, silently) and binding technicians to it.

wechatpy builds the authorize URL with whatever `state` it is given (empty by
default), which leaves the redirect open to login CSRF. Here the state is a
random nonce with its HMAC; the nonce is also set as a cookie on this
browser and names a Redis entry (used once, ten minutes) holding where to
go next and, for a binding, which technician. The callback accepts only a
state that is ours, unused, and started in the same browser.
"""

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session
from wechatpy.exceptions import WeChatOAuthException

from dispatch.accounts.models import User
from dispatch.accounts.service import subscriber_by_openid, token_for
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from dispatch.kernel.redis import as_text
from dispatch.kernel.settings import Settings, WechatSettings
from technicians.models import Technician
from technicians.service import get_technician
from wechat.client import AccountOAuth, answering_for
from wechat.conversation import PREFIX
from wechat.errors import AlreadyBound, BadOAuthState, WechatBadAnswer

STATE_TTL_S = 600
COOKIE = "fp_wechat_oauth"
TECH_HOME = "/m/tech"
STAFF_HOME = "/console"


@dataclass(frozen=True)
class SignIn:
    """Where to send the browser after sign-in, with the bearer token for the page."""

    next: str
    access_token: str
    role: Role


@dataclass(frozen=True)
class Binding:
    technician_id: int | None
    user_id: int | None
    code: str
    url: str
    expires_in: int


def callback_url(cfg: WechatSettings) -> str:
    return f"{cfg.public_base_url.rstrip('/')}/wechat/oauth/callback"


def same_site_path(next_path: str) -> str:
    """`next` if it is a path on this site; an open redirect (`//evil`, `https://evil`, `/\\evil`) is refused.

    Raises:
        InvalidInput: anything but an absolute path without scheme or host.
    """
    parts = urlsplit(next_path)
    if (not next_path.startswith("/") or next_path.startswith(("//", "/\\")) or parts.scheme or parts.netloc
            or any(ord(ch) < 0x20 for ch in next_path) or "\\" in next_path):
        raise InvalidInput("next", "must be a path on this site, like /m/report")
    return next_path


def _mac(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), f"wechat-oauth:{nonce}".encode(), hashlib.sha256).hexdigest()[:32]


def _state_key(nonce: str) -> str:
    return f"{PREFIX}:oauth:{nonce}"


def _binding_key(code: str) -> str:
    return f"{PREFIX}:binding:{code}"


def begin(redis: Redis, settings: Settings, *, next_path: str, binding_code: str | None = None) -> tuple[str, str]:
    """The WeChat authorize URL to redirect to, and the nonce to set as this browser's cookie.

    Raises:
        InvalidInput: `next` is not a path on this site.
    """
    nonce = secrets.token_urlsafe(16)
    redis.set(_state_key(nonce), json.dumps({"next": same_site_path(next_path), "binding": binding_code}),
              ex=STATE_TTL_S)
    # WeChat caps state at 128 characters: the nonce and a truncated MAC take 55.
    state = f"{nonce}.{_mac(settings.secret_key, nonce)}"
    return AccountOAuth(settings.wechat, redirect_uri=callback_url(settings.wechat), state=state).authorize_url, nonce


def finish(session: Session, redis: Redis, settings: Settings, *, code: str, state: str,
           cookie: str | None) -> SignIn:
    """Exchange WeChat's code for the openid and sign its owner in: a bound technician, else a subscriber.

    Raises:
        BadOAuthState: state forged, expired, used, or started in another browser; binding code used.
        Unauthorized: WeChat refused the code.
        AlreadyBound: (binding) the openid belongs to another technician.
    """
    nonce, _, mac = state.partition(".")
    if not nonce or not hmac.compare_digest(mac.encode(), _mac(settings.secret_key, nonce).encode()):
        raise BadOAuthState("the sign-in state is not ours")
    if not cookie or not hmac.compare_digest(cookie.encode(), nonce.encode()):
        raise BadOAuthState("the sign-in was started in another browser")
    raw = redis.getdel(_state_key(nonce))
    if raw is None:
        raise BadOAuthState("the sign-in expired or was already used")
    started = json.loads(raw)
    openid = _openid(settings.wechat, code)
    if started["binding"]:
        _bind(session, redis, code=started["binding"], openid=openid)
    technician = session.scalar(select(Technician).where(Technician.wechat_openid == openid, Technician.active))
    if technician is not None:
        principal, role = f"{PrincipalKind.USER}:{technician.user_id}", Role.TECHNICIAN
    else:
        principal, role = f"{PrincipalKind.SUBSCRIBER}:{subscriber_by_openid(session, openid=openid).id}", \
            Role.SUBSCRIBER
    token = token_for(principal, secret=settings.secret_key, ttl_min=settings.token_ttl_min)
    return SignIn(next=started["next"], access_token=token, role=role)


def _openid(cfg: WechatSettings, code: str) -> str:
    try:
        with answering_for("the sign-in"):
            return str(AccountOAuth(cfg, redirect_uri=callback_url(cfg)).fetch_access_token(code)["openid"])
    except WechatBadAnswer as exc:
        refusal = exc.__cause__
        if isinstance(refusal, WeChatOAuthException) and refusal.errcode is not None:
            raise Unauthorized(f"WeChat refused the sign-in code ({refusal.errcode})") from None
        raise


def issue_binding(session: Session, redis: Redis, settings: Settings, *, actor: Actor,
                  technician_id: int | None = None, user_id: int | None = None) -> Binding:
    """A one-time link that binds the WeChat user who opens it to this technician, or to this staff user (for
    their notices: themselves, or anyone by an admin).

    Raises:
        NotFound: no such technician in the caller's regions.
        Forbidden: another staff user's binding, asked by someone not an admin.
    """
    if user_id is not None:
        if user_id != actor.id and actor.role is not Role.ADMIN:
            raise Forbidden("only an admin binds another user's WeChat", required=[Role.ADMIN])
        if session.get(User, user_id) is None:
            raise NotFound(f"user {user_id} does not exist")
        holder = f"user:{user_id}"
    else:
        assert technician_id is not None
        technician_id = get_technician(session, technician_id, scope=actor.scope).id
        holder = f"technician:{technician_id}"
    code = secrets.token_urlsafe(16)
    ttl = settings.wechat.binding_ttl_s
    redis.set(_binding_key(code), holder, ex=ttl)
    url = f"{settings.wechat.public_base_url.rstrip('/')}/wechat/bind/{code}"
    return Binding(technician_id=technician_id, user_id=user_id, code=code, url=url, expires_in=ttl)


def binding_home(redis: Redis, code: str) -> str:
    """Where a binding link lands once bound: the technician's page, or the console for staff.

    Raises:
        NotFound: unknown, expired or already used.
    """
    holder = redis.get(_binding_key(code))
    if holder is None:
        raise NotFound("this binding link is unknown, expired or already used")
    return STAFF_HOME if as_text(holder).startswith("user:") else TECH_HOME


def _bind(session: Session, redis: Redis, *, code: str, openid: str) -> None:
    raw = redis.getdel(_binding_key(code))
    if raw is None:
        raise BadOAuthState("this binding link expired or was already used")
    kind, _, ident = as_text(raw).rpartition(":")
    if kind == "user":
        bound_user = session.scalar(select(User.id).where(User.wechat_openid == openid))
        if bound_user is not None and bound_user != int(ident):
            raise AlreadyBound("this WeChat user is already bound to another staff user", user_id=bound_user)
        session.get_one(User, int(ident)).wechat_openid = openid
        session.flush()
        return
    holder = session.scalar(select(Technician.id).where(Technician.wechat_openid == openid))
    technician = session.get_one(Technician, int(ident))
    if holder is not None and holder != technician.id:
        raise AlreadyBound("this WeChat user is already bound to another technician", technician_id=holder)
    technician.wechat_openid = openid
    session.flush()
