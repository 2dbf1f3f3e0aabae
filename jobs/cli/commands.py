"""What each `proxylink` command does: parsed arguments in, an exit code out.

Each command loads its configuration (`parse.config_from`), calls the jobs that do the work and
prints through `render`. The jobs are imported inside the commands, so a command loads only
what it uses (neither Spark nor great-expectations for `--help`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from proxylink.jobs.cli import render
from proxylink.jobs.cli.parse import config_from
from proxylink.jobs.errors import EXIT_INPUT, EXIT_OK, EXIT_VALIDATION, ConfigError

if TYPE_CHECKING:
    from proxylink.jobs.nightly.days import DayOutcome


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
    summary = write_sample(args.out, spec, progress=render.progress)
    print(render.sampled(summary, time.perf_counter() - t0))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.days import build_days, exit_code, yesterday

    config = config_from(args)
    day = args.date or yesterday(datetime.now(UTC))
    lookback = config.nightly.lookback_days if args.lookback is None else args.lookback
    days = [day - timedelta(days=n) for n in range(lookback, -1, -1)]
    print(
        f"proxylink run {', '.join(d.isoformat() for d in days)} (engine {config.engine})",
        file=sys.stderr,
    )

    def show(_: int, outcome: DayOutcome) -> None:
        if outcome.report is not None:
            print(render.run_summary(outcome.report, outcome.seconds), flush=True)
        else:
            render.error(f"{outcome.day.isoformat()}: {outcome.message or ''}")

    outcomes = build_days(config, days, force=args.force, on_day=show, progress=render.progress)
    return exit_code(outcomes)


def _cmd_backfill(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.days import build_days, days_between, exit_code

    if args.last < args.first:
        raise ConfigError(f"--to {args.last} is before --from {args.first}")
    config = config_from(args)
    days = days_between(args.first, args.last)

    def show(i: int, outcome: DayOutcome) -> None:
        print(
            f"\r{render.bar(i + 1, len(days))} {outcome.day.isoformat()} {outcome.outcome}",
            end="\n" if i + 1 == len(days) else "",
            file=sys.stderr,
            flush=True,
        )

    print(render.bar(0, len(days)), end="", file=sys.stderr, flush=True)
    outcomes = build_days(config, days, force=args.force, on_day=show)
    print(render.backfill_table(outcomes))
    return exit_code(outcomes)


def _cmd_status(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.days import days_between
    from proxylink.jobs.nightly.status import day_status, known_days

    config = config_from(args)
    root = config.curated_root()
    if args.first or args.last:
        days = days_between(args.first or args.last, args.last or args.first)
    else:
        days = known_days(root)
    print(render.STATUS_HEADER)
    for day in days:  # each row as soon as it is known: a slow day does not hold the others
        print(render.status_row(day, day_status(config, day)), flush=True)
    return EXIT_OK


def _cmd_maintain(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.maintain import maintain
    from proxylink.jobs.nightly.run import new_run_id

    config = config_from(args)
    done = maintain(config, "maintain-" + new_run_id(datetime.now(UTC)), dry_run=args.dry_run)
    if done:
        print(render.maintained(done, args.dry_run))
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from proxylink.jobs.nightly.gate import describe_failure, validate_published

    report = validate_published(config_from(args), args.date)
    if report.pages:
        print(f"  report:   {report.pages[0]}")
    if not report.passed:
        render.error(describe_failure(report))
        return EXIT_VALIDATION
    print(render.validated(args.date, report))
    return EXIT_OK


def _cmd_discover(args: argparse.Namespace) -> int:
    import json

    from proxylink.jobs.nightly.discover import as_text, as_yaml, discover_day

    found = discover_day(config_from(args), args.date)
    if args.format == "json":
        print(json.dumps(found.to_json(), indent=2))
    elif args.format == "yaml":
        print(as_yaml(found))
    else:
        print(as_text(found))
    if not found.proxies:
        render.error(
            f"no proxy qualified on {args.date.isoformat()}; "
            "tune `discovery:` (see the near misses) or pin `proxies:`"
        )
        return EXIT_INPUT
    return EXIT_OK


def _cmd_sql(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from proxylink.jobs.serving.query import run_query

    root = config_from(args).curated_root()
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
    root = config_from(args).curated_root()
    t0 = time.perf_counter()
    report = export_duckdb(root, args.duckdb, args.first, args.last, datetime.now(UTC), args.tables)
    span = f"{args.first or 'first'}..{args.last or 'last'}"
    print(render.exported(report, span, time.perf_counter() - t0))
    return EXIT_OK


def _cmd_ddl(args: argparse.Namespace) -> int:
    from proxylink.jobs.serving.ddl import DdlOptions, ddl_notes, ddl_statements
    from proxylink.jobs.serving.tables import open_tables

    tables = open_tables(config_from(args).curated_root())
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
    from proxylink.jobs.nightly.days import yesterday
    from proxylink.jobs.serving.report import write_report

    root = config_from(args).curated_root()
    day = args.date or yesterday(datetime.now(UTC))
    print(write_report(root, day, args.days, args.out))
    return EXIT_OK


def _cmd_ingest(args: argparse.Namespace) -> int:
    from proxylink.jobs.ingest.landing import FileResult, ingest

    def show(f: FileResult) -> None:
        if f.status == "failed":
            render.error(f"{f.source}: {f.message}")
        else:
            print(render.ingested_file(f), flush=True)

    t0 = time.perf_counter()
    report = ingest(
        args.source, args.out, force=args.force, batch_rows=args.batch_rows, on_file=show
    )
    print(render.ingested(report, args.out / "DeviceNetworkEvents", time.perf_counter() - t0))
    return EXIT_INPUT if report.failed else EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
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
