"""Process-wide settings, read from the environment (and `.env`) once, never at import."""

from datetime import time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, Request
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class PresenceSettings(BaseModel):
    """Technicians' live positions (env: PRESENCE__FRESHNESS_S=600, ...)."""

    freshness_s: int = 600
    # A track sample is kept at most this often per technician (privacy and volume).
    sample_interval_s: int = 30
    ping_limit: int = 30
    ping_window_s: int = 60
    flush_batch: int = 5000


class OfferSettings(BaseModel):
    """The ring policy (env: OFFER__K=5, OFFER__STEP_S=180, ...)."""

    k: int = 5
    # The first ring: of the K nearest, the nearest `lead_k` holding no ticket alone for `lead_s`, then the rest
    # (0: the K at once). Whoever of five tapped first won ring 1 before, often not the nearest, and half the
    # first rings' offers went to technicians busy on another job; a P1 goes to its K at once.
    lead_k: int = Field(default=1, ge=0)
    lead_s: int = Field(default=120, gt=0)
    first_radius_m: int = 3000
    max_radius_m: int = 20000
    step_s: int = 180
    sweep_interval_s: int = 15
    # Technicians closer together than this count as equally near; the fairer pick wins.
    tie_band_m: int = 300
    # On: while a ticket's rings widen, the pool lists it only inside its current ring, so the nearest, offered
    # it, get it before someone far who happens to look at the pool (half the simulated day's grabs came that
    # way). Off by default: PRODUCT.md and API.md list every grabbable ticket in scope from intake on.
    pool_within_ring: bool = False
    # A P1 ticket's first ring: more technicians, further out.
    urgent_k: int = Field(default=10, gt=0)
    urgent_first_radius_m: int = Field(default=6000, gt=0)
    # System dispatch: a hybrid branch's wait before the system assigns, unless the branch sets its own
    # (a ring's step: the nearest have had their chance), and how long after a system assignment its
    # technician may still decline it (never once arrived).
    hybrid_after_s: int = Field(default=180, gt=0)
    decline_window_s: int = Field(default=900, gt=0)


class PoolSettings(BaseModel):
    """The grab pool in Redis (env: POOL__LEASE_MS=15000, ...)."""

    # How long a grab's claim holds while its PostgreSQL commit runs; a claimer
    # that dies loses the ticket back to the pool after this.
    lease_ms: int = 15000
    # Leases are reaped and the pool checked against PostgreSQL this often.
    repair_interval_s: int = 5
    # A full rebuild from PostgreSQL this often, whatever else happened.
    rebuild_interval_s: int = 300
    near_radius_m: int = 5000
    near_limit: int = 100
    # Grabs a technician may send per window: a finger taps a few a minute, a script hundreds.
    grab_taps: int = Field(default=20, gt=0)
    grab_window_s: int = Field(default=10, gt=0)
    # Branches (region ids) whose technicians may grab off duty and with no fresh position: elsewhere a
    # grab needs both, since the pool offers a ticket by where the technician is.
    grab_anywhere_branch_ids: frozenset[int] = frozenset()


PriorityLevel = Literal["P1", "P2", "P3", "P4"]


class PrioritySettings(BaseModel):
    """What raises a report's priority (env: PRIORITY__RAISE_TO='{"hospital": "P1", ...}')."""

    # A subscriber or site marked important raises its reports to at least this.
    raise_to: dict[Literal["vip", "enterprise", "hospital"], PriorityLevel] = Field(
        default={"hospital": "P1", "enterprise": "P2", "vip": "P2"})


class SlaSettings(BaseModel):
    """Timeouts, warnings and escalation (env: SLA__SWEEP_INTERVAL_S=15, SLA__ESCALATION_DELAYS_MIN=[0,15,30,60])."""

    sweep_interval_s: int = Field(default=15, gt=0)
    sweep_batch: int = Field(default=200, gt=0)
    # The warning goes out when this share of an SLA has passed.
    warning_fraction: float = Field(default=0.8, gt=0, lt=1)
    # Minutes after a breach at which the default chain's four steps are notified
    # (grid dispatcher, branch dispatcher, branch manager, HQ); a region's own chain overrides them.
    escalation_delays_min: tuple[int, int, int, int] = (0, 15, 30, 60)
    # Surge mode multiplies a type's SLA minutes by these unless the switch names its own.
    surge_response_factor: float = Field(default=2.0, ge=1, le=10)
    surge_resolution_factor: float = Field(default=1.5, ge=1, le=10)
    # A priority a ticket type names no minutes for scales the type's own (its P3 profile) by these.
    priority_factors: dict[PriorityLevel, float] = Field(
        default={"P1": 0.25, "P2": 0.5, "P3": 1.0, "P4": 2.0})
    # A P1 breach climbs its chain with the steps' delays scaled by this: 0, every step at once.
    urgent_escalation_factor: float = Field(default=0.0, ge=0, le=1)

    @field_validator("priority_factors")
    @classmethod
    def _every_level(cls, factors: dict[str, float]) -> dict[str, float]:
        if set(factors) != {"P1", "P2", "P3", "P4"} or min(factors.values()) <= 0:
            raise ValueError("give a factor above 0 for each of P1, P2, P3 and P4")
        return factors

    @field_validator("escalation_delays_min")
    @classmethod
    def _steps_in_order(cls, delays: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        if min(delays) < 0 or list(delays) != sorted(delays):
            raise ValueError("delays are minutes after the breach, each step no earlier than the one before")
        return delays


class GeocoderSettings(BaseModel):
    """Online geocoder (Tencent Location Service); off unless a key is set (env: GEOCODER__KEY=...)."""

    key: str | None = None
    base_url: str = "https://apis.map.qq.com"
    # Tencent's suggestion search is scoped to a city-level region.
    region: str = "锡林郭勒盟"
    timeout_s: float = 3.0


class WechatSettings(BaseModel):
    """The WeChat official account (公众号); off while app_id is empty (env: WECHAT__APP_ID=wx...)."""

    app_id: str = ""
    secret: str = ""
    # The server URL's Token and, in safe mode, the EncodingAESKey (43 characters).
    token: str = ""
    encoding_aes_key: str = ""
    api_base_url: str = "https://api.weixin.qq.com/"
    oauth_base_url: str = "https://open.weixin.qq.com/connect/"
    # Where WeChat users reach this deployment: links in messages and the OAuth redirect.
    public_base_url: str = "http://127.0.0.1:8000"
    # Deliveries older than this (or this far in the future) are refused as replays.
    timestamp_window_s: int = 300
    max_body_bytes: int = 64 * 1024
    timeout_s: float = 4.0
    # Template ids as configured in the account's back office, per message kind.
    template_offer: str = ""
    template_accepted: str = ""
    template_arrived: str = ""
    template_completed: str = ""
    template_urged: str = ""  # 催办, to the technician holding or offered the ticket
    # Staff notices (escalations, SLA warnings) to staff who bound their WeChat; fields first, keyword1..4, remark.
    template_notice: str = ""
    # What a conversational report becomes: the fault type and how long a half-told report is kept.
    report_type_code: str = "broadband_fault"
    conversation_ttl_s: int = 30 * 60
    # A LOCATION event or message counts as where the subscriber is for this long.
    position_ttl_s: int = 30 * 60
    binding_ttl_s: int = 24 * 3600

    @property
    def enabled(self) -> bool:
        return bool(self.app_id)

class NoticeSettings(BaseModel):
    """Staff notices: providers' base URLs and credentials, SMS cap, digests (env: NOTICES__SMS_DAILY_CAP=20, ...).

    Base URLs are settings so that a private deployment can go through a proxy and tests through loopback peers.
    """

    # Links in messages open the console's drawer of the ticket.
    console_url: str = "http://127.0.0.1:8000/console"
    timeout_s: float = Field(default=5.0, gt=0)
    wecom_base_url: str = "https://qyapi.weixin.qq.com"
    dingtalk_base_url: str = "https://oapi.dingtalk.com"
    feishu_base_url: str = "https://open.feishu.cn"
    # SMS: the provider adapter by name ("aliyun"), its endpoint, credentials, signature and template.
    sms_provider: Literal["aliyun"] = "aliyun"
    sms_base_url: str = "https://dysmsapi.aliyuncs.com"
    sms_access_key_id: str = ""
    sms_access_key_secret: str = ""
    sms_sign_name: str = ""
    sms_template_code: str = ""
    sms_region: str = "cn-hangzhou"
    # Text messages one person may be sent per local day; past it a notice is recorded undeliverable.
    sms_daily_cap: int = Field(default=20, ge=0)
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "fieldpool@localhost"
    # Held warnings (digest, quiet hours) are looked at this often by the worker.
    digest_interval_s: int = Field(default=60, gt=0)


class WorkloadSettings(BaseModel):
    """Piece-rate multipliers and report limits (env: WORKLOAD__NIGHT_FACTOR=1.5, ...).

    A work record snapshots the factors it was paid with, so changing these
    never alters a record already written.
    """

    night_start: time = time(22, 0)
    night_end: time = time(6, 0)  # before night_start: the window runs past midnight
    night_factor: Decimal = Decimal("1.50")
    holiday_factor: Decimal = Decimal("2.00")
    # (from metres, factor): the straight-line distance from where the technician accepted.
    distance_bands: list[tuple[int, Decimal]] = [(0, Decimal("1.00")), (5000, Decimal("1.10")),
                                                 (15000, Decimal("1.20")), (30000, Decimal("1.30"))]
    # The follow-up's rating (1..5) scales the pay of the visit it rates.
    satisfaction_factors: dict[int, Decimal] = {1: Decimal("0.80"), 2: Decimal("0.90"), 3: Decimal("1.00"),
                                                4: Decimal("1.00"), 5: Decimal("1.05")}
    # The longest from..to a workload report or statistics query may span.
    max_range_days: int = 93


class LoginSettings(BaseModel):
    """Log-in throttling and lockout, counted in Redis so that every API process sees the same counts
    (env: LOGIN__USER_LIMIT=5, ...)."""

    window_s: int = Field(default=300, gt=0)
    # Failed log-ins per window, for one username and from one client address, before 429.
    user_limit: int = Field(default=5, gt=0)
    address_limit: int = Field(default=50, gt=0)
    # This many failures of one username within lock_window_s lock the account until an admin unlocks it.
    lock_after: int = Field(default=20, gt=0)
    lock_window_s: int = Field(default=24 * 3600, gt=0)


class WebhookSettings(BaseModel):
    """Webhooks to other systems (env: WEBHOOKS__ALLOW_PRIVATE_URLS=false, ...)."""

    # Loopback, private, link-local and other non-public addresses are refused as targets (SSRF) unless this
    # is on: a deployment whose BOSS/CRM lives on its intranet turns it on, and so do the tests.
    allow_private_urls: bool = False
    timeout_s: float = Field(default=10.0, gt=0, le=60)
    # A failed delivery is retried with exponential backoff (2, 4, 8 ... seconds, at most backoff_cap_s) for
    # this long after its event, then given up.
    retry_for_s: int = Field(default=24 * 3600, gt=0)
    backoff_cap_s: int = Field(default=3600, gt=0)
    # A webhook is disabled after this many failures in a row, or once it has failed for disable_after_s.
    disable_after_failures: int = Field(default=50, gt=0)
    disable_after_s: int = Field(default=24 * 3600, gt=0)
    # Deliveries claimed per transaction, and how many are in flight at once.
    batch: int = Field(default=200, gt=0, le=5000)
    concurrency: int = Field(default=16, gt=0, le=256)
    # The worker looks for due deliveries (retries) this often; new ones are sent right after their commit.
    send_every_s: float = Field(default=5.0, gt=0)


# Printed here for anyone to read: `serve` refuses it outside FIELDPOOL_ENV=dev.
DEV_SECRET_KEY = "dev-only-change-me-in-production-0123456789"
MIN_SECRET_KEY_CHARS = 32


class Settings(BaseSettings):
    """Everything a private deployment configures, as environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_nested_delimiter="__")

    presence: PresenceSettings = PresenceSettings()
    offer: OfferSettings = OfferSettings()
    pool: PoolSettings = PoolSettings()
    geocoder: GeocoderSettings = GeocoderSettings()
    sla: SlaSettings = SlaSettings()
    priority: PrioritySettings = PrioritySettings()
    wechat: WechatSettings = WechatSettings()
    workload: WorkloadSettings = WorkloadSettings()
    login: LoginSettings = LoginSettings()
    notices: NoticeSettings = NoticeSettings()
    webhooks: WebhookSettings = WebhookSettings()

    # The app's role: it owns nothing, reads and writes the tables it uses (`fieldpool db upgrade` grants it).
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool"
    # The tables' owner, for migrations; unset, migrations run as `database_url`'s role and grant nothing.
    migration_database_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    # rq does not run on Redis Cluster while the pool and the live index will,
    # so the queues get their own URL.
    redis_queue_url: str | None = None
    # "dev" lets the API sign tokens with the default or a short SECRET_KEY.
    env: str = Field(default="production", validation_alias="FIELDPOOL_ENV")
    secret_key: str = DEV_SECRET_KEY
    token_ttl_min: int = 12 * 60
    timezone: str = "Asia/Shanghai"
    media_dir: Path = Path("var/media")
    max_image_bytes: int = 10 * 1024 * 1024
    max_media_bytes: int = 20 * 1024 * 1024
    # Per ticket, whoever uploads: without a budget the disk fills one allowed file at a time.
    max_attachments_per_ticket: int = Field(default=20, ge=1)
    max_attachment_bytes_per_ticket: int = Field(default=50 * 1024 * 1024, ge=1)
    # Any other request body (JSON, forms) past this is refused with 413 as it streams in.
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    demo_password: str = Field(default="demo", validation_alias="FIELDPOOL_DEMO_PASSWORD")
    log_json: bool = True
    log_level: str = "INFO"
    sql_echo: bool = False
    # Background map tiles for the pages, an XYZ template such as
    # http://tiles.intranet/{z}/{x}/{y}.png; unset, the grids alone are the map (works offline).
    map_tile_url: str | None = None
    # The datum the tiles are drawn in: Chinese providers (AMap, Tencent) draw GCJ-02, so the pages
    # shift WGS-84 points onto them, or every marker sits a few hundred metres off its street.
    map_tile_crs: Literal["wgs84", "gcj02"] = "wgs84"
    # Connections per process, and as many worker threads for the sync endpoints: every thread
    # can hold its connection, so a burst queues for a thread instead of running the pool dry.
    db_pool_size: int = Field(default=16, ge=1, le=200)
    # Beyond the pool, for what runs outside those threads (the SSE feed's subscription, jobs).
    db_pool_overflow: int = Field(default=4, ge=0, le=200)
    db_pool_timeout_s: float = Field(default=3.0, gt=0)
    # Multiplies the interval of every periodic job of the worker (a test runs days of ticks in minutes).
    periodic_scale: float = Field(default=1.0, gt=0, le=100)

    @property
    def owner_database_url(self) -> str:
        return self.migration_database_url or self.database_url

    @property
    def queue_url(self) -> str:
        return self.redis_queue_url or self.redis_url

    def unsafe_secret_key(self) -> str | None:
        """Why SECRET_KEY must not sign tokens in this deployment, or None when it may."""
        if self.env == "dev":
            return None
        if self.secret_key == DEV_SECRET_KEY:
            return ("SECRET_KEY is the default printed in the source: anyone could sign tokens; set a random one "
                    "(make run writes one to .env) or FIELDPOOL_ENV=dev")
        if len(self.secret_key) < MIN_SECRET_KEY_CHARS:
            return (f"SECRET_KEY is shorter than {MIN_SECRET_KEY_CHARS} characters; set a random one "
                    "or FIELDPOOL_ENV=dev")
        return None


@lru_cache
def get_settings() -> Settings:
    return Settings()


async def app_settings(request: Request) -> Settings:
    """The settings the running app was created with (tests pass their own); async: no thread hop."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(app_settings)]
