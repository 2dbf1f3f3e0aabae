"""Staging a build's rows as Parquet files of partition D, before the gate decides to publish.

Both runners stage through here: the polars runner once for the whole day, the Spark runner once
per device partition inside its tasks (`part` is the partition). Files are named per run, part
and attempt (`publish.new_data_path`), so two attempts of one Spark task never write the same
file, and the runner commits exactly the files of the attempts that succeeded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from proxylink.jobs.errors import OutputError
from proxylink.jobs.nightly import publish
from proxylink.jobs.nightly.publish import CURATED_TABLE, REJECTS_TABLE
from proxylink.transforms import schema as s
from proxylink.transforms.aggregates import (
    DOMAIN_DAILY_TABLE,
    PROXY_COVERAGE_TABLE,
)
from proxylink.transforms.engine import DayFrames
from proxylink.transforms.polars_engine import aggregates
from proxylink.transforms.psl import SuffixRules

# Every table a run stages and publishes, in commit order.
STAGED_TABLES = (CURATED_TABLE, REJECTS_TABLE, DOMAIN_DAILY_TABLE, PROXY_COVERAGE_TABLE)


@dataclass(frozen=True)
class StageTargets:
    """Where a run stages day D's files: the folder of every table it publishes."""

    tables: dict[str, Path]
    day: date
    run_id: str

    def orphans(self, kept: set[Path]) -> list[Path]:
        """Files this run wrote under partition D of its tables that are not in `kept`: those
        of failed or superseded attempts. No Delta version references them."""
        found: list[Path] = []
        for table in self.tables.values():
            folder = table / f"{s.PARTITION_DATE}={self.day.isoformat()}"
            if folder.is_dir():
                found += [p for p in folder.glob(f"part-{self.run_id}-*") if p not in kept]
        return sorted(found)

    def discard(self) -> None:
        """Remove every file this run staged: a failed attempt, or a failed build, leaves none."""
        for orphan in self.orphans(set()):
            orphan.unlink(missing_ok=True)


def sink(frame: pl.LazyFrame, table: Path, targets: StageTargets, part: int) -> Path:
    """Stream `frame` (its `date` column dropped) into one new file of partition D of `table`."""
    paths, _ = sink_together([(frame, table)], [], targets, part)
    return paths[0]


def sink_together(
    outputs: list[tuple[pl.LazyFrame, Path]],
    collect: list[pl.LazyFrame],
    targets: StageTargets,
    part: int,
) -> tuple[list[Path], list[pl.DataFrame]]:
    """Stream each frame of `outputs` (its `date` column dropped) into one new file of
    partition D of its table, and collect the frames of `collect`, all in one query: frames
    that share their input read it once. Returns the files, and the collected frames.

    A failed write (a full disk) is one `OutputError` naming the file, and leaves none of the
    files behind."""
    paths: list[Path] = []
    plans: list[pl.LazyFrame] = []
    for frame, table in outputs:
        path = publish.new_data_path(table, targets.day, targets.run_id, part)
        if s.PARTITION_DATE in frame.collect_schema():
            frame = frame.drop(s.PARTITION_DATE)
        paths.append(path)
        plans.append(frame.sink_parquet(path, compression="zstd", lazy=True))
    n = len(plans)

    def remove() -> None:
        for written in paths:
            written.unlink(missing_ok=True)

    def failed(why: str, path: Path | None = None) -> OutputError:
        named = path or next((p for p in paths if _incomplete(p) is not None), paths[0])
        remove()
        return OutputError(f"cannot write {named}: {why}")

    try:
        collected = pl.collect_all([*plans, *collect])[n:]
    except OSError as exc:
        raise failed(exc.strerror or str(exc)) from None
    except pl.exceptions.ComputeError as exc:  # polars reports a failed write (full disk) so
        io = _IO_ERROR.search(str(exc))
        if io is None and "thrift: transport error" not in str(exc):
            remove()
            raise  # not the write: `lake.guarded` names the input file
        raise failed(
            io[1] if io else "the file's footer could not be written (is the disk full?)"
        ) from None
    for path in paths:  # polars has been seen to end a write cut short by a full disk quietly
        if (why := _incomplete(path)) is not None:
            raise failed(f"the file was left incomplete ({why}); is the disk full?", path)
    return paths, collected


def _incomplete(path: Path) -> str | None:
    """Why the file was not written to its end (its footer does not read), or None."""
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        return str(exc)
    return None


_IO_ERROR = re.compile(r"IO error: ([^\n(]*\(os error \d+\))")


@dataclass(frozen=True)
class StagedRows:
    """A build's staged files per table, and the `domain_daily` partials of its curated rows
    (`aggregates.domain_partials`, collected)."""

    files: dict[str, list[Path]]
    domains: tuple[pl.DataFrame, pl.DataFrame]


def stage_rows(frames: DayFrames, targets: StageTargets, part: int = 0) -> StagedRows:
    """Stage a build's curated and rejected rows, and its `proxy_coverage` (local to a device,
    so it is exact for any set of whole devices), from the staged curated rows and the build's
    evidence summary; and summarise the curated rows for `domain_daily`.

    In each chunk the curated rows and the rejects stream in one query, so the raw rows they
    share are read once; the coverage and the domain partials share one read of the staged
    curated rows."""
    tables = targets.tables
    written: dict[str, list[Path]] = {CURATED_TABLE: [], REJECTS_TABLE: []}
    for chunk in frames.chunks:
        outputs = [(chunk.curated, tables[CURATED_TABLE]), (chunk.rejects, tables[REJECTS_TABLE])]
        (curated_file, rejects_file), (misaligned,) = sink_together(
            outputs, [chunk.misaligned], targets, part
        )
        if misaligned.item() != 0:
            targets.discard()
            raise RuntimeError(
                f"internal error: {misaligned.item()} output row(s) were set beside another "
                "row's decisions; nothing was published"
            )
        written[CURATED_TABLE].append(curated_file)
        written[REJECTS_TABLE].append(rejects_file)
    curated = pl.scan_parquet(written[CURATED_TABLE])
    coverage = aggregates.proxy_coverage(curated, frames.evidence.lazy(), targets.day)
    paths, (urls, procs) = sink_together(
        [(coverage, tables[PROXY_COVERAGE_TABLE])],
        list(aggregates.domain_partials(curated)),
        targets,
        part,
    )
    written[PROXY_COVERAGE_TABLE] = paths
    return StagedRows(written, (urls, procs))


def stage_domains(
    partials: tuple[pl.LazyFrame, pl.LazyFrame],
    rules: SuffixRules,
    targets: StageTargets,
    part: int = 0,
) -> list[Path]:
    """Stage `domain_daily` from the domain partials of every row of the names they hold."""
    rows = aggregates.domain_daily_of(partials, rules, targets.day)
    return [sink(rows, targets.tables[DOMAIN_DAILY_TABLE], targets, part)]
