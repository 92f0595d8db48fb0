"""`fieldpool export workload`: the same sheet as the HTTP export, written where the operator says."""

import csv
from pathlib import Path

import openpyxl
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.kernel.settings import Settings


def test_export_writes_the_sheet_to_the_file(settings: Settings, committed_db: Engine, tmp_path: Path) -> None:
    out = tmp_path / "november.xlsx"
    result = CliRunner().invoke(app, ["export", "workload", "--from", "2026-11-01", "--to", "2026-11-30",
                                      "--region", "XL", "--format", "xlsx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    book = openpyxl.load_workbook(out, data_only=True)
    assert book.sheetnames == ["汇总", "明细"]
    assert [c.value for c in book["汇总"][2]][:1] == ["合计"]


def test_summary_csv_without_detail(settings: Settings, committed_db: Engine, tmp_path: Path) -> None:
    out = tmp_path / "november.csv"
    result = CliRunner().invoke(app, ["export", "workload", "--from", "2026-11-01", "--to", "2026-11-30",
                                      "--no-detail", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0][0] == "技术员编号" and rows[-1][0] == "合计"


def test_a_bad_period_or_region_is_refused_with_the_reason(settings: Settings, committed_db: Engine,
                                                           tmp_path: Path) -> None:
    for args, words in ((["--from", "2026-11-30", "--to", "2026-11-01"], "after"),
                        (["--from", "2026-11-01", "--to", "2026-11-30", "--region", "NOPE"], "no region")):
        result = CliRunner().invoke(app, ["export", "workload", *args, "--out", str(tmp_path / "x.csv")])
        assert result.exit_code == 2 and words in result.output
