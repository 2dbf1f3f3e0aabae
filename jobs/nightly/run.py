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
from pathlib import Path
from typing import Any

from proxylink.expectations.runner import ValidationReport
from proxylink.expectations.runner import preload as preload_expectations
from proxylink.jobs.config import Config
from proxylink.jobs.engines.runner import runner_for
from proxylink.jobs.errors import ValidationFailed
from proxylink.jobs.logs import run_context
from proxylink.jobs.nightly import publish
from proxylink.jobs.nightly.discover import Discovery, resolve_auto
from proxylink.jobs.nightly.gate import last_published, publish_gated
from proxylink.jobs.nightly.lock import curated_lock
from proxylink.jobs.nightly.manifest import manifest_path, versions, write_manifest, write_snapshot
from proxylink.jobs.nightly.plan import PlannedFile, plan
from proxylink.jobs.nightly.publish import CURATED_TABLE
from proxylink.jobs.nightly.stage import STAGED_TABLES, StageTargets
from proxylink.jobs.nightly.suffixes import describe as describe_suffixes
from proxylink.jobs.nightly.suffixes import suffix_rules
from proxylink.jobs.timing import Timer
from proxylink.transforms import schema as s
from proxylink.transforms.params import DayWindow

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
    discovered_proxies: tuple[str, ...] | None = None  # with `proxies: auto`: the day's proxies


def new_run_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


# What this version publishes, in the fingerprint: an upgrade that adds a table rebuilds days.
PUBLISHED_TABLES = STAGED_TABLES


def fingerprint(
    planned: list[PlannedFile], config: Config, discovery: dict[str, Any] | None = None
) -> str:
    """What day D's output depends on: the input files (path, size, modification time), the
    settings that change the rows and the tables this version publishes. Equal fingerprints
    mean a rebuild would publish the same.

    With `proxies: auto`, `config` carries the discovered proxies and `discovery` the settings
    that found them: the same files and settings always discover the same set, so a status check
    can compare with the set a run recorded without discovering again.
    """
    params = config.link_params()
    basis: dict[str, Any] = {
        "files": sorted((str(f.path), f.size, f.mtime_ns) for f in planned),
        "proxies": sorted(str(p) for p in params.proxies),
        "tolerance_ms": params.tolerance_ms,
        "clock_skew_ms": params.clock_skew_ms,
        # A day published before a table existed, or with another suffix list, is rebuilt.
        "tables": list(PUBLISHED_TABLES),
        "public_suffix_list": describe_suffixes()["sha256"],
    }
    if discovery is not None:
        basis["discovery"] = discovery
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
    configured = config
    started = now()
    timer = Timer(progress)
    log.info("run %s: building %s", run_id, day.isoformat())
    discovery: Discovery | None = None
    runner = runner_for(config)
    if config.proxies_auto:
        with timer.step("discover"):
            config, discovery = resolve_auto(config, day, runner)
    events_root, curated_root = config.require_paths()
    params = config.link_params()
    window = DayWindow.for_day(day, params)

    with timer.step("plan"):
        layout = plan(events_root, window, params, config.input.on_invalid_partition)
        planned = layout.files
    for path, why in layout.skipped:
        log.warning("run %s: not reading %s: %s", run_id, path, why)
    print_ = fingerprint(planned, config, configured.discovery.basis() if discovery else None)
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
            discovered_proxies=discovery.proxies if discovery else None,
        )
    # great-expectations imports pyspark when present: the Spark runner imports it first, so
    # the background import of great-expectations never races it.
    preload_expectations()
    tables = {name: curated_root / name for name in STAGED_TABLES}
    targets = StageTargets(tables, day, run_id)
    try:
        built = runner.build(
            planned, window, params, config.input.on_corrupt_file, targets, suffix_rules(), timer
        )
    except BaseException:  # a failed write, an interrupt: leave no staged file behind
        for leftover in targets.orphans(set()):
            leftover.unlink(missing_ok=True)
        raise
    out = built.result
    staged = publish.Staged({name: (tables[name], built.staged[name]) for name in tables}, day)
    failure: ValidationFailed | None = None
    try:
        validation, versions_published = publish_gated(
            config, window, run_id, staged, out, timer, run_time=started
        )
    except ValidationFailed as exc:
        failure, validation, versions_published = exc, exc.validation, {}
    report = RunReport(
        run_id=run_id,
        day=day,
        status="validation_failed" if failure else "published",
        counts=out.counts,
        reject_reasons=out.reject_reasons,
        link_stats=out.link_stats,
        tables={name: str(path) for name, path in tables.items()},
        manifest=manifest_path(curated_root, day.isoformat(), run_id),
        durations=timer.durations,
        skipped_files=[*layout.skipped, *built.skipped],
        validation=validation,
        discovered_proxies=discovery.proxies if discovery else None,
    )
    manifest = {
        "run_id": run_id,
        "date": day.isoformat(),
        "status": report.status,
        "fingerprint": print_,
        "engine": config.engine,
        "engine_details": built.details,
        "started_at": started.isoformat(),
        "finished_at": now().isoformat(),
        "config": configured.model_dump(mode="json"),
        "proxies": {
            "source": "discovered" if discovery else "configured",
            "used": list(config.proxies),
            "discovery": discovery.to_json() if discovery else None,
        },
        "window": {
            "day_start": window.start.isoformat(),
            "context_start": window.context_start.isoformat(),
            "context_end": window.context_end.isoformat(),
        },
        "inputs": [_input_entry(f) for f in planned],
        "skipped_files": [{"path": p, "why": w} for p, w in report.skipped_files],
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
        "step_details_s": timer.details,
        "versions": versions(),
        "public_suffix_list": describe_suffixes(),
    }
    write_manifest(report.manifest, manifest)
    if failure is not None:
        raise failure
    write_snapshot(curated_root, run_id, day.isoformat(), versions_published)
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
