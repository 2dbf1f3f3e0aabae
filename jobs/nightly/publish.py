"""Publishing day D into a Delta table: write the files, then replace the partition in one commit.

Data files are written into the table folder first and only become part of the table when the
Delta log commits them, together with the removal of the previous files of partition D. Readers
that go through the log see the old partition or the new one, never a mix; a crash before the
commit leaves the previous version intact (the orphaned files are removed by `vacuum`).
Any engine that can write Parquet files publishes through here.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from proxylink.jobs.errors import OutputError
from proxylink.transforms import schema as s
from proxylink.transforms.types import polars_schema

CURATED_TABLE = "connection_success"
REJECTS_TABLE = "rejects"


@dataclass(frozen=True)
class StagedFiles:
    """Parquet files written for partition D of one table, not yet committed."""

    table: Path
    day: date
    paths: tuple[Path, ...]

    @property
    def rows(self) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.paths)


# The curated columns the validation profile and the summary tables read, for a day whose
# engine staged no curated file at all.
EMPTY_CURATED_SCHEMA: dict[str, pl.DataType] = polars_schema(
    (
        s.DEVICE_ID,
        s.DEVICE_NAME,
        s.TIMESTAMP,
        s.REPORT_ID,
        s.ACTION_TYPE,
        s.LINK_METHOD,
        s.IS_PROXIED,
        s.PROXY_IP,
        s.PROXY_PORT,
        s.REMOTE_URL,
        s.LINK_DELTA_MS,
    )
)


def staged_rows(paths: list[Path]) -> pl.LazyFrame:
    """The rows of a table's staged files; no file reads as no rows."""
    return pl.scan_parquet(paths) if paths else pl.LazyFrame(schema=EMPTY_CURATED_SCHEMA)


def new_data_path(table: Path, day: date, run_id: str, part: int = 0) -> Path:
    """Where a run writes its next file for partition D; unique per run and part."""
    folder = table / f"{s.PARTITION_DATE}={day.isoformat()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write under {table}: {exc.strerror or exc}") from None
    return folder / f"part-{run_id}-{part:05d}-{uuid.uuid4().hex[:8]}.parquet"


def _delta_schema(file_schema: pa.Schema) -> pa.Schema:
    fields = [f for f in file_schema if f.name != s.PARTITION_DATE]
    return pa.schema([*fields, pa.field(s.PARTITION_DATE, pa.date32())])


def _stats(path: Path) -> str:
    return json.dumps({"numRecords": pq.ParquetFile(path).metadata.num_rows})


def commit_partition(staged: StagedFiles, empty_schema: pa.Schema | None = None) -> int:
    """Replace partition D of the table with the staged files in one commit; return the version.

    With no files (an empty day) the partition is emptied, so a rerun still matches its input.
    `empty_schema` gives the file schema when there are no files to read it from.
    """
    if staged.paths:
        file_schema = pq.read_schema(staged.paths[0])
    elif empty_schema is not None:
        file_schema = empty_schema
    else:
        raise ValueError("an empty partition needs its schema")
    schema = _delta_schema(file_schema)
    day = staged.day.isoformat()
    actions: list[AddAction] = []
    for p in staged.paths:
        st = p.stat()
        actions.append(
            AddAction(
                path=p.relative_to(staged.table).as_posix(),
                size=st.st_size,
                partition_values={s.PARTITION_DATE: day},
                modification_time=int(time.time() * 1000),
                data_change=True,
                stats=_stats(p),
            )
        )
    uri = str(staged.table)
    try:
        table = DeltaTable(uri)
    except TableNotFoundError:
        create_table_with_add_actions(
            uri,
            DeltaSchema.from_arrow(schema),
            actions,
            mode="error",
            partition_by=[s.PARTITION_DATE],
        )
        return DeltaTable(uri).version()
    current = pa.schema(table.schema().to_arrow())
    if [(f.name, _plain(f.type)) for f in current] != [(f.name, _plain(f.type)) for f in schema]:
        schema = _merge_schema(current, schema)
    else:
        schema = current  # keeps column metadata, e.g. comments a metastore wrote (proxylink ddl)
    changes: list[AddAction | RemoveAction] = list(actions)
    try:
        table.create_write_transaction(
            changes,
            mode="overwrite",
            schema=DeltaSchema.from_arrow(schema),
            partition_by=[s.PARTITION_DATE],
            partition_filters=[(s.PARTITION_DATE, "=", day)],
        )
    except OSError as exc:  # the log entry could not be written: the table is unchanged
        raise OutputError(f"cannot commit to {uri}: {exc.strerror or exc}") from None
    except Exception as exc:
        if "os error" not in str(exc).lower():
            raise
        first = str(exc).strip().splitlines()[0]
        raise OutputError(f"cannot commit to {uri}: {first}") from None
    return DeltaTable(uri).version()


def _plain(t: pa.DataType) -> pa.DataType:
    """Delta has one string, binary and array type; Arrow's large variants are the same to it."""
    if t == pa.large_string() or t == pa.string_view():
        return pa.string()
    if t == pa.large_binary():
        return pa.binary()
    if pa.types.is_large_list(t) or pa.types.is_list(t) or pa.types.is_list_view(t):
        return pa.list_(_plain(t.value_type))
    return t


def _merge_schema(current: pa.Schema, new: pa.Schema) -> pa.Schema:
    """Columns of the table first, new optional columns after; a changed type is an error."""
    fields = list(current)
    for f in new:
        if f.name not in current.names:
            fields.insert(len(fields) - 1, f)
        elif _plain(current.field(f.name).type) != _plain(f.type):
            raise OutputError(
                f"column {f.name} is {f.type} in this run but {current.field(f.name).type} "
                f"in the published table"
            )
    return pa.schema(fields)


def commit_files(table: Path, day: date, paths: list[Path]) -> int:
    """Commit freshly written files as partition D; empty files are dropped, not published."""
    keep: list[Path] = []
    schema: pa.Schema | None = None
    for p in paths:
        meta = pq.ParquetFile(p).metadata
        schema = meta.schema.to_arrow_schema()
        if meta.num_rows:
            keep.append(p)
        else:
            p.unlink()
    return commit_partition(StagedFiles(table, day, tuple(keep)), empty_schema=schema)


@dataclass(frozen=True)
class Staged:
    """The files one run wrote for day D, per table, until they are committed or discarded."""

    tables: dict[str, tuple[Path, list[Path]]]
    day: date

    def files(self, name: str) -> list[Path]:
        return self.tables[name][1]

    def commit(self) -> dict[str, int]:
        """Commit every table's partition D; returns the new table versions."""
        return {
            name: commit_files(table, self.day, paths)
            for name, (table, paths) in self.tables.items()
        }

    def discard(self) -> None:
        """Remove the staged files; the tables never referenced them."""
        for _, paths in self.tables.values():
            for p in paths:
                p.unlink(missing_ok=True)
