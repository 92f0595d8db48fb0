"""wechatpy's client on a configurable base URL, with the access token shared by every process in Redis.

One access token serves the whole account, and fetching a new one can
invalidate the old: so it lives in Redis (wechatpy's RedisStorage), is
fetched under a Redis lock by one process at a time, and after 40001/42001
is refreshed once, only if nobody refreshed it meanwhile (no stampede), and
the call is retried once. wechatpy's own auto-retry refetches and retries
without bound, so it is off.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urljoin

import requests
from redis import Redis
from redis.exceptions import LockError
from wechatpy import WeChatClient, WeChatOAuth
from wechatpy.exceptions import WeChatClientException, WeChatException
from wechatpy.session.redisstorage import RedisStorage

from dispatch.kernel.problems import RETRY_AFTER_S
from dispatch.kernel.settings import WechatSettings
from wechat.errors import WechatBadAnswer, WechatUnreachable

T = TypeVar("T")

TOKEN_EXPIRED = frozenset({40001, 42001})  # invalid credential, access token expired
# The recipient cannot get it (not following, bad openid, refused the template): retrying never helps.
RECIPIENT_GONE = frozenset({43004, 40003, 43101})
STORAGE_PREFIX = "fp:wechat"
# Renewed this long before WeChat's expiry: a token read just before it lapses still works for a call.
EXPIRY_MARGIN_S = 300
LOCK_TIMEOUT_S = 30
LOCK_WAIT_S = 10


class AccountClient(WeChatClient):  # type: ignore[misc]
    """The official account's API client; calls go to `cfg.api_base_url` (a loopback peer in tests)."""

    def __init__(self, cfg: WechatSettings, redis: Redis) -> None:
        super().__init__(cfg.app_id, cfg.secret, session=RedisStorage(redis, prefix=STORAGE_PREFIX),
                         timeout=cfg.timeout_s, auto_retry=False)
        self.API_BASE_URL = urljoin(cfg.api_base_url, "cgi-bin/")
        self._redis = redis

    def fetch_access_token(self) -> dict[str, Any]:
        """wechatpy calls this when Redis holds no token: fetch one, unless another process just did."""
        return self._refresh(stale=None)

    def _refresh(self, *, stale: str | None) -> dict[str, Any]:
        with self._redis.lock(f"{STORAGE_PREFIX}:{self.appid}:token-lock", timeout=LOCK_TIMEOUT_S,
                              blocking_timeout=LOCK_WAIT_S):
            current = self.session.get(self.access_token_key)
            if current and current != stale:
                return {"access_token": current}  # refreshed by someone else while we waited
            return self._fetch_stable_token(force=stale is not None)

    def _fetch_stable_token(self, *, force: bool) -> dict[str, Any]:
        # The stable token endpoint does not invalidate a token another process still uses.
        reply = self._http.post(self.API_BASE_URL + "stable_token", timeout=self.timeout, json={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret,
            "force_refresh": force})
        try:
            reply.raise_for_status()
        except requests.RequestException as exc:
            raise WeChatClientException(None, None, client=self, request=exc.request, response=exc.response) from exc
        result: dict[str, Any] = reply.json()
        if result.get("errcode"):
            raise WeChatClientException(result["errcode"], result.get("errmsg"), client=self,
                                        request=reply.request, response=reply)
        expires_in = int(result.get("expires_in", 7200))
        self.session.set(self.access_token_key, result["access_token"], max(60, expires_in - EXPIRY_MARGIN_S))
        return result

    def call(self, request: Callable[[], T]) -> T:
        """Run one API call; on an expired or invalid token, refresh it once and try once more."""
        token = self.access_token
        try:
            return request()
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_EXPIRED:
                raise
        self._refresh(stale=token)
        return request()


@contextmanager
def answering_for(what: str) -> Iterator[None]:
    """Calls to WeChat made for a request: down or slow is 503 (with Retry-After), a wrong answer 502.

    wechatpy raises requests' own errors when WeChat cannot be reached, and hands back the raw
    response (or fails on a missing key) when the body is not the JSON it expects.
    """
    try:
        yield
    except (requests.ConnectionError, requests.Timeout, LockError) as exc:
        raise WechatUnreachable(f"{what}: WeChat did not answer ({type(exc).__name__})",
                                retry_after=RETRY_AFTER_S) from exc
    except (WeChatException, requests.RequestException, ValueError, KeyError, TypeError) as exc:
        raise WechatBadAnswer(f"{what}: WeChat answered wrongly ({type(exc).__name__})") from exc


class AccountOAuth(WeChatOAuth):  # type: ignore[misc]
    """wechatpy's web OAuth for `snsapi_base` (silent: only the openid), on the configured hosts.

    wechatpy sends these requests without a timeout; a stalled WeChat must not hold a sign-in forever.
    """

    def __init__(self, cfg: WechatSettings, *, redirect_uri: str, state: str = "") -> None:
        super().__init__(cfg.app_id, cfg.secret, redirect_uri, scope="snsapi_base", state=state)
        self.API_BASE_URL = cfg.api_base_url
        self.OAUTH_BASE_URL = cfg.oauth_base_url
        self._timeout_s = cfg.timeout_s

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout_s)
        return super()._request(method, url_or_endpoint, **kwargs)
