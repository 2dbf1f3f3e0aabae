"""Partition planning reads day D and only the neighbouring hours its context reaches."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from helpers import frame, leg, write_lake

from jobs.errors import InputError
from jobs.plan import parse_day, plan_files
from transforms.params import DayWindow, LinkParams, parse_proxy

PARAMS = LinkParams(proxies=(parse_proxy("10.20.0.5"),), tolerance_ms=5000, clock_skew_ms=300_000)
DAY = date(2026, 11, 1)


def _touch(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-0.parquet").write_bytes(b"")


def test_hourly_lake_adds_only_the_neighbouring_hours(tmp_path: Path) -> None:
    for d in ("2026-10-31", "2026-11-01", "2026-11-02"):
        for h in range(24):
            _touch(tmp_path / f"date={d}" / f"hour={h:02d}")
    planned = plan_files(tmp_path, DayWindow.for_day(DAY, PARAMS), PARAMS)
    folders = sorted({f.path.parent.relative_to(tmp_path).as_posix() for f in planned})
    assert len(folders) == 26
    assert folders[0] == "date=2026-10-31/hour=23"
    assert folders[-1] == "date=2026-11-02/hour=00"


def test_daily_lake_reads_neighbouring_days(tmp_path: Path) -> None:
    write_lake(tmp_path, frame([leg(0)]), hourly=False)
    _touch(tmp_path / "DeviceNetworkEvents" / "date=2026-11-02")
    _touch(tmp_path / "DeviceNetworkEvents" / "date=2026-11-05")
    planned = plan_files(tmp_path / "DeviceNetworkEvents", DayWindow.for_day(DAY, PARAMS), PARAMS)
    assert sorted(f.path.parent.name for f in planned) == ["date=2026-11-01", "date=2026-11-02"]


def test_hidden_and_non_parquet_files_are_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "date=2026-11-01" / "hour=03"
    _touch(folder)
    for name in ("_SUCCESS", ".part-0.parquet.crc", "notes.txt"):
        (folder / name).write_text("x")
    planned = plan_files(tmp_path, DayWindow.for_day(DAY, PARAMS), PARAMS)
    assert [f.path.name for f in planned] == ["part-0.parquet"]


def test_missing_root_and_missing_day_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        plan_files(tmp_path / "nope", DayWindow.for_day(DAY, PARAMS), PARAMS)
    _touch(tmp_path / "date=2026-11-02" / "hour=00")
    with pytest.raises(InputError, match="no partitions for 2026-11-01"):
        plan_files(tmp_path, DayWindow.for_day(DAY, PARAMS), PARAMS)


def test_parse_day_rejects_non_dates() -> None:
    assert parse_day("2026-02-28") == date(2026, 2, 28)
    for bad in ("2026-02-30", "2026/02/01", "yesterday", "20260201"):
        with pytest.raises(ValueError):
            parse_day(bad)
