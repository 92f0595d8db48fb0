"""The official account's server URL, the sign-in for pages inside WeChat, binding and the JS-SDK config."""

from typing import Annotated
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Cookie, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from dispatch.kernel.auth import STAFF_ROLES, Actor, Role, require_role
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import DomainError, Forbidden, NotFound
from dispatch.kernel.inputs import Text
from dispatch.kernel.problems import problem_docs
from dispatch.kernel.redis import RedisDep
from dispatch.kernel.settings import Settings
from wechat import jssdk, oauth
from wechat.deps import ClientDep, WechatOn
from wechat.errors import (
    AlreadyBound,
    BadOAuthState,
    BadSignature,
    BodyTooLarge,
    MalformedDelivery,
    StaleDelivery,
    WechatBadAnswer,
    WechatUnreachable,
)
from wechat.guard import Signed, check_signature
from wechat.schemas import BindingCreate, BindingRead, JssdkConfig
from wechat.service import Context, receive

log = structlog.get_logger()
router = APIRouter(tags=["wechat"])
XML = "application/xml"


def _signed(signature: Text = "", timestamp: Text = "", nonce: Text = "", msg_signature: Text | None = None,
            encrypt_type: Text | None = None) -> Signed:
    return Signed(signature=signature, timestamp=timestamp, nonce=nonce, msg_signature=msg_signature,
                  encrypt_type=encrypt_type)


SignedDep = Annotated[Signed, Depends(_signed)]


def _checked(settings: WechatOn, signed: SignedDep, request: Request) -> Signed:
    """The query's signature and timestamp, checked before the body is even read."""
    try:
        check_signature(settings.wechat.token, signed, window_s=settings.wechat.timestamp_window_s)
    except DomainError as exc:
        log.warning("wechat_delivery_refused", code=exc.code, detail=exc.detail,
                    client=request.client.host if request.client else None)
        raise
    return signed


CheckedDep = Annotated[Signed, Depends(_checked)]


@router.get("/wechat/callback", response_class=PlainTextResponse,
            responses=problem_docs(BadSignature, StaleDelivery))
def verify_server(signed: CheckedDep, echostr: Text = "") -> str:
    """WeChat's server URL verification: echo `echostr` when the signature is ours."""
    return echostr


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # a lying or absent Content-Length: stop reading at the limit
            raise BodyTooLarge(f"at most {limit} bytes")
    return bytes(body)


@router.post("/wechat/callback", response_class=Response,
             responses=problem_docs(BadSignature, StaleDelivery, BodyTooLarge, MalformedDelivery))
async def receive_message(request: Request, signed: CheckedDep, settings: WechatOn, session: SessionDep,
                          redis: RedisDep) -> Response:
    """A message or event from a subscriber (plain or safe mode); the reply is WeChat's passive reply XML."""
    # async only to read the body as a stream, stopping at the cap; the handling itself runs in a thread.
    try:
        body = await _body(request, settings.wechat.max_body_bytes)
        reply = await run_in_threadpool(receive, Context(session=session, redis=redis, settings=settings),
                                        body, signed)
    except (BodyTooLarge, MalformedDelivery, BadSignature) as exc:
        log.warning("wechat_delivery_refused", code=exc.code, detail=exc.detail)
        raise
    return Response(reply, media_type=XML if reply.startswith("<") else "text/plain")


@router.get("/wechat/oauth/start", status_code=302, response_class=RedirectResponse,
            responses={302: {"description": "to WeChat's authorize page"}})
def start_sign_in(settings: WechatOn, redis: RedisDep, next: Text = "/m/report") -> RedirectResponse:
    """Sign in inside WeChat (snsapi_base), then land on `next` (a path on this site)."""
    return _to_wechat(settings, *oauth.begin(redis, settings, next_path=next))


def _to_wechat(settings: Settings, authorize_url: str, nonce: str) -> RedirectResponse:
    reply = RedirectResponse(authorize_url, status_code=302)
    # Lax: the cookie must come back on WeChat's top-level redirect to the callback.
    reply.set_cookie(oauth.COOKIE, nonce, max_age=oauth.STATE_TTL_S, httponly=True, samesite="lax",
                     path="/wechat/oauth", secure=settings.wechat.public_base_url.startswith("https://"))
    return reply


@router.get("/wechat/oauth/callback", status_code=302, response_class=RedirectResponse,
            responses=problem_docs(BadOAuthState, AlreadyBound, WechatBadAnswer, WechatUnreachable))
def finish_sign_in(settings: WechatOn, session: SessionDep, redis: RedisDep, code: Text, state: Text,
                   cookie: Annotated[Text | None, Cookie(alias=oauth.COOKIE)] = None) -> RedirectResponse:
    """WeChat's redirect back: the page `next` receives the bearer token in the URL fragment."""
    signed_in = oauth.finish(session, redis, settings, code=code, state=state, cookie=cookie)
    # In the fragment, not the query: it never reaches a server log or a Referer header.
    fragment = urlencode({"access_token": signed_in.access_token, "token_type": "bearer",
                          "role": str(signed_in.role)})
    reply = RedirectResponse(f"{signed_in.next}#{fragment}", status_code=302)
    reply.delete_cookie(oauth.COOKIE, path="/wechat/oauth")
    return reply


@router.get("/wechat/bind/{code}", status_code=302, response_class=RedirectResponse,
            responses={302: {"description": "to WeChat's authorize page"}})
def open_binding(code: Text, settings: WechatOn, redis: RedisDep) -> RedirectResponse:
    """A technician (or a staff user) opens their binding link inside WeChat: sign in, bind, land on their page."""
    return _to_wechat(settings, *oauth.begin(redis, settings, next_path=oauth.binding_home(redis, code),
                                   binding_code=code))


@router.post("/api/v1/wechat/bindings", status_code=201, response_model=BindingRead,
             responses=problem_docs(NotFound, Forbidden))
def issue_binding(body: BindingCreate, settings: WechatOn, session: SessionDep, redis: RedisDep,
                  actor: Annotated[Actor, Depends(require_role(*STAFF_ROLES))]) -> oauth.Binding:
    """A one-time link (valid a day) binding a WeChat user to the account: a technician's (dispatchers and admins
    issue it; for offers and pushes), or a staff user's own (`user_id`; for their notices)."""
    if body.technician_id is not None and actor.role not in {Role.ADMIN, Role.DISPATCHER}:
        raise Forbidden("only dispatchers and admins bind technicians", required=[Role.ADMIN, Role.DISPATCHER])
    return oauth.issue_binding(session, redis, settings, actor=actor, technician_id=body.technician_id,
                               user_id=body.user_id)


@router.get("/api/v1/wechat/jssdk-config", response_model=JssdkConfig,
            responses=problem_docs(WechatBadAnswer, WechatUnreachable))
def jssdk_config(url: Annotated[Text, Query(max_length=2000)], settings: WechatOn,
                 client: ClientDep) -> dict[str, object]:
    """The signed `wx.config` for a page of this deployment, so it may call getLocation (type gcj02)."""
    return jssdk.config(client, settings.wechat, url=url)
