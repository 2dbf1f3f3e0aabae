"""The `proxylink` command: what humans and schedulers run.

The CLI is the only place that prints. Every expected failure ends in one line on stderr and an
exit code from `jobs.errors`; a traceback is shown only with --debug.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from jobs.config import load_config
from jobs.errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, EXIT_VALIDATION, ProxylinkError
from jobs.plan import parse_day
from jobs.run import RunReport
from transforms.params import parse_proxy

log = logging.getLogger("proxylink")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line and exit 2, like every usage error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _proxy(text: str) -> str:
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


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="proxylink", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
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

    run = sub.add_parser("run", help="build and publish the curated tables for one day")
    run.add_argument("--date", type=_day, required=True, help="the UTC day to build")
    run.add_argument("--conf", type=Path, default=None, help="YAML config (conf/local.yaml)")
    run.add_argument("--events", type=Path, help="root of the DeviceNetworkEvents table")
    run.add_argument("--curated", type=Path, help="root under which curated tables live")
    run.add_argument(
        "--proxy",
        action="append",
        type=_proxy,
        metavar="IP[:PORT]|CIDR[:PORT]",
        help="a proxy; repeat for more (replaces the config's list)",
    )
    run.add_argument("--tolerance", type=_positive, metavar="SECONDS", help="link tolerance")
    run.add_argument("--engine", choices=["polars"], help="transform engine")
    check = sub.add_parser(
        "validate", help="re-validate a published day without rewriting it (exit 1 on failure)"
    )
    check.add_argument("--date", type=_day, required=True, help="the published UTC day")
    check.add_argument("--conf", type=Path, default=None, help="YAML config (conf/local.yaml)")
    check.add_argument("--curated", type=Path, help="root under which curated tables live")
    check.add_argument("--proxy", action="append", type=_proxy, metavar="IP[:PORT]|CIDR[:PORT]")
    check.add_argument("--tolerance", type=_positive, metavar="SECONDS")
    return parser


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
    from jobs.sample import SampleSpec, write_sample

    spec = SampleSpec(
        devices=args.devices,
        start=args.start,
        days=args.days,
        seed=args.seed,
        connections_per_device=args.connections_per_device,
    )
    t0 = time.perf_counter()
    summary = write_sample(args.out, spec, progress=_progress)
    print(
        f"sample lake: {summary.events:,} events, {summary.connections:,} connections, "
        f"{summary.files} files in {time.perf_counter() - t0:.1f}s\n"
        f"  events: {summary.root}\n  truth:  {summary.truth}"
    )
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from jobs.run import run_day

    config = load_config(args.conf, _overrides(args))
    print(f"proxylink run {args.date.isoformat()} (engine {config.engine})", file=sys.stderr)
    t0 = time.perf_counter()
    report = run_day(config, args.date, progress=_progress)
    c = report.counts
    print(
        "\n".join(
            [
                f"published {report.day.isoformat()} in {time.perf_counter() - t0:.1f}s "
                f"(run {report.run_id})",
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
                f"  table:    {report.tables['connection_success']}",
                f"  rejects:  {report.tables['rejects']}",
                f"  manifest: {report.manifest}",
            ]
        )
    )
    if report.validation is not None:
        for warning in report.validation.warnings:
            print(f"  warning: {warning.id}: {warning.description} (observed {warning.observed})")
        if report.validation.pages:
            print(f"  report:   {report.validation.pages[0]}")
    for path, why in report.skipped_files:
        print(f"  skipped corrupt file {path}: {why}", file=sys.stderr)
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from jobs.gate import describe_failure, validate_published

    config = load_config(args.conf, _overrides(args))
    if config.events is None:  # validating needs no input lake
        config = config.model_copy(update={"events": Path(".")})
    report = validate_published(config, args.date)
    if report.pages:
        print(f"  report:   {report.pages[0]}")
    if not report.passed:
        print(f"proxylink: error: {describe_failure(report)}", file=sys.stderr)
        return EXIT_VALIDATION
    n = len(report.results)
    print(f"{args.date.isoformat()}: passed {n - len(report.warnings)} of {n} expectations")
    for warning in report.warnings:
        print(f"  warning: {warning.id}: {warning.description} (observed {warning.observed})")
    return EXIT_OK


def _validation_line(report: RunReport) -> str:
    v = report.validation
    if v is None:
        return "  validation: not run"
    n = len(v.results)
    extra = f", {len(v.warnings)} warning(s)" if v.warnings else ""
    return f"  validation: passed {n - len(v.warnings)} of {n} expectations{extra}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handlers = {"sample": _cmd_sample, "run": _cmd_run, "validate": _cmd_validate}
    try:
        return handlers[args.command](args)
    except ProxylinkError as exc:
        print(f"proxylink: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("proxylink: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"proxylink: internal error: {type(exc).__name__}: {first} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
