"""An area outage end to end through the API with `fieldpool serve` and `fieldpool worker` running: a street's
reports become one incident on the live feed, one technician repairs it, every report is completed with it."""

import math
from typing import Any

import pytest
from sqlalchemy import text

from tests.api.test_stream import Sse
from tests.concurrency.test_worker_rings import CENTRE, Flow, flow, north_of  # noqa: F401 (flow: a fixture)

REPORTS = 12  # the demo's tv_no_signal opens an incident at the fifth within 300 m and 15 minutes
ON_DUTY = {"tech01": 150, "tech04": 600, "tech05": 1200}  # metres north of the street; all do TV


def near(n: int) -> dict[str, float]:
    """Report n's place: around the street's centre, within 120 m."""
    angle = math.radians(30 * n)
    return {"lat": CENTRE.lat + 100 * math.cos(angle) / 111_195.0,
            "lng": CENTRE.lng + 100 * math.sin(angle) / (111_195.0 * math.cos(math.radians(CENTRE.lat)))}


def count(flow: Flow, sql: str) -> int:  # noqa: F811
    with flow.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_a_streets_outage_is_one_incident_repaired_once(flow: Flow, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    for username, metres in ON_DUTY.items():
        flow.call("PUT", "/api/v1/me/duty", username, 200, json={"on_duty": True})
        where = north_of(CENTRE, metres)
        flow.call("PUT", "/api/v1/me/location", username, 204, json={"lat": where.lat, "lng": where.lng})
    feed = Sse(flow.api, flow.headers("dispatcher.xl"))
    try:
        reports: list[dict[str, Any]] = [flow.call("POST", "/api/v1/tickets", "dispatcher.xl", 201, json={
            "type_code": "tv_no_signal", "description": "电视没信号了", "location": near(n),
            "contact": {"name": "住户", "phone": f"1358888{n:04d}"}}) for n in range(REPORTS)]
        ids = [r["id"] for r in reports]
        seen = flow.wait_for(feed, lambda e: e["type"] == "incident.grew" and e["ticket_ids"] == [ids[-1]],
                             "the last report joining the incident on the dispatcher's feed")
        [incident] = flow.call("GET", "/api/v1/incidents", "dispatcher.xl", 200)
        lead = incident["ticket"]["id"]
        assert sorted(incident["ticket_ids"]) == ids
        assert [e["type"] for e in seen if e["type"].startswith("incident.")] == \
            ["incident.opened"] + ["incident.grew"] * (REPORTS - 5)
        assert [o["ticket"]["id"] for o in flow.offers("tech01")] == [lead], "one offer on the phone, not twelve"

        flow.call("POST", f"/api/v1/tickets/{lead}/grab", "tech01", 200)
        flow.call("POST", f"/api/v1/tickets/{lead}/arrive", "tech01", 200,
                  json={"location": {"lat": CENTRE.lat, "lng": CENTRE.lng}})
        flow.call("POST", f"/api/v1/tickets/{lead}/complete", "tech01", 200,
                  json={"note": "更换放大器", "visited": [ids[0]]})
        flow.wait_for(feed, lambda e: e["type"] == "incident.resolved", "the incident resolved on the feed")
    finally:
        feed.close()

    states = {flow.call("GET", f"/api/v1/tickets/{i}", "dispatcher.xl", 200)["state"] for i in ids}
    assert states == {"awaiting_followup"}
    figures = {"reports in": REPORTS,
               "offers sent": count(flow, "SELECT count(*) FROM ticket_offer"),
               "offers on the incident": count(flow, f"SELECT count(*) FROM ticket_offer WHERE ticket_id = {lead}"),
               "work records": count(flow, "SELECT count(*) FROM work_record"),
               "completions told": count(flow, "SELECT count(*) FROM outbox WHERE payload->>'type' = "
                                               "'ticket.completed' AND sent_at IS NOT NULL")}
    assert figures["work records"] == 2, "the repair once, and the one report visited on its own"
    assert figures["offers on the incident"] == len(ON_DUTY)
    with capsys.disabled():
        print(f"\n[outage] {figures}")
