"""`proxylink sql`: ad-hoc SQL over the published tables with DuckDB.

Each table is a view of its name over the Delta log's live files (see `jobs.tables`). The
result is rendered as a readable table or written by DuckDB itself as CSV, JSON or Parquet, so
large results stream to the file instead of passing through Python rows.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from jobs.errors import ConfigError, ProxylinkError
from jobs.tables import connect, open_tables, unreadable_table

log = logging.getLogger(__name__)

Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[str, ...] = ("table", "csv", "json", "parquet")
_COPY_OPTIONS = {
    "csv": "FORMAT csv, HEADER true",
    "json": "FORMAT json, ARRAY true",
    "parquet": "FORMAT parquet",
}
_RESULT_VIEW = "__proxylink_result"


class QueryError(ProxylinkError):
    """The SQL did not run: a typo, an unknown table or column, a bad cast (the user's input)."""

    exit_code = 2


@dataclass(frozen=True)
class QueryResult:
    """What a query produced: rendered text (table format) or the file written."""

    text: str | None
    rows: int | None  # rows rendered, or None for a file
    truncated: bool  # more rows exist than were rendered


def one_line(exc: duckdb.Error) -> str:
    """DuckDB's message up to its first blank line (drops the `LINE 1: ... ^` pointer)."""
    head = str(exc).strip().split("\n\n")[0]
    return " ".join(part.strip() for part in head.splitlines() if part.strip())


def run_query(
    root: Path,
    sql: str,
    fmt: Format = "table",
    out: Path | None = None,
    max_rows: int | None = None,
    width: int = 120,
) -> QueryResult:
    """Run `sql` over the tables under `root`; render it, or write it to `out` in `fmt`."""
    if fmt != "table" and out is None:
        raise ConfigError(f"--format {fmt} needs --out FILE")
    published = open_tables(root)
    con = connect(published)
    try:
        try:
            rel = con.sql(sql)
        except duckdb.CatalogException as exc:
            names = ", ".join(t.name for t in published)
            raise QueryError(f"SQL error: {one_line(exc)} (tables: {names})") from None
        except duckdb.Error as exc:
            raise QueryError(f"SQL error: {one_line(exc)}") from None
        if rel is None:  # a statement without a result (SET, CREATE VIEW, ...)
            return QueryResult(text="", rows=0, truncated=False)
        try:
            if fmt == "table":
                return _render(con, rel, max_rows, width)
            assert out is not None
            if max_rows is not None:
                rel = rel.limit(max_rows)
            rel.create_view(_RESULT_VIEW)
            target = str(out).replace("'", "''")
            con.execute(f"COPY {_RESULT_VIEW} TO '{target}' ({_COPY_OPTIONS[fmt]})")
        except duckdb.Error as exc:
            raise unreadable_table(exc) or QueryError(f"SQL error: {one_line(exc)}") from None
        log.debug("wrote %s result to %s", fmt, out)
        return QueryResult(text=None, rows=None, truncated=False)
    finally:
        con.close()


def _render(
    con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, max_rows: int | None, width: int
) -> QueryResult:
    """DuckDB's own box rendering (as its shell shows it), fitted to `width` characters."""
    rows = (rel if max_rows is None else rel.limit(max_rows + 1)).to_arrow_table()
    truncated = max_rows is not None and rows.num_rows > max_rows
    if truncated:
        rows = rows.slice(0, max_rows)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # show() prints; the CLI decides where text goes
        con.from_arrow(rows).show(max_width=width, max_rows=max(rows.num_rows, 1))
    return QueryResult(text=buf.getvalue().rstrip("\n"), rows=rows.num_rows, truncated=truncated)
