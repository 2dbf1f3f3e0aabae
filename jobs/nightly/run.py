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
from proxylink.jobs.engines.runner import Built, DayBuild, Runner, runner_for
from proxylink.jobs.errors import ValidationFailed
from proxylink.jobs.logs import run_context
from proxylink.jobs.nightly import publish
from proxylink.jobs.nightly.discover import Discovery, resolve_auto
from proxylink.jobs.nightly.gate import Gate, publish_gated
from proxylink.jobs.nightly.lock import curated_lock
from proxylink.jobs.nightly.manifest import (
    last_published,
    manifest_path,
    run_manifest,
    write_manifest,
    write_snapshot,
)
from proxylink.jobs.nightly.plan import PlannedFile, plan
from proxylink.jobs.nightly.publish import CURATED_TABLE
from proxylink.jobs.nightly.stage import STAGED_TABLES, StageTargets
from proxylink.jobs.nightly.suffixes import describe as describe_suffixes
from proxylink.jobs.nightly.suffixes import suffix_rules
from proxylink.jobs.timing import Timer
from proxylink.transforms.params import DayWindow, LinkParams

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
    planned: list[PlannedFile], params: LinkParams, discovery: dict[str, Any] | None = None
) -> str:
    """What day D's output depends on: the input files (path, size, modification time), the
    settings that change the rows and the tables this version publishes. Equal fingerprints
    mean a rebuild would publish the same.

    With `proxies: auto`, `params` carry the discovered proxies and `discovery` the settings
    that found them: the same files and settings always discover the same set, so a status check
    can compare with the set a run recorded without discovering again.
    """
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
    started, timer = now(), Timer(progress)
    log.info("run %s: building %s", run_id, day.isoformat())
    runner = runner_for(config)
    used, discovery = config, None
    if config.proxies_auto:
        with timer.step("discover"):
            used, discovery = resolve_auto(config, day, runner)
    events_root, curated_root = used.require_paths()
    params = used.link_params()
    window = DayWindow.for_day(day, params)

    with timer.step("plan"):
        layout = plan(events_root, window, params, used.input.on_invalid_partition)
    for path, why in layout.skipped:
        log.warning("run %s: not reading %s: %s", run_id, path, why)
    print_ = fingerprint(layout.files, params, config.discovery.basis() if discovery else None)
    last = last_published(curated_root, day)
    if not force and last is not None and last.get("fingerprint") == print_:
        log.info("run %s: %s unchanged since run %s, skipped", run_id, day, last["run_id"])
        return _unchanged(run_id, day, curated_root, last, discovery)

    tables = {name: curated_root / name for name in STAGED_TABLES}
    targets = StageTargets(tables, day, run_id)
    on_corrupt = used.input.on_corrupt_file
    build = DayBuild(layout.files, window, params, on_corrupt, targets, suffix_rules())
    built = _build(runner, build, timer)
    staged = publish.Staged({name: (tables[name], built.staged[name]) for name in tables}, day)
    failure: ValidationFailed | None = None
    try:
        validation, committed = publish_gated(
            Gate.of(used, window), run_id, staged, built.result, timer, run_time=started
        )
    except ValidationFailed as exc:
        failure, validation, committed = exc, exc.validation, {}

    report = RunReport(
        run_id=run_id,
        day=day,
        status="validation_failed" if failure else "published",
        counts=built.result.counts,
        reject_reasons=built.result.reject_reasons,
        link_stats=built.result.link_stats,
        tables={name: str(path) for name, path in tables.items()},
        manifest=manifest_path(curated_root, day.isoformat(), run_id),
        durations=timer.durations,
        skipped_files=[*layout.skipped, *built.skipped],
        validation=validation,
        discovered_proxies=discovery.proxies if discovery else None,
    )
    manifest = run_manifest(
        run_id=run_id,
        day=day,
        status=report.status,
        fingerprint=print_,
        engine=used.engine,
        engine_details=built.details,
        started=started,
        finished=now(),
        config=config.model_dump(mode="json"),
        proxies={
            "source": "discovered" if discovery else "configured",
            "used": list(used.proxies),
            "discovery": discovery.to_json() if discovery else None,
        },
        window=window,
        planned=layout.files,
        skipped_files=report.skipped_files,
        result=built.result,
        validation=validation,
        tables=report.tables,
        committed=committed,
        timer=timer,
    )
    write_manifest(report.manifest, manifest)
    if failure is not None:
        raise failure
    write_snapshot(curated_root, run_id, day.isoformat(), committed)
    return report


def _unchanged(
    run_id: str,
    day: date,
    curated_root: Path,
    last: dict[str, Any],
    discovery: Discovery | None,
) -> RunReport:
    """The report of a run that found day D's input and settings as the last publish had them."""
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


def _build(runner: Runner, day: DayBuild, timer: Timer) -> Built:
    """Build and stage day D with the configured engine; on any failure (a full disk, an
    interrupt) leave no staged file behind."""
    # great-expectations imports pyspark when present: the Spark runner imports it first, so
    # the background import of great-expectations never races it.
    preload_expectations()
    try:
        return runner.build(day, timer)
    except BaseException:
        day.targets.discard()
        raise
