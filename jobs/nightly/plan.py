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
from typing import Literal

from proxylink.jobs.errors import InputError
from proxylink.transforms.params import DayWindow, LinkParams

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


@dataclass(frozen=True)
class Plan:
    """The files day D reads, and every other file under a planned `date=` folder with why it
    is not read: nothing in a planned partition is left out silently."""

    files: list[PlannedFile]
    skipped: list[tuple[str, str]]  # (path, why)


OnInvalid = Literal["fail", "skip"]


def _is_marker(path: Path) -> bool:
    """`_SUCCESS`, `.crc` and the like: metadata by the Hive and Spark convention, not data."""
    return path.name.startswith((".", "_"))


def _data_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix == ".parquet" and not _is_marker(p)
    )


def _other_files(folder: Path) -> list[tuple[Path, str]]:
    """Files directly in a partition folder that are not Parquet data (markers aside)."""
    return [
        (p, "not a .parquet file")
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix != ".parquet" and not _is_marker(p)
    ]


def _files_below(folder: Path) -> list[Path]:
    """Every file under `folder`, at any depth, markers aside; symbolic links are not
    followed, so a folder can never lead outside the lake."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and not _is_marker(p)
    )


def _hour_value(name: str) -> str | None:
    """The value of an `hour=` folder name, or None for a folder of another kind."""
    return name.removeprefix("hour=") if name.startswith("hour=") else None


def _partitions(
    root: Path, day: date
) -> tuple[list[tuple[Path, datetime, datetime]], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Of one date: (directory, start, end) of every partition, hour level if present; the
    files in folders that are not a partition (invalid); and other files not read (skipped)."""
    folder = root / f"date={day.isoformat()}"
    if not folder.is_dir():
        return [], [], []
    start = datetime.combine(day, time(0), tzinfo=UTC)
    found = [(folder, start, start + timedelta(days=1))] if _data_files(folder) else []
    invalid: list[tuple[Path, str]] = []
    skipped = _other_files(folder)
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and sub.is_symlink():
            skipped.append((sub, "a symbolic link to a folder, not followed"))
            continue
        if not sub.is_dir():
            continue
        hour = _hour_value(sub.name)
        if _is_marker(sub):
            why = f"in the hidden or temporary folder {sub.name}/ (not read)"
            skipped += [(p, why) for p in _files_below(sub)]
        elif hour is None:
            why = f"in {sub.name}/, which is not an hour=HH partition"
            invalid += [(p, why) for p in _files_below(sub)]
        elif not _HOUR_DIR.match(sub.name) or int(hour) > 23:
            why = f"in {sub.name}/: the hour {hour!r} is not 0..23"
            invalid += [(p, why) for p in _files_below(sub)]
        else:
            h = start + timedelta(hours=int(hour))
            found.append((sub, h, h + timedelta(hours=1)))
            skipped += _other_files(sub)
            for deeper in sorted(p for p in sub.iterdir() if p.is_dir() and not p.is_symlink()):
                why = f"in {sub.name}/{deeper.name}/, below the hour partition"
                invalid += [(p, why) for p in _files_below(deeper)]
    return found, invalid, skipped


def plan(root: Path, window: DayWindow, params: LinkParams, on_invalid: OnInvalid = "fail") -> Plan:
    """Files whose partition overlaps day D's context window widened by the clock skew.

    A file under day D's folder outside any valid partition (`hour=99/`, `hour=10/extra=1/`,
    `sub/`) is an input error, or with `on_invalid="skip"` listed as skipped. Under a
    neighbouring date such files are always listed: that date's own run judges them.
    """
    if not root.is_dir():
        raise InputError(f"events path {root} does not exist or is not a directory")
    skew = timedelta(milliseconds=params.clock_skew_ms)
    lo, hi = window.context_start - skew, window.context_end + skew
    day = window.day
    own, invalid, skipped = _partitions(root, day)
    if invalid and on_invalid == "fail":
        path, why = invalid[0]
        more = f" (and {len(invalid) - 1} more)" if len(invalid) > 1 else ""
        raise InputError(
            f"{path} is {why}{more}; fix the lake's layout, or set "
            "input.on_invalid_partition: skip to leave such files out and list them"
        )
    if not own:
        expected = root / f"date={day.isoformat()}"
        raise InputError(f"no partitions for {day.isoformat()} under {root} (expected {expected}/)")
    listed = [(str(p), f"{why}: invalid partition, skipped") for p, why in invalid]
    listed += [(str(p), why) for p, why in skipped]
    planned: list[PlannedFile] = []
    days = sorted({lo.date(), day, (hi - timedelta(microseconds=1)).date()})
    for d in days:
        if d == day:
            parts = own
        else:
            parts, other_invalid, other_skipped = _partitions(root, d)
            listed += [(str(p), f"{why}: invalid partition of {d}") for p, why in other_invalid]
            listed += [(str(p), why) for p, why in other_skipped]
        for folder, start, end in parts:
            if end <= lo or start >= hi:
                continue
            for path in _data_files(folder):
                st = path.stat()
                planned.append(PlannedFile(path, start, end, st.st_size, st.st_mtime_ns))
    if not any(f.start.date() == day for f in planned):
        raise InputError(f"partitions for {day.isoformat()} under {root} hold no Parquet files")
    return Plan(planned, listed)


def plan_files(
    root: Path, window: DayWindow, params: LinkParams, on_invalid: OnInvalid = "fail"
) -> list[PlannedFile]:
    """Only the files day D reads (see `plan`)."""
    return plan(root, window, params, on_invalid).files


def parse_day(text: str) -> date:
    """A `YYYY-MM-DD` date, or ValueError saying what was expected."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        raise ValueError(f"invalid date {text!r}: expected YYYY-MM-DD")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"invalid date {text!r}: no such day") from None
