"""The demo city as the simulation needs it, read from the same fixtures `fieldpool seed demo` loads."""

import csv
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml
from shapely.geometry import Polygon, shape

from geo.latlng import LatLng


@dataclass(frozen=True)
class Grid:
    code: str
    branch: str
    polygon: Polygon


@dataclass(frozen=True)
class TicketKind:
    code: str
    skills: frozenset[str]
    standard_hours: float
    response_sla_min: int
    resolution_sla_min: int


@dataclass(frozen=True)
class Worker:
    username: str
    branch: str
    skills: frozenset[str]
    home: LatLng


@dataclass(frozen=True)
class City:
    grids: list[Grid]
    kinds: dict[str, TicketKind]
    workers: list[Worker]
    fixtures: Path


def load_city(fixtures: Path) -> City:
    features = json.loads((fixtures / "grids.geojson").read_text(encoding="utf-8"))["features"]
    grids = [Grid(code=f["properties"]["code"], branch=f["properties"]["branch"], polygon=shape(f["geometry"]))
             for f in features]
    kinds = {raw["code"]: TicketKind(code=raw["code"], skills=frozenset(raw["skills"]),
                                     standard_hours=float(raw["standard_hours"]),
                                     response_sla_min=int(raw["response_sla_min"]),
                                     resolution_sla_min=int(raw["resolution_sla_min"]))
             for raw in yaml.safe_load((fixtures / "ticket_types.yaml").read_text(encoding="utf-8"))}
    with (fixtures / "technicians.csv").open(encoding="utf-8", newline="") as rows:
        workers = [Worker(username=row["username"], branch=row["branch"],
                          skills=frozenset(s for s in row["skills"].split(";") if s),
                          home=LatLng(float(Decimal(row["home_lat"])), float(Decimal(row["home_lng"]))))
                   for row in csv.DictReader(rows)]
    return City(grids=sorted(grids, key=lambda g: g.code), kinds=kinds,
                workers=sorted(workers, key=lambda w: w.username), fixtures=fixtures)
