"""Partition planning: which files of the lake day D needs, and nothing more.

The lake is Hive-partitioned by `date=YYYY-MM-DD` and optionally `hour=HH`. Day D needs its own
partitions plus the neighbouring hours that reach into its context window (two link
tolerances and the clock skew beyond midnight); only those directories are listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from jobs.errors import InputError
from transforms.params import DayWindow, LinkParams

_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_HOUR_DIR = re.compile(r"^hour=(\d{1,2})$")


@dataclass(frozen=True)
class PlannedFile:
    """One Parquet file and the time range its partition stands for."""

    path: Path
    start: datetime
    end: datetime
    size: int
    mtime_ns: int


def _data_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix == ".parquet" and not p.name.startswith((".", "_"))
    )


def _partitions(root: Path, day: date) -> list[tuple[Path, datetime, datetime]]:
    """(directory, start, end) of every partition of one date, hour level if present."""
    folder = root / f"date={day.isoformat()}"
    if not folder.is_dir():
        return []
    start = datetime.combine(day, time(0), tzinfo=UTC)
    found = [(folder, start, start + timedelta(days=1))] if _data_files(folder) else []
    for sub in sorted(folder.iterdir()):
        m = _HOUR_DIR.match(sub.name)
        if sub.is_dir() and m and int(m.group(1)) < 24:
            h = start + timedelta(hours=int(m.group(1)))
            found.append((sub, h, h + timedelta(hours=1)))
    return found


def plan_files(root: Path, window: DayWindow, params: LinkParams) -> list[PlannedFile]:
    """Files whose partition overlaps day D's context window widened by the clock skew."""
    if not root.is_dir():
        raise InputError(f"events path {root} does not exist or is not a directory")
    skew = timedelta(milliseconds=params.clock_skew_ms)
    lo, hi = window.context_start - skew, window.context_end + skew
    day = window.day
    own = _partitions(root, day)
    if not own:
        expected = root / f"date={day.isoformat()}"
        raise InputError(f"no partitions for {day.isoformat()} under {root} (expected {expected}/)")
    planned: list[PlannedFile] = []
    days = sorted({lo.date(), day, (hi - timedelta(microseconds=1)).date()})
    for d in days:
        parts = own if d == day else _partitions(root, d)
        for folder, start, end in parts:
            if end <= lo or start >= hi:
                continue
            for path in _data_files(folder):
                st = path.stat()
                planned.append(PlannedFile(path, start, end, st.st_size, st.st_mtime_ns))
    if not any(f.start.date() == day for f in planned):
        raise InputError(f"partitions for {day.isoformat()} under {root} hold no Parquet files")
    return planned


def parse_day(text: str) -> date:
    """A `YYYY-MM-DD` date, or ValueError saying what was expected."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        raise ValueError(f"invalid date {text!r}: expected YYYY-MM-DD")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"invalid date {text!r}: no such day") from None
