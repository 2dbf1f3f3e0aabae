"""The `proxylink` command: what humans and schedulers run.

The CLI is the only place that prints. Every expected failure ends in one line on stderr and an
exit code from `jobs.errors`; a traceback is shown only with --debug.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from proxylink.jobs import logs
from proxylink.jobs.config import Config, load_config
from proxylink.jobs.errors import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VALIDATION,
    ConfigError,
    ProxylinkError,
    printable,
)
from proxylink.jobs.nightly.days import DayOutcome
from proxylink.jobs.nightly.plan import parse_day
from proxylink.jobs.nightly.run import RunReport
from proxylink.transforms.aggregates import SUMMARY_TABLES
from proxylink.transforms.engine import ENGINES, EngineUnavailable
from proxylink.transforms.params import parse_proxy

log = logging.getLogger("proxylink")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line and exit 2, like every usage error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_SHAPES = (
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
    unknown = [n for n in names if n not in _SHAPES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown shape(s) {', '.join(unknown)}; shapes: {', '.join(_SHAPES)}"
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="proxylink", description=__doc__)
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
        help="leave out shapes real exports have (all are on): " + ", ".join(_SHAPES),
    )
    shapes.add_argument("--clean", action="store_true", help="a lake without any of the shapes")

    common = _Parser(add_help=False)
    common.add_argument("--conf", type=Path, default=None, help="YAML config (conf/local.yaml)")
    common.add_argument("--events", type=Path, help="root of the DeviceNetworkEvents table")
    common.add_argument("--curated", type=Path, help="root under which curated tables live")
    common.add_argument(
        "--proxy",
        action="append",
        type=_proxy,
        metavar="IP[:PORT]|CIDR[:PORT]|auto",
        help="a proxy; repeat for more (replaces the config's list); auto: discover them",
    )
    common.add_argument("--tolerance", type=_positive, metavar="SECONDS", help="link tolerance")
    common.add_argument("--engine", choices=list(ENGINES), help="transform engine")
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
        "discover-proxies", help="propose proxies from day D's data, with the evidence"
    )
    found.add_argument("--date", type=_day, required=True, help="the UTC day to look at")
    found.add_argument("--conf", type=Path, default=None, help="YAML config (conf/local.yaml)")
    found.add_argument("--events", type=Path, help="root of the DeviceNetworkEvents table")
    found.add_argument("--engine", choices=list(ENGINES), help="the engine that counts")
    found.add_argument(
        "--format", choices=["text", "json", "yaml"], default="text", help="yaml: a proxies: list"
    )

    _add_access_parsers(sub)

    report = sub.add_parser(
        "report", help="write day D's report: one self-contained HTML page with charts"
    )
    report.add_argument(
        "--date", type=_day, help="the published UTC day (default: yesterday, UTC, like run)"
    )
    report.add_argument("--conf", type=Path, default=None, help="YAML config (conf/local.yaml)")
    report.add_argument("--curated", type=Path, help="root under which curated tables live")
    report.add_argument(
        "--days", type=_count, default=30, help="days of link-rate trend ending at D (30)"
    )
    report.add_argument(
        "--out", type=Path, help="the HTML file (default <curated>/_reports/daily/<D>.html)"
    )
    return parser


def _add_access_parsers(sub: Any) -> None:
    """`sql`, `export` and `ddl`: analysts' access to the published tables."""
    reading = _Parser(add_help=False)
    reading.add_argument("--conf", type=Path, default=None, help="YAML config (for `curated:`)")
    reading.add_argument("--curated", type=Path, help="root under which curated tables live")

    sql = sub.add_parser(
        "sql", parents=[reading], help="run SQL (DuckDB) over the published tables"
    )
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
        "export", parents=[reading], help="write or refresh a DuckDB file for BI tools"
    )
    export.add_argument("--duckdb", type=Path, required=True, metavar="FILE")
    export.add_argument("--from", dest="first", type=_day, help="first date (default: all)")
    export.add_argument("--to", dest="last", type=_day, help="last date (default: all)")
    export.add_argument("--tables", nargs="+", metavar="NAME", help="default: every table")

    ddl = sub.add_parser(
        "ddl", parents=[reading], help="print statements that register the tables in a metastore"
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


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "events", None) is not None:
        out["events"] = str(args.events)
    if args.curated is not None:
        out["curated"] = str(args.curated)
    if args.proxy:
        out["proxies"] = list(args.proxy)
    if args.tolerance is not None:
        out["link"] = {"tolerance_seconds": args.tolerance}
    if getattr(args, "engine", None) is not None:
        out["engine"] = args.engine
    return out


def _progress(step: str) -> None:
    print(f"  … {step}", file=sys.stderr, flush=True)


def _cmd_sample(args: argparse.Namespace) -> int:
    from proxylink.jobs.sample import SampleSpec, Shapes, write_sample

    spec = SampleSpec(
        devices=args.devices,
        start=args.start,
        days=args.days,
        seed=args.seed,
        connections_per_device=args.connections_per_device,
        shapes=Shapes.none() if args.clean else Shapes().without(args.without),
    )
    t0 = time.perf_counter()
    summary = write_sample(args.out, spec, progress=_progress)
    print(
        f"sample lake: {summary.events:,} events, {summary.connections:,} connections, "
        f"{summary.files} files in {time.perf_counter() - t0:.1f}s\n"
        f"  events: {summary.root}\n  truth:  {summary.truth}"
    )
    return EXIT_OK


def _summary(report: RunReport, seconds: float) -> str:
    c = report.counts
    if report.status == "skipped":
        return (
            f"skipped {report.day.isoformat()}: input unchanged since run "
            f"{report.skipped_because} (use --force to rebuild)"
        )
    lines = [
        f"published {report.day.isoformat()} in {seconds:.1f}s (run {report.run_id})",
        f"  rows read for the day   {c['rows_in_day']:>12,}",
        f"  curated connections     {c['curated']:>12,}",
        f"    proxy legs            {c['legs']:>12,}",
        f"      linked by socket    {c['method_socket']:>12,}",
        f"      linked by process   {c['method_process']:>12,}",
        f"      unlinked            {c['method_unlinked']:>12,}"
        f"  ({c['unlinked_ambiguous']:,} ambiguous)",
        f"    evidence only         {c['method_evidence_only']:>12,}",
        f"    direct                {c['method_direct']:>12,}",
        f"  evidence folded         {c['evidence_folded']:>12,}",
        f"  duplicates dropped      {c['duplicate']:>12,}",
        f"  rejected                {c['rejected']:>12,}"
        + (
            "  (" + ", ".join(f"{k} {v:,}" for k, v in report.reject_reasons.items()) + ")"
            if report.reject_reasons
            else ""
        ),
        f"  other rows (not used)   {c['not_connection'] + c['inspection_unmatched']:>12,}",
        _validation_line(report),
        *(
            [f"  proxies:  discovered {', '.join(report.discovered_proxies)}"]
            if report.discovered_proxies
            else []
        ),
        f"  table:    {report.tables['connection_success']}",
        f"  rejects:  {report.tables['rejects']}",
        *[f"  summary:  {report.tables[name]}" for name in SUMMARY_TABLES if name in report.tables],
        f"  manifest: {report.manifest}",
    ]
    if report.validation is not None:
        for warning in report.validation.warnings:
            lines.append(
                f"  warning: {warning.id}: {warning.description} (observed {warning.observed})"
            )
        if report.validation.pages:
            lines.append(f"  report:   {report.validation.pages[0]}")
    for path, why in report.skipped_files:
        lines.append(f"  skipped {printable(path)}: {printable(why)}")
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.days import build_days, exit_code, yesterday

    config = load_config(args.conf, _overrides(args))
    day = args.date or yesterday(datetime.now(UTC))
    lookback = config.nightly.lookback_days if args.lookback is None else args.lookback
    days = [day - timedelta(days=n) for n in range(lookback, -1, -1)]
    print(
        f"proxylink run {', '.join(d.isoformat() for d in days)} (engine {config.engine})",
        file=sys.stderr,
    )

    def show(_: int, outcome: DayOutcome) -> None:
        if outcome.report is not None:
            print(_summary(outcome.report, outcome.seconds), flush=True)
        else:
            _error(f"{outcome.day.isoformat()}: {outcome.message or ''}")

    outcomes = build_days(config, days, force=args.force, on_day=show, progress=_progress)
    return exit_code(outcomes)


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = round(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def _cmd_backfill(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.days import build_days, days_between, exit_code

    if args.last < args.first:
        raise ConfigError(f"--to {args.last} is before --from {args.first}")
    config = load_config(args.conf, _overrides(args))
    days = days_between(args.first, args.last)

    def show(i: int, outcome: DayOutcome) -> None:
        print(
            f"\r{_bar(i + 1, len(days))} {outcome.day.isoformat()} {outcome.outcome}",
            end="\n" if i + 1 == len(days) else "",
            file=sys.stderr,
            flush=True,
        )

    print(_bar(0, len(days)), end="", file=sys.stderr, flush=True)
    outcomes = build_days(config, days, force=args.force, on_day=show)
    print(f"{'date':<12} {'outcome':<18} {'seconds':>8}  detail")
    for o in outcomes:
        detail = (
            printable(o.message.splitlines()[0])
            if o.message
            else (
                f"run {o.report.run_id}"
                if o.report and o.outcome == "published"
                else f"unchanged since run {o.report.skipped_because}"
                if o.report
                else ""
            )
        )
        print(f"{o.day.isoformat():<12} {o.outcome:<18} {o.seconds:>8.1f}  {detail}")
    failed = sum(o.exit_code != EXIT_OK for o in outcomes)
    print(f"{len(outcomes)} days: {len(outcomes) - failed} ok, {failed} failed")
    return exit_code(outcomes)


def _cmd_status(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.days import days_between
    from proxylink.jobs.nightly.status import day_status, known_days

    config = _lenient_config(args)
    _, root = config.require_paths()
    if args.first or args.last:
        days = days_between(args.first or args.last, args.last or args.first)
    else:
        days = known_days(root)
    print(
        f"{'date':<12} {'last run':<18} {'published at':<26} {'rows':>10} {'link rate':>9}  "
        f"{'validation':<22} {'fingerprint':<17} input changed"
    )
    for day in days:
        st = day_status(config, day)
        rate = f"{st.link_rate:.4f}" if st.link_rate is not None else "-"
        rows = f"{st.rows:,}" if st.rows is not None else "-"
        print(
            f"{day.isoformat():<12} {st.last_run:<18} {st.published_at or '-':<26} {rows:>10} "
            f"{rate:>9}  {st.validation or '-':<22} {st.fingerprint or '-':<17} {st.input_changed}"
        )
    return EXIT_OK


def _cmd_maintain(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.maintain import maintain
    from proxylink.jobs.nightly.run import new_run_id

    config = _lenient_config(args)
    done = maintain(config, "maintain-" + new_run_id(datetime.now(UTC)), dry_run=args.dry_run)
    for t in done:
        verb = "would vacuum" if args.dry_run else "vacuumed"
        print(
            f"{t.table}: compacted {t.files_removed} files into {t.files_added}, "
            f"{verb} {t.vacuumed} files and {t.orphans} orphaned, version {t.version}"
        )
    return EXIT_OK


def _lenient_config(args: argparse.Namespace) -> Config:
    """Commands that only read the curated tables need no events path or proxies."""
    config = load_config(args.conf, _overrides(args))
    if config.events is None:
        config = config.model_copy(update={"events": Path(".")})
    if not config.proxies:
        config = config.model_copy(update={"proxies": ("0.0.0.0/32",)})
    return config


def _cmd_validate(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.gate import describe_failure, validate_published

    config = load_config(args.conf, _overrides(args))
    if config.events is None:  # validating needs no input lake
        config = config.model_copy(update={"events": Path(".")})
    report = validate_published(config, args.date)
    if report.pages:
        print(f"  report:   {report.pages[0]}")
    if not report.passed:
        _error(describe_failure(report))
        return EXIT_VALIDATION
    n = len(report.results)
    print(f"{args.date.isoformat()}: passed {n - len(report.warnings)} of {n} expectations")
    for warning in report.warnings:
        print(f"  warning: {warning.id}: {warning.description} (observed {warning.observed})")
    return EXIT_OK


def _cmd_discover(args: argparse.Namespace) -> int:
    import json

    from proxylink.jobs.errors import EXIT_INPUT
    from proxylink.jobs.nightly.discover import as_text, as_yaml, discover_day

    overrides: dict[str, Any] = {}
    if args.events is not None:
        overrides["events"] = str(args.events)
    if args.engine is not None:
        overrides["engine"] = args.engine
    found = discover_day(load_config(args.conf, overrides), args.date)
    if args.format == "json":
        print(json.dumps(found.to_json(), indent=2))
    elif args.format == "yaml":
        print(as_yaml(found))
    else:
        print(as_text(found))
    if not found.proxies:
        _error(
            f"no proxy qualified on {args.date.isoformat()}; "
            "tune `discovery:` (see the near misses) or pin `proxies:`"
        )
        return EXIT_INPUT
    return EXIT_OK


def _curated_root(args: argparse.Namespace) -> Path:
    """The curated root from --curated or the config; the only setting the access commands use."""
    over = {"curated": str(args.curated)} if args.curated is not None else None
    root = load_config(args.conf, over).curated
    if root is None:
        raise ConfigError("no curated path: set `curated:` in the config or pass --curated")
    return root


def _cmd_sql(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from proxylink.jobs.serving.query import run_query

    root = _curated_root(args)
    max_rows = args.max_rows if args.max_rows or args.format != "table" else 50
    if args.out is not None or args.format in ("table", "parquet"):
        width = shutil.get_terminal_size((120, 24)).columns if args.out is None else 200
        result = run_query(root, args.query, args.format, args.out, max_rows, width=width)
        if result.text is not None:
            text = result.text
            if result.truncated:
                text += f"\n(first {result.rows} rows shown; more exist: use --max-rows N)"
            if args.out is not None:
                args.out.write_text(text + "\n", encoding="utf-8")
            else:
                print(text)
        if args.out is not None:
            print(f"wrote {args.out}", file=sys.stderr)
        return EXIT_OK
    with tempfile.TemporaryDirectory(prefix="proxylink-sql-") as tmp:  # csv/json to stdout
        path = Path(tmp) / f"result.{args.format}"
        run_query(root, args.query, args.format, path, max_rows)
        with path.open("rb") as f:
            sys.stdout.flush()
            shutil.copyfileobj(f, sys.stdout.buffer)
            sys.stdout.buffer.flush()
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from proxylink.jobs.serving.export import export_duckdb

    if args.first and args.last and args.last < args.first:
        raise ConfigError(f"--to {args.last} is before --from {args.first}")
    root = _curated_root(args)
    t0 = time.perf_counter()
    report = export_duckdb(root, args.duckdb, args.first, args.last, datetime.now(UTC), args.tables)
    span = f"{args.first or 'first'}..{args.last or 'last'}"
    print(f"exported {span} to {report.target} in {time.perf_counter() - t0:.1f}s")
    print(
        f"  {'table':<24} {'version':>7} {'dates':>6} {'inserted':>12} {'deleted':>12} "
        f"{'in file':>12}"
    )
    for t in report.tables:
        dates = "all" if t.whole_table else f"{t.dates:,}"
        print(
            f"  {t.name:<24} {t.version:>7} {dates:>6} {t.rows_inserted:>12,} "
            f"{t.rows_deleted:>12,} {t.rows_total:>12,}"
        )
    if report.views:
        print(f"  views: {', '.join(report.views)}")
    return EXIT_OK


def _cmd_ddl(args: argparse.Namespace) -> int:
    from proxylink.jobs.serving.ddl import DdlOptions, ddl_notes, ddl_statements
    from proxylink.jobs.serving.tables import open_tables

    tables = open_tables(_curated_root(args))
    comments = args.comments if args.comments is not None else args.dialect == "databricks"
    options = DdlOptions(
        dialect=args.dialect,
        schema=args.schema,
        catalog=args.catalog,
        location_prefix=args.location_prefix,
        comments=comments,
    )
    for note in ddl_notes(tables, options):
        print(f"-- {note}")
    for statement in ddl_statements(tables, options):
        print(statement)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from proxylink.jobs.serving.report import write_report

    overrides = {"curated": str(args.curated)} if args.curated is not None else None
    config = load_config(args.conf, overrides)
    if config.curated is None:
        raise ConfigError("no curated path: set `curated:` in the config or pass --curated")
    from proxylink.jobs.nightly.days import yesterday

    day = args.date or yesterday(datetime.now(UTC))
    print(write_report(config.curated, day, args.days, args.out))
    return EXIT_OK


def _validation_line(report: RunReport) -> str:
    v = report.validation
    if v is None:
        return "  validation: not run"
    n = len(v.results)
    extra = f", {len(v.warnings)} warning(s)" if v.warnings else ""
    return f"  validation: passed {n - len(v.warnings)} of {n} expectations{extra}"


def _cmd_ingest(args: argparse.Namespace) -> int:
    from proxylink.jobs.ingest.landing import FileResult, ingest

    def show(f: FileResult) -> None:
        if f.status == "failed":
            _error(f"{f.source}: {f.message}")
            return
        if f.status == "skipped":
            print(f"skipped  {f.source}: {f.message} (use --force to re-ingest)", flush=True)
            return
        parts = len({Path(o).parent for o in f.outputs})
        print(
            f"ingested {f.source}: {f.records:,} records = {f.written:,} rows "
            f"({parts} partition(s)) + {f.ignored.total():,} ignored + "
            f"{f.quarantined.total():,} quarantined in {f.seconds:.1f}s",
            flush=True,
        )

    t0 = time.perf_counter()
    report = ingest(
        args.source, args.out, force=args.force, batch_rows=args.batch_rows, on_file=show
    )
    ignored, quarantined = report.counter("ignored"), report.counter("quarantined")
    lines = [
        f"{len(report.files)} file(s): {report.total('ingested')} ingested, "
        f"{report.total('skipped')} skipped, {len(report.failed)} failed "
        f"in {time.perf_counter() - t0:.1f}s",
        f"  records read       {report.sum('records'):>12,}",
        f"  rows written       {report.sum('written'):>12,}",
        f"  ignored            {ignored.total():>12,}",
        *(f"    {k:<40} {v:>9,}" for k, v in sorted(ignored.items())),
        f"  quarantined        {quarantined.total():>12,}",
        *(f"    {k:<40} {v:>9,}" for k, v in sorted(quarantined.items())),
        f"  lake:       {args.out / 'DeviceNetworkEvents'}",
        f"  ledger:     {report.ledger_dir}",
    ]
    if quarantined:
        lines.append(f"  quarantine: {report.quarantine_dir}")
    if report.not_sources:
        lines.append(f"  {report.not_sources} other file(s) under --from were not read")
    print("\n".join(lines))
    for f in report.failed:
        print(f"  failed: {f.source}: {f.message}")
    return EXIT_INPUT if report.failed else EXIT_OK


def _error(text: str) -> None:
    """The one way an expected failure is shown: `proxylink: error: ...` on stderr, with the
    control bytes of values from the data escaped (`jobs.errors.printable`)."""
    print(f"proxylink: error: {printable(text)}", file=sys.stderr, flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, which systemd, Airflow and Kubernetes send to stop a job: unwound like Ctrl-C,
    so that staged files are removed and the lock released, and exit 143 (128 + 15)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_format, args.debug)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    handlers = {
        "sample": _cmd_sample,
        "run": _cmd_run,
        "backfill": _cmd_backfill,
        "status": _cmd_status,
        "maintain": _cmd_maintain,
        "validate": _cmd_validate,
        "ingest": _cmd_ingest,
        "discover-proxies": _cmd_discover,
        "sql": _cmd_sql,
        "export": _cmd_export,
        "ddl": _cmd_ddl,
        "report": _cmd_report,
    }
    try:
        return handlers[args.command](args)
    except ProxylinkError as exc:
        _error(str(exc))
        return exc.exit_code
    except EngineUnavailable as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print("proxylink: interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # `proxylink sql ... | head` closed the pipe: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"proxylink: internal error: {type(exc).__name__}: {printable(first)} "
            "(rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
