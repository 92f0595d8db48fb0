"""Geocoding as the API offers it: Tencent when configured, the offline gazetteer always underneath."""

from dataclasses import dataclass, replace

import structlog
from sqlalchemy.orm import Session

from dispatch.kernel.settings import GeocoderSettings
from geo import gazetteer, tencent
from geo.gazetteer import Address, PlaceHit, Source
from geo.latlng import LatLng

log = structlog.get_logger()

ONLINE_KIND = "poi"


@dataclass(frozen=True)
class Geocoded:
    """An address and the geocoder that worded it."""

    address: Address
    source: Source


def reverse(session: Session, point: LatLng, *, cfg: GeocoderSettings) -> Geocoded:
    """The address of a WGS-84 point: Tencent's wording when configured and up, else the gazetteer's.

    Raises:
        NotFound: no grid exists at all.
    """
    # The gazetteer runs in any case: grid and outside_area are ours, not Tencent's.
    local = gazetteer.reverse(session, point)
    if not cfg.key:
        return Geocoded(address=local, source=Source.GAZETTEER)
    try:
        online = tencent.reverse(cfg, point)
    except tencent.GeocoderUnavailable as exc:
        log.warning("geocoder.fallback", operation="reverse", detail=exc.detail)
        return Geocoded(address=local, source=Source.GAZETTEER)
    return Geocoded(address=replace(local, address=online), source=Source.TENCENT)


def _online_hits(cfg: GeocoderSettings, q: str, *, limit: int, known: set[str]) -> list[PlaceHit]:
    try:
        found = tencent.suggest(cfg, q.strip(), region=cfg.region, limit=limit)
    except tencent.GeocoderUnavailable as exc:
        log.warning("geocoder.fallback", operation="search", detail=exc.detail)
        return []
    return [PlaceHit(name=s.title, kind=ONLINE_KIND, address=s.address, lat=s.point.lat, lng=s.point.lng,
                     region_id=None, score=None, source=Source.TENCENT)
            for s in found if s.title not in known]


def search(session: Session, q: str, *, limit: int, cfg: GeocoderSettings) -> list[PlaceHit]:
    """Gazetteer places for q, then Tencent's suggestions when configured, up to limit.

    Raises:
        InvalidInput: q is empty or only whitespace (field `q`).
    """
    hits = gazetteer.search(session, q, limit=limit)
    # Tencent is asked only when the gazetteer leaves room: it costs quota and latency.
    if not cfg.key or len(hits) >= limit:
        return hits
    online = _online_hits(cfg, q, limit=limit, known={h.name for h in hits})
    return hits + online[:limit - len(hits)]
