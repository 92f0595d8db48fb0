"""Full exports for other systems and spreadsheets: every ticket of a period with its milestones, and the
statistics page as a workbook. Files stream from a server-side cursor, like the workload's."""

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from dispatch.audit import service as audit
from dispatch.audit.models import AuditAction
from dispatch.kernel.auth import Actor
from dispatch.tickets import queries, stats
from dispatch.tickets.models import Ticket, TicketState, TicketType
from dispatch.tickets.permissions import Viewer
from geo import regions
from geo.models import Region
from technicians.models import Technician
from workload.export import Column, ExportFormat, Kind, Table, stream_rows, write_tables

TICKETS = (
    Column("number", "工单号", Kind.TEXT, 18), Column("state", "状态", Kind.TEXT),
    Column("priority", "优先级", Kind.TEXT), Column("type_name", "工单类型", Kind.TEXT, 12),
    Column("branch", "分公司", Kind.TEXT, 10), Column("grid", "网格", Kind.TEXT, 16),
    Column("address", "地址", Kind.TEXT, 30), Column("source", "来源", Kind.TEXT),
    Column("created_at", "报修时间", Kind.DATETIME), Column("accepted_at", "接单时间", Kind.DATETIME),
    Column("arrived_at", "到场时间", Kind.DATETIME), Column("completed_at", "完工时间", Kind.DATETIME),
    Column("closed_at", "回访完结", Kind.DATETIME), Column("timed_out_at", "超时时间", Kind.DATETIME),
    Column("invalidated_at", "作废时间", Kind.DATETIME), Column("response_due_at", "响应时限", Kind.DATETIME),
    Column("response_met", "响应达标", Kind.TEXT), Column("resolution_due_at", "解决时限", Kind.DATETIME),
    Column("resolution_met", "解决达标", Kind.TEXT), Column("technician", "维护人员", Kind.TEXT, 10),
    Column("satisfaction", "满意度", Kind.INT), Column("urge_count", "催办次数", Kind.INT),
    Column("incident_id", "区域故障", Kind.INT), Column("invalid_reason", "作废原因", Kind.TEXT, 20),
)
_LOCAL_TIMES = ("created_at", "accepted_at", "arrived_at", "completed_at", "closed_at", "timed_out_at",
                "invalidated_at", "response_due_at", "resolution_due_at")


def _met(done: Any, due: Any, *, as_text: bool) -> ColumnElement[Any]:
    """Whether a limit was kept: yes, no, or nothing to say yet (not done and not due)."""
    late = and_(done.is_(None), due < func.now(), Ticket.state != TicketState.INVALID)
    kept = case((done.isnot(None), done <= due), (late, literal(False)))
    return case((kept.is_(None), literal(None)), (kept, literal("是")), else_=literal("否")) if as_text else kept


def tickets_query(actor: Actor, period: stats.Period, *, state: TicketState | None, as_text: bool) -> Select[Any]:
    """The period's tickets (reported on its local dates) in the caller's scope, oldest first, one row each."""
    grid, branch = aliased(Region), aliased(Region)
    local = {name: func.timezone(period.tz, getattr(Ticket, name)).label(name) for name in _LOCAL_TIMES}
    query = (select(Ticket.number, Ticket.state, Ticket.priority, TicketType.name, branch.name, grid.name,
                    Ticket.address, Ticket.source, local["created_at"], local["accepted_at"], local["arrived_at"],
                    local["completed_at"], local["closed_at"], local["timed_out_at"], local["invalidated_at"],
                    local["response_due_at"], _met(Ticket.accepted_at, Ticket.response_due_at, as_text=as_text),
                    local["resolution_due_at"],
                    _met(Ticket.completed_at, Ticket.resolution_due_at, as_text=as_text), Technician.name,
                    Ticket.satisfaction, Ticket.urge_count, Ticket.incident_id, Ticket.invalid_reason)
             .join(TicketType, TicketType.code == Ticket.type_code)
             .join(grid, grid.id == Ticket.region_id).join(branch, branch.id == Ticket.branch_id)
             .outerjoin(Technician, Technician.id == Ticket.technician_id)
             .where(queries.visible_to(Viewer(actor=actor)),
                    Ticket.created_at >= stats.local_midnight(period.span.start, period.tz),
                    Ticket.created_at < stats.local_midnight(period.span.end_exclusive, period.tz))
             .order_by(Ticket.id))
    if period.region_id is not None:
        query = query.where(regions.within(Ticket.region_id, (period.region_id,)))
    if state is not None:
        query = query.where(Ticket.state == state)
    return query


def export_tickets(session: Session, *, actor: Actor, period: stats.Period, state: TicketState | None,
                   fmt: ExportFormat, path: Path) -> None:
    """Write the period's tickets to `path`, streaming them; audited (subscriber data leaving the system)."""
    if period.region_id is not None:
        regions.region_in_scope(session, period.region_id, actor.scope)
    audit.record(session, action=AuditAction.TICKETS_EXPORTED, actor=actor, start=str(period.span.start),
                 end=str(period.span.end), region_id=period.region_id, state=state, format=fmt)
    rows = stream_rows(session.connection(), tickets_query(actor, period, state=state,
                                                           as_text=fmt is not ExportFormat.JSON))
    write_tables([Table("工单", TICKETS, rows)], fmt=fmt, path=path, title=_title("工单", period),
                 created=_created(period))


METRICS = (
    Column("tickets", "工单数", Kind.INT), Column("accept_median_min", "接单中位(分)", Kind.DECIMAL),
    Column("accept_p90_min", "接单P90(分)", Kind.DECIMAL), Column("complete_median_min", "完工中位(分)", Kind.DECIMAL),
    Column("complete_p90_min", "完工P90(分)", Kind.DECIMAL),
    Column("response_sla_attainment", "响应达标率", Kind.FACTOR),
    Column("resolution_sla_attainment", "解决达标率", Kind.FACTOR), Column("timeout_rate", "超时率", Kind.FACTOR),
    Column("invalid_rate", "无效率", Kind.FACTOR), Column("satisfaction_avg", "平均满意度", Kind.DECIMAL),
    Column("satisfaction_count", "评价数", Kind.INT), Column("urges", "催办次数", Kind.INT),
    Column("urged_rate", "被催办比例", Kind.FACTOR),
)
# One sheet per breakdown of the statistics page: its key columns, then the metrics.
BREAKDOWNS = (("按类型", "by_type", (Column("type_code", "工单类型", Kind.TEXT, 14),)),
              ("按网格", "by_region", (Column("region_id", "网格编号", Kind.INT),
                                      Column("name", "网格", Kind.TEXT, 16))),
              ("按维护人员", "by_technician", (Column("technician_id", "编号", Kind.INT),
                                              Column("name", "维护人员", Kind.TEXT, 10))))


class StatsTable(StrEnum):
    """Which table of the statistics page a file holds: all of them (the workbook), or one chart's."""

    ALL = "all"
    STATE = "state"
    TYPE = "type"
    GRID = "grid"
    TECHNICIAN = "technician"
    DAY = "day"
    HOUR = "hour"
    DECLINES = "declines"


SERIES = {StatsTable.DAY: ("按日", stats.Bucket.DAY, Column("bucket", "日期", Kind.TEXT, 12)),
          StatsTable.HOUR: ("按小时", stats.Bucket.HOUR, Column("bucket", "时段(时)", Kind.TEXT))}
SHEETS = dict(zip((StatsTable.TYPE, StatsTable.GRID, StatsTable.TECHNICIAN), BREAKDOWNS, strict=True))


def _row(values: dict[str, Any], columns: tuple[Column, ...]) -> list[Any]:
    return [values.get(c.key) for c in columns]


BY_STATE = (Column("state", "状态", Kind.TEXT), Column("tickets", "工单数", Kind.INT))
# 拒单: a row per technician and reason code (the console's two decline charts read the same rows).
DECLINES = (Column("technician_id", "编号", Kind.INT), Column("name", "维护人员", Kind.TEXT, 10),
            Column("reason_code", "拒单原因", Kind.TEXT, 12), Column("declines", "次数", Kind.INT))


def _declines_table(figures: dict[str, Any]) -> Table:
    return Table("拒单", DECLINES, [[t["technician_id"], t["name"], reason, count]
                                  for t in figures["declines"]["by_technician"]
                                  for reason, count in t["by_reason"].items()])


def _page_tables(figures: dict[str, Any]) -> dict[StatsTable, Table]:
    return {StatsTable.STATE: Table("按状态", BY_STATE, sorted(figures["by_state"].items())),
            **{table: Table(name, keys + METRICS, [_row(item, keys + METRICS) for item in figures[field]])
               for table, (name, field, keys) in SHEETS.items()}}


def export_stats(session: Session, *, actor: Actor, period: stats.Period, path: Path,
                 table: StatsTable = StatsTable.ALL) -> None:
    """The statistics page of a period as a workbook: the totals, then a sheet per state, type, grid and
    technician; or the one table behind a chart (`table`), the per-day and per-hour series and the declines
    included.

    Raises:
        NotFound: region_id is not one of the caller's regions.
    """
    if table in SERIES:
        name, bucket, key = SERIES[table]
        points = stats.ticket_series(session, actor=actor, period=period, bucket=bucket)
        tables = [Table(name, (key, *METRICS), [_row(point, (key, *METRICS)) for point in points])]
    else:
        figures = stats.ticket_stats(session, actor=actor, period=period)
        page = _page_tables(figures)
        tables = ([Table("总览", METRICS, [_row(figures, METRICS)]), *page.values()] if table is StatsTable.ALL
                  else [_declines_table(figures)] if table is StatsTable.DECLINES else [page[table]])
    write_tables(tables, fmt=ExportFormat.XLSX, path=path, title=_title("统计", period), created=_created(period))


def _title(what: str, period: stats.Period) -> str:
    return f"{what} {period.span.start}..{period.span.end}"


def _created(period: stats.Period) -> datetime:
    return datetime.combine(period.span.end, datetime.min.time())  # the same bytes for the same period
