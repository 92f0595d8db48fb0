"""The console's lists in `make bench`: GET /api/v1/tickets's queries for a branch dispatcher over a year of a
large operator's tickets (`BENCH_LIST_ROWS`, 200 000, two thirds in Xilinhot): text search (`q=`), the total
(`with_total=true`) and a page by time left (`order=due`).

The tickets are generated with one INSERT ... SELECT over generate_series. Each row is the median of 7 runs of
the very statement the endpoint runs (`dispatch.tickets.queries`), on one connection, after one warm-up run.
"""

import os
import statistics
import time
from typing import Any

from sqlalchemy import Select, create_engine, select, text

from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.kernel.pagination import PageParams
from dispatch.tickets import queries
from dispatch.tickets.models import TicketState
from dispatch.tickets.permissions import Viewer
from geo.models import Region

ROWS = int(os.environ.get("BENCH_LIST_ROWS", "200000"))
RUNS = 7

GENERATE = """
WITH place AS (SELECT b.id AS branch_id, min(g.id) AS grid_id FROM region b JOIN region g ON g.parent_id = b.id
               WHERE b.code IN ('XL', 'EH') GROUP BY b.id, b.code ORDER BY b.code DESC)
INSERT INTO ticket (number, type_code, state, priority, version, source, description, location, h3, address,
    region_id, branch_id, outside_area, contact_name, contact_phone, attachment_refs, materials, created_by,
    created_at, updated_at, response_due_at, resolution_due_at, ring, escalation_level, urge_count)
SELECT 'XL-2026' || lpad((n / 1000)::text, 4, '0') || '-' || lpad(n::text, 6, '0'), 'broadband_fault',
    (ARRAY['pending', 'accepted', 'completed', 'completed', 'completed', 'invalid'])[1 + n % 6], 'P3', 1, 'phone',
    '断网了', ST_SetSRID(ST_MakePoint(116.08, 43.935), 4326), '8931aa5b6ffffff',
    '锡林浩特 ' || (ARRAY['幸福里', '锡林大街', '额尔敦路', '团结小区'])[1 + n % 4] || ' ' || n || ' 号',
    (array_agg(place.grid_id))[1 + (n % 3 = 0)::int], (array_agg(place.branch_id))[1 + (n % 3 = 0)::int], false,
    '王五', '139' || lpad(n::text, 8, '0'), '[]', '[]', 'bench', now() - make_interval(mins => n), now(),
    now() + make_interval(mins => n % 500), now() + make_interval(mins => 240 + n % 500), 0, 0, 0
FROM generate_series(1, :rows) AS n, place GROUP BY n
"""


def _cases(viewer: Viewer) -> dict[str, Select[Any]]:
    page = PageParams(limit=50, after_id=None)

    def listed(q: str) -> Select[Any]:
        return queries.ticket_list(viewer, queries.TicketFilter(q=q), page=page)

    return {
        "q=幸福里 12 (address, ~1 800 match), page of 50": listed(q="幸福里 12"),
        "q=0001234 (phone), page of 50": listed(q="0001234"),
        "q=XL-20260012 (number), page of 50": listed(q="XL-20260012"),
        "q=000123 (number or phone), total": queries.ticket_count(viewer, queries.TicketFilter(q="000123")),
        "q=139 (every phone: the worst), page of 50": listed(q="139"),
        "q=幸福 (2 characters: no trigram), page of 50": listed(q="幸福"),
        "state=pending, order=due, page of 50": queries.ticket_list(
            viewer, queries.TicketFilter(state=TicketState.PENDING), page=page, order=queries.TicketOrder.DUE),
        "state=pending, total": queries.ticket_count(viewer, queries.TicketFilter(state=TicketState.PENDING)),
        "every state, total": queries.ticket_count(viewer, queries.TicketFilter()),
    }


def main(url: str) -> str:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(GENERATE), {"rows": ROWS})
        conn.execute(text("ANALYZE ticket"))
        xilinhot = conn.execute(select(Region.id).where(Region.code == "XL")).scalar_one()
    viewer = Viewer(actor=Actor(kind=PrincipalKind.USER, id=1, role=Role.DISPATCHER, label="dispatcher.xl",
                                region_ids=(xilinhot,)))
    lines = [f"console lists: {ROWS:,} tickets, dispatcher.xl's branch; median of {RUNS} runs (ms)"]
    with engine.connect() as conn:
        for name, query in _cases(viewer).items():
            conn.execute(query).all()  # warm-up: plan and pages in cache, as for a dispatcher's second search
            runs = []
            for _ in range(RUNS):
                started = time.perf_counter()
                conn.execute(query).all()
                runs.append((time.perf_counter() - started) * 1000)
            lines.append(f"  {name:48s} {statistics.median(runs):8.1f}   (min {min(runs):.1f})")
    engine.dispose()
    return "\n".join(lines) + "\n"
