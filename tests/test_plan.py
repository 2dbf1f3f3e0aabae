"""Partition planning reads day D and only the neighbouring hours its context reaches."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from proxylink.jobs.errors import InputError
from proxylink.jobs.nightly.plan import parse_day, plan, plan_files
from proxylink.transforms.params import DayWindow, LinkParams, parse_proxy
from tests.helpers import frame, leg, write_lake

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


def test_markers_are_ignored_and_other_files_are_listed_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "date=2026-11-01" / "hour=03"
    _touch(folder)
    for name in ("_SUCCESS", ".part-0.parquet.crc", "notes.txt"):
        (folder / name).write_text("x")
    _touch(tmp_path / "date=2026-11-01" / "_temporary" / "0")  # a Spark writer mid-write
    got = plan(tmp_path, DayWindow.for_day(DAY, PARAMS), PARAMS)
    assert [f.path.name for f in got.files] == ["part-0.parquet"]
    assert got.skipped == [
        (
            str(tmp_path / "date=2026-11-01" / "_temporary" / "0" / "part-0.parquet"),
            "in the hidden or temporary folder _temporary/ (not read)",
        ),
        (str(folder / "notes.txt"), "not a .parquet file"),
    ]


INVALID = {
    "hour=99": "in hour=99/: the hour '99' is not 0..23",
    "hour=-1": "in hour=-1/: the hour '-1' is not 0..23",
    "hour=10/extra=1": "in hour=10/extra=1/, below the hour partition",
    "sub/deeper": "in sub/, which is not an hour=HH partition",
}


@pytest.mark.parametrize("folder", sorted(INVALID))
def test_a_file_outside_a_valid_partition_of_day_d_is_an_input_error(
    tmp_path: Path, folder: str
) -> None:
    _touch(tmp_path / "date=2026-11-01" / "hour=10")
    _touch(tmp_path / "date=2026-11-01" / folder)
    stray = tmp_path / "date=2026-11-01" / folder / "part-0.parquet"
    window = DayWindow.for_day(DAY, PARAMS)
    with pytest.raises(InputError) as err:
        plan(tmp_path, window, PARAMS)
    assert str(err.value) == (
        f"{stray} is {INVALID[folder]}; fix the lake's layout, or set "
        "input.on_invalid_partition: skip to leave such files out and list them"
    )
    got = plan(tmp_path, window, PARAMS, on_invalid="skip")
    assert [f.path.parent.name for f in got.files] == ["hour=10"]
    assert got.skipped == [(str(stray), f"{INVALID[folder]}: invalid partition, skipped")]


def test_invalid_folders_of_a_neighbouring_date_are_listed_not_fatal(tmp_path: Path) -> None:
    _touch(tmp_path / "date=2026-11-01" / "hour=00")
    _touch(tmp_path / "date=2026-10-31" / "hour=23")
    _touch(tmp_path / "date=2026-10-31" / "hour=24")
    got = plan(tmp_path, DayWindow.for_day(DAY, PARAMS), PARAMS)
    assert sorted(f.path.parent.name for f in got.files) == ["hour=00", "hour=23"]
    stray = tmp_path / "date=2026-10-31" / "hour=24" / "part-0.parquet"
    why = "in hour=24/: the hour '24' is not 0..23: invalid partition of 2026-10-31"
    assert got.skipped == [(str(stray), why)]


def test_a_symlinked_folder_is_never_followed_out_of_the_lake(tmp_path: Path) -> None:
    lake, outside = tmp_path / "lake", tmp_path / "outside"
    _touch(lake / "date=2026-11-01" / "hour=00")
    _touch(outside / "hour=05")
    (lake / "date=2026-11-01" / "hour=05").symlink_to(outside / "hour=05")
    got = plan(lake, DayWindow.for_day(DAY, PARAMS), PARAMS)
    assert all(f.path.is_relative_to(lake) and not f.path.parent.is_symlink() for f in got.files)
    assert [f.path.parent.name for f in got.files] == ["hour=00"]
    link = lake / "date=2026-11-01" / "hour=05"
    assert got.skipped == [(str(link), "a symbolic link to a folder, not followed")]


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
