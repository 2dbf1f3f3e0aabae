"""Reading the lake: one lazy scan per planned file, checked before anything is computed.

Each file's footer is read first, so a corrupt file or a missing required column is named
before the run does any work. Per-file scans also let files disagree on types (ports stored
as strings in some hours): each is harmonised to the contract before they are concatenated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import polars as pl
import pyarrow.parquet as pq

from proxylink.jobs.errors import InputError
from proxylink.jobs.nightly.plan import PlannedFile
from proxylink.transforms import schema as s
from proxylink.transforms.polars_engine.normalise import FILE, PART_END, PART_START, ROW, harmonise

log = logging.getLogger(__name__)
T = TypeVar("T")


class UnreadableFile(InputError):
    """A file whose footer reads but whose data does not."""

    def __init__(self, file: PlannedFile, why: str) -> None:
        super().__init__(f"{file.path}: unreadable Parquet data ({why})")
        self.file, self.why = file, why


@dataclass
class LakeScan:
    """The raw rows of the planned files, and the files that were skipped as corrupt."""

    # parts[i]: the rows of files[i], typed alike (`file_frame`); `frame` is all of them
    parts: list[pl.LazyFrame]
    files: list[PlannedFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def frame(self) -> pl.LazyFrame:
        return pl.concat(self.parts, how="vertical")

    @property
    def schema(self) -> pl.Schema:
        return self.frame.collect_schema()

    @property
    def names(self) -> list[str]:
        return [str(f.path) for f in self.files]


def _footer_problem(path: Path) -> str | None:
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a damaged footer
        return f"not a readable Parquet file ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    missing = [c for c in s.REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise InputError(f"{path}: required column(s) missing: {', '.join(missing)}")
    return None


def scan_lake(planned: list[PlannedFile], on_corrupt: str) -> LakeScan:
    """Lazy raw rows with `_file`, `_row`, `_part_start`, `_part_end` bookkeeping columns."""
    kept: list[PlannedFile] = []
    skipped: list[tuple[str, str]] = []
    for f in planned:
        problem = _footer_problem(f.path)
        if problem is None:
            kept.append(f)
        elif on_corrupt == "skip":
            log.warning("skipping corrupt file %s: %s", f.path, problem)
            skipped.append((str(f.path), f"corrupt file: {problem}"))
        else:
            raise InputError(f"{f.path}: {problem} (set input.on_corrupt_file: skip to skip it)")
    if not kept:
        raise InputError("no readable input files for this day")
    return LakeScan(_parts(kept), kept, skipped)


def target_schema(files: list[PlannedFile]) -> pl.Schema:
    """The lake frame's columns and dtypes, from the footers: every file's harmonised columns,
    each with the dtype that holds all the files' values. An optional column whose dtype differs
    between files becomes text in all of them."""
    schemas = [_bookkept(i, f).collect_schema() for i, f in enumerate(files)]
    mixed = _mixed_extras(schemas)
    empty = [
        pl.LazyFrame(schema={n: pl.String() if n in mixed else d for n, d in sch.items()})
        for sch in schemas
    ]
    return pl.concat(empty, how="diagonal_relaxed").collect_schema()


def _bookkept(index: int, f: PlannedFile) -> pl.LazyFrame:
    """One file's rows harmonised, with `_file` (its index in the planned list), `_row` (its
    position in the file) and its partition's time range."""
    return (
        harmonise(pl.scan_parquet(f.path, hive_partitioning=False))
        .with_row_index(ROW)
        .with_columns(
            pl.lit(index, pl.UInt32).alias(FILE),
            pl.lit(f.start).dt.cast_time_unit("us").alias(PART_START),
            pl.lit(f.end).dt.cast_time_unit("us").alias(PART_END),
        )
    )


def _mixed_extras(schemas: list[pl.Schema]) -> set[str]:
    extras: dict[str, set[pl.DataType]] = {}
    for sch in schemas:
        for name, dtype in sch.items():
            if name not in s.REQUIRED_COLUMNS and not name.startswith("_"):
                extras.setdefault(name, set()).add(dtype)
    return {n for n, types in extras.items() if len(types) > 1}


def file_frame(index: int, f: PlannedFile, target: pl.Schema) -> pl.LazyFrame:
    """One file's rows as the lake frame has them (`_bookkept`), in the columns and dtypes of
    `target` (absent columns are null). Every engine reads files this way, so a file's rows are
    typed the same whichever engine reads them."""
    frame = _bookkept(index, f)
    have = frame.collect_schema()
    return frame.select(
        [
            (pl.col(name) if name in have else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in target.items()
        ]
    )


def _parts(files: list[PlannedFile]) -> list[pl.LazyFrame]:
    target = target_schema(files)
    return [file_frame(i, f, target) for i, f in enumerate(files)]


def locate_unreadable(files: list[PlannedFile]) -> tuple[PlannedFile, str] | None:
    """After a failed scan, find the first file whose data pages cannot be read."""
    for f in files:
        try:
            pl.read_parquet(f.path, hive_partitioning=False)
        except Exception as exc:
            return f, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def guarded(files: list[PlannedFile], action: Callable[[], T]) -> T:
    """Run `action`; if reading a file fails mid-way, say which file instead of a traceback."""
    try:
        return action()
    except (pl.exceptions.ComputeError, OSError) as exc:
        culprit = locate_unreadable(files)
        if culprit is None:
            raise
        raise UnreadableFile(*culprit) from exc
