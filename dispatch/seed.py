"""`fieldpool seed demo`: the demo city from fixtures/, loaded idempotently."""

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts.models import Importance
from dispatch.accounts.service import create_user, find_user
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.tickets import priority, sla
from dispatch.tickets.models import EscalationStep, TicketType
from dispatch.tickets.schemas import TicketTypeCreate
from dispatch.tickets.service import create_type
from geo import gazetteer, regions
from geo.latlng import LatLng
from geo.models import Region, RegionKind
from technicians.service import create_technician
from workload import service as workload

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEEDER = Actor(kind=PrincipalKind.USER, id=0, role=Role.ADMIN, label="seed")


def _region(session: Session, code: str, **fields: Any) -> Region:
    existing = session.scalar(select(Region).where(Region.code == code))
    return existing or regions.create_region(session, code=code, **fields)


def _load_regions(session: Session, fixtures: Path) -> dict[str, Region]:
    tree = yaml.safe_load((fixtures / "regions.yaml").read_text(encoding="utf-8"))
    company = _region(session, tree["company"]["code"], name=tree["company"]["name"], kind=RegionKind.COMPANY)
    by_code = {company.code: company}
    for branch in tree["branches"]:
        by_code[branch["code"]] = _region(session, branch["code"], name=branch["name"], kind=RegionKind.BRANCH,
                                          parent_id=company.id)
    grids = json.loads((fixtures / "grids.geojson").read_text(encoding="utf-8"))
    for feature in grids["features"]:
        props = feature["properties"]
        by_code[props["code"]] = _region(session, props["code"], name=props["name"], kind=RegionKind.GRID,
                                         parent_id=by_code[props["branch"]].id, boundary=feature["geometry"])
    return by_code


def _load_types(session: Session, fixtures: Path) -> int:
    added = 0
    for raw in yaml.safe_load((fixtures / "ticket_types.yaml").read_text(encoding="utf-8")):
        if session.get(TicketType, raw["code"]) is None:
            create_type(session, body=TicketTypeCreate.model_validate(raw))
            added += 1
    return added


def _load_users(session: Session, fixtures: Path, by_code: dict[str, Region], password: str) -> int:
    added = 0
    for raw in yaml.safe_load((fixtures / "users.yaml").read_text(encoding="utf-8")):
        if find_user(session, raw["username"]) is None:
            region_ids = [] if raw["role"] == Role.ADMIN else [by_code[c].id for c in raw["regions"]]
            create_user(session, username=raw["username"], password=password, role=Role(raw["role"]),
                        name=raw["name"], region_ids=region_ids)
            added += 1
    return added


def _load_technicians(session: Session, fixtures: Path, by_code: dict[str, Region], password: str) -> int:
    added = 0
    with (fixtures / "technicians.csv").open(encoding="utf-8", newline="") as rows:
        for row in csv.DictReader(rows):
            if find_user(session, row["username"]) is not None:
                continue
            create_technician(session, actor=SEEDER, name=row["name"], phone=row["phone"],
                              username=row["username"], password=password,
                              skills=[s for s in row["skills"].split(";") if s],
                              region_id=by_code[row["branch"]].id, max_active=int(row["max_active"]),
                              home=LatLng(float(Decimal(row["home_lat"])), float(Decimal(row["home_lng"]))))
            added += 1
    return added


def _load_escalation(session: Session, fixtures: Path, by_code: dict[str, Region]) -> int:
    added = 0
    for code, steps in yaml.safe_load((fixtures / "escalation.yaml").read_text(encoding="utf-8")).items():
        region_id = by_code[code].id
        if session.scalar(select(EscalationStep.id).where(EscalationStep.region_id == region_id).limit(1)):
            continue
        rungs = [sla.Rung(level=i + 1, title=step["title"], delay_min=step["delay_min"],
                          role=Role(step["role"]) if "role" in step else None,
                          reach=RegionKind(step["reach"]) if "reach" in step else None,
                          user_id=_user_id(session, step["user"]) if "user" in step else None)
                 for i, step in enumerate(steps)]
        sla.set_chain(session, region_id=region_id, actor=SEEDER, steps=rungs)
        added += 1
    return added


def _user_id(session: Session, username: str) -> int:
    user = find_user(session, username)
    if user is None:
        raise LookupError(f"escalation.yaml names user {username!r}, missing from users.yaml")
    return user.id


def _load_places(session: Session, fixtures: Path) -> int:
    added = 0
    with (fixtures / "places.csv").open(encoding="utf-8", newline="") as rows:
        for row in csv.DictReader(rows):
            if gazetteer.find_place(session, name=row["name"], kind=row["kind"]) is not None:
                continue
            gazetteer.add_place(session, name=row["name"], kind=row["kind"],
                                point=LatLng(float(Decimal(row["lat"])), float(Decimal(row["lng"]))))
            added += 1
    return added


def _load_rates(session: Session, fixtures: Path, by_code: dict[str, Region]) -> int:
    added = 0
    for raw in yaml.safe_load((fixtures / "rates.yaml").read_text(encoding="utf-8")):
        region_id = by_code[raw["region"]].id if "region" in raw else None
        if workload.find_rate(session, type_code=raw["type_code"], region_id=region_id,
                              valid_from=raw["valid_from"]) is None:
            workload.add_rate(session, actor=SEEDER, type_code=raw["type_code"], region_id=region_id,
                              valid_from=raw["valid_from"], piece_rate=Decimal(raw["piece_rate"]),
                              standard_hours=Decimal(str(raw["standard_hours"])))
            added += 1
    return added


def _load_sites(session: Session, fixtures: Path) -> int:
    known = {site.name for site in priority.list_sites(session, actor=SEEDER)}
    added = 0
    for raw in yaml.safe_load((fixtures / "important_sites.yaml").read_text(encoding="utf-8")):
        if raw["name"] not in known:
            priority.add_site(session, actor=SEEDER, name=raw["name"], importance=Importance(raw["importance"]),
                              point=LatLng(raw["lat"], raw["lng"]), radius_m=raw["radius_m"])
            added += 1
    return added


def _load_holidays(session: Session, fixtures: Path) -> int:
    days = yaml.safe_load((fixtures / "holidays.yaml").read_text(encoding="utf-8"))
    return sum(workload.add_holiday(session, day=raw["day"], name=raw["name"]) for raw in days)


def seed_demo(session: Session, *, password: str, fixtures: Path = FIXTURES) -> dict[str, int]:
    """Load the demo city; running it again adds only what is missing."""
    by_code = _load_regions(session, fixtures)
    return {
        "regions": len(by_code),
        "ticket_types_added": _load_types(session, fixtures),
        "users_added": _load_users(session, fixtures, by_code, password),
        "technicians_added": _load_technicians(session, fixtures, by_code, password),
        "escalation_chains_added": _load_escalation(session, fixtures, by_code),
        "places_added": _load_places(session, fixtures),
        "rates_added": _load_rates(session, fixtures, by_code),
        "holidays_added": _load_holidays(session, fixtures),
        "important_sites_added": _load_sites(session, fixtures),
    }
