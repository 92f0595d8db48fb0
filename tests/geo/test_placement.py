"""Grid placement on the demo city's real polygons, and region creation's validation."""

import random
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from geo import regions
from geo.latlng import LatLng
from geo.models import Region
from geo.points import sql_point

GRIDS = Path(__file__).resolve().parents[2] / "fixtures/grids.geojson"


def code_of(db: Session, region_id: int) -> str:
    return db.scalars(select(Region.code).where(Region.id == region_id)).one()


def region_id(db: Session, code: str) -> int:
    return db.scalars(select(Region.id).where(Region.code == code)).one()


def test_point_inside_a_grid_lands_in_that_grid_and_its_branch(db: Session) -> None:
    placement = regions.place(db, LatLng(43.935, 116.10))
    assert code_of(db, placement.grid_id) == "XL-G05"
    assert code_of(db, placement.branch_id) == "XL"
    assert placement.outside_area is False


def test_point_in_erenhot_lands_in_an_erenhot_grid(db: Session) -> None:
    placement = regions.place(db, LatLng(43.66, 111.96))
    assert code_of(db, placement.grid_id) == "EH-G01"
    assert code_of(db, placement.branch_id) == "EH"
    assert placement.outside_area is False


def test_point_on_a_shared_border_lands_in_one_of_the_two_grids_every_time(db: Session) -> None:
    # XL-G06 and XL-G07 share the meridian 116.068 E between 43.900 and 43.925 N.
    on_border = LatLng(43.91, 116.068)
    placements = {regions.place(db, on_border) for _ in range(3)}
    assert len(placements) == 1
    (placement,) = placements
    assert code_of(db, placement.grid_id) in {"XL-G06", "XL-G07"}
    assert placement.outside_area is False


def test_point_on_a_corner_of_three_grids_lands_inside_the_city(db: Session) -> None:
    corner = regions.place(db, LatLng(43.945, 116.069))  # a vertex of XL-G01, XL-G02 and XL-G04
    assert code_of(db, corner.grid_id) in {"XL-G01", "XL-G02", "XL-G04"}
    assert corner.outside_area is False


def test_point_outside_every_grid_goes_to_the_nearest_grid(db: Session) -> None:
    ten_km_north = LatLng(43.97 + 0.09, 116.08)
    placement = regions.place(db, ten_km_north)
    assert code_of(db, placement.grid_id) == "XL-G02"  # its northern edge spans 116.070-116.098 E at 43.97 N
    assert code_of(db, placement.branch_id) == "XL"
    assert placement.outside_area is True


def test_point_far_west_of_erenhot_goes_to_an_erenhot_grid(db: Session) -> None:
    placement = regions.place(db, LatLng(43.65, 111.5))
    assert code_of(db, placement.branch_id) == "EH"
    assert placement.outside_area is True


def test_reported_point_outside_every_grid_is_accepted_and_flagged(client: TestClient, as_user, db: Session) -> None:
    body = {"type_code": "broadband_fault", "description": "牧区断网", "location": {"lat": 44.06, "lng": 116.08},
            "contact": {"name": "巴特尔", "phone": "13900001001"}}
    reply = client.post("/api/v1/tickets", json=body, headers=as_user("dispatcher.xl"))
    assert reply.status_code == 201, reply.text
    ticket = reply.json()
    assert ticket["outside_area"] is True
    assert code_of(db, ticket["region_id"]) == "XL-G02" and code_of(db, ticket["branch_id"]) == "XL"
    assert ticket["location"]["lat"] == 44.06
    inside = client.post("/api/v1/tickets", json={**body, "location": {"lat": 43.935, "lng": 116.10},
                                                  "contact": {"name": "张三", "phone": "13900001002"}},
                         headers=as_user("dispatcher.xl"))
    assert inside.json()["outside_area"] is False


# --- creating regions --------------------------------------------------------------

SQUARE = {"type": "Polygon", "coordinates": [[[116.2, 44.0], [116.3, 44.0], [116.3, 44.1], [116.2, 44.1],
                                              [116.2, 44.0]]]}
BOWTIE = {"type": "Polygon", "coordinates": [[[116.2, 44.0], [116.3, 44.1], [116.3, 44.0], [116.2, 44.1],
                                              [116.2, 44.0]]]}


def create_region(client: TestClient, headers: dict[str, str], **body: object):
    return client.post("/api/v1/regions", json=body, headers=headers)


def assert_field_error(reply, field: str) -> None:
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "validation_error"
    assert field in [e["field"] for e in reply.json()["errors"]]


def test_grid_without_boundary_is_422(client: TestClient, as_user, db: Session) -> None:
    reply = create_region(client, as_user("admin"), code="XL-G99", name="新区", kind="grid",
                          parent_id=region_id(db, "XL"))
    assert_field_error(reply, "boundary")


def test_self_intersecting_boundary_is_422(client: TestClient, as_user, db: Session) -> None:
    reply = create_region(client, as_user("admin"), code="XL-G99", name="新区", kind="grid",
                          parent_id=region_id(db, "XL"), boundary=BOWTIE)
    assert_field_error(reply, "boundary")


def test_branch_under_a_grid_is_422(client: TestClient, as_user, db: Session) -> None:
    reply = create_region(client, as_user("admin"), code="XX", name="错分公司", kind="branch",
                          parent_id=region_id(db, "XL-G01"))
    assert_field_error(reply, "parent_id")


def test_new_grid_takes_the_points_inside_it(client: TestClient, as_user, db: Session) -> None:
    reply = create_region(client, as_user("admin"), code="XL-G99", name="新区", kind="grid",
                          parent_id=region_id(db, "XL"), boundary=SQUARE)
    assert reply.status_code == 201, reply.text
    assert reply.json()["boundary"]["type"] == "MultiPolygon"
    placement = regions.place(db, LatLng(44.05, 116.25))
    assert placement.grid_id == reply.json()["id"] and placement.outside_area is False


def test_only_admin_creates_regions(client: TestClient, as_user, db: Session) -> None:
    reply = create_region(client, as_user("dispatcher.xl"), code="XL-G99", name="新区", kind="grid",
                          parent_id=region_id(db, "XL"), boundary=SQUARE)
    assert reply.status_code == 403
    assert db.scalar(select(Region.id).where(Region.code == "XL-G99")) is None


def test_placement_in_the_process_agrees_with_postgis_on_every_point(db: Session) -> None:
    # Grids and their H3 cells are judged in this process; PostGIS's ST_Covers is the reference.
    rng = random.Random(7)
    points = [LatLng(43.87 + rng.random() * 0.14, 115.97 + rng.random() * 0.22) for _ in range(400)]
    points += [LatLng(p.lat, p.lng) for p in points[:100]]  # asked again: answered from the cells now
    for point in points:
        covering = db.scalars(select(Region.id).where(
            Region.kind == "grid", func.ST_Covers(Region.boundary, sql_point(point))).order_by(Region.id)).first()
        placed = regions.place(db, point)
        assert (placed.grid_id, placed.outside_area) == ((covering, False) if covering else (placed.grid_id, True))



# In a child process: a crash in GEOS kills the process, which the test reads as its exit status.
FRESH_INDEXES_UNDER_THREADS = """
import json, random, sys, threading
import shapely
from shapely.geometry import shape
from geo.gazetteer import PlaceIndex, _Near
from geo.latlng import LatLng
from geo.regions import GridIndex, Placement

features = json.load(open(sys.argv[1]))["features"]
# Densified to a vertex every 20 cm: GEOS's work per question, the window two threads race in, grows with it.
boundaries = [shapely.segmentize(shape(f["geometry"]), 0.000002) for f in features]
grids = [Placement(grid_id=n, grid_path=f"1.{n}", branch_id=1, branch_code="XL", outside_area=False, grid_name="",
                   branch_name="") for n, _ in enumerate(features)]
city = shapely.union_all([shape(f["geometry"]) for f in features])
edges = [part.exterior for part in getattr(city, "geoms", [city])]
rng = random.Random(7)
for _ in range(int(sys.argv[2])):
    # As a process builds fresh ones every GRID_INDEX_TTL_S; the city's edge: a hexagon there lies in one grid, partly.
    index = GridIndex(grids, boundaries)
    edge = [shapely.line_interpolate_point(rng.choice(edges), rng.random(), normalized=True) for _ in range(1600)]
    places = PlaceIndex([_Near(id=n, name=str(n), distance_m=0.0) for n in range(len(edge))],
                        [LatLng(p.y, p.x) for p in edge])
    start = threading.Barrier(8)

    def ask(part: int) -> None:
        start.wait()
        for p in edge[part::8]:
            index.covering(LatLng(p.y, p.x))
            places.nearest(LatLng(p.y, p.x))

    threads = [threading.Thread(target=ask, args=(part,)) for part in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
"""


def test_request_threads_asking_a_fresh_placement_index_at_once_never_crash_the_process() -> None:
    # 64 concurrent reports dropped their connections: the API process died in libgeos, threads having asked the
    # same prepared grid polygon at once (GEOS's prepared geometries and lazily built trees are not thread-safe).
    done = subprocess.run([sys.executable, "-c", FRESH_INDEXES_UNDER_THREADS, str(GRIDS), "24"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
