"""WeChat down or answering garbage: the request that needed it gets 503 (with Retry-After) or 502, never 500."""

from urllib.parse import urlencode

from fastapi.testclient import TestClient

from tests.wechat.peer import WechatPeer
from tests.wechat.test_wechat_oauth import start
from tests.wechat.wire import PUBLIC

JSSDK = f"/api/v1/wechat/jssdk-config?{urlencode({'url': f'{PUBLIC}/m/report'})}"


def test_jssdk_config_with_wechat_down_is_503_with_retry_after(wx: TestClient, peer: WechatPeer) -> None:
    peer.stop()
    reply = wx.get(JSSDK)
    assert reply.status_code == 503
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "wechat_unreachable"
    assert int(reply.headers["Retry-After"]) > 0


def test_jssdk_config_with_wechat_answering_garbage_is_502(wx: TestClient, peer: WechatPeer) -> None:
    peer.answer_garbage()
    reply = wx.get(JSSDK)
    assert reply.status_code == 502
    assert reply.json()["code"] == "wechat_bad_answer"


def test_sign_in_with_wechat_down_is_503(wx: TestClient, peer: WechatPeer) -> None:
    state, _ = start(wx)
    peer.stop()
    reply = wx.get("/wechat/oauth/callback", params={"code": "CODE", "state": state})
    assert reply.status_code == 503
    assert reply.json()["code"] == "wechat_unreachable"
