"""System dispatch as a branch's choice, through the API: grab (default), assign at intake, hybrid after N seconds
unanswered; 拒单 with a reason re-dispatches, never back to a decliner; reasons in statistics; the mode change is
audited and refused to technicians and to other branches' dispatchers."""

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.kernel.settings import Settings
from dispatch.tickets import modes
from dispatch.tickets.models import OutboxMessage
from tests.conftest import local_day, log_in
from tests.conftest import on_duty as go_on_duty
from tests.dispatch.test_offers import CENTRE, on_duty, report  # noqa: F401 (on_duty: a fixture)


def branch_id(client: TestClient, headers: dict[str, str]) -> int:
    """The XL branch, the one dispatcher.xl works in and report() lands in."""
    [xl] = client.get("/api/v1/dispatch-modes", headers=headers).json()
    return int(xl["region_id"])


def choose(client: TestClient, mode: str, *, who: str = "dispatcher.xl", **more: Any) -> Any:
    headers = log_in(client, who)
    return client.put(f"/api/v1/regions/{branch_id(client, log_in(client, 'dispatcher.xl'))}/dispatch-mode",
                      json={"mode": mode, **more}, headers=headers)


def feed_types(db: Session, ticket_id: int) -> list[str]:
    return [p["type"] for p in db.scalars(select(OutboxMessage.payload).where(OutboxMessage.topic == "feed")
                                          .order_by(OutboxMessage.id)) if p["ticket_id"] == ticket_id]


def seen(client: TestClient, ticket_id: int) -> dict[str, Any]:
    return client.get(f"/api/v1/tickets/{ticket_id}", headers=log_in(client, "dispatcher.xl")).json()


def decline(client: TestClient, ticket_id: int, who: str, reason: str = "too_far", **more: Any) -> Any:
    return client.post(f"/api/v1/tickets/{ticket_id}/decline", json={"reason_code": reason, **more},
                       headers=log_in(client, who))


def test_a_branch_grabs_by_default_as_before(client, as_user, whole_first_ring, db,
                                              on_duty) -> None:  # noqa: F811
    mode = client.get(f"/api/v1/regions/{branch_id(client, as_user('dispatcher.xl'))}/dispatch-mode",
                      headers=as_user("dispatcher.xl")).json()
    assert mode["mode"] == "grab" and mode["changed_by"] is None
    ticket = report(client, as_user("dispatcher.xl"))
    assert ticket["state"] == "pending" and ticket["technician_id"] is None and len(ticket["offers"]) == 5
    assert "ticket.assigned" not in feed_types(db, ticket["id"])


def test_assign_mode_gives_a_new_ticket_to_the_nearest_eligible_at_intake(client, as_user, on_duty, db) -> None:  # noqa: F811
    assert choose(client, "assign").status_code == 200
    ticket = report(client, as_user("dispatcher.xl"))
    assert ticket["state"] == "accepted" and ticket["technician_id"] == on_duty["tech01"]
    assert ticket["system_assigned"] is True and ticket["offers"] == []
    assert [e["action"] for e in seen(client, ticket["id"])["events"]] == ["create", "system_assign"]
    assert "ticket.assigned" in feed_types(db, ticket["id"]) and "ticket.offered" not in feed_types(db, ticket["id"])
    mine = client.get("/api/v1/me/tickets", headers=as_user("tech01")).json()
    assert ticket["id"] in [t["id"] for t in mine]


def test_assign_mode_breaks_a_near_tie_for_the_technician_with_fewer_tickets(client, as_user, on_duty) -> None:  # noqa: F811
    # tech01 (100 m) and tech02 (400 m) are within the 300 m tie band of each other.
    choose(client, "assign")
    first = report(client, as_user("dispatcher.xl"), phone="13900002001")
    second = report(client, as_user("dispatcher.xl"), phone="13900002002")
    assert first["technician_id"] == on_duty["tech01"]
    assert second["technician_id"] == on_duty["tech02"], "the nearer tech01 holds one already"


def test_assign_mode_with_nobody_eligible_leaves_the_ticket_in_the_pool(client, as_user) -> None:
    choose(client, "assign")
    ticket = report(client, as_user("dispatcher.xl"))
    assert ticket["state"] == "pending" and ticket["technician_id"] is None and not ticket["system_assigned"]


def test_hybrid_mode_assigns_only_after_the_wait_unanswered(
        client, as_user, whole_first_ring: Settings, db: Session, redis: Redis, settings: Settings,
        on_duty) -> None:  # noqa: F811
    assert choose(client, "hybrid", hybrid_after_s=60).json()["hybrid_after_s"] == 60
    ticket = report(client, as_user("dispatcher.xl"))
    assert ticket["state"] == "pending" and len(ticket["offers"]) == 5, "offered first, as in grab mode"
    now = datetime.now(UTC)
    assert modes.sweep_hybrid(db, redis, settings=settings, now=now + timedelta(seconds=50), limit=50) == 0
    assert seen(client, ticket["id"])["state"] == "pending"
    assert modes.sweep_hybrid(db, redis, settings=settings, now=now + timedelta(seconds=61), limit=50) == 1
    after = seen(client, ticket["id"])
    assert after["state"] == "accepted" and after["technician_id"] == on_duty["tech01"] and after["system_assigned"]
    assert client.get("/api/v1/me/offers", headers=as_user("tech02")).json() == [], "the other offers ended"


def test_hybrid_mode_leaves_a_ticket_grabbed_in_time_alone(client, as_user, on_duty, db, redis, settings) -> None:  # noqa: F811
    choose(client, "hybrid", hybrid_after_s=60)
    ticket = report(client, as_user("dispatcher.xl"))
    assert client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=as_user("tech03")).status_code == 200
    later = datetime.now(UTC) + timedelta(seconds=120)
    assert modes.sweep_hybrid(db, redis, settings=settings, now=later, limit=50) == 0
    after = seen(client, ticket["id"])
    assert after["technician_id"] == on_duty["tech03"] and not after["system_assigned"]


def test_a_decline_goes_to_the_next_best_and_never_back_to_a_decliner(client, as_user, on_duty, db) -> None:  # noqa: F811
    choose(client, "assign")
    ticket = report(client, as_user("dispatcher.xl"))
    assert ticket["technician_id"] == on_duty["tech01"]
    first = decline(client, ticket["id"], "tech01", "too_far", note="车坏了")
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "accepted" and first.json()["technician_id"] == on_duty["tech02"]
    second = decline(client, ticket["id"], "tech02", "busy")
    assert second.json()["technician_id"] == on_duty["tech03"]
    events = seen(client, ticket["id"])["events"]
    assert [e["action"] for e in events] == ["create", "system_assign", "decline", "system_assign", "decline",
                                             "system_assign"]
    assert [e["technician_id"] for e in events if e["action"] == "system_assign"] == [
        on_duty["tech01"], on_duty["tech02"], on_duty["tech03"]]
    assert feed_types(db, ticket["id"]).count("ticket.declined") == 2
    # tech01 is nearest and now holds nothing: still never given this ticket again.
    assert decline(client, ticket["id"], "tech03", "no_skill").json()["technician_id"] == on_duty["tech04"]


def test_a_decline_with_nobody_left_puts_the_ticket_in_the_pool(client, as_user, db) -> None:
    choose(client, "assign")
    go_on_duty(client, as_user("tech01"), at={"lat": CENTRE.lat, "lng": CENTRE.lng})
    ticket = report(client, as_user("dispatcher.xl"))
    assert ticket["technician_id"] is not None
    after = decline(client, ticket["id"], "tech01", "off_shift").json()
    assert after["state"] == "pending" and after["technician_id"] is None


def test_decline_is_refused_to_others_on_grabbed_tickets_after_arrival_and_for_unknown_reasons(
        client, as_user, on_duty) -> None:  # noqa: F811
    choose(client, "assign")
    ticket = report(client, as_user("dispatcher.xl"))
    not_mine = decline(client, ticket["id"], "tech02")
    assert not_mine.status_code in (403, 404) and not_mine.json()["code"] in ("not_your_ticket", "ticket_not_found")
    bad = decline(client, ticket["id"], "tech01", "lazy")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].endswith("reason_code")
    assert seen(client, ticket["id"])["technician_id"] == on_duty["tech01"]

    arrived = client.post(f"/api/v1/tickets/{ticket['id']}/arrive", json={"location": {"lat": 43.935, "lng": 116.08}},
                          headers=as_user("tech01"))
    assert arrived.status_code == 200, arrived.text
    late = decline(client, ticket["id"], "tech01")
    assert late.status_code == 409 and late.json()["code"] == "not_declinable"

    choose(client, "grab")
    grabbed = report(client, as_user("dispatcher.xl"), phone="13900003003")
    assert client.post(f"/api/v1/tickets/{grabbed['id']}/grab", headers=as_user("tech02")).status_code == 200
    refused = decline(client, grabbed["id"], "tech02")
    assert refused.status_code == 409 and refused.json()["code"] == "not_declinable"


def test_decline_reasons_are_counted_in_statistics(client, as_user, on_duty, settings: Settings) -> None:  # noqa: F811
    choose(client, "assign")
    ticket = report(client, as_user("dispatcher.xl"))
    decline(client, ticket["id"], "tech01", "too_far")
    decline(client, ticket["id"], "tech02", "too_far")
    decline(client, ticket["id"], "tech03", "busy")
    day = local_day(settings, ticket["created_at"])
    stats = client.get("/api/v1/stats", params={"from": day, "to": day}, headers=as_user("dispatcher.xl")).json()
    declines = stats["declines"]
    assert declines["total"] == 3 and declines["by_reason"] == {"busy": 1, "too_far": 2}
    assert [b["by_reason"] for b in declines["by_branch"]] == [{"busy": 1, "too_far": 2}]
    sheet = client.get("/api/v1/stats/export", params={"from": day, "to": day, "table": "declines"},
                       headers=as_user("dispatcher.xl"))
    assert sheet.status_code == 200, sheet.text
    book = openpyxl.load_workbook(io.BytesIO(sheet.content), read_only=True)
    assert book.sheetnames == ["拒单"]
    header, *rows = list(book["拒单"].iter_rows(values_only=True))
    assert header == ("编号", "维护人员", "拒单原因", "次数")
    assert sorted((row[2], row[3]) for row in rows) == [("busy", 1), ("too_far", 1), ("too_far", 1)]
    per_technician = {t["technician_id"]: t["by_reason"] for t in declines["by_technician"]}
    assert per_technician == {on_duty["tech01"]: {"too_far": 1}, on_duty["tech02"]: {"too_far": 1},
                              on_duty["tech03"]: {"busy": 1}}
    other = client.get("/api/v1/stats", params={"from": day, "to": day}, headers=as_user("dispatcher.eh")).json()
    assert other["declines"]["total"] == 0, "another branch's declines are not theirs to read"


def test_a_mode_change_is_audited(client, as_user) -> None:
    changed = choose(client, "hybrid", hybrid_after_s=90)
    assert changed.status_code == 200 and changed.json()["changed_by"] == "dispatcher.xl"
    audit = client.get("/api/v1/audit", params={"action": "dispatch_mode.changed"}, headers=as_user("admin")).json()
    [event] = audit["items"]
    assert event["detail"] == {"from": "grab", "to": "hybrid", "hybrid_after_s": 90}
    assert event["target_id"] == changed.json()["region_id"]


@pytest.mark.parametrize(("who", "status"), [("tech01", 403), ("clerk.xl", 403), ("dispatcher.eh", 404),
                                             ("dispatcher.xl.g01", 404)])
def test_a_mode_change_is_refused_to_technicians_and_other_dispatchers(client, as_user, who, status) -> None:
    refused = choose(client, "assign", who=who)
    assert refused.status_code == status, refused.text
    mode = client.get(f"/api/v1/regions/{branch_id(client, as_user('dispatcher.xl'))}/dispatch-mode",
                      headers=as_user("dispatcher.xl")).json()
    assert mode["mode"] == "grab"


def test_a_grid_has_no_dispatch_mode_of_its_own(client, as_user) -> None:
    regions = client.get("/api/v1/regions", headers=as_user("admin")).json()
    grid_id = next(r["id"] for r in regions if r["kind"] == "grid")
    refused = client.put(f"/api/v1/regions/{grid_id}/dispatch-mode", json={"mode": "assign"},
                         headers=as_user("admin"))
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "region_id"


def test_hybrid_mode_assigns_a_ticket_handed_back_after_the_wait_again(
        client, as_user, on_duty, db, redis, settings) -> None:  # noqa: F811
    choose(client, "hybrid", hybrid_after_s=60)
    ticket = report(client, as_user("dispatcher.xl"))
    client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=as_user("tech03"))
    handed_back = datetime.now(UTC)
    released = client.post(f"/api/v1/tickets/{ticket['id']}/release", json={"reason": "缺少材料"},
                           headers=as_user("tech03"))
    assert released.status_code == 200 and released.json()["state"] == "pending", released.text
    assert modes.sweep_hybrid(db, redis, settings=settings, now=handed_back + timedelta(seconds=50), limit=50) == 0
    assert modes.sweep_hybrid(db, redis, settings=settings, now=handed_back + timedelta(seconds=70), limit=50) == 1
    after = seen(client, ticket["id"])
    assert after["state"] == "accepted" and after["system_assigned"]
    assert [e["action"] for e in after["events"]][-1] == "system_assign"
