"""Posting deliveries: signed like Stripe's, many in flight at once, a failing receiver left alone at once.

Signature: `X-Fieldpool-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, computed
at every attempt, so a retry hours later still carries a fresh `t`. A receiver recomputes it over the raw
body, compares in constant time and refuses a `t` more than REPLAY_WINDOW_S away from its clock (README).
"""

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from dispatch.kernel.settings import WebhookSettings
from dispatch.webhooks import urls

SIGNATURE_HEADER = "X-Fieldpool-Signature"
REPLAY_WINDOW_S = 300  # what receivers are told to accept (README); ours only ever signs with now
USER_AGENT = "Fieldpool-Webhooks/1"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Outgoing:
    delivery_id: int
    webhook_id: int
    url: str
    secret: str
    body: str
    event_type: str
    event_id: str
    attempts: int  # before this one


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    webhook_id: int
    attempts: int  # this one included
    at: datetime
    status: int | None  # the receiver's HTTP status; None when none came (refused, timed out, unsafe)
    error: str | None  # None: delivered

    @property
    def delivered(self) -> bool:
        return self.error is None


def signature(secret: str, body: bytes, *, timestamp: int) -> str:
    """The X-Fieldpool-Signature value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def client(cfg: WebhookSettings) -> httpx.Client:
    """One connection pool for a send run; no proxies from the environment, no redirects followed."""
    return httpx.Client(timeout=cfg.timeout_s, follow_redirects=False, trust_env=False,
                        limits=httpx.Limits(max_connections=cfg.concurrency,
                                            max_keepalive_connections=cfg.concurrency),
                        headers={"User-Agent": USER_AGENT})


def post_all(http: httpx.Client, outgoing: list[Outgoing], *, cfg: WebhookSettings,
             clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> list[Outcome]:
    """Post each delivery, up to `cfg.concurrency` at once; one outcome per delivery that was tried.

    Once a webhook has failed in this call its deliveries not yet started are
    not tried (no outcome): a receiver that is down costs one attempt, not one
    timeout per queued event.
    """
    failed: set[int] = set()
    lock = threading.Lock()

    def attempt(item: Outgoing) -> Outcome | None:
        with lock:
            if item.webhook_id in failed:
                return None
        outcome = post_one(http, item, cfg=cfg, at=clock())
        if not outcome.delivered:
            with lock:
                failed.add(item.webhook_id)
        return outcome

    if len(outgoing) <= 1 or cfg.concurrency == 1:
        results = [attempt(item) for item in outgoing]
    else:
        with ThreadPoolExecutor(max_workers=min(cfg.concurrency, len(outgoing))) as pool:
            results = list(pool.map(attempt, outgoing))
    return [r for r in results if r is not None]


def post_one(http: httpx.Client, item: Outgoing, *, cfg: WebhookSettings, at: datetime) -> Outcome:
    """One signed POST; any 2xx is delivered, anything else (a redirect too) a failure."""
    body = item.body.encode()
    try:
        target = urls.resolve(item.url, allow_private=cfg.allow_private_urls)
    except urls.UnsafeUrl as exc:
        return Outcome(item.delivery_id, item.webhook_id, item.attempts + 1, at, None,
                       f"refused: {exc}"[:MAX_ERROR_CHARS])
    headers = {"Content-Type": "application/json", "Host": target.host_header,
               SIGNATURE_HEADER: signature(item.secret, body, timestamp=int(time.time())),
               "X-Fieldpool-Event": item.event_type, "X-Fieldpool-Event-Id": item.event_id,
               "X-Fieldpool-Delivery": str(item.delivery_id)}
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    try:
        response = http.post(target.url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        return Outcome(item.delivery_id, item.webhook_id, item.attempts + 1, at, None,
                       f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
    if 200 <= response.status_code < 300:
        return Outcome(item.delivery_id, item.webhook_id, item.attempts + 1, at, response.status_code, None)
    return Outcome(item.delivery_id, item.webhook_id, item.attempts + 1, at, response.status_code,
                   f"HTTP {response.status_code}: {response.text[:200]}"[:MAX_ERROR_CHARS])
