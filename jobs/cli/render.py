"""What the `proxylink` command prints: the one place that formats results for humans.

The functions here turn results into text and do no work of their own; `error` and `progress`
write to stderr, so that stdout carries only results (a table, CSV, JSON).
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from proxylink.jobs.errors import EXIT_OK, printable
from proxylink.transforms.aggregates import SUMMARY_TABLES

if TYPE_CHECKING:  # only for the annotations: the commands import what they run
    from proxylink.expectations.runner import ValidationReport
    from proxylink.jobs.ingest.landing import FileResult, IngestReport
    from proxylink.jobs.nightly.days import DayOutcome
    from proxylink.jobs.nightly.maintain import TableMaintenance
    from proxylink.jobs.nightly.run import RunReport
    from proxylink.jobs.nightly.status import DayStatus
    from proxylink.jobs.sample import SampleSummary
    from proxylink.jobs.serving.export import ExportReport


def error(text: str) -> None:
    """The one way an expected failure is shown: `proxylink: error: ...` on stderr, with the
    control bytes of values from the data escaped (`jobs.errors.printable`)."""
    print(f"proxylink: error: {printable(text)}", file=sys.stderr, flush=True)


def progress(step: str) -> None:
    """A long step starting, on stderr."""
    print(f"  … {step}", file=sys.stderr, flush=True)


def sampled(summary: SampleSummary, seconds: float) -> str:
    """`sample`: what was written, and where the lake and its truth are."""
    return (
        f"sample lake: {summary.events:,} events, {summary.connections:,} connections, "
        f"{summary.files} files in {seconds:.1f}s\n"
        f"  events: {summary.root}\n  truth:  {summary.truth}"
    )


def run_summary(report: RunReport, seconds: float) -> str:
    """What `run` prints for one day: the counts that add up, the tables and any warnings."""
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
        validation_line(report),
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


def validation_line(report: RunReport) -> str:
    v = report.validation
    if v is None:
        return "  validation: not run"
    n = len(v.results)
    extra = f", {len(v.warnings)} warning(s)" if v.warnings else ""
    return f"  validation: passed {n - len(v.warnings)} of {n} expectations{extra}"


def bar(done: int, total: int, width: int = 30) -> str:
    filled = round(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def backfill_table(outcomes: list[DayOutcome]) -> str:
    """One line per day of a backfill, then the tally."""
    lines = [f"{'date':<12} {'outcome':<18} {'seconds':>8}  detail"]
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
        lines.append(f"{o.day.isoformat():<12} {o.outcome:<18} {o.seconds:>8.1f}  {detail}")
    failed = sum(o.exit_code != EXIT_OK for o in outcomes)
    lines.append(f"{len(outcomes)} days: {len(outcomes) - failed} ok, {failed} failed")
    return "\n".join(lines)


STATUS_HEADER = (
    f"{'date':<12} {'last run':<18} {'published at':<26} {'rows':>10} {'link rate':>9}  "
    f"{'validation':<22} {'fingerprint':<17} input changed"
)


def status_row(day: date, st: DayStatus) -> str:
    """`status`: the line of one day, under `STATUS_HEADER`."""
    rate = f"{st.link_rate:.4f}" if st.link_rate is not None else "-"
    rows = f"{st.rows:,}" if st.rows is not None else "-"
    return (
        f"{day.isoformat():<12} {st.last_run:<18} {st.published_at or '-':<26} {rows:>10} "
        f"{rate:>9}  {st.validation or '-':<22} {st.fingerprint or '-':<17} {st.input_changed}"
    )


def maintained(done: list[TableMaintenance], dry_run: bool) -> str:
    """`maintain`: what each table's compaction and vacuum did (or would do)."""
    verb = "would vacuum" if dry_run else "vacuumed"
    return "\n".join(
        f"{t.table}: compacted {t.files_removed} files into {t.files_added}, "
        f"{verb} {t.vacuumed} files and {t.orphans} orphaned, version {t.version}"
        for t in done
    )


def validated(day: date, report: ValidationReport) -> str:
    """`validate` of a day that passed: the tally and the warnings."""
    n = len(report.results)
    lines = [f"{day.isoformat()}: passed {n - len(report.warnings)} of {n} expectations"]
    for warning in report.warnings:
        lines.append(
            f"  warning: {warning.id}: {warning.description} (observed {warning.observed})"
        )
    return "\n".join(lines)


def exported(report: ExportReport, span: str, seconds: float) -> str:
    """`export`: per table, the version exported and the rows it changed."""
    lines = [
        f"exported {span} to {report.target} in {seconds:.1f}s",
        f"  {'table':<24} {'version':>7} {'dates':>6} {'inserted':>12} {'deleted':>12} "
        f"{'in file':>12}",
    ]
    for t in report.tables:
        dates = "all" if t.whole_table else f"{t.dates:,}"
        lines.append(
            f"  {t.name:<24} {t.version:>7} {dates:>6} {t.rows_inserted:>12,} "
            f"{t.rows_deleted:>12,} {t.rows_total:>12,}"
        )
    if report.views:
        lines.append(f"  views: {', '.join(report.views)}")
    return "\n".join(lines)


def ingested_file(f: FileResult) -> str:
    """`ingest`: one line for a source file ingested or skipped (failures go to `error`)."""
    if f.status == "skipped":
        return f"skipped  {f.source}: {f.message} (use --force to re-ingest)"
    parts = len({Path(o).parent for o in f.outputs})
    return (
        f"ingested {f.source}: {f.records:,} records = {f.written:,} rows "
        f"({parts} partition(s)) + {f.ignored.total():,} ignored + "
        f"{f.quarantined.total():,} quarantined in {f.seconds:.1f}s"
    )


def ingested(report: IngestReport, lake: Path, seconds: float) -> str:
    """`ingest`: the tally of every file, records in and rows out, and where they went."""
    ignored, quarantined = report.counter("ignored"), report.counter("quarantined")
    lines = [
        f"{len(report.files)} file(s): {report.total('ingested')} ingested, "
        f"{report.total('skipped')} skipped, {len(report.failed)} failed "
        f"in {seconds:.1f}s",
        f"  records read       {report.sum('records'):>12,}",
        f"  rows written       {report.sum('written'):>12,}",
        f"  ignored            {ignored.total():>12,}",
        *(f"    {k:<40} {v:>9,}" for k, v in sorted(ignored.items())),
        f"  quarantined        {quarantined.total():>12,}",
        *(f"    {k:<40} {v:>9,}" for k, v in sorted(quarantined.items())),
        f"  lake:       {lake}",
        f"  ledger:     {report.ledger_dir}",
    ]
    if quarantined:
        lines.append(f"  quarantine: {report.quarantine_dir}")
    if report.not_sources:
        lines.append(f"  {report.not_sources} other file(s) under --from were not read")
    lines.extend(f"  failed: {f.source}: {f.message}" for f in report.failed)
    return "\n".join(lines)
