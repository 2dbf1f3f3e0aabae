"""One nightly run for day D, step by step: plan, read, build, publish, report.

This module owns the side effects of a run (files, clock, run id); the transforms stay pure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from expectations.runner import ValidationReport
from expectations.runner import preload as preload_expectations
from jobs import lake, publish
from jobs.config import Config
from jobs.errors import ValidationFailed
from jobs.gate import last_published, publish_gated
from jobs.lock import curated_lock
from jobs.logs import run_context
from jobs.manifest import manifest_path, versions, write_manifest
from jobs.plan import PlannedFile, plan_files
from jobs.publish import CURATED_TABLE, REJECTS_TABLE
from jobs.timing import Timer
from transforms import schema as s
from transforms.engine import DayOutput
from transforms.params import DayWindow, LinkParams
from transforms.polars_engine.engine import PolarsEngine

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What the CLI shows and the manifest records."""

    run_id: str
    day: date
    status: str
    counts: dict[str, int]
    reject_reasons: dict[str, int]
    link_stats: dict[str, Any]
    tables: dict[str, str]
    manifest: Path
    durations: dict[str, float] = field(default_factory=dict)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    validation: ValidationReport | None = None
    skipped_because: str | None = None  # the run whose publish made this one unnecessary


def new_run_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _build(scan: lake.LakeScan, window: DayWindow, params: LinkParams) -> DayOutput[pl.LazyFrame]:
    engine = PolarsEngine()
    return engine.build_day(scan.frame, window, params, scan.names)


def _read_and_build(
    planned: list[PlannedFile], window: DayWindow, params: LinkParams, on_corrupt: str
) -> tuple[lake.LakeScan, DayOutput[pl.LazyFrame]]:
    """Scan and build; in skip mode a file whose data pages fail is dropped and the day rebuilt."""
    files = list(planned)
    while True:
        scan = lake.scan_lake(files, on_corrupt)
        try:
            return scan, lake.guarded(scan.files, partial(_build, scan, window, params))
        except lake.UnreadableFile as exc:
            if on_corrupt != "skip":
                raise
            log.warning("skipping unreadable file %s: %s", exc.file.path, exc.why)
            files = [f for f in files if f.path != exc.file.path]
            scan.skipped.append((str(exc.file.path), exc.why))


def fingerprint(planned: list[PlannedFile], config: Config) -> str:
    """What day D's output depends on: the input files (path, size, modification time) and the
    settings that change the rows. Equal fingerprints mean a rebuild would publish the same."""
    params = config.link_params()
    basis = {
        "files": sorted((str(f.path), f.size, f.mtime_ns) for f in planned),
        "proxies": sorted(str(p) for p in params.proxies),
        "tolerance_ms": params.tolerance_ms,
        "clock_skew_ms": params.clock_skew_ms,
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def run_day(
    config: Config,
    day: date,
    *,
    force: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Build day D under the curated root's lock; see `_run_locked`."""
    _, curated_root = config.require_paths()
    run_id = new_run_id(now())
    with curated_lock(curated_root, config.lock.wait_seconds, run_id), run_context(run_id):
        return _run_locked(config, day, run_id, force=force, now=now, progress=progress)


def _run_locked(
    config: Config,
    day: date,
    run_id: str,
    *,
    force: bool,
    now: Callable[[], datetime],
    progress: Callable[[str], None] | None,
) -> RunReport:
    """Build, validate and publish day D; raise a ProxylinkError subclass on expected failure.

    A critical expectation failure raises ValidationFailed after the manifest is written: the
    staged files are removed and the published tables stay as they were.
    """
    events_root, curated_root = config.require_paths()
    params = config.link_params()
    started = now()
    window = DayWindow.for_day(day, params)
    timer = Timer(progress)
    log.info("run %s: building %s", run_id, day.isoformat())

    with timer.step("plan"):
        planned = plan_files(events_root, window, params)
    print_ = fingerprint(planned, config)
    last = last_published(curated_root, day)
    if not force and last is not None and last.get("fingerprint") == print_:
        log.info("run %s: %s unchanged since run %s, skipped", run_id, day, last["run_id"])
        return RunReport(
            run_id=run_id,
            day=day,
            status="skipped",
            counts=last["counts"],
            reject_reasons=last["reject_reasons"],
            link_stats=last["link_stats"],
            tables={CURATED_TABLE: str(curated_root / CURATED_TABLE)},
            manifest=manifest_path(curated_root, day.isoformat(), last["run_id"]),
            skipped_because=last["run_id"],
        )
    preload_expectations()
    with timer.step("link"):
        scan, out = _read_and_build(planned, window, params, config.input.on_corrupt_file)
    curated_table = curated_root / CURATED_TABLE
    rejects_table = curated_root / REJECTS_TABLE
    with timer.step("write"):
        curated_path = publish.new_data_path(curated_table, day, run_id)
        rejects_path = publish.new_data_path(rejects_table, day, run_id)
        lake.guarded(
            scan.files,
            lambda: out.curated.drop(s.PARTITION_DATE).sink_parquet(
                curated_path, compression="zstd", statistics=True
            ),
        )
        lake.guarded(
            scan.files,
            lambda: out.rejects.drop(s.PARTITION_DATE).sink_parquet(rejects_path),
        )
    staged = publish.Staged(
        {
            CURATED_TABLE: (curated_table, [curated_path]),
            REJECTS_TABLE: (rejects_table, [rejects_path]),
        },
        day,
    )
    failure: ValidationFailed | None = None
    try:
        validation, versions_published = publish_gated(config, window, run_id, staged, out, timer)
    except ValidationFailed as exc:
        failure, validation, versions_published = exc, exc.validation, {}
    report = RunReport(
        run_id=run_id,
        day=day,
        status="validation_failed" if failure else "published",
        counts=out.counts,
        reject_reasons=out.reject_reasons,
        link_stats=out.link_stats,
        tables={CURATED_TABLE: str(curated_table), REJECTS_TABLE: str(rejects_table)},
        manifest=manifest_path(curated_root, day.isoformat(), run_id),
        durations=timer.durations,
        skipped_files=scan.skipped,
        validation=validation,
    )
    manifest = {
        "run_id": run_id,
        "date": day.isoformat(),
        "status": report.status,
        "fingerprint": print_,
        "engine": config.engine,
        "started_at": started.isoformat(),
        "finished_at": now().isoformat(),
        "config": config.model_dump(mode="json"),
        "window": {
            "day_start": window.start.isoformat(),
            "context_start": window.context_start.isoformat(),
            "context_end": window.context_end.isoformat(),
        },
        "inputs": [_input_entry(f) for f in planned],
        "skipped_files": [{"path": p, "why": w} for p, w in scan.skipped],
        "counts": out.counts,
        "reconciliation": reconcile(out.counts),
        "reject_reasons": out.reject_reasons,
        "link_stats": out.link_stats,
        "input_profile": out.input_profile.to_dicts(),
        "validation": validation.to_json(),
        "tables": {
            name: {"path": report.tables[name], "version": v}
            for name, v in versions_published.items()
        },
        "durations_s": timer.durations,
        "versions": versions(),
    }
    write_manifest(report.manifest, manifest)
    if failure is not None:
        raise failure
    return report


def _input_entry(f: PlannedFile) -> dict[str, Any]:
    return {
        "path": str(f.path),
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "partition_start": f.start.isoformat(),
    }


def reconcile(counts: dict[str, int]) -> dict[str, Any]:
    """rows in day = curated + rejected + duplicate + folded evidence + unmatched + other."""
    parts = ("curated", "rejected", "duplicate", "evidence_folded", "inspection_unmatched")
    total = sum(counts.get(p, 0) for p in (*parts, "not_connection"))
    methods = sum(counts.get(f"method_{m}", 0) for m in s.LINK_METHODS)
    return {
        "rows_in_day": counts.get("rows_in_day", 0),
        "accounted": total,
        "balanced": total == counts.get("rows_in_day", 0) and methods == counts.get("curated", 0),
    }
