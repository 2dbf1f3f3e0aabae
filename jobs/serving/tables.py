"""The published tables under a curated root, and DuckDB views that read them through the log.

Every folder directly under the root that holds a `_delta_log` is a table named by its folder;
bookkeeping folders (`_manifests`, `_reports`, ...) start with `_` and are skipped. So the
analyst commands see each table the job publishes, including ones added later, without a list.

Tables are read through `DeltaTable.to_pyarrow_dataset()`: exactly the files of the log's
current version, never a folder glob (which also finds the files of replaced days). DuckDB's
`delta` extension would do the same, but it is downloaded at `INSTALL` time and the PyPI
packages that ship it are built for older DuckDB releases than the one pinned here, so it
cannot be loaded offline. The Arrow dataset is lazy: DuckDB pushes projections and filters
(partition pruning on `date`) into it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from proxylink.jobs.errors import ConfigError, InputError
from proxylink.jobs.nightly.manifest import read_snapshot
from proxylink.jobs.nightly.publish import CURATED_TABLE, REJECTS_TABLE

if TYPE_CHECKING:  # pyarrow.dataset imports pandas: a run imports it in the background
    import pyarrow.dataset as pads

log = logging.getLogger(__name__)

# The job's own tables come first in listings, in this order; any other table follows by name.
KNOWN_ORDER: tuple[str, ...] = (CURATED_TABLE, REJECTS_TABLE)


@dataclass(frozen=True)
class PublishedTable:
    """One Delta table pinned at the version it had when it was opened."""

    name: str
    path: Path
    table: DeltaTable

    @property
    def version(self) -> int:
        return int(self.table.version())

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(self.table.schema().to_arrow())

    def dataset(self) -> pads.Dataset:
        """The live files of the pinned version, as a lazy Arrow dataset."""
        return self.table.to_pyarrow_dataset()


def table_names(root: Path) -> list[str]:
    """Names of the Delta tables directly under `root`, the job's own first."""
    if not root.is_dir():
        raise InputError(f"curated root {root} does not exist (run `proxylink run` first)")
    found = {
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "_delta_log").is_dir()
    }
    known = [n for n in KNOWN_ORDER if n in found]
    return known + sorted(found - set(known))


def open_tables(root: Path, only: Sequence[str] | None = None) -> list[PublishedTable]:
    """Open every published table (or the named ones); no table at all is an input problem."""
    names = table_names(root)
    if not names:
        raise InputError(f"no Delta tables under {root} (run `proxylink run` first)")
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ConfigError(
                f"unknown table(s) {', '.join(unknown)}; published: {', '.join(names)}"
            )
        names = [n for n in names if n in only]
    pins = read_snapshot(root)
    return [PublishedTable(n, root / n, _pinned(root / n, pins.get(n))) for n in names]


# Commits that change no rows: compaction, column comments (`proxylink ddl --comments` in a
# metastore), properties. A reader pinned at the snapshot may follow them.
_SAME_ROWS = frozenset(
    {
        "OPTIMIZE",
        "UPDATE FIELD METADATA",
        "CHANGE COLUMN",
        "ADD COLUMNS",
        "SET TBLPROPERTIES",
        "UNSET TBLPROPERTIES",
        "VACUUM START",
        "VACUUM END",
    }
)


def _effective_pin(table: DeltaTable, pin: int | None) -> int | None:
    """The newest version that holds the rows of the snapshot's version `pin`: later commits
    that change no rows are followed, the first that changes rows (a run that stopped between
    its commits) is not. None: the current version."""
    current = table.version()
    if pin is None or pin >= current:
        return None
    later = sorted(
        (int(h["version"]), str(h.get("operation", "")))
        for h in table.history(limit=current - pin)
        if int(h.get("version", -1)) > pin
    )
    for version, operation in later:
        if operation not in _SAME_ROWS:
            return pin
        pin = version
    return None


def _pinned(path: Path, pin: int | None) -> DeltaTable:
    """The table at the version of the last complete publish: a newer version that changes rows
    comes from a run that stopped between its commits, and is not read until a run completes."""
    table = DeltaTable(str(path))
    effective = _effective_pin(table, pin)
    if effective is not None:
        log.warning(
            "%s: reading version %d, the last complete publish; version %d is from a run that "
            "did not finish",
            path.name,
            effective,
            table.version(),
        )
        table = DeltaTable(str(path), version=effective)
    return table


def snapshot_version(root: Path, name: str) -> int | None:
    """The version readers use of table `name`: the last complete publish's, or None (the
    current version) where the snapshot does not pin it."""
    return _effective_pin(DeltaTable(str(root / name)), read_snapshot(root).get(name))


def scan(root: Path, name: str) -> pl.LazyFrame:
    """A polars scan of table `name` at its snapshot version (see `_pinned`)."""
    return pl.scan_delta(_pinned(root / name, read_snapshot(root).get(name)))


def connect(
    tables: Sequence[PublishedTable], writable: Sequence[Path] = ()
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection in UTC where each table is a view of its name, locked
    down (see `lock_down`) so that only the files in `writable` can be written."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # timestamps print and export in UTC on any machine
    for t in tables:
        con.register(t.name, t.dataset())
        log.debug("registered %s (version %d) from %s", t.name, t.version, t.path)
    lock_down(con, writable)
    return con


def lock_down(con: duckdb.DuckDBPyConnection, writable: Sequence[Path] = ()) -> None:
    """No file access, no extensions, no settings changes from here on.

    The tables are registered Arrow datasets, which DuckDB reads through Python, not through
    its file system, so they stay readable. Everything else a statement could reach (any file
    by `read_csv` or `COPY`, a live data file of a table, `ATTACH`, `INSTALL`/`LOAD`, `SET`)
    fails with a permission error. `writable` names the only files the session may write: the
    command's own output.
    """
    paths = ", ".join("'" + str(p.resolve()).replace("'", "''") + "'" for p in writable)
    con.execute(f"SET allowed_paths = [{paths}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def quote_ident(name: str) -> str:
    """A DuckDB identifier, quoted so that any folder name works."""
    return '"' + name.replace('"', '""') + '"'


_STREAM_FAILED = re.compile(r"reading the stream registered as '([^']*)' failed: (.*)", re.S)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def unreadable_table(exc: duckdb.Error, prefix: str = "") -> InputError | None:
    """A data file of a table that cannot be read (corrupt, or removed under a running query)
    is an input problem, not a mistake in the user's SQL."""
    m = _STREAM_FAILED.search(_ANSI.sub("", str(exc)))
    if m is None:
        return None
    detail = m[2].split(". Detail:")[0].split("\n")[0].strip()
    return InputError(f"cannot read table {m[1].removeprefix(prefix)}: {detail}")
