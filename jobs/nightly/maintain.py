"""Delta maintenance: compact the small files that daily rebuilds leave, and vacuum the files
no version within the retention still needs.

Vacuum is the trade-off with time travel: after it, versions older than the retention can no
longer be read (their files are gone); before it, the folder keeps every replaced partition.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from proxylink.jobs.config import Config
from proxylink.jobs.nightly.lock import curated_lock
from proxylink.jobs.serving.tables import table_names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableMaintenance:
    table: str
    files_added: int
    files_removed: int
    vacuumed: int
    version: int
    orphans: int = 0  # files no version ever referenced (left by killed runs), removed


def maintain(
    config: Config, run_id: str, dry_run: bool = False, now: float | None = None
) -> list[TableMaintenance]:
    """Compact and vacuum every published table, and remove its orphaned files, holding the
    curated root's lock (so no run is staging files meanwhile). Readers pinned at the snapshot
    follow the compaction commits themselves (`jobs.serving.tables`), so the snapshot stays as
    it is."""
    root = config.curated_root()
    retention = config.maintenance.retention_hours
    done: list[TableMaintenance] = []
    with curated_lock(root, config.lock.wait_seconds, run_id):
        for name in table_names(root) if root.is_dir() else []:
            try:
                table = DeltaTable(str(root / name))
            except TableNotFoundError:
                log.info("%s: no table yet", name)
                continue
            added = removed = 0
            if not dry_run:
                metrics = table.optimize.compact(
                    target_size=config.maintenance.target_file_mb * 1024 * 1024
                )
                added, removed = metrics["numFilesAdded"], metrics["numFilesRemoved"]
            gone = table.vacuum(
                retention_hours=int(retention),
                dry_run=dry_run,
                enforce_retention_duration=False,
            )
            orphans = orphaned_files(root / name, retention, now)
            if not dry_run:
                for path in orphans:
                    path.unlink(missing_ok=True)
            log.info(
                "%s: compacted %d files into %d, vacuumed %d, removed %d orphaned",
                name,
                removed,
                added,
                len(gone),
                len(orphans),
            )
            done.append(
                TableMaintenance(name, added, removed, len(gone), table.version(), len(orphans))
            )
    return done


def orphaned_files(table: Path, retention_hours: float, now: float | None = None) -> list[Path]:
    """Data files in the table's folder that no commit of its log ever added or removed, and
    that are older than the retention: what a run killed after staging leaves behind. Delta's
    vacuum only removes files a commit once referenced, so these would stay forever."""
    known = _logged_paths(table / "_delta_log")
    cutoff = (time.time() if now is None else now) - retention_hours * 3600
    found = []
    for path in table.rglob("*"):
        rel = path.relative_to(table)
        if rel.parts[0] == "_delta_log" or not path.is_file() or path.name.startswith((".", "_")):
            continue
        if rel.as_posix() not in known and path.stat().st_mtime < cutoff:
            found.append(path)
    return sorted(found)


def _logged_paths(log_dir: Path) -> set[str]:
    """Every file path any commit (or checkpoint) of the log added or removed."""
    paths: set[str] = set()
    for commit in log_dir.glob("*.json"):
        for line in commit.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            for kind in ("add", "remove"):
                if kind in action:
                    paths.add(unquote(action[kind]["path"]))
    for checkpoint in log_dir.glob("*.checkpoint*.parquet"):
        kinds = [k for k in ("add", "remove") if k in pq.read_schema(checkpoint).names]
        done = pq.read_table(checkpoint, columns=kinds)
        for kind in kinds:
            for entry in done.column(kind).to_pylist():
                if entry and entry.get("path"):
                    paths.add(unquote(entry["path"]))
    return paths
