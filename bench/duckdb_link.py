"""Run the DuckDB baseline linker (bench/duckdb_link.sql) for one day, as the benchmark's rival.

The SQL lives in its own file so that it reads as SQL; this module only fills in the parameters
(the planned files, the day's windows, the tolerance and the proxies) and runs it. Planning goes
through `jobs.nightly.plan.plan_files`, so both contenders read exactly the same files.

    .venv/bin/python bench/duckdb_link.py --date 2026-11-01 --events LAKE/DeviceNetworkEvents \
        --out day.parquet --proxy 10.20.0.5:8080 --proxy 10.20.0.6:3128
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import duckdb

from proxylink.jobs.nightly.plan import parse_day, plan_files
from proxylink.transforms.params import DayWindow, LinkParams, ProxyRule, parse_proxy

SQL_TEMPLATE = Path(__file__).with_name("duckdb_link.sql")
_PLACEHOLDER = re.compile(r"\{\{\w+\}\}")


def _literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _ts(value: datetime) -> str:
    """Text of a UTC instant that DuckDB parses as a TIMESTAMPTZ."""
    return value.isoformat(sep=" ")


def proxy_predicate(proxies: Sequence[ProxyRule]) -> str:
    """SQL that is true where (`_ip`, `RemotePort`) is a configured proxy.

    Only single addresses are supported: CIDR rules would need the inet extension, and the
    benchmark configures two addresses.
    """
    if not proxies:
        raise ValueError("at least one proxy is needed")
    terms = []
    for rule in proxies:
        if not rule.is_single_address:
            raise ValueError(f"proxy {rule}: the DuckDB baseline supports single addresses only")
        ip = _literal(str(rule.net.network_address))
        terms.append(
            f"_ip = {ip}" if rule.port is None else f"(_ip = {ip} AND RemotePort = {rule.port})"
        )
    return "(" + " OR ".join(terms) + ")"


def build_sql(
    files: Sequence[Path],
    window: DayWindow,
    params: LinkParams,
    out: Path,
    template: str | None = None,
) -> str:
    """The baseline script with every placeholder filled in."""
    if not files:
        raise ValueError("no input files")
    values = {
        "files": "[" + ", ".join(_literal(str(f)) for f in files) + "]",
        "context_start": _ts(window.context_start),
        "context_end": _ts(window.context_end),
        "day_start": _ts(window.start),
        "day_end": _ts(window.end),
        "tolerance_us": str(params.tolerance_ms * 1000),
        "to_proxy": proxy_predicate(params.proxies),
        "out": str(out).replace("'", "''"),
    }
    sql = SQL_TEMPLATE.read_text(encoding="utf-8") if template is None else template
    for name, value in values.items():
        sql = sql.replace("{{" + name + "}}", value)
    left = _PLACEHOLDER.search(sql)
    if left:
        raise ValueError(f"unfilled placeholder {left.group(0)}")
    return sql


def run(events: Path, day: date, out: Path, params: LinkParams) -> list[Path]:
    """Plan day D's files, run the script with DuckDB's default settings; return the files read."""
    window = DayWindow.for_day(day, params)
    files = [f.path for f in plan_files(events, window, params)]
    sql = build_sql(files, window, params, out)
    with duckdb.connect() as con:
        con.execute(sql)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", type=parse_day, required=True)
    parser.add_argument("--events", type=Path, required=True, help="DeviceNetworkEvents root")
    parser.add_argument("--out", type=Path, required=True, help="output Parquet file")
    parser.add_argument("--proxy", action="append", type=parse_proxy, required=True)
    parser.add_argument("--tolerance", type=float, default=5.0, help="seconds")
    parser.add_argument("--clock-skew", type=float, default=300.0, help="seconds")
    parser.add_argument("--print-sql", action="store_true", help="print the script, do not run")
    args = parser.parse_args(argv)
    params = LinkParams(
        proxies=tuple(args.proxy),
        tolerance_ms=round(args.tolerance * 1000),
        clock_skew_ms=round(args.clock_skew * 1000),
    )
    if args.print_sql:
        window = DayWindow.for_day(args.date, params)
        files = [f.path for f in plan_files(args.events, window, params)]
        print(build_sql(files, window, params, args.out))
        return 0
    files = run(args.events, args.date, args.out, params)
    print(f"duckdb baseline: {len(files)} files -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
