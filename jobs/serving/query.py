"""`proxylink sql`: ad-hoc SQL over the published tables with DuckDB.

Each table is a view of its name over the Delta log's live files (see `jobs.serving.tables`). The
result is rendered as a readable table or written by DuckDB itself as CSV, JSON or Parquet, so
large results stream to the file instead of passing through Python rows.

The command is read-only. It runs exactly one statement, a query (`SELECT`, `WITH`, `FROM`,
`DESCRIBE`, `SHOW`, `SUMMARIZE`, `EXPLAIN`), in a session that cannot read or write files,
attach databases, install or load extensions, or change settings (`jobs.serving.tables.lock_down`).
The only file it writes is `--out`, which may not lie inside the curated root.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from proxylink.jobs.errors import ConfigError, ProxylinkError
from proxylink.jobs.serving.tables import connect, open_tables, unreadable_table

log = logging.getLogger(__name__)

Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[str, ...] = ("table", "csv", "json", "parquet")
_COPY_OPTIONS = {
    "csv": "FORMAT csv, HEADER true",
    "json": "FORMAT json, ARRAY true",
    "parquet": "FORMAT parquet",
}
_RESULT_VIEW = "__proxylink_result"
# Statement types that only read: a query (DESCRIBE, SHOW and SUMMARIZE parse as one) or a plan.
_READ_ONLY = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
READ_ONLY_HINT = (
    "proxylink sql is read-only: it runs one query over the published tables and cannot "
    "read or write files, attach databases, install extensions or change settings; "
    "use --out FILE to write the result"
)


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
    statement = single_query(sql)
    if out is not None and out.resolve().is_relative_to(root.resolve()):
        raise ConfigError(
            f"--out {out} is inside the curated root {root}: results are never written "
            "among the published tables"
        )
    published = open_tables(root)
    # DuckDB writes over an existing file through `tmp_<name>` beside it, then renames.
    writable = [out, out.with_name(f"tmp_{out.name}")] if out is not None else []
    con = connect(published, writable=writable)
    try:
        try:
            rel = con.sql(statement)
        except duckdb.PermissionException as exc:
            raise QueryError(f"{READ_ONLY_HINT} ({one_line(exc)})") from None
        except duckdb.CatalogException as exc:
            names = ", ".join(t.name for t in published)
            raise QueryError(f"SQL error: {one_line(exc)} (tables: {names})") from None
        except duckdb.Error as exc:
            raise QueryError(f"SQL error: {one_line(exc)}") from None
        if rel is None:  # cannot happen for a query; kept so that a DuckDB change is no crash
            raise QueryError(f"SQL error: the statement returned no result; {READ_ONLY_HINT}")
        try:
            if fmt == "table":
                return _render(con, rel, max_rows, width)
            assert out is not None
            if max_rows is not None:
                rel = rel.limit(max_rows)
            rel.create_view(_RESULT_VIEW)
            target = str(out).replace("'", "''")
            con.execute(f"COPY {_RESULT_VIEW} TO '{target}' ({_COPY_OPTIONS[fmt]})")
        except duckdb.PermissionException as exc:
            raise QueryError(f"{READ_ONLY_HINT} ({one_line(exc)})") from None
        except duckdb.Error as exc:
            raise unreadable_table(exc) or QueryError(f"SQL error: {one_line(exc)}") from None
        log.debug("wrote %s result to %s", fmt, out)
        return QueryResult(text=None, rows=None, truncated=False)
    finally:
        con.close()


def single_query(sql: str) -> str:
    """The one read-only statement in `sql`, or a usage error that says what is wrong."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {one_line(exc)}") from None
    if not statements:
        raise QueryError("no SQL statement given (the query is empty or only comments)")
    if len(statements) > 1:
        kinds = ", ".join(f"{i}: {s.type.name}" for i, s in enumerate(statements, 1))
        raise QueryError(
            f"one statement at a time: got {len(statements)} ({kinds}); "
            "run each with its own proxylink sql"
        )
    (statement,) = statements
    if statement.type not in _READ_ONLY:
        raise QueryError(f"{READ_ONLY_HINT} (the statement is {statement.type.name})")
    return _trim_tail(statement.query)


def _trim_tail(query: str) -> str:
    """The query without its trailing `;` and comments, so that it can be wrapped as a view."""
    end = len(query)
    for offset, kind in reversed(duckdb.tokenize(query)):
        if kind == duckdb.token_type.comment or query[offset] == ";":
            end = offset
        else:
            break
    return query[:end]


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
