"""Process-wide settings, read from the environment (and `.env`) once, never at import."""

from datetime import time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, Field
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
    first_radius_m: int = 3000
    max_radius_m: int = 20000
    step_s: int = 180
    sweep_interval_s: int = 15
    # Technicians closer together than this count as equally near; the fairer pick wins.
    tie_band_m: int = 300


class GeocoderSettings(BaseModel):
    """Online geocoder (Tencent Location Service); off unless a key is set (env: GEOCODER__KEY=...)."""

    key: str | None = None
    base_url: str = "https://apis.map.qq.com"
    # Tencent's suggestion search is scoped to a city-level region.
    region: str = "锡林郭勒盟"
    timeout_s: float = 3.0


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


class Settings(BaseSettings):
    """Everything a private deployment configures, as environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_nested_delimiter="__")

    presence: PresenceSettings = PresenceSettings()
    offer: OfferSettings = OfferSettings()
    geocoder: GeocoderSettings = GeocoderSettings()
    workload: WorkloadSettings = WorkloadSettings()

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # rq does not run on Redis Cluster while the pool and the live index will,
    # so the queues get their own URL.
    redis_queue_url: str | None = None
    secret_key: str = Field(default="dev-only-change-me-in-production-0123456789", min_length=32)
    token_ttl_min: int = 12 * 60
    timezone: str = "Asia/Shanghai"
    media_dir: Path = Path("var/media")
    max_image_bytes: int = 10 * 1024 * 1024
    max_media_bytes: int = 20 * 1024 * 1024
    demo_password: str = Field(default="demo", validation_alias="FIELDPOOL_DEMO_PASSWORD")
    log_json: bool = True
    log_level: str = "INFO"
    sql_echo: bool = False
    db_pool_size: int = 10

    @property
    def queue_url(self) -> str:
        return self.redis_queue_url or self.redis_url


@lru_cache
def get_settings() -> Settings:
    return Settings()


def app_settings(request: Request) -> Settings:
    """The settings the running app was created with (tests pass their own)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(app_settings)]
