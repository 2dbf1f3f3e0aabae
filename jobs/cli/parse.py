"""The `proxylink` command line: commands, options and the checks on their values.

Parsing only: no command runs here. A bad value is one line and exit 2, like every usage error.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

from proxylink.jobs.config import Config, load_config
from proxylink.jobs.errors import EXIT_USAGE
from proxylink.jobs.nightly.plan import parse_day
from proxylink.transforms.engine import ENGINES
from proxylink.transforms.params import parse_proxy


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line and exit 2, like every usage error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SHAPES = (
    "plain_http",
    "keepalive_hosts",
    "portless_np",
    "target_ip_np",
    "target_ip_portless",
    "np_throttle",
    "port_pool",
    "sensor_skew",
    "late_evidence",
    "mapped_sockets",
    "url_forms",
    "connect_port",
    "schema_drift",
    "log_analytics",
)  # fmt: skip  (jobs.sample.Shapes; importing it here would load numpy for every command)


def _shape_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown shape(s) {', '.join(unknown)}; shapes: {', '.join(SHAPES)}"
        )
    return names


def _proxy(text: str) -> str:
    if text == "auto":  # discover each day's proxies (see discover-proxies)
        return text
    try:
        parse_proxy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _count_or_zero(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


DESCRIPTION = (
    "Link Defender DeviceNetworkEvents proxy connections to their real destinations and "
    "publish the curated tables. Every expected failure is one line on stderr and an exit code "
    "(see docs/operations.md); --debug shows tracebacks."
)


def _option(flag: str) -> _Parser:
    """A parent parser holding one option that several commands share, declared once."""
    one = _Parser(add_help=False)
    if flag == "--conf":
        one.add_argument("--conf", type=Path, default=None, help="YAML config (conf/local.yaml)")
    elif flag == "--events":
        one.add_argument("--events", type=Path, help="root of the DeviceNetworkEvents table")
    elif flag == "--curated":
        one.add_argument("--curated", type=Path, help="root under which curated tables live")
    else:
        one.add_argument("--engine", choices=list(ENGINES), help="the engine: polars or spark")
    return one


def build_parser() -> argparse.ArgumentParser:
    """Every command and option; argument types check values as they are parsed (exit 2)."""
    parser = _Parser(prog="proxylink", description=DESCRIPTION)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log lines on stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sample = sub.add_parser("sample", help="write a generated sample lake with ground truth")
    sample.add_argument("--out", type=Path, required=True, help="folder for the lake")
    sample.add_argument("--devices", type=_count, default=200)
    sample.add_argument("--start", type=_day, default=date(2026, 11, 1), help="first day")
    sample.add_argument("--days", type=_count, default=1)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument(
        "--connections-per-device", type=_count, default=120, help="mean per device per day"
    )
    shapes = sample.add_mutually_exclusive_group()
    shapes.add_argument(
        "--without",
        type=_shape_names,
        default=[],
        metavar="SHAPE[,SHAPE]",
        help="leave out shapes real exports have (all are on): " + ", ".join(SHAPES),
    )
    shapes.add_argument("--clean", action="store_true", help="a lake without any of the shapes")

    conf, events, curated, engine = (
        _option("--conf"),
        _option("--events"),
        _option("--curated"),
        _option("--engine"),
    )
    common = _Parser(add_help=False, parents=[conf, events, curated, engine])
    common.add_argument(
        "--proxy",
        action="append",
        type=_proxy,
        metavar="IP[:PORT]|CIDR[:PORT]|auto",
        help="a proxy; repeat for more (replaces the config's list); auto: discover them",
    )
    common.add_argument("--tolerance", type=_positive, metavar="SECONDS", help="link tolerance")
    building = _Parser(add_help=False)
    building.add_argument(
        "--force", action="store_true", help="rebuild days whose input did not change"
    )

    run = sub.add_parser(
        "run", parents=[common, building], help="build and publish day D (default: yesterday)"
    )
    run.add_argument("--date", type=_day, help="the UTC day to build (default: yesterday, UTC)")
    run.add_argument(
        "--lookback",
        type=_count_or_zero,
        help="also rebuild the N days before, for late files (default: nightly.lookback_days)",
    )

    backfill = sub.add_parser(
        "backfill", parents=[common, building], help="build a range of days, resumably"
    )
    backfill.add_argument("--from", dest="first", type=_day, required=True)
    backfill.add_argument("--to", dest="last", type=_day, required=True)

    status = sub.add_parser("status", parents=[common], help="what is published, per day")
    status.add_argument("--from", dest="first", type=_day)
    status.add_argument("--to", dest="last", type=_day)

    maintain = sub.add_parser(
        "maintain", parents=[common], help="compact small files and vacuum old ones"
    )
    maintain.add_argument("--dry-run", action="store_true", help="list what vacuum would delete")

    check = sub.add_parser(
        "validate",
        parents=[common],
        help="re-validate a published day without rewriting it (exit 1 on failure)",
    )
    check.add_argument("--date", type=_day, required=True, help="the published UTC day")

    ingest = sub.add_parser(
        "ingest",
        help="turn Defender Streaming API exports (JSON lines, Avro capture) into the lake",
    )
    ingest.add_argument(
        "--from", dest="source", type=Path, required=True, help="a file, or a folder searched"
    )
    ingest.add_argument(
        "--out", type=Path, required=True, help="lake root; writes <out>/DeviceNetworkEvents/"
    )
    ingest.add_argument("--force", action="store_true", help="re-ingest unchanged files too")
    ingest.add_argument(
        "--batch-rows", type=_count, default=50_000, help="rows held in memory before writing"
    )

    found = sub.add_parser(
        "discover-proxies",
        parents=[conf, events, engine],
        help="propose proxies from day D's data, with the evidence",
    )
    found.add_argument("--date", type=_day, required=True, help="the UTC day to look at")
    found.add_argument(
        "--format", choices=["text", "json", "yaml"], default="text", help="yaml: a proxies: list"
    )

    _add_access_parsers(sub, [conf, curated])

    report = sub.add_parser(
        "report",
        parents=[conf, curated],
        help="write day D's report: one self-contained HTML page with charts",
    )
    report.add_argument(
        "--date", type=_day, help="the published UTC day (default: yesterday, UTC, like run)"
    )
    report.add_argument(
        "--days", type=_count, default=30, help="days of link-rate trend ending at D (30)"
    )
    report.add_argument(
        "--out", type=Path, help="the HTML file (default <curated>/_reports/daily/<D>.html)"
    )
    return parser


def _add_access_parsers(sub: Any, reading: list[_Parser]) -> None:
    """`sql`, `export` and `ddl`: analysts' access to the published tables."""

    sql = sub.add_parser("sql", parents=reading, help="run SQL (DuckDB) over the published tables")
    sql.add_argument(
        "query", help='e.g. "SELECT LinkMethod, count(*) FROM connection_success GROUP BY ALL"'
    )
    sql.add_argument(
        "--format",
        choices=["table", "csv", "json", "parquet"],
        default="table",
        help="default: table",
    )
    sql.add_argument("--out", type=Path, help="write the result to FILE instead of stdout")
    sql.add_argument(
        "--max-rows",
        type=_count,
        help="at most N rows (default: 50 for --format table, all otherwise)",
    )

    export = sub.add_parser(
        "export", parents=reading, help="write or refresh a DuckDB file for BI tools"
    )
    export.add_argument("--duckdb", type=Path, required=True, metavar="FILE")
    export.add_argument("--from", dest="first", type=_day, help="first date (default: all)")
    export.add_argument("--to", dest="last", type=_day, help="last date (default: all)")
    export.add_argument("--tables", nargs="+", metavar="NAME", help="default: every table")

    ddl = sub.add_parser(
        "ddl", parents=reading, help="print statements that register the tables in a metastore"
    )
    ddl.add_argument("--dialect", choices=["spark", "databricks", "trino"], required=True)
    ddl.add_argument("--catalog", help="catalog (Trino: the Delta connector's, default delta)")
    ddl.add_argument("--schema", default="proxylink", help="schema/database (default proxylink)")
    ddl.add_argument(
        "--location-prefix",
        metavar="URI",
        help="the curated root as the cluster sees it, e.g. s3://bucket/curated",
    )
    ddl.add_argument(
        "--comments",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also comment tables and columns (default: on for databricks)",
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives, as config overrides (flags beat `conf/*.yaml`)."""
    out: dict[str, Any] = {}
    if getattr(args, "events", None) is not None:
        out["events"] = str(args.events)
    if getattr(args, "curated", None) is not None:
        out["curated"] = str(args.curated)
    if getattr(args, "proxy", None):
        out["proxies"] = list(args.proxy)
    if getattr(args, "tolerance", None) is not None:
        out["link"] = {"tolerance_seconds": args.tolerance}
    if getattr(args, "engine", None) is not None:
        out["engine"] = args.engine
    return out


def config_from(args: argparse.Namespace) -> Config:
    """The command's configuration: `--conf` (or the defaults) with the flags applied on top."""
    return load_config(args.conf, overrides(args))
