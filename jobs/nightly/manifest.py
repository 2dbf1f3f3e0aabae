"""The run manifest: what a run read, decided and published, as one JSON file per run.

Schedulers and auditors read it instead of logs: inputs with sizes and times, counts that
reconcile, link statistics, durations per step and the versions that produced the output.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from proxylink.jobs.errors import OutputError


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("proxylink", "polars", "pyarrow", "deltalake", "pydantic"):
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
