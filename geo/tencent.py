"""Tencent Location Service WebService API: reverse geocoding and keyword suggestion.

Tencent speaks GCJ-02 in both directions (lbs.qq.com, WebService API guide:
逆地址解析 and 关键词输入提示); this module converts at its border, so callers
only ever see WGS-84. Every reply carries
`status` (0 = ok; e.g. 110 source not authorised, 120/121 quota, 310 bad
parameters, 311 bad key) and `message`.
"""

from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from dispatch.kernel.errors import ServiceUnavailable
from dispatch.kernel.settings import GeocoderSettings
from geo.crs import gcj02_to_wgs84, wgs84_to_gcj02
from geo.latlng import LatLng

REVERSE_PATH = "/ws/geocoder/v1/"
SUGGESTION_PATH = "/ws/place/v1/suggestion/"
# The suggestion API pages at most 20 results at a time.
MAX_PAGE_SIZE = 20


class GeocoderUnavailable(ServiceUnavailable):
    code = "geocoder_unavailable"
    title = "The online geocoder is unavailable"


@dataclass(frozen=True)
class Suggestion:
    """A place Tencent suggests for a keyword; point in WGS-84."""

    title: str
    address: str
    point: LatLng


class _Location(BaseModel):
    lat: float
    lng: float


class _Formatted(BaseModel):
    recommend: str | None = None


class _ReverseResult(BaseModel):
    address: str
    formatted_addresses: _Formatted | None = None


class _ReverseReply(BaseModel):
    result: _ReverseResult


class _SuggestionItem(BaseModel):
    title: str
    address: str = ""
    location: _Location


class _SuggestionReply(BaseModel):
    data: list[_SuggestionItem] = []


def _fetch(cfg: GeocoderSettings, path: str, params: dict[str, str]) -> Any:
    if not cfg.key:
        raise GeocoderUnavailable("the online geocoder is not configured (GEOCODER__KEY)")
    try:
        with httpx.Client(base_url=cfg.base_url, timeout=cfg.timeout_s) as client:
            reply = client.get(path, params={**params, "key": cfg.key})
            reply.raise_for_status()
            return reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        # Only the exception's type: httpx puts the URL, key included, into its messages.
        raise GeocoderUnavailable(f"Tencent geocoder failed: {type(exc).__name__}") from exc


def _get(cfg: GeocoderSettings, path: str, params: dict[str, str]) -> dict[str, Any]:
    """Tencent's JSON reply to a GET, once it says status 0.

    Raises:
        GeocoderUnavailable: not configured, unreachable, not JSON, or a non-zero status.
    """
    body = _fetch(cfg, path, params)
    if not isinstance(body, dict):
        raise GeocoderUnavailable("Tencent geocoder answered something other than a JSON object")
    if body.get("status") != 0:
        raise GeocoderUnavailable(f"Tencent geocoder answered status {body.get('status')}: {body.get('message')}",
                                  upstream_status=body.get("status"))
    return body


def _location_param(point: LatLng) -> str:
    gcj = wgs84_to_gcj02(point)
    # lat,lng order (not GeoJSON's); six decimals are about 0.1 m.
    return f"{gcj.lat:.6f},{gcj.lng:.6f}"


def reverse(cfg: GeocoderSettings, point: LatLng) -> str:
    """Tencent's readable address of a WGS-84 point (its recommended wording when it has one).

    Raises:
        GeocoderUnavailable: not configured, unreachable, or an error or malformed reply.
    """
    body = _get(cfg, REVERSE_PATH, {"location": _location_param(point)})
    try:
        result = _ReverseReply.model_validate(body).result
    except ValidationError as exc:
        raise GeocoderUnavailable("Tencent reverse geocoding reply lacks result.address") from exc
    recommend = result.formatted_addresses.recommend if result.formatted_addresses else None
    return recommend or result.address


def suggest(cfg: GeocoderSettings, keyword: str, *, region: str, limit: int = 10) -> list[Suggestion]:
    """Places Tencent suggests for a keyword within a city-level region, points in WGS-84.

    Raises:
        GeocoderUnavailable: not configured, unreachable, or an error or malformed reply.
    """
    params = {"keyword": keyword, "region": region, "region_fix": "1",
              "page_size": str(max(1, min(limit, MAX_PAGE_SIZE)))}
    body = _get(cfg, SUGGESTION_PATH, params)
    try:
        items = _SuggestionReply.model_validate(body).data
    except ValidationError as exc:
        raise GeocoderUnavailable("Tencent suggestion reply has malformed data") from exc
    return [Suggestion(title=item.title, address=item.address,
                       point=gcj02_to_wgs84(LatLng(item.location.lat, item.location.lng)))
            for item in items[:limit]]
