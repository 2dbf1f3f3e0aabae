"""The I/O side of each engine: how it reads the planned files and writes the staged files.

`run_day` asks for a runner by the configured engine name and never branches on it. Both
runners hand the same transform interface the same raw columns, and both stage Parquet files
that one delta-rs commit publishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from jobs import lake, publish
from jobs.config import Config
from jobs.plan import PlannedFile
from transforms import schema as s
from transforms.engine import DayOutput
from transforms.params import DayWindow, LinkParams
from transforms.psl import SuffixRules

log = logging.getLogger(__name__)


@dataclass
class Built:
    """A day built by an engine, and the files it read and skipped."""

    out: DayOutput[Any]
    files: list[PlannedFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)


class Runner(Protocol):
    def build(
        self, planned: list[PlannedFile], window: DayWindow, params: LinkParams, on_corrupt: str
    ) -> Built: ...

    def stage(
        self, built: Built, tables: dict[str, Path], day: date, run_id: str
    ) -> dict[str, list[Path]]: ...

    def stage_aggregates(
        self,
        built: Built,
        curated: list[Path],
        tables: dict[str, Path],
        rules: SuffixRules,
        day: date,
        run_id: str,
    ) -> dict[str, list[Path]]:
        """Compute the summary tables from the staged curated files and stage them too."""
        ...


def _with_skipping(
    planned: list[PlannedFile], on_corrupt: str, attempt: Callable[[list[PlannedFile]], Built]
) -> Built:
    """Build; in skip mode a file whose data pages fail is dropped and the day rebuilt."""
    files = list(planned)
    skipped: list[tuple[str, str]] = []
    while True:
        try:
            built = attempt(files)
            built.skipped = skipped + built.skipped
            return built
        except lake.UnreadableFile as exc:
            if on_corrupt != "skip":
                raise
            log.warning("skipping unreadable file %s: %s", exc.file.path, exc.why)
            files = [f for f in files if f.path != exc.file.path]
            skipped.append((str(exc.file.path), exc.why))


class PolarsRunner:
    """Lazy scans of each file; the curated rows stream into one Parquet file per table."""

    def build(
        self, planned: list[PlannedFile], window: DayWindow, params: LinkParams, on_corrupt: str
    ) -> Built:
        from transforms.polars_engine.engine import PolarsEngine

        def attempt(files: list[PlannedFile]) -> Built:
            scan = lake.scan_lake(files, on_corrupt)
            out = lake.guarded(
                scan.files,
                lambda: PolarsEngine().build_day(scan.frame, window, params, scan.names),
            )
            return Built(out, scan.files, list(scan.skipped))

        return _with_skipping(planned, on_corrupt, attempt)

    def stage(
        self, built: Built, tables: dict[str, Path], day: date, run_id: str
    ) -> dict[str, list[Path]]:
        frames = {"connection_success": built.out.curated, "rejects": built.out.rejects}
        return self._sink(built, frames, tables, day, run_id)

    @staticmethod
    def _sink(
        built: Built,
        frames: dict[str, pl.LazyFrame],
        tables: dict[str, Path],
        day: date,
        run_id: str,
    ) -> dict[str, list[Path]]:
        """Stream each table's frame into one new Parquet file of partition D."""
        staged: dict[str, list[Path]] = {}
        for name, table in tables.items():
            path = publish.new_data_path(table, day, run_id)
            frame = frames[name].drop(s.PARTITION_DATE)
            lake.guarded(built.files, partial(frame.sink_parquet, path, compression="zstd"))
            staged[name] = [path]
        return staged

    def stage_aggregates(
        self,
        built: Built,
        curated: list[Path],
        tables: dict[str, Path],
        rules: SuffixRules,
        day: date,
        run_id: str,
    ) -> dict[str, list[Path]]:
        from transforms.polars_engine.engine import PolarsEngine

        rows = publish.staged_rows(curated)
        if built.out.evidence is None:
            raise RuntimeError("the polars engine returned no evidence rows")
        frames = PolarsEngine().aggregates(rows, built.out.evidence, rules, day)
        return self._sink(built, frames, tables, day, run_id)


class SparkRunner:
    """One Spark session per process; Spark writes the files, delta-rs commits them."""

    def __init__(self, config: Config) -> None:
        from jobs.spark_session import SparkSettings, build_session

        conf = config.spark
        self.session = build_session(
            SparkSettings(
                master=conf.master,
                app_name=conf.app_name,
                options=dict(conf.options),
                checkpoint_dir=conf.checkpoint_dir,
            )
        )

    def build(
        self, planned: list[PlannedFile], window: DayWindow, params: LinkParams, on_corrupt: str
    ) -> Built:
        from jobs import spark_lake
        from transforms.spark_engine.engine import SparkEngine

        def attempt(files: list[PlannedFile]) -> Built:
            scan = spark_lake.scan_lake(self.session, files, on_corrupt)
            names = [str(f.path) for f in scan.files]
            out = spark_lake.guarded(
                scan.files, lambda: SparkEngine().build_day(scan.frame, window, params, names)
            )
            return Built(out, scan.files, list(scan.skipped))

        return _with_skipping(planned, on_corrupt, attempt)

    def stage(
        self, built: Built, tables: dict[str, Path], day: date, run_id: str
    ) -> dict[str, list[Path]]:
        frames = {"connection_success": built.out.curated, "rejects": built.out.rejects}
        return self._write(built, frames, tables, day, run_id)

    @staticmethod
    def _write(
        built: Built, frames: dict[str, Any], tables: dict[str, Path], day: date, run_id: str
    ) -> dict[str, list[Path]]:
        """Spark writes each table's frame as part files of partition D."""
        from jobs import spark_lake

        return {
            name: spark_lake.guarded(
                built.files,
                partial(spark_lake.write_parquet, frames[name], table, day, run_id, name),
            )
            for name, table in tables.items()
        }

    def stage_aggregates(
        self,
        built: Built,
        curated: list[Path],
        tables: dict[str, Path],
        rules: SuffixRules,
        day: date,
        run_id: str,
    ) -> dict[str, list[Path]]:
        from transforms.spark_engine.engine import SparkEngine

        if built.out.evidence is None:
            raise RuntimeError("the Spark engine returned no evidence rows")
        if curated:
            rows = self.session.read.parquet(*[str(p) for p in curated])
        else:
            rows = self.session.createDataFrame(publish.staged_rows([]).collect().to_arrow())
        frames = SparkEngine().aggregates(rows, built.out.evidence, rules, day)
        return self._write(built, frames, tables, day, run_id)


def runner_for(config: Config) -> Runner:
    if config.engine == "spark":
        return SparkRunner(config)
    return PolarsRunner()
