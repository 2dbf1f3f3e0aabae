"""Delta maintenance: compact the small files that daily rebuilds leave, and vacuum the files
no version within the retention still needs.

Vacuum is the trade-off with time travel: after it, versions older than the retention can no
longer be read (their files are gone); before it, the folder keeps every replaced partition.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from jobs.config import Config
from jobs.lock import curated_lock
from jobs.publish import CURATED_TABLE, REJECTS_TABLE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableMaintenance:
    table: str
    files_added: int
    files_removed: int
    vacuumed: int
    version: int


def maintain(config: Config, run_id: str, dry_run: bool = False) -> list[TableMaintenance]:
    """Compact and vacuum every curated table, holding the curated root's lock."""
    _, root = config.require_paths()
    retention = config.maintenance.retention_hours
    done: list[TableMaintenance] = []
    with curated_lock(root, config.lock.wait_seconds, run_id):
        for name in (CURATED_TABLE, REJECTS_TABLE):
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
            log.info("%s: compacted %d files into %d, vacuumed %d", name, removed, added, len(gone))
            done.append(TableMaintenance(name, added, removed, len(gone), table.version()))
    return done
