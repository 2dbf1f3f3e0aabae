"""The run manifest: what a run read, decided and published, as one JSON file per run.

Schedulers and auditors read it instead of logs: inputs with sizes and times, counts that
reconcile, link statistics, durations per step and the versions that produced the output. This
module builds it, writes it and reads it back (the next run's fingerprint check, `status`,
`validate` and the report), and keeps the snapshot the readers pin.
"""

from __future__ import annotations

import json
import platform
from datetime import date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from proxylink.expectations.runner import ValidationReport
from proxylink.jobs.errors import InputError, OutputError
from proxylink.jobs.nightly.plan import PlannedFile
from proxylink.jobs.nightly.suffixes import describe as describe_suffixes
from proxylink.jobs.timing import Timer
from proxylink.transforms import schema as s
from proxylink.transforms.engine import DayResult
from proxylink.transforms.params import DayWindow

RUN_DISTRIBUTIONS = ("proxylink", "polars", "pyarrow", "deltalake", "pydantic")


def versions(distributions: tuple[str, ...] = RUN_DISTRIBUTIONS) -> dict[str, str]:
    """Python's version and each distribution's, as the manifest (and the bench) record them."""
    out = {"python": platform.python_version()}
    for dist in distributions:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def manifest_path(curated: Path, day: str, run_id: str) -> Path:
    return curated / "_manifests" / f"date={day}" / f"{run_id}.json"


SNAPSHOT = "_snapshot.json"


def snapshot_path(curated: Path) -> Path:
    """`<curated>/_snapshot.json`: the table versions of the last complete publish (beside the
    manifests folder, so that tools that read every manifest never mistake it for one)."""
    return curated / SNAPSHOT


def write_snapshot(curated: Path, run_id: str, day: str, versions: dict[str, int]) -> None:
    """Record the versions a run committed, once all its commits and its manifest are done.

    A run publishes its tables in one commit each, so a run killed between two commits leaves
    some tables a version ahead. Readers pin each table at the version recorded here, and so
    always see the tables of one complete publish."""
    known = read_snapshot(curated)
    known.update(versions)
    body = {"run_id": run_id, "date": day, "tables": known}
    write_manifest(snapshot_path(curated), body)


def read_snapshot(curated: Path) -> dict[str, int]:
    """Table name -> the version of the last complete publish; empty before the first one (or
    for a root published before the snapshot was recorded: its tables are read as they are)."""
    path = snapshot_path(curated)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot read the snapshot {path}: {exc}") from None
    return {str(k): int(v) for k, v in body.get("tables", {}).items()}


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a manifest."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise OutputError(f"cannot write manifest {path}: {exc.strerror or exc}") from None


def run_manifest(
    *,
    run_id: str,
    day: date,
    status: str,
    fingerprint: str,
    engine: str,
    engine_details: dict[str, object],
    started: datetime,
    finished: datetime,
    config: dict[str, Any],
    proxies: dict[str, Any],
    window: DayWindow,
    planned: list[PlannedFile],
    skipped_files: list[tuple[str, str]],
    result: DayResult,
    validation: ValidationReport,
    tables: dict[str, str],
    committed: dict[str, int],
    timer: Timer,
) -> dict[str, Any]:
    """The manifest of one run, as it is written: `config` is the configuration as loaded (with
    `proxies: auto` unresolved), `proxies` the set used and where it came from."""
    return {
        "run_id": run_id,
        "date": day.isoformat(),
        "status": status,
        "fingerprint": fingerprint,
        "engine": engine,
        "engine_details": engine_details,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "config": config,
        "proxies": proxies,
        "window": {
            "day_start": window.start.isoformat(),
            "context_start": window.context_start.isoformat(),
            "context_end": window.context_end.isoformat(),
        },
        "inputs": [_input_entry(f) for f in planned],
        "skipped_files": [{"path": p, "why": w} for p, w in skipped_files],
        "counts": result.counts,
        "reconciliation": reconcile(result.counts),
        "reject_reasons": result.reject_reasons,
        "link_stats": result.link_stats,
        "input_profile": result.input_profile.to_dicts(),
        "validation": validation.to_json(),
        "tables": {name: {"path": tables[name], "version": v} for name, v in committed.items()},
        "durations_s": timer.durations,
        "step_details_s": timer.details,
        "versions": versions(),
        "public_suffix_list": describe_suffixes(),
    }


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


def day_manifests(curated_root: Path, day: date) -> list[dict[str, Any]]:
    """Every run manifest of day D, oldest first."""
    folder = curated_root / "_manifests" / f"date={day.isoformat()}"
    found = [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")]
    return sorted(found, key=lambda m: m.get("finished_at", ""))


def last_published(curated_root: Path, day: date) -> dict[str, Any] | None:
    """The manifest of the run that published day D last, if any."""
    published = [m for m in day_manifests(curated_root, day) if m.get("status") == "published"]
    return published[-1] if published else None


def latest_published_manifest(curated_root: Path, day: date) -> dict[str, Any]:
    """The same, for commands that need one: no published run is exit 3, naming the day."""
    found = last_published(curated_root, day)
    if found is None:
        raise InputError(f"no published run for {day.isoformat()} under {curated_root}")
    return found
