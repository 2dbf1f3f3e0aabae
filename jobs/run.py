"""One nightly run for day D, step by step: plan, read, build, publish, report.

This module owns the side effects of a run (files, clock, run id); the transforms stay pure.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from expectations.profiles import curated_profile, example_filters, example_rows
from expectations.runner import ValidationReport, validate
from expectations.runner import preload as preload_expectations
from expectations.suites import CURATED_SUITE, INPUT_SUITE
from jobs import lake, publish
from jobs.config import Config
from jobs.errors import InputError, ValidationFailed
from jobs.manifest import manifest_path, versions, write_manifest
from jobs.plan import PlannedFile, plan_files
from transforms import schema as s
from transforms.engine import DayOutput
from transforms.params import DayWindow, LinkParams
from transforms.polars_engine.engine import PolarsEngine

log = logging.getLogger(__name__)

CURATED_TABLE = "connection_success"
REJECTS_TABLE = "rejects"


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


class _Timer:
    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.durations: dict[str, float] = {}
        self._progress = progress

    def step(self, name: str) -> _Step:
        if self._progress is not None:
            self._progress(name)
        return _Step(self, name)


class _Step:
    def __init__(self, timer: _Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timer.durations[self.name] = round(time.perf_counter() - self.t0, 3)


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


def run_day(
    config: Config,
    day: date,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Build, validate and publish day D; raise a ProxylinkError subclass on expected failure.

    A critical expectation failure raises ValidationFailed after the manifest is written: the
    staged files are removed and the published tables stay as they were.
    """
    events_root, curated_root = config.require_paths()
    params = config.link_params()
    started = now()
    run_id = new_run_id(started)
    window = DayWindow.for_day(day, params)
    timer = _Timer(progress)
    log.info("run %s: building %s", run_id, day.isoformat())
    preload_expectations()

    with timer.step("plan"):
        planned = plan_files(events_root, window, params)
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
    report = RunReport(
        run_id=run_id,
        day=day,
        status="published",
        counts=out.counts,
        reject_reasons=out.reject_reasons,
        link_stats=out.link_stats,
        tables={CURATED_TABLE: str(curated_table), REJECTS_TABLE: str(rejects_table)},
        manifest=manifest_path(curated_root, day.isoformat(), run_id),
        durations=timer.durations,
        skipped_files=scan.skipped,
    )
    failure: ValidationFailed | None = None
    versions_published: dict[str, int] = {}
    try:
        versions_published = publish_gated(config, window, run_id, staged, out, timer, report)
    except ValidationFailed as exc:
        report.status, failure = "validation_failed", exc
    assert report.validation is not None
    manifest = {
        "run_id": run_id,
        "date": day.isoformat(),
        "status": report.status,
        "engine": config.engine,
        "started_at": started.isoformat(),
        "finished_at": now().isoformat(),
        "config": config.model_dump(mode="json"),
        "window": {
            "day_start": window.start.isoformat(),
            "context_start": window.context_start.isoformat(),
            "context_end": window.context_end.isoformat(),
        },
        "inputs": [
            {
                "path": str(f.path),
                "size": f.size,
                "mtime_ns": f.mtime_ns,
                "partition_start": f.start.isoformat(),
            }
            for f in planned
        ],
        "skipped_files": [{"path": p, "why": w} for p, w in scan.skipped],
        "counts": out.counts,
        "reconciliation": reconcile(out.counts),
        "reject_reasons": out.reject_reasons,
        "link_stats": out.link_stats,
        "input_profile": out.input_profile.to_dicts(),
        "validation": report.validation.to_json(),
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


def publish_gated(
    config: Config,
    window: DayWindow,
    run_id: str,
    staged: publish.Staged,
    out: DayOutput[pl.LazyFrame],
    timer: _Timer | None = None,
    report: RunReport | None = None,
) -> dict[str, int]:
    """Validate the staged files and commit them only if no critical expectation fails.

    On a critical failure the staged files are removed, the tables keep their current version
    and ValidationFailed (exit code 1) says which expectations failed, with example rows.
    """
    timer = timer or _Timer(None)
    with timer.step("validate"):
        validation = validate_staged(config, window, run_id, staged, out)
    if report is not None:
        report.validation = validation
    if not validation.passed:
        examples = failure_examples(config, window, validation, staged)
        staged.discard()
        raise ValidationFailed(describe_failure(validation, examples))
    with timer.step("publish"):
        return staged.commit()


def validate_staged(
    config: Config,
    window: DayWindow,
    run_id: str,
    staged: publish.Staged,
    out: DayOutput[pl.LazyFrame],
) -> ValidationReport:
    """Run both suites on what this run is about to publish."""
    params = config.link_params()
    (curated_path,) = staged.files(CURATED_TABLE)
    rejects_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in staged.files(REJECTS_TABLE))
    staged_rows = pl.scan_parquet(curated_path)
    link_rate = float(out.link_stats.get("link_rate_devices_with_evidence", 0.0))
    profiles = {
        INPUT_SUITE: out.input_profile,
        CURATED_SUITE: curated_profile(
            staged_rows, params.proxies, out.counts, rejects_rows, link_rate
        ),
    }
    settings = config.expectations.settings(window, params.tolerance_ms)
    return validate(profiles, settings, reports_dir(config), run_id)


def failure_examples(
    config: Config, window: DayWindow, validation: ValidationReport, staged: publish.Staged
) -> list[str]:
    """A few staged rows for each failed row-level check, formatted for the error message."""
    params = config.link_params()
    settings = config.expectations.settings(window, params.tolerance_ms)
    filters = example_filters(settings, params.proxies)
    rows = pl.scan_parquet(staged.files(CURATED_TABLE))
    lines: list[str] = []
    for failed in validation.critical_failures:
        if failed.id in filters:
            examples = example_rows(rows, filters[failed.id])
            lines.append(f"  example rows for {failed.id}:")
            for row in examples.iter_rows(named=True):
                lines.append("    " + ", ".join(f"{k}={_show(v)}" for k, v in row.items()))
    return lines


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def reports_dir(config: Config) -> Path:
    """The known folder of the Data Docs: `<curated>/_reports/validation/`."""
    _, curated_root = config.require_paths()
    return curated_root / "_reports" / "validation"


def describe_failure(report: ValidationReport, examples: list[str] | None = None) -> str:
    """The one-paragraph message a failed validation ends with."""
    if report.error is not None:
        return f"validation could not run ({report.error}); nothing was published"
    lines = ["critical expectations failed; nothing was published:"]
    for r in report.critical_failures:
        shown = ", ".join(repr(v) for v in r.unexpected[:3])
        lines.append(
            f"  {r.id}: {r.description} (observed {r.observed}"
            + (f"; e.g. {shown}" if shown else "")
            + ")"
        )
    lines.extend(examples or [])
    if report.pages:
        lines.append(f"  report: {report.pages[0]}")
    return "\n".join(lines)


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


def latest_published_manifest(curated_root: Path, day: date) -> dict[str, Any]:
    """The manifest of the run that published day D last."""
    folder = curated_root / "_manifests" / f"date={day.isoformat()}"
    found = []
    for path in folder.glob("*.json"):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("status") == "published":
            found.append((manifest.get("finished_at", ""), manifest))
    if not found:
        raise InputError(f"no published run for {day.isoformat()} under {curated_root}")
    return max(found, key=lambda item: item[0])[1]


def validate_published(config: Config, day: date, now: datetime | None = None) -> ValidationReport:
    """Re-run both suites on the published partition D, without rewriting anything.

    The input suite uses the input profile its publishing run recorded; the curated suite is
    computed afresh from the table, read through the Delta log.
    """
    _, curated_root = config.require_paths()
    manifest = latest_published_manifest(curated_root, day)
    params = config.link_params()
    window = DayWindow.for_day(day, params)
    table = curated_root / CURATED_TABLE
    date_filter = pl.col(s.PARTITION_DATE) == day
    try:
        rows = pl.scan_delta(str(table)).filter(date_filter).drop(s.PARTITION_DATE)
        rejects = pl.scan_delta(str(curated_root / REJECTS_TABLE)).filter(date_filter)
        rejects_rows = rejects.select(pl.len()).collect().item()
    except Exception as exc:
        raise InputError(f"cannot read the published tables under {curated_root}: {exc}") from None
    counts = manifest["counts"]
    link_rate = float(manifest["link_stats"].get("link_rate_devices_with_evidence", 0.0))
    profiles = {
        INPUT_SUITE: pl.DataFrame(manifest["input_profile"]),
        CURATED_SUITE: curated_profile(rows, params.proxies, counts, rejects_rows, link_rate),
    }
    settings = config.expectations.settings(window, params.tolerance_ms)
    run_name = "validate-" + new_run_id(now or datetime.now(UTC))
    return validate(profiles, settings, reports_dir(config), run_name)
