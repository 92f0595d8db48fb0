"""Sign-in inside WeChat (snsapi_base) with a state bound to the browser, technician binding, JS-SDK config."""

import hashlib
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts.models import Subscriber, User
from technicians.models import Technician
from tests.conftest import log_in
from tests.dispatch.test_offers import technician
from tests.wechat.peer import APP_ID, JSAPI_TICKET, WechatPeer
from tests.wechat.wire import PUBLIC
from wechat.oauth import COOKIE

OPENID = "oBrowser000000000000000000001"


def jsapi_signature(noncestr: str, ticket: str, timestamp: int, url: str) -> str:
    """WeChat's documented algorithm (JS-SDK appendix 1), independent of the code under test."""
    plain = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(plain.encode()).hexdigest()


def test_the_reference_algorithm_matches_wechats_documented_example() -> None:
    assert jsapi_signature("Wm3WZYTPz0wzccnW", JSAPI_TICKET, 1414587457, "http://mp.weixin.qq.com?params=value") \
        == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def start(wx: TestClient, next_path: str = "/m/report") -> tuple[str, str]:
    """Open the sign-in; returns the state WeChat will hand back and the redirect_uri it will call."""
    reply = wx.get(f"/wechat/oauth/start?{urlencode({'next': next_path})}")
    assert reply.status_code == 302, reply.text
    return authorize_params(reply)


def authorize_params(reply: Response) -> tuple[str, str]:
    target = urlsplit(reply.headers["location"])
    assert target.path.endswith("/connect/oauth2/authorize")
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["appid"] == APP_ID and query["scope"] == "snsapi_base"
    assert target.fragment == "wechat_redirect"
    return query["state"], query["redirect_uri"]


def come_back(wx: TestClient, peer: WechatPeer, state: str, *, openid: str = OPENID, code: str = "CODE1") -> Response:
    """What WeChat does after the user (silently) agrees: redirect to our callback with a code."""
    peer.oauth_code(code, openid)
    return wx.get(f"/wechat/oauth/callback?{urlencode({'code': code, 'state': state})}")


def landing(reply: Response) -> tuple[str, dict[str, str]]:
    assert reply.status_code == 302, reply.text
    target = urlsplit(reply.headers["location"])
    return target.path + (f"?{target.query}" if target.query else ""), \
        {k: v[0] for k, v in parse_qs(target.fragment).items()}


def test_a_subscriber_signs_in_silently_and_lands_on_the_page_with_a_token(wx: TestClient, peer: WechatPeer,
                                                                           db: Session) -> None:
    state, redirect_uri = start(wx, "/m/report?ticket=7")
    assert redirect_uri == f"{PUBLIC}/wechat/oauth/callback"
    path, fragment = landing(come_back(wx, peer, state))
    assert path == "/m/report?ticket=7" and fragment["role"] == "subscriber"
    me = wx.get("/api/v1/me", headers={"Authorization": f"Bearer {fragment['access_token']}"})
    assert me.status_code == 200, me.text
    assert db.scalar(select(Subscriber.id).where(Subscriber.openid == OPENID)) is not None


@pytest.mark.parametrize("next_path", ["//evil.example.com/x", "https://evil.example.com/", "/\\evil.example.com",
                                       "m/report", "javascript:alert(1)"])
def test_an_open_redirect_is_refused(wx: TestClient, next_path: str) -> None:
    reply = wx.get(f"/wechat/oauth/start?{urlencode({'next': next_path})}")
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "next"


def test_a_forged_state_is_refused(wx: TestClient, peer: WechatPeer) -> None:
    state, _ = start(wx)
    nonce, _, _ = state.partition(".")
    reply = come_back(wx, peer, f"{nonce}.{'0' * 32}")
    assert reply.status_code == 403 and reply.json()["code"] == "bad_oauth_state"


def test_a_state_is_good_for_one_sign_in(wx: TestClient, peer: WechatPeer) -> None:
    state, _ = start(wx)
    landing(come_back(wx, peer, state))
    wx.cookies.set(COOKIE, state.partition(".")[0], domain="testserver", path="/wechat/oauth")
    again = come_back(wx, peer, state, code="CODE2")
    assert again.status_code == 403 and again.json()["code"] == "bad_oauth_state"


def test_a_sign_in_started_in_another_browser_is_refused(wx: TestClient, peer: WechatPeer) -> None:
    state, _ = start(wx)
    wx.cookies.clear()  # the victim's browser never started this sign-in (login CSRF)
    reply = come_back(wx, peer, state)
    assert reply.status_code == 403 and reply.json()["code"] == "bad_oauth_state"


def test_a_code_wechat_does_not_know_is_refused(wx: TestClient) -> None:
    state, _ = start(wx)
    reply = wx.get(f"/wechat/oauth/callback?{urlencode({'code': 'NEVER-ISSUED', 'state': state})}")
    assert reply.status_code == 401


def bind_link(wx: TestClient, technician_id: int) -> str:
    reply = wx.post("/api/v1/wechat/bindings", json={"technician_id": technician_id},
                    headers=log_in(wx, "dispatcher.xl"))
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["url"].startswith(f"{PUBLIC}/wechat/bind/") and body["expires_in"] > 0
    return urlsplit(body["url"]).path


def test_a_technician_opens_the_binding_link_in_wechat_and_is_bound(wx: TestClient, peer: WechatPeer,
                                                                    db: Session) -> None:
    tech = technician(db, "tech05")
    link = bind_link(wx, tech.id)
    opened = wx.get(link)
    state, _ = authorize_params(opened)
    path, fragment = landing(come_back(wx, peer, state, openid="oTech05xxxxxxxxxxxxxxxxxxxxx"))
    assert path == "/m/tech" and fragment["role"] == "technician"
    db.refresh(tech)
    assert tech.wechat_openid == "oTech05xxxxxxxxxxxxxxxxxxxxx"
    me = wx.get("/api/v1/me", headers={"Authorization": f"Bearer {fragment['access_token']}"})
    assert me.json()["label"] == "tech05" and me.json()["role"] == "technician"
    assert wx.get(link).status_code == 404  # one use


def test_a_wechat_user_bound_to_one_technician_cannot_bind_another(wx: TestClient, peer: WechatPeer,
                                                                  db: Session) -> None:
    technician(db, "tech05").wechat_openid = "oShared0000000000000000000000"
    db.flush()
    state, _ = authorize_params(wx.get(bind_link(wx, technician(db, "tech06").id)))
    reply = come_back(wx, peer, state, openid="oShared0000000000000000000000")
    assert reply.status_code == 409 and reply.json()["code"] == "already_bound"
    assert db.scalar(select(Technician.wechat_openid).where(Technician.id == technician(db, "tech06").id)) is None


def test_only_dispatchers_issue_binding_links(wx: TestClient, db: Session) -> None:
    reply = wx.post("/api/v1/wechat/bindings", json={"technician_id": technician(db, "tech05").id},
                    headers=log_in(wx, "tech05"))
    assert reply.status_code == 403


def test_a_dispatcher_binds_their_own_wechat_for_their_notices(wx: TestClient, peer: WechatPeer,
                                                               db: Session) -> None:
    me = log_in(wx, "dispatcher.xl")
    user_id = wx.get("/api/v1/me", headers=me).json()["id"]
    reply = wx.post("/api/v1/wechat/bindings", json={"user_id": user_id}, headers=me)
    assert reply.status_code == 201, reply.text
    assert reply.json()["user_id"] == user_id and reply.json()["technician_id"] is None
    state, _ = authorize_params(wx.get(urlsplit(reply.json()["url"]).path))
    path, _ = landing(come_back(wx, peer, state, openid="oDispatcherXLxxxxxxxxxxxxxxx"))
    assert path == "/console"
    assert db.scalar(select(User.wechat_openid).where(User.id == user_id)) == "oDispatcherXLxxxxxxxxxxxxxxx"

    other = wx.get("/api/v1/me", headers=log_in(wx, "clerk.xl")).json()["id"]
    refused = wx.post("/api/v1/wechat/bindings", json={"user_id": other}, headers=me)
    assert refused.status_code == 403, "only an admin binds someone else's WeChat"
    both = wx.post("/api/v1/wechat/bindings", json={"user_id": user_id, "technician_id": 1}, headers=me)
    assert both.status_code == 422


def test_jssdk_config_is_signed_for_the_page(wx: TestClient) -> None:
    page = f"{PUBLIC}/m/report?ticket=3"
    reply = wx.get(f"/api/v1/wechat/jssdk-config?{urlencode({'url': page + '#top'})}")
    assert reply.status_code == 200, reply.text
    config = reply.json()
    assert config["appId"] == APP_ID and "getLocation" in config["jsApiList"]
    assert config["signature"] == jsapi_signature(config["nonceStr"], JSAPI_TICKET, config["timestamp"], page)


def test_jssdk_config_for_a_foreign_page_is_refused(wx: TestClient) -> None:
    reply = wx.get(f"/api/v1/wechat/jssdk-config?{urlencode({'url': 'https://evil.example.com/x'})}")
    assert reply.status_code == 422 and reply.json()["errors"][0]["field"] == "url"


def test_without_an_account_sign_in_answers_503(client: TestClient) -> None:
    reply = client.get("/wechat/oauth/start?next=/m/report", follow_redirects=False)
    assert reply.status_code == 503 and reply.json()["code"] == "wechat_off"
