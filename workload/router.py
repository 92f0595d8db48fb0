import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from dispatch.kernel.auth import Actor, Role, require_role
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound
from dispatch.kernel.inputs import Day, Id
from dispatch.kernel.problems import problem_docs
from dispatch.kernel.settings import SettingsDep
from workload import service
from workload.errors import PeriodClosed, PeriodNotOver
from workload.export import MEDIA_TYPES, ExportFormat
from workload.models import Adjustment, PayPeriod, WorkRate
from workload.schemas import (
    AdjustmentCreate,
    AdjustmentRead,
    PeriodClose,
    PeriodRead,
    RateCreate,
    RateRead,
    WorkloadRead,
)

router = APIRouter(prefix="/api/v1/workload", tags=["workload"])
Payroll = Annotated[Actor, Depends(require_role(Role.ADMIN, Role.PAYROLL))]
Admin = Annotated[Actor, Depends(require_role(Role.ADMIN))]
From = Annotated[Day, Query(alias="from", description="first local date, included")]
To = Annotated[Day, Query(alias="to", description="last local date, included")]
REPORT_ERRORS = problem_docs(InvalidInput, NotFound, Forbidden)


def _month(text: str) -> date:
    return date.fromisoformat(f"{text}-01")


@router.get("", response_model=WorkloadRead, response_model_by_alias=True, responses=REPORT_ERRORS)
def workload(start: From, end: To, session: SessionDep, actor: Payroll, settings: SettingsDep,
             region_id: Id | None = None) -> dict[str, Any]:
    """Per technician over local dates from..to: tickets, hours, points and pay (records plus adjustments)."""
    scope = service.report_scope(session, actor=actor, start=start, end=end, region_id=region_id,
                                 cfg=settings.workload)
    return {"start": start, "end": end, "region_id": region_id, "items": service.workload_rows(session, scope=scope)}


@router.get("/export", response_class=FileResponse, responses=REPORT_ERRORS)
def export_workload(start: From, end: To, session: SessionDep, actor: Payroll, settings: SettingsDep,
                    format: ExportFormat = ExportFormat.CSV, detail: bool = True,
                    region_id: Id | None = None) -> FileResponse:
    """The workload sheet as a file: csv (UTF-8 with BOM), xlsx (summary and detail sheets) or json rows."""
    scope = service.report_scope(session, actor=actor, start=start, end=end, region_id=region_id,
                                 cfg=settings.workload)
    # Written to a temporary file while the session is open, then sent: the lines stream from the
    # database to the disk, never into memory.
    with tempfile.NamedTemporaryFile(prefix="workload-", suffix=f".{format}", delete=False) as handle:
        path = Path(handle.name)
    try:
        service.export_workload(session, actor=actor, scope=scope, fmt=format, detail=detail, path=path,
                                tz=settings.timezone)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    name = f"workload_{start}_{end}{f'_region{region_id}' if region_id else ''}.{format}"
    return FileResponse(path, media_type=MEDIA_TYPES[format], filename=name,
                        background=BackgroundTask(path.unlink, missing_ok=True))


@router.post("/adjustments", response_model=AdjustmentRead, status_code=201,
             responses=problem_docs(PeriodClosed, InvalidInput, NotFound, Forbidden))
def add_adjustment(body: AdjustmentCreate, session: SessionDep, actor: Payroll,
                   settings: SettingsDep) -> Adjustment:
    """Add to (or, negative, take from) a technician's pay in a month, with the reason; 409 once it is closed."""
    month = _month(body.month) if body.month else service.local_date(datetime.now(UTC), settings.timezone)
    return service.add_adjustment(session, actor=actor, technician_id=body.technician_id, amount=body.amount,
                                  reason=body.reason, month=month, work_record_id=body.work_record_id)


@router.get("/periods", response_model=list[PeriodRead], responses=problem_docs(Forbidden))
def list_periods(session: SessionDep, actor: Payroll) -> list[PayPeriod]:
    """The closed months of the caller's branches, latest first."""
    return service.list_periods(session, actor=actor)


@router.post("/periods", response_model=PeriodRead, status_code=201,
             responses=problem_docs(PeriodClosed, PeriodNotOver, InvalidInput, NotFound, Forbidden))
def close_period(body: PeriodClose, session: SessionDep, actor: Payroll, settings: SettingsDep) -> PayPeriod:
    """Close a branch's month: its records and adjustments are frozen, later corrections go to the next month."""
    return service.close_period(session, actor=actor, branch_id=body.branch_id, month=_month(body.month),
                                now=datetime.now(UTC), tz=settings.timezone)


@router.get("/rates", response_model=list[RateRead], responses=problem_docs(Forbidden))
def list_rates(session: SessionDep, actor: Payroll) -> list[WorkRate]:
    """Piece rates and standard hours by ticket type, region and start date."""
    return service.list_rates(session, actor=actor)


@router.post("/rates", response_model=RateRead, status_code=201,
             responses=problem_docs(InvalidInput, NotFound, Forbidden))
def add_rate(body: RateCreate, session: SessionDep, actor: Admin) -> WorkRate:
    """A rate from a date on (optionally for one region); records already written keep theirs."""
    return service.add_rate(session, actor=actor, **body.model_dump())
