"""`proxylink ddl`: the statements that register the published Delta tables in a metastore.

Registering a Delta table needs only its name and location: the engine reads the schema and the
partitioning from the Delta log, so the statements stay right when the job adds a column.
Spark and Databricks use `CREATE TABLE IF NOT EXISTS ... USING DELTA LOCATION`, Trino's Delta
connector its `register_table` procedure. Optional comments (`COMMENT ON ...`) describe the
tables and columns; they are a metadata commit in each table's Delta log, which later
publishes keep.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from proxylink.jobs.serving.column_docs import COLUMN_DOCS, TABLE_DOCS
from proxylink.jobs.serving.tables import PublishedTable

Dialect = Literal["spark", "databricks", "trino"]
DIALECTS: tuple[str, ...] = ("spark", "databricks", "trino")
DEFAULT_SCHEMA = "proxylink"
DEFAULT_TRINO_CATALOG = "delta"
SCHEMA_DOC = "Delta tables published by proxylink"
_PLAIN = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class DdlOptions:
    dialect: Dialect
    schema: str = DEFAULT_SCHEMA
    catalog: str | None = None  # Trino: the Delta connector's catalog (default `delta`)
    location_prefix: str | None = None  # the curated root as the cluster sees it
    comments: bool = False


def location(table: PublishedTable, prefix: str | None) -> str:
    """Where the cluster finds the table: under `prefix`, or the local absolute path."""
    if prefix:
        return f"{prefix.rstrip('/')}/{table.name}"
    return "file://" + table.path.resolve().as_posix()


def _spark_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _spark_str(text: str) -> str:
    # Spark SQL reads backslash escapes in string literals by default
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _trino_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _trino_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _column_docs(table: PublishedTable) -> list[tuple[str, str]]:
    docs = COLUMN_DOCS.get(table.name, {})
    return [(c, docs[c]) for c in table.schema.names if c in docs]


def _spark(tables: Sequence[PublishedTable], o: DdlOptions) -> list[str]:
    schema = (
        f"{_spark_ident(o.catalog)}.{_spark_ident(o.schema)}"
        if o.catalog
        else _spark_ident(o.schema)
    )
    create_schema = f"CREATE SCHEMA IF NOT EXISTS {schema}"
    if o.dialect == "databricks":
        create_schema += f" COMMENT {_spark_str(SCHEMA_DOC)}"
    out = [create_schema + ";"]
    for t in tables:
        name = f"{schema}.{_spark_ident(t.name)}"
        out.append(
            f"CREATE TABLE IF NOT EXISTS {name} USING DELTA "
            f"LOCATION {_spark_str(location(t, o.location_prefix))};"
        )
        if not o.comments:
            continue
        if t.name in TABLE_DOCS:
            out.append(f"COMMENT ON TABLE {name} IS {_spark_str(TABLE_DOCS[t.name])};")
        for col, doc in _column_docs(t):
            out.append(
                f"ALTER TABLE {name} ALTER COLUMN {_spark_ident(col)} COMMENT {_spark_str(doc)};"
            )
    return out


def _trino(tables: Sequence[PublishedTable], o: DdlOptions) -> list[str]:
    catalog = _trino_ident(o.catalog or DEFAULT_TRINO_CATALOG)
    schema = f"{catalog}.{_trino_ident(o.schema)}"
    out = [f"CREATE SCHEMA IF NOT EXISTS {schema};"]
    for t in tables:
        out.append(
            f"CALL {catalog}.system.register_table("
            f"schema_name => {_trino_str(o.schema)}, "
            f"table_name => {_trino_str(t.name)}, "
            f"table_location => {_trino_str(location(t, o.location_prefix))});"
        )
        if not o.comments:
            continue
        name = f"{schema}.{_trino_ident(t.name)}"
        if t.name in TABLE_DOCS:
            out.append(f"COMMENT ON TABLE {name} IS {_trino_str(TABLE_DOCS[t.name])};")
        for col, doc in _column_docs(t):
            out.append(f"COMMENT ON COLUMN {name}.{_trino_ident(col)} IS {_trino_str(doc)};")
    return out


def ddl_statements(tables: Sequence[PublishedTable], options: DdlOptions) -> list[str]:
    """One statement per line, each ending in `;`, in the order they must run."""
    if options.dialect == "trino":
        return _trino(tables, options)
    return _spark(tables, options)


def ddl_notes(tables: Sequence[PublishedTable], options: DdlOptions) -> list[str]:
    """What the reader must know before running the statements (printed as `--` lines)."""
    notes = [f"proxylink ddl --dialect {options.dialect}: {len(tables)} table(s)"]
    if options.dialect == "trino":
        notes.append(
            "needs delta.register-table-procedure.enabled=true in the catalog's properties; "
            "register_table fails for a table already registered (harmless on a rerun)"
        )
    if options.dialect == "databricks":
        notes.append("Unity Catalog needs an external location that covers these paths")
    if options.comments:
        notes.append(
            "the COMMENT statements write a metadata commit to each table's Delta log: run "
            "them outside the nightly publish window"
        )
    odd = [t.name for t in tables if not _PLAIN.match(t.name)]
    if odd:
        notes.append(
            "some metastores allow only letters, digits and _ in table names: " + ", ".join(odd)
        )
    return notes
