"""`proxylink export --duckdb FILE`: a DuckDB database file with the curated tables, for BI tools.

BI tools connect to one DuckDB file more easily than to a Delta lake. The export copies a date
range of each table into it: the rows of the dates in range are replaced (delete, then insert,
all tables in one transaction), rows of other dates stay. A rerun gives the same contents, and
a reader sees the file before or after an export, never half of one. `_proxylink_export` records
each export: which table, which Delta version, which dates, how many rows, and when.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from proxylink.jobs.errors import InputError, LockHeld, OutputError
from proxylink.jobs.nightly.publish import CURATED_TABLE
from proxylink.jobs.serving.tables import (
    PublishedTable,
    lock_down,
    open_tables,
    quote_ident,
    unreadable_table,
)

log = logging.getLogger(__name__)

EXPORT_LOG = "_proxylink_export"
PARTITION = "date"
_SOURCE_PREFIX = "__proxylink_src_"
_EXPORT_LOG_DDL = f"""
CREATE TABLE IF NOT EXISTS {EXPORT_LOG} (
    exported_at TIMESTAMPTZ NOT NULL,
    table_name VARCHAR NOT NULL,
    delta_version BIGINT NOT NULL,
    source VARCHAR NOT NULL,
    date_from DATE,            -- null: no lower bound
    date_to DATE,              -- null: no upper bound
    dates DATE[] NOT NULL,     -- the dates that had rows in range
    rows_deleted BIGINT NOT NULL,
    rows_inserted BIGINT NOT NULL
)"""
# Views for the questions analysts ask first; created when their tables are in the file.
VIEWS: dict[str, tuple[str, str]] = {
    "proxied_domains": (
        CURATED_TABLE,
        f"""SELECT date, RemoteUrl,
               count(DISTINCT DeviceId) AS Devices,
               count(*) AS Connections,
               min("Timestamp") AS FirstSeen,
               max("Timestamp") AS LastSeen
        FROM {CURATED_TABLE}
        WHERE IsProxied AND RemoteUrl IS NOT NULL
        GROUP BY date, RemoteUrl""",
    ),
}


@dataclass(frozen=True)
class TableExport:
    name: str
    version: int
    dates: int
    rows_deleted: int
    rows_inserted: int
    rows_total: int
    whole_table: bool  # no `date` column: the table was replaced as a whole


@dataclass(frozen=True)
class ExportReport:
    target: Path
    tables: list[TableExport]
    views: list[str]


def _open(target: Path) -> duckdb.DuckDBPyConnection:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(target))
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            pid = re.search(r"PID (\d+)", text)
            holder = f"process {pid.group(1)}" if pid else "another process"
            raise LockHeld(
                f"{target} is in use by {holder} (a BI tool or another export); an export "
                "needs the file to itself: close it there and rerun"
            ) from None
        raise OutputError(f"cannot open {target} as a DuckDB database: {text}") from None
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None


def _range_filter(first: date | None, last: date | None) -> str:
    parts = []
    if first is not None:
        parts.append(f"{PARTITION} >= DATE '{first.isoformat()}'")
    if last is not None:
        parts.append(f"{PARTITION} <= DATE '{last.isoformat()}'")
    return " AND ".join(parts) or "true"


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    return {str(row[0]): str(row[1]) for row in con.execute(f"DESCRIBE {relation}").fetchall()}


def _export_one(
    con: duckdb.DuckDBPyConnection,
    t: PublishedTable,
    first: date | None,
    last: date | None,
    now: datetime,
) -> TableExport:
    src, dst = _SOURCE_PREFIX + t.name, quote_ident(t.name)
    con.execute(f"CREATE TABLE IF NOT EXISTS {dst} AS SELECT * FROM {quote_ident(src)} LIMIT 0")
    source_cols = _columns(con, quote_ident(src))
    have = _columns(con, dst)
    for col, typ in source_cols.items():  # a column the job added since the last export
        if col not in have:
            con.execute(f"ALTER TABLE {dst} ADD COLUMN {quote_ident(col)} {typ}")
    whole = PARTITION not in source_cols
    where = "true" if whole else _range_filter(first, last)
    deleted = con.execute(f"DELETE FROM {dst} WHERE {where}").fetchone()
    inserted = con.execute(
        f"INSERT INTO {dst} BY NAME SELECT * FROM {quote_ident(src)} WHERE {where}"
    ).fetchone()
    dates: list[date] = []
    if not whole:
        dates = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT {PARTITION} FROM {dst} WHERE {where} ORDER BY 1"
            ).fetchall()
        ]
    total = con.execute(f"SELECT count(*) FROM {dst}").fetchone()
    n_deleted = int(deleted[0]) if deleted else 0
    n_inserted = int(inserted[0]) if inserted else 0
    con.execute(
        f"INSERT INTO {EXPORT_LOG} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [now, t.name, t.version, str(t.path), first, last, dates, n_deleted, n_inserted],
    )
    return TableExport(
        name=t.name,
        version=t.version,
        dates=len(dates),
        rows_deleted=n_deleted,
        rows_inserted=n_inserted,
        rows_total=int(total[0]) if total else 0,
        whole_table=whole,
    )


def export_duckdb(
    root: Path,
    target: Path,
    first: date | None,
    last: date | None,
    now: datetime,
    only: Sequence[str] | None = None,
) -> ExportReport:
    """Refresh `target` with the dates `first..last` (open ends allowed) of each table."""
    tables = open_tables(root, only)  # pinned versions: one consistent snapshot per table
    con = _open(target)
    try:
        con.execute("SET TimeZone = 'UTC'")
        for t in tables:
            con.register(_SOURCE_PREFIX + t.name, t.dataset())
        lock_down(con)  # the target file is open already; nothing else can be touched
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(_EXPORT_LOG_DDL)
            done = [_export_one(con, t, first, last, now) for t in tables]
            present = {str(r[0]) for r in con.execute("SHOW TABLES").fetchall()}
            views = []
            for view, (needs, body) in VIEWS.items():
                if needs in present:
                    con.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")
                    views.append(view)
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            unreadable = unreadable_table(exc, _SOURCE_PREFIX)
            if unreadable is not None:
                raise InputError(f"{unreadable}; {target} was not changed") from None
            first_line = str(exc).strip().splitlines()[0]
            raise OutputError(f"export to {target} failed, nothing changed: {first_line}") from None
        con.execute("CHECKPOINT")  # fold the WAL in, so readers open one self-contained file
    finally:
        con.close()
    for d in done:
        log.info(
            "%s: version %d, %d rows for %d dates", d.name, d.version, d.rows_inserted, d.dates
        )
    return ExportReport(target=target, tables=done, views=views)
