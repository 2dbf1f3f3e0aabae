"""The expectations gate between a run's staged files and their publication.

A run publishes only if no critical expectation fails on what it staged; `proxylink validate`
re-runs the same suites on a published day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from proxylink.expectations.profiles import (
    curated_profile,
    example_filters,
    example_rows,
    summary_profiles,
)
from proxylink.expectations.runner import ValidationReport, validate
from proxylink.expectations.suites import (
    CURATED_SUITE,
    INPUT_RATES,
    INPUT_SUITE,
    SuiteSettings,
    input_limit,
)
from proxylink.jobs.config import Config
from proxylink.jobs.errors import InputError, ValidationFailed, printable
from proxylink.jobs.nightly import publish
from proxylink.jobs.nightly.discover import recorded_proxies
from proxylink.jobs.nightly.manifest import latest_published_manifest
from proxylink.jobs.nightly.publish import CURATED_TABLE, REJECTS_TABLE
from proxylink.jobs.serving.tables import scan
from proxylink.jobs.timing import Timer
from proxylink.transforms import schema as s
from proxylink.transforms.aggregates import SUMMARY_TABLES
from proxylink.transforms.engine import DayResult
from proxylink.transforms.params import DayWindow, ProxyRule


@dataclass(frozen=True)
class Gate:
    """What the gate needs of the configuration for one day: the suites' settings, the proxies
    (the curated profile tells proxied rows by them) and the folder of the Data Docs."""

    settings: SuiteSettings
    proxies: tuple[ProxyRule, ...]
    reports: Path

    @classmethod
    def of(cls, config: Config, window: DayWindow) -> Gate:
        params = config.link_params()
        curated_root = config.curated_root()
        settings = config.expectations.settings(window, params.tolerance_ms)
        return cls(settings, params.proxies, reports_dir(curated_root))


def publish_gated(
    gate: Gate,
    run_id: str,
    staged: publish.Staged,
    out: DayResult,
    timer: Timer | None = None,
    run_time: datetime | None = None,
) -> tuple[ValidationReport, dict[str, int]]:
    """Validate the staged files and commit them only if no critical expectation fails.

    `run_time` is when the run started (now if not given); the validation reports carry it.

    On a critical failure the staged files are removed, the tables keep their current version
    and ValidationFailed (exit code 1) says which expectations failed, with example rows.
    """
    timer = timer or Timer(None)
    with timer.step("validate"):
        validation = validate_staged(gate, run_id, staged, out, run_time or datetime.now(UTC))
    if not validation.passed:
        examples = failure_examples(gate, validation, staged, out)
        staged.discard()
        raise ValidationFailed(describe_failure(validation, examples), validation)
    with timer.step("publish"):
        return validation, staged.commit()


def validate_staged(
    gate: Gate,
    run_id: str,
    staged: publish.Staged,
    out: DayResult,
    run_time: datetime,
) -> ValidationReport:
    """Run the suites on what this run is about to publish: input, connection_success and,
    when staged, the two summary tables."""
    rejects_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in staged.files(REJECTS_TABLE))
    staged_rows = publish.staged_rows(staged.files(CURATED_TABLE))
    link_rate = float(out.link_stats.get("link_rate_devices_with_evidence", 0.0))
    curated = curated_profile(staged_rows, gate.proxies, out.counts, rejects_rows, link_rate)
    profiles = {INPUT_SUITE: out.input_profile, CURATED_SUITE: curated}
    summaries: dict[str, pl.LazyFrame] = {
        name: pl.scan_parquet(staged.files(name))
        for name in SUMMARY_TABLES
        if name in staged.tables
    }
    profiles |= summary_profiles(summaries, curated, out.counts, gate.settings)
    return validate(profiles, gate.settings, gate.reports, run_id, run_time)


def failure_examples(
    gate: Gate,
    validation: ValidationReport,
    staged: publish.Staged,
    out: DayResult,
) -> list[str]:
    """For each failed check, what broke it, formatted for the error message: the input files
    above a rule's bound, or a few staged rows of the table it checks."""
    settings = gate.settings
    filters = example_filters(settings, gate.proxies)
    rates = {check_id: (column, limit) for check_id, _, column, limit in INPUT_RATES}
    lines: list[str] = []
    for failed in validation.critical_failures:
        if failed.id in rates:
            column, threshold = rates[failed.id]
            bound = input_limit(settings, threshold)
            over = out.input_profile.filter(pl.col(column) > bound).sort(column, descending=True)
            shown = [f"{r['file']} ({r[column]:.2%})" for r in over.head(5).iter_rows(named=True)]
            more = f" and {over.height - 5} more" if over.height > 5 else ""
            lines.append(
                f"  files over the {threshold} of {bound:.2%} for {failed.id}: "
                + ", ".join(shown)
                + more
            )
            continue
        table, _, _ = failed.id.partition(".")
        if failed.id not in filters or not staged.files(table):
            continue
        examples = example_rows(pl.scan_parquet(staged.files(table)), *filters[failed.id])
        lines.append(f"  example rows for {failed.id}:")
        for row in examples.iter_rows(named=True):
            lines.append("    " + ", ".join(f"{k}={_show(v)}" for k, v in row.items()))
    return lines


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else printable(str(value))


def reports_dir(curated_root: Path) -> Path:
    """The known folder of the Data Docs: `<curated>/_reports/validation/`."""
    return curated_root / "_reports" / "validation"


def describe_failure(report: ValidationReport, examples: list[str] | None = None) -> str:
    """The one-paragraph message a failed validation ends with."""
    if report.error is not None:
        return f"validation could not run ({report.error}); nothing was published"
    lines = ["critical expectations failed; nothing was published:"]
    for r in report.critical_failures:
        # A verdict column's False says nothing; the example lines show the offending rows.
        shown = ", ".join(repr(v) for v in r.unexpected[:3] if not isinstance(v, bool))
        lines.append(
            f"  {r.id}: {r.description} (observed {r.observed}"
            + (f"; e.g. {shown}" if shown else "")
            + ")"
        )
    lines.extend(examples or [])
    if report.pages:
        lines.append(f"  report: {report.pages[0]}")
    return "\n".join(lines)


def validate_published(config: Config, day: date, now: datetime | None = None) -> ValidationReport:
    """Re-run the suites on the published partition D, without rewriting anything.

    The input suite uses the input profile its publishing run recorded; the other suites are
    computed afresh from the tables, read through the Delta log.
    """
    curated_root = config.curated_root()
    config.require_proxies()  # the curated suite checks the proxied rows by them
    manifest = latest_published_manifest(curated_root, day)
    if config.proxies_auto:  # the proxies that day was published with
        config = config.with_proxies(recorded_proxies(manifest))
    params = config.link_params()
    window = DayWindow.for_day(day, params)
    date_filter = pl.col(s.PARTITION_DATE) == day
    try:
        rows = scan(curated_root, CURATED_TABLE).filter(date_filter).drop(s.PARTITION_DATE)
        rejects = scan(curated_root, REJECTS_TABLE).filter(date_filter)
        rejects_rows = rejects.select(pl.len()).collect().item()
    except Exception as exc:
        raise InputError(f"cannot read the published tables under {curated_root}: {exc}") from None
    counts = manifest["counts"]
    link_rate = float(manifest["link_stats"].get("link_rate_devices_with_evidence", 0.0))
    gate = Gate.of(config, window)
    settings = gate.settings
    curated = curated_profile(rows, gate.proxies, counts, rejects_rows, link_rate)
    profiles = {INPUT_SUITE: pl.DataFrame(manifest["input_profile"]), CURATED_SUITE: curated}
    # Days published before the summary tables existed have none to check.
    recorded = manifest.get("tables", {})
    try:
        summaries: dict[str, pl.LazyFrame] = {
            name: scan(curated_root, name).filter(date_filter)
            for name in SUMMARY_TABLES
            if name in recorded
        }
        profiles |= summary_profiles(summaries, curated, counts, settings)
    except Exception as exc:
        raise InputError(f"cannot read the summary tables under {curated_root}: {exc}") from None
    when = now or datetime.now(UTC)
    run_name = "validate-" + when.strftime("%Y%m%dT%H%M%SZ")
    return validate(profiles, settings, gate.reports, run_name, when)
