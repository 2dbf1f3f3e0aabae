"""The runners: how each engine reads the planned files, builds day D and stages its files.

`run_day` asks for a runner by the configured engine name and never branches on it. Both
runners build with the one link core (`transforms.polars_engine.engine.build_day`) and stage
through `jobs.nightly.stage`, so they stage the same rows; one delta-rs commit per table
publishes them.

- polars: one process builds the whole day.
- spark: Spark reads the files in parallel, shuffles the rows by device and builds each device
  partition with the same core inside its tasks (`jobs.engines.spark_run`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

import polars as pl

from proxylink.jobs.config import Config
from proxylink.jobs.nightly import lake, stage
from proxylink.jobs.nightly.plan import PlannedFile
from proxylink.jobs.nightly.stage import StageTargets
from proxylink.jobs.timing import Timer
from proxylink.transforms import discover
from proxylink.transforms.aggregates import DOMAIN_DAILY_TABLE
from proxylink.transforms.engine import DayResult
from proxylink.transforms.params import DayWindow, LinkParams
from proxylink.transforms.polars_engine.engine import build_day
from proxylink.transforms.psl import SuffixRules

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Built:
    """A day built and staged: its numbers, the files read and skipped, the files staged."""

    result: DayResult
    files: list[PlannedFile]
    staged: dict[str, list[Path]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)  # runner-specific, for the manifest


@dataclass(frozen=True)
class DayBuild:
    """What building day D takes, whichever runner builds it."""

    planned: list[PlannedFile]
    window: DayWindow
    params: LinkParams
    on_corrupt: str  # fail or skip a file whose data pages cannot be read
    targets: StageTargets  # where the staged files of each table go
    rules: SuffixRules  # the public suffix list, for the registered domains


class Runner(Protocol):
    def socket_evidence(
        self, planned: list[PlannedFile], window: DayWindow, on_corrupt: str
    ) -> tuple[list[PlannedFile], pl.DataFrame]:
        """What proxy discovery judges: per IP:port of day D, its devices, connections, domains
        and inspection records (`transforms.discover`), over every device; and the files read."""
        ...

    def build(self, day: DayBuild, timer: Timer) -> Built:
        """Build day D from the planned files and stage every table's files of partition D."""
        ...


def skipping(
    planned: list[PlannedFile],
    on_corrupt: str,
    attempt: Callable[[list[PlannedFile]], T],
    cleanup: Callable[[], None] = lambda: None,
) -> tuple[T, list[tuple[str, str]]]:
    """`attempt` the planned files; in skip mode a file whose data pages fail is dropped and
    the attempt repeated (`cleanup` first undoes what the failed attempt left). Returns the
    result and the files skipped, with why."""
    files = list(planned)
    skipped: list[tuple[str, str]] = []
    while True:
        try:
            return attempt(files), skipped
        except lake.UnreadableFile as exc:
            cleanup()
            if on_corrupt != "skip":
                raise
            log.warning("skipping unreadable file %s: %s", exc.file.path, exc.why)
            files = [f for f in files if f.path != exc.file.path]
            skipped.append((str(exc.file.path), exc.why))


def with_skipping(
    planned: list[PlannedFile],
    on_corrupt: str,
    targets: StageTargets,
    attempt: Callable[[list[PlannedFile]], Built],
) -> Built:
    """Build with `skipping`; files a failed attempt staged are removed before the next."""
    built, skipped = skipping(planned, on_corrupt, attempt, targets.discard)
    built.skipped = skipped + built.skipped
    return built


class PolarsRunner:
    """One process: lazy scans of each file; the wide rows stream into one file per table."""

    def build(self, day: DayBuild, timer: Timer) -> Built:
        def attempt(files: list[PlannedFile]) -> Built:
            scan = lake.scan_lake(files, day.on_corrupt)
            with timer.step("link"):
                frames, summary = lake.guarded(
                    scan.files,
                    lambda: build_day(
                        scan.frame, day.window, day.params, scan.names, timer.detail, scan.parts
                    ),
                )
            with timer.step("write"):
                rows = lake.guarded(scan.files, partial(stage.stage_rows, frames, day.targets))
                del frames  # and with them the decisions of the output rows
            with timer.step("aggregate"):
                urls, procs = rows.domains
                staged = rows.files
                staged[DOMAIN_DAILY_TABLE] = stage.stage_domains(
                    (urls.lazy(), procs.lazy()), day.rules, day.targets
                )
            return Built(summary.result(scan.names), scan.files, staged, list(scan.skipped))

        return with_skipping(day.planned, day.on_corrupt, day.targets, attempt)

    def socket_evidence(
        self, planned: list[PlannedFile], window: DayWindow, on_corrupt: str
    ) -> tuple[list[PlannedFile], pl.DataFrame]:
        """Discovery's evidence per IP:port of day D (`transforms.discover.socket_evidence`),
        and the files it read."""

        def attempt(files: list[PlannedFile]) -> tuple[list[PlannedFile], pl.DataFrame]:
            scan = lake.scan_lake(files, on_corrupt)
            frame = scan.frame.select(discover.COLUMNS)
            evidence = discover.socket_evidence(frame, window.start, window.end)
            return scan.files, lake.guarded(scan.files, evidence.collect)

        return skipping(planned, on_corrupt, attempt)[0]


def runner_for(config: Config) -> Runner:
    if config.engine == "spark":
        from proxylink.jobs.engines.spark_run import SparkRunner

        return SparkRunner(config)
    return PolarsRunner()
