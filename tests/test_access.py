"""Analyst access: `proxylink sql`, `export --duckdb` and `ddl` on tables of a real run.

The module's tables come from the real job (`sample` + `run` of two days), after which day one
is rebuilt with --force: its replaced files stay in the folder, so every comparison below also
shows that the commands read through the Delta log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from proxylink.jobs.cli import main
from proxylink.jobs.serving.column_docs import COLUMN_DOCS
from proxylink.jobs.serving.tables import open_tables

ROOT = Path(__file__).parent.parent
CONF = ROOT / "conf" / "local.yaml"
BIN = Path(sys.executable).parent / "proxylink"
D1, D2 = date(2026, 11, 1), date(2026, 11, 2)
KEY = ["DeviceId", "Timestamp", "ReportId"]
COLS = ["DeviceId", "Timestamp", "ReportId", "RemoteUrl", "LinkMethod", "IsProxied",
        "LinkDeltaMs", "ProxyPort", "date"]  # fmt: skip
SELECT = (
    "SELECT " + ", ".join(f'"{c}"' for c in COLS) + " FROM connection_success "
    'ORDER BY DeviceId, "Timestamp", ReportId'
)
COMMENT = "set by a metastore"


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("access")
    sample = ["sample", "--out", str(base / "lake"), "--devices", "20", "--days", "2"]
    assert main([*sample, "--connections-per-device", "60"]) == 0
    root = base / "curated"
    run = ["run", "--conf", str(CONF), "--events", str(base / "lake" / "DeviceNetworkEvents")]
    run += ["--curated", str(root)]
    assert main([*run, "--date", D2.isoformat(), "--lookback", "1"]) == 0
    # a column comment, as `proxylink ddl --comments` run in a metastore writes it
    DeltaTable(str(root / "connection_success")).alter.set_column_metadata(
        "RemoteUrl", {"comment": COMMENT}
    )
    assert main([*run, "--date", D1.isoformat(), "--force"]) == 0
    return root


def delta(root: Path, name: str = "connection_success") -> pl.DataFrame:
    return pl.read_delta(str(root / name))


def expected_rows(root: Path) -> pl.DataFrame:
    return delta(root).select(COLS).sort(KEY)


def sql(root: Path, query: str, *extra: str) -> int:
    return main(["sql", "--curated", str(root), query, *extra])


def from_text(df: pl.DataFrame) -> pl.DataFrame:
    """CSV and JSON carry timestamps and dates as text; give them their types back."""
    return df.with_columns(
        pl.col("Timestamp").str.to_datetime("%Y-%m-%d %H:%M:%S%.f%#z", time_unit="us"),
        pl.col("date").str.to_date(),
    ).cast({"ReportId": pl.Int64, "LinkDeltaMs": pl.Int64, "ProxyPort": pl.Int32})


# --- sql -------------------------------------------------------------------------------------


def test_the_rebuilt_day_left_replaced_files_that_a_glob_double_counts(curated: Path) -> None:
    folder = curated / "connection_success" / f"date={D1}"
    live = delta(curated).filter(pl.col("date") == D1).height
    globbed = duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder}/*.parquet')").fetchall()
    assert live > 0 and globbed == [(2 * live,)]


def test_sql_counts_through_the_log(curated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "SELECT date, count(*) AS n FROM connection_success GROUP BY date ORDER BY date"
    assert sql(curated, query, "--format", "csv") == 0
    got = pl.read_csv(capsys.readouterr().out.encode(), try_parse_dates=True)
    want = delta(curated).group_by("date").len("n").sort("date")
    assert got.rows() == want.rows()
    assert [d for d, _ in got.rows()] == [D1, D2]


def test_sql_table_format_is_readable_and_says_when_rows_are_cut(
    curated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "SELECT LinkMethod, count(*) AS n FROM connection_success GROUP BY ALL ORDER BY 1"
    assert sql(curated, query) == 0
    out = capsys.readouterr().out
    want = delta(curated).group_by("LinkMethod").len().sort("LinkMethod")
    for method, n in want.rows():
        assert re.search(rf"│ {method}\s+│\s+{n} │", out), out
    assert "more exist" not in out

    assert sql(curated, "SELECT * FROM connection_success", "--max-rows", "3") == 0
    out = capsys.readouterr().out
    assert "3 rows" in out and "(first 3 rows shown; more exist" in out


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_sql_writes_each_format_with_the_tables_rows(
    curated: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"result.{fmt}"
    assert sql(curated, SELECT, "--format", fmt, "--out", str(out)) == 0
    assert capsys.readouterr().out == ""
    if fmt == "parquet":
        got = pl.read_parquet(out)
    elif fmt == "csv":
        text = pl.read_csv(out, infer_schema=False)
        got = from_text(text.with_columns(pl.col("IsProxied") == "true"))
    else:
        got = from_text(pl.DataFrame(json.loads(out.read_text())))
    want = expected_rows(curated)
    assert got.height == want.height > 1000
    assert got.equals(want), (got.head(3), want.head(3))
    assert sql(curated, "SELECT 1 AS x", "--format", fmt, "--out", str(out)) == 0  # overwrites
    assert out.stat().st_size < 1000 and not (tmp_path / f"tmp_result.{fmt}").exists()


def test_sql_json_to_stdout_and_max_rows(curated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sql(curated, SELECT, "--format", "json", "--max-rows", "5") == 0
    got = from_text(pl.DataFrame(json.loads(capsys.readouterr().out)))
    assert got.equals(expected_rows(curated).head(5))


def test_bad_sql_is_one_line_with_exit_2(curated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = subprocess.run(
        [str(BIN), "sql", "--curated", str(curated), "SELECT * FORM connection_success"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("proxylink: error: SQL error: Parser Error: syntax error")
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert done.stdout == ""
    for query in ("SELECT * FROM no_such_table", "SELECT 'x'::INT", "SELECT nope FROM rejects"):
        assert sql(curated, query) == 2
        err = capsys.readouterr().err
        assert err.startswith("proxylink: error: SQL error:") and err.count("\n") == 1, err
        if "no_such_table" in query:
            assert "(tables: connection_success, rejects, domain_daily, proxy_coverage)" in err


def test_no_tables_is_one_line_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sql(tmp_path / "missing", "SELECT 1") == 3
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty" / "_manifests").mkdir(parents=True)
    assert sql(tmp_path / "empty", "SELECT 1") == 3
    assert "no Delta tables under" in capsys.readouterr().err
    assert sql(tmp_path, "SELECT 1", "--format", "parquet") == 2  # parquet needs --out


# --- sql is read-only ----------------------------------------------------------------------------


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("proxylink: error: ") and err.count("\n") == 1, err
    return err


def test_sql_cannot_overwrite_a_live_data_file_and_the_table_stays_readable(
    curated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = DeltaTable(str(curated / "connection_success"))
    live = Path(table.file_uris()[0])
    before, version = live.read_bytes(), table.version()
    copy = f"COPY (SELECT * EXCLUDE (date) FROM connection_success LIMIT 1) TO '{live}'"
    assert sql(curated, copy + " (FORMAT parquet)") == 2
    assert "is read-only" in one_error(capsys)
    select = f"SELECT * FROM connection_success UNION ALL SELECT * FROM read_parquet('{live}')"
    assert sql(curated, select) == 2  # not even read outside the log
    assert "file system operations are disabled" in one_error(capsys)
    # --out is the only way to write, and it refuses the curated root
    assert sql(curated, "SELECT 1", "--out", str(live)) == 2
    assert "inside the curated root" in one_error(capsys)
    assert live.read_bytes() == before
    assert DeltaTable(str(curated / "connection_success")).version() == version
    assert sql(curated, "SELECT count(*) FROM connection_success") == 0
    assert delta(curated).height > 1000


@pytest.mark.parametrize(
    "query, creates",
    [
        ("SELECT * FROM read_csv('/etc/passwd')", None),
        ("SELECT * FROM read_text('/etc/hostname')", None),
        ("COPY connection_success TO '{tmp}/x.csv'", "x.csv"),
        ("COPY (SELECT 1) TO '{tmp}/y.parquet' (FORMAT parquet)", "y.parquet"),
        ("ATTACH '{tmp}/x.duckdb' AS x", "x.duckdb"),
        ("EXPORT DATABASE '{tmp}/dump'", "dump"),
        ("INSTALL httpfs", None),
        ("LOAD httpfs", None),
        ("SET enable_external_access = true", None),
        ("SET lock_configuration = false", None),
        ("PRAGMA threads = 1", None),
        ("CREATE TABLE t AS SELECT 1", None),
        ("DROP VIEW connection_success", None),
    ],
)
def test_sql_cannot_touch_files_extensions_or_settings(
    curated: Path, tmp_path: Path, query: str, creates: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert sql(curated, query.format(tmp=tmp_path)) == 2
    err = one_error(capsys)
    assert "proxylink sql is read-only" in err and "use --out FILE" in err, err
    assert "root:" not in err  # no file content leaks into the message
    if creates is not None:
        assert not (tmp_path / creates).exists()


def test_sql_session_is_locked_down(curated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = (
        "SELECT name, value FROM duckdb_settings() WHERE name IN "
        "('enable_external_access', 'lock_configuration') ORDER BY name"
    )
    assert sql(curated, query, "--format", "csv") == 0
    got = pl.read_csv(capsys.readouterr().out.encode(), infer_schema=False).rows()
    assert got == [("enable_external_access", "false"), ("lock_configuration", "true")]


def test_sql_runs_one_statement_and_an_empty_query_is_a_usage_error(
    curated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sql(curated, "SELECT 1; DROP VIEW connection_success") == 2
    err = one_error(capsys)
    assert "one statement at a time: got 2 (1: SELECT, 2: DROP)" in err, err
    for empty in ("", "   ", "-- only a comment", ";"):
        assert sql(curated, empty) == 2
        assert "no SQL statement given" in one_error(capsys)
    # a query with a trailing semicolon and comments is one statement
    assert sql(curated, "-- count\nSELECT count(*) AS n FROM rejects; -- done", "--format",
               "csv") == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("n\n")
    for query in ("DESCRIBE connection_success", "SHOW TABLES", "EXPLAIN SELECT 1"):
        assert sql(curated, query) == 0, query
        capsys.readouterr()


def test_sql_empty_query_from_the_shell_exits_2(curated: Path) -> None:
    done = subprocess.run(
        [str(BIN), "sql", "--curated", str(curated), ""], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "proxylink: error: no SQL statement given (the query is empty or only comments)\n"
    )


# --- export ------------------------------------------------------------------------------------


def duck(path: Path, query: str) -> pl.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(query).pl()


def assert_exported(db: Path, curated: Path, name: str) -> None:
    want = delta(curated, name)
    got = duck(db, f"SELECT * FROM {name}")
    assert got.columns == want.columns
    by = KEY if name == "connection_success" else want.columns
    assert got.sort(by).equals(want.sort(by))


def test_export_copies_every_table_and_reruns_identically(
    curated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "bi.duckdb"
    for _ in range(2):
        assert main(["export", "--curated", str(curated), "--duckdb", str(db)]) == 0
        for name in [t.name for t in open_tables(curated)]:
            assert_exported(db, curated, name)
    out = capsys.readouterr().out
    rows = delta(curated).height
    assert re.search(rf"connection_success\s+\d+\s+2\s+{rows:,}\s+{rows:,}\s+{rows:,}", out), out

    log = duck(db, "SELECT * FROM _proxylink_export ORDER BY exported_at, table_name")
    assert log.height == 2 * len(open_tables(curated)) and log["rows_inserted"][0] == rows
    version = DeltaTable(str(curated / "connection_success")).version()
    assert set(log.filter(pl.col("table_name") == "connection_success")["delta_version"]) == {
        version
    }
    assert log["dates"][0].to_list() == [D1, D2]
    domains = duck(db, "SELECT sum(Connections) AS n FROM proxied_domains")["n"][0]
    assert domains == delta(curated).filter("IsProxied", pl.col("RemoteUrl").is_not_null()).height


def test_export_range_replaces_only_its_dates(
    curated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "bi.duckdb"
    assert main(["export", "--curated", str(curated), "--duckdb", str(db)]) == 0
    with duckdb.connect(str(db)) as con:  # damage both days
        con.execute("UPDATE connection_success SET RemoteUrl = 'stale.example' WHERE true")
        con.execute(f"DELETE FROM connection_success WHERE date = DATE '{D2}' AND IsProxied")
    args = ["export", "--curated", str(curated), "--duckdb", str(db)]
    assert main([*args, "--from", str(D2), "--to", str(D2), "--tables", "connection_success"]) == 0
    got = duck(db, "SELECT * FROM connection_success")
    want = delta(curated)
    day2 = got.filter(pl.col("date") == D2).sort(KEY)
    assert day2.equals(want.filter(pl.col("date") == D2).sort(KEY))
    day1 = got.filter(pl.col("date") == D1)
    assert day1.height == want.filter(pl.col("date") == D1).height
    assert set(day1["RemoteUrl"]) == {"stale.example"}  # outside the range: untouched
    assert main([*args, "--tables", "nope"]) == 2
    assert "unknown table(s) nope" in capsys.readouterr().err


@pytest.mark.parametrize("read_only", [False, True])
def test_export_to_a_file_in_use_is_one_line_with_exit_4(
    curated: Path, tmp_path: Path, read_only: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process holding the file, even read-only (as a BI tool should), blocks it."""
    db = tmp_path / "bi.duckdb"
    if read_only:  # a read-only open needs an existing file
        duckdb.connect(str(db)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro');"
         " print('open', flush=True); time.sleep(120)", str(db), "ro" if read_only else "rw"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        assert main(["export", "--curated", str(curated), "--duckdb", str(db)]) == 4
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {holder.pid}" in err
    assert main(["export", "--curated", str(curated), "--duckdb", str(db)]) == 0


def test_list_columns_and_new_columns_of_any_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "curated"
    (root / "_reports").mkdir(parents=True)
    table = root / "domain_extra"
    first = pa.table(
        {
            "RemoteUrl": ["a.example", "b.example", "c.example"],
            "TopProcesses": pa.array([["msedge.exe", "curl.exe"], [], None], pa.list_(pa.string())),
            "date": pa.array([D1, D1, D2], pa.date32()),
        }
    )
    write_deltalake(str(table), first, partition_by=["date"])
    query = "SELECT RemoteUrl, len(TopProcesses) AS n, TopProcesses[1] AS top FROM domain_extra"
    assert sql(root, query + " ORDER BY 1", "--format", "json") == 0
    got = json.loads(capsys.readouterr().out)
    assert got == [
        {"RemoteUrl": "a.example", "n": 2, "top": "msedge.exe"},
        {"RemoteUrl": "b.example", "n": 0, "top": None},
        {"RemoteUrl": "c.example", "n": None, "top": None},
    ]
    db = tmp_path / "bi.duckdb"
    assert main(["export", "--curated", str(root), "--duckdb", str(db)]) == 0
    # the table gains a column and day 2 changes; the export follows
    second = pa.table(
        {
            "RemoteUrl": ["c.example"],
            "TopProcesses": pa.array([["svchost.exe"]], pa.list_(pa.string())),
            "date": pa.array([D2], pa.date32()),
            "Devices": pa.array([3], pa.int64()),
        }
    )
    write_deltalake(
        str(table), second, mode="overwrite", predicate=f"date = '{D2}'", schema_mode="merge"
    )
    assert main(["export", "--curated", str(root), "--duckdb", str(db), "--from", str(D2)]) == 0
    rows = duck(db, "SELECT RemoteUrl, TopProcesses, Devices FROM domain_extra ORDER BY 1").rows()
    assert rows == [
        ("a.example", ["msedge.exe", "curl.exe"], None),
        ("b.example", [], None),
        ("c.example", ["svchost.exe"], 3),
    ]
    # partition pruning: with day 1's file broken, a query of day 2 never opens it
    for live in DeltaTable(str(table)).file_uris():
        if f"date={D1}" in live:
            Path(live.removeprefix("file://")).write_bytes(b"broken")
    capsys.readouterr()
    assert (
        sql(root, f"SELECT count(*) AS n FROM domain_extra WHERE date = '{D2}'", "--format", "json")
        == 0
    )
    assert json.loads(capsys.readouterr().out) == [{"n": 1}]
    assert sql(root, "SELECT count(*) FROM domain_extra") == 3  # an input problem, not bad SQL
    err = capsys.readouterr().err
    assert (
        err.startswith("proxylink: error: cannot read table domain_extra: ")
        and err.count("\n") == 1
    )


# --- ddl ---------------------------------------------------------------------------------------


def ddl(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(["ddl", "--curated", str(root), *args]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if not line.startswith("--")]


def _spark_literal(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _trino_literal(text: str) -> str:
    return text[1:-1].replace("''", "'")


LITERAL = {"spark": r"'(?:[^'\\]|\\.)*'", "trino": r"'(?:[^']|'')*'"}


def registered(lines: list[str], dialect: str) -> dict[str, str]:
    """Table name -> location, read back from the statements."""
    lit = LITERAL["trino" if dialect == "trino" else "spark"]
    if dialect == "trino":
        pattern = rf"CALL \"delta\"\.system\.register_table\(schema_name => 'proxylink', table_name => ({lit}), table_location => ({lit})\);"  # noqa: E501
        unquote = _trino_literal
    else:
        pattern = rf"CREATE TABLE IF NOT EXISTS `proxylink`\.`((?:[^`]|``)*)` USING DELTA LOCATION ({lit});"  # noqa: E501
        unquote = _spark_literal
    out = {}
    for line in lines:
        m = re.fullmatch(pattern, line)
        if m:
            name = _trino_literal(m[1]) if dialect == "trino" else m[1].replace("``", "`")
            out[name] = unquote(m[2])
    return out


@pytest.mark.parametrize("dialect", ["spark", "databricks", "trino"])
def test_ddl_registers_every_table_at_its_real_location(
    curated: Path, dialect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ddl(curated, capsys, "--dialect", dialect, "--no-comments")
    assert lines[0].startswith("CREATE SCHEMA IF NOT EXISTS")
    tables = registered(lines, dialect)
    assert set(tables) == {"connection_success", "rejects", "domain_daily", "proxy_coverage"}
    assert len(lines) == 1 + len(tables)
    for name, location in tables.items():
        assert location.startswith("file:///")
        path = Path(location.removeprefix("file://"))
        assert path == (curated / name).resolve()
        assert DeltaTable(str(path)).version() >= 1

    lines = ddl(curated, capsys, "--dialect", dialect, "--location-prefix", "s3://lake/curated/")
    assert registered(lines, dialect) == {
        "connection_success": "s3://lake/curated/connection_success",
        "rejects": "s3://lake/curated/rejects",
        "domain_daily": "s3://lake/curated/domain_daily",
        "proxy_coverage": "s3://lake/curated/proxy_coverage",
    }


def test_ddl_quotes_odd_names_and_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "it's a lake"
    odd = "odd `name's"
    write_deltalake(str(root / odd), pa.table({"x": [1], "date": pa.array([D1], pa.date32())}))
    prefix = "s3://b/x\\y'z"
    for dialect in ("spark", "trino"):
        tables = registered(ddl(root, capsys, "--dialect", dialect), dialect)
        assert tables == {odd: "file://" + (root / odd).resolve().as_posix()}
        tables = registered(
            ddl(root, capsys, "--dialect", dialect, "--location-prefix", prefix), dialect
        )
        assert tables == {odd: f"{prefix}/{odd}"}


def readme_column_docs() -> dict[str, str]:
    text = (ROOT / "docs" / "tables.md").read_text(encoding="utf-8")
    section = text.split("## The curated table: `connection_success`")[1].split("\n### ")[0]
    docs = {}
    for row in re.findall(r"^\| (`.+?) \| .+? \| (.+) \|$", section, flags=re.M):
        for name in re.findall(r"`(\w+)`", row[0]):
            docs[name] = row[1].replace("`", "")
    return docs


def test_column_comments_are_the_readme_docs_and_survive_a_rebuild(
    curated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = readme_column_docs()
    assert {"RemoteUrl", "LinkMethod", "ProxyPort", "date"} <= set(readme)
    for name, doc in readme.items():
        assert COLUMN_DOCS["connection_success"][name] == doc
    lines = ddl(curated, capsys, "--dialect", "databricks")  # comments by default
    doc = readme["LinkMethod"]
    table = "`proxylink`.`connection_success`"
    assert f"ALTER TABLE {table} ALTER COLUMN `LinkMethod` COMMENT '{doc}';" in lines
    trino = ddl(curated, capsys, "--dialect", "trino", "--comments")
    column = '"delta"."proxylink"."connection_success"."LinkMethod"'
    assert f"COMMENT ON COLUMN {column} IS '{doc}';" in trino
    # the comment the fixture wrote before rebuilding day 1 is still in the table's schema
    field = DeltaTable(str(curated / "connection_success")).schema().to_arrow().field("RemoteUrl")
    assert dict(field.metadata) == {b"comment": COMMENT.encode()}


def test_spark_parses_the_spark_and_databricks_statements(
    curated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], spark: Any
) -> None:
    """Spark's own SQL parser (no Delta jars needed to parse) reads every statement back."""
    odd_root, odd = tmp_path / "it's a lake", "odd `name's"
    write_deltalake(str(odd_root / odd), pa.table({"x": [1]}))
    statements = [
        *ddl(curated, capsys, "--dialect", "spark", "--comments"),
        *ddl(curated, capsys, "--dialect", "databricks", "--catalog", "main"),
        *ddl(odd_root, capsys, "--dialect", "spark", "--location-prefix", "s3://b/x\\y"),
        *ddl(odd_root, capsys, "--dialect", "spark"),
    ]
    package = spark._jvm.org.apache.spark.sql.catalyst.parser
    parser = getattr(getattr(package, "CatalystSqlParser$"), "MODULE$")
    plans = [str(parser.parsePlan(s.removesuffix(";")).toString()) for s in statements]
    kinds = [p.split()[0] for p in plans]
    tables = len(open_tables(curated))
    assert tables == 4, "connection_success, rejects and the two summary tables"
    assert kinds.count("'CreateTable") == 2 * tables + 2
    assert kinds.count("'CommentOnTable") == 2 * tables
    assert kinds.count("'AlterColumns") > 40
    assert f"[proxylink, {odd}]" in plans[-1]
    assert f"Some(file://{(odd_root / odd).resolve().as_posix()})" in plans[-1]
    assert f"Some(s3://b/x\\y/{odd})" in plans[-3]
    assert any("[main, proxylink, connection_success]" in p for p in plans)
