"""Workload sheets as files: CSV (UTF-8 with BOM, for Excel), XLSX (summary and detail sheets), JSON (flat rows).

Every format streams the detail from a server-side cursor into the file, so
memory stays flat however many lines a period has; XLSX goes through
xlsxwriter's constant-memory mode. Nothing in a file depends on when it was
written, so a closed period exports the same bytes every time.
"""

import csv
import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import psycopg
import xlsxwriter
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from workload import queries

STREAM_ROWS = 5000
PROGRESS_EVERY = 10_000


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    JSON = "json"


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ExportFormat.JSON: "application/json",
}


class Kind(StrEnum):
    """How a column is shown: its Excel number format and its width."""

    INT = "int"
    TEXT = "text"
    DATE = "date"
    DATETIME = "datetime"
    DECIMAL = "decimal"
    MONEY = "money"
    FACTOR = "factor"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: Kind
    width: int = 0  # 0: as wide as the header or a typical value of its kind


SUMMARY = (
    Column("technician_id", "技术员编号", Kind.INT), Column("name", "技术员", Kind.TEXT, 10),
    Column("tickets", "工单数", Kind.INT), Column("standard_hours", "标准工时", Kind.DECIMAL),
    Column("actual_hours", "现场工时", Kind.DECIMAL), Column("points", "工分", Kind.DECIMAL),
    Column("record_pay", "计件金额(元)", Kind.MONEY), Column("adjustments", "调整金额(元)", Kind.MONEY),
    Column("pay", "应发金额(元)", Kind.MONEY),
)
DETAIL = (
    Column("technician_id", "技术员编号", Kind.INT), Column("technician_name", "技术员", Kind.TEXT, 10),
    Column("kind", "类别", Kind.TEXT), Column("work_date", "日期", Kind.DATE),
    Column("ticket_number", "工单号", Kind.TEXT, 18), Column("region_name", "网格", Kind.TEXT, 16),
    Column("type_name", "工单类型", Kind.TEXT, 12), Column("accepted_at", "接单时间", Kind.DATETIME),
    Column("arrived_at", "到场时间", Kind.DATETIME), Column("completed_at", "完成时间", Kind.DATETIME),
    Column("standard_hours", "标准工时", Kind.DECIMAL), Column("onsite_hours", "现场工时", Kind.DECIMAL),
    Column("total_hours", "总工时", Kind.DECIMAL), Column("distance_km", "距离(公里)", Kind.DECIMAL),
    Column("night", "夜间", Kind.TEXT), Column("holiday", "节假日", Kind.TEXT),
    Column("satisfaction", "满意度", Kind.INT), Column("piece_rate", "单价(元)", Kind.MONEY),
    Column("factor", "系数", Kind.FACTOR), Column("points", "工分", Kind.DECIMAL),
    Column("pay", "金额(元)", Kind.MONEY), Column("note", "说明", Kind.TEXT, 30),
)
# Excel number formats; widths fit the formatted value of a typical line.
NUMBER_FORMATS = {Kind.INT: "0", Kind.DATE: "yyyy-mm-dd", Kind.DATETIME: "yyyy-mm-dd hh:mm:ss",
                  Kind.DECIMAL: "#,##0.00", Kind.MONEY: "#,##0.00", Kind.FACTOR: "0.0000"}
KIND_WIDTHS = {Kind.INT: 8, Kind.TEXT: 6, Kind.DATE: 11, Kind.DATETIME: 20, Kind.DECIMAL: 10,
               Kind.MONEY: 12, Kind.FACTOR: 8}
TOTAL_LABEL = "合计"

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Sheet:
    """What one export holds: the per-technician summary and its totals (when the format shows them), and
    every line when `detail`."""

    summary: list[Sequence[Any]]
    totals: Sequence[Any]
    lines: Iterable[Sequence[Any]] | None


def display_width(text: str) -> int:
    """Columns a string takes in a spreadsheet: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def column_width(column: Column, values: Iterable[Any] = ()) -> int:
    widest = max((display_width(str(v)) for v in values), default=0)
    return max(display_width(column.header), column.width or KIND_WIDTHS[column.kind], widest) + 2


def build_sheet(session: Session, *, scope: queries.Scope, tz: str, detail: bool, flags_as_text: bool,
                summary: bool) -> Sheet:
    """The per-technician summary (small, in memory) when asked, and a stream of the detail lines when asked."""
    rows: list[Sequence[Any]] = [tuple(row) for row in session.execute(queries.summary(scope))] if summary else []
    totals = [TOTAL_LABEL, "", *(sum((row[i] or 0 for row in rows), Decimal(0)) for i in range(2, len(SUMMARY)))]
    lines = stream_rows(session.connection(), queries.detail(scope, tz, flags_as_text=flags_as_text)) if detail \
        else None
    return Sheet(summary=rows, totals=totals, lines=lines)


def stream_rows(connection: Connection, statement: Any) -> Iterator[Sequence[Any]]:
    """The rows of `statement` from a server-side cursor: PostgreSQL hands them over in batches.

    The driver's own cursor, in the session's transaction: SQLAlchemy's result
    rows cost a third of a CSV export's time and add nothing a file needs.
    """
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    with driver.cursor(name="export_rows") as cursor:
        cursor.itersize = STREAM_ROWS
        cursor.execute(str(compiled), compiled.params)
        yield from cursor


def _counted(lines: Iterable[Sequence[Any]], progress: Progress | None) -> Iterable[Sequence[Any]]:
    if progress is None:
        yield from lines
        return
    pending = 0
    for line in lines:
        yield line
        pending += 1
        if pending == PROGRESS_EVERY:
            progress(pending)
            pending = 0
    progress(pending)


def write(sheet: Sheet, *, fmt: ExportFormat, path: Path, title: str, created: datetime,
          progress: Progress | None = None) -> None:
    """Write the sheet to `path` in one of the formats."""
    lines = None if sheet.lines is None else _counted(sheet.lines, progress)
    if fmt is ExportFormat.XLSX:
        _write_xlsx(sheet, lines, path=path, title=title, created=created)
        return
    with path.open("w", encoding="utf-8-sig" if fmt is ExportFormat.CSV else "utf-8", newline="") as out:
        if fmt is ExportFormat.CSV:
            _write_csv(sheet, lines, out)
        else:
            _write_json(sheet, lines, out)


def _write_csv(sheet: Sheet, lines: Iterable[Sequence[Any]] | None, out: TextIO) -> None:
    # The BOM (utf-8-sig) is what makes Excel read the Chinese headers as UTF-8.
    writer = csv.writer(out)
    if lines is None:
        writer.writerow([c.header for c in SUMMARY])
        writer.writerows(sheet.summary)
        writer.writerow(sheet.totals)
        return
    writer.writerow([c.header for c in DETAIL])
    pay_at = [c.key for c in DETAIL].index("pay")
    total = Decimal(0)
    # Summed while the lines go by: a summary query first would read the period twice.
    for line in lines:
        writer.writerow(line)
        total += line[pay_at]
    writer.writerow([TOTAL_LABEL, *[""] * (pay_at - 1), total])


def _json_value(value: Any) -> Any:
    # Money stays exact: decimals go out as strings, never through a float.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def _write_json(sheet: Sheet, lines: Iterable[Sequence[Any]] | None, out: TextIO) -> None:
    columns, rows = (SUMMARY, sheet.summary) if lines is None else (DETAIL, lines)
    _json_rows(columns, rows, out)


def _json_rows(columns: Sequence[Column], rows: Iterable[Sequence[Any]], out: TextIO) -> None:
    keys = [c.key for c in columns]
    out.write("[")
    separator = "\n"
    for row in rows:
        out.write(separator)
        out.write(json.dumps({k: _json_value(v) for k, v in zip(keys, row, strict=True)}, ensure_ascii=False))
        separator = ",\n"
    out.write("\n]\n")


def _workbook(path: Path, *, title: str, created: datetime) -> tuple[xlsxwriter.Workbook, Format,
                                                                     dict[Kind, Format]]:
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                               "strings_to_formulas": False, "strings_to_urls": False})
    # A fixed creation time: otherwise every export of the same period differs in docProps/core.xml.
    workbook.set_properties({"title": title, "created": created})
    header = workbook.add_format({"bold": True, "bg_color": "#D9E1F2", "border": 1, "align": "center"})
    formats = {kind: workbook.add_format({"num_format": f}) for kind, f in NUMBER_FORMATS.items()}
    return workbook, header, formats


def _write_xlsx(sheet: Sheet, lines: Iterable[Sequence[Any]] | None, *, path: Path, title: str,
                created: datetime) -> None:
    workbook, header, formats = _workbook(path, title=title, created=created)
    bold = {kind: workbook.add_format({"num_format": f, "bold": True, "top": 1}) for kind, f in NUMBER_FORMATS.items()}
    _summary_sheet(workbook.add_worksheet("汇总"), sheet, header, formats, bold)
    if lines is not None:
        _table_sheet(workbook.add_worksheet("明细"), DETAIL, lines, header, formats)
    workbook.close()


@dataclass(frozen=True)
class Table:
    """One sheet of a file other than the workload's: its name, columns and rows (streamed or not)."""

    name: str
    columns: Sequence[Column]
    rows: Iterable[Sequence[Any]]


def write_tables(tables: Sequence[Table], *, fmt: ExportFormat, path: Path, title: str, created: datetime) -> None:
    """Write tables to `path`: each a sheet of an XLSX file; CSV and JSON take one table, row by row."""
    if fmt is ExportFormat.XLSX:
        workbook, header, formats = _workbook(path, title=title, created=created)
        for table in tables:
            _table_sheet(workbook.add_worksheet(table.name), table.columns, table.rows, header, formats)
        workbook.close()
        return
    [table] = tables
    with path.open("w", encoding="utf-8-sig" if fmt is ExportFormat.CSV else "utf-8", newline="") as out:
        if fmt is ExportFormat.JSON:
            _json_rows(table.columns, table.rows, out)
            return
        writer = csv.writer(out)
        writer.writerow([c.header for c in table.columns])
        writer.writerows(table.rows)


def _headers(worksheet: Worksheet, columns: Sequence[Column], header: Format, widths: list[int]) -> None:
    for i, (column, width) in enumerate(zip(columns, widths, strict=True)):
        worksheet.set_column(i, i, width)
        worksheet.write_string(0, i, column.header, header)
    worksheet.freeze_panes(1, 0)


def _summary_sheet(worksheet: Worksheet, sheet: Sheet, header: Format, formats: dict[Kind, Format],
                   bold: dict[Kind, Format]) -> None:
    widths = [column_width(c, [row[i] for row in sheet.summary]) for i, c in enumerate(SUMMARY)]
    _headers(worksheet, SUMMARY, header, widths)
    for r, row in enumerate(sheet.summary, start=1):
        for i, (column, value) in enumerate(zip(SUMMARY, row, strict=True)):
            _cell(worksheet, r, i, column.kind, value, formats)
    last = len(sheet.summary) + 1
    worksheet.write_string(last, 0, TOTAL_LABEL, bold[Kind.INT])
    worksheet.write_blank(last, 1, None, bold[Kind.INT])
    for i in range(2, len(SUMMARY)):
        cell_range = xlsxwriter.utility.xl_range(1, i, max(last - 1, 1), i)
        # A formula, so the sheet stays right when payroll edits a line, with the value cached for readers.
        worksheet.write_formula(last, i, f"=SUM({cell_range})", bold[SUMMARY[i].kind], sheet.totals[i])


def _table_sheet(worksheet: Worksheet, columns: Sequence[Column], lines: Iterable[Sequence[Any]], header: Format,
                 formats: dict[Kind, Format]) -> None:
    _headers(worksheet, columns, header, [column_width(c) for c in columns])
    writers = [_cell_writer(worksheet, c.kind, formats) for c in columns]
    for r, row in enumerate(lines, start=1):
        for i, value in enumerate(row):
            if value is not None and value != "":
                writers[i](r, i, value)


CellWriter = Callable[[int, int, Any], Any]


def _cell_writer(worksheet: Worksheet, kind: Kind, formats: dict[Kind, Format]) -> CellWriter:
    # The typed write_* methods with their format bound once: xlsxwriter's generic write()
    # would inspect every value's type on every one of a million lines.
    if kind is Kind.TEXT:
        return worksheet.write_string
    fmt = formats[kind]
    method = worksheet.write_datetime if kind in {Kind.DATE, Kind.DATETIME} else worksheet.write_number
    return lambda r, c, value: method(r, c, value, fmt)


def _cell(worksheet: Worksheet, r: int, c: int, kind: Kind, value: Any, formats: dict[Kind, Format]) -> None:
    if value is not None:
        _cell_writer(worksheet, kind, formats)(r, c, value)
