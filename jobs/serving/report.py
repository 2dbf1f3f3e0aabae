"""Gathers one day's figures for the daily report from the published tables and manifest.

Everything is read through the Delta log (`scan_delta`), never by globbing Parquet files, so the
report shows exactly what readers of the tables see. The page itself is drawn by
`jobs.serving.report_html` from the plain values collected here.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
from deltalake import DeltaTable

from proxylink.jobs.errors import InputError, OutputError
from proxylink.jobs.nightly.manifest import last_published
from proxylink.jobs.nightly.publish import CURATED_TABLE
from proxylink.jobs.serving.report_html import (
    BlindDevice,
    DailyReport,
    DomainRow,
    TrendPoint,
    ValidationSummary,
    render,
)
from proxylink.jobs.serving.tables import scan
from proxylink.transforms import schema as s
from proxylink.transforms.aggregates import DOMAIN_DAILY_TABLE, PROXY_COVERAGE_TABLE

log = logging.getLogger(__name__)

TOP_DOMAINS = 20
MAX_BLIND_LISTED = 1000  # the page stays small; the table has them all


def default_path(curated_root: Path, day: date) -> Path:
    """`<curated>/_reports/daily/<D>.html`, beside the validation reports."""
    return curated_root / "_reports" / "daily" / f"{day.isoformat()}.html"


def write_report(curated_root: Path, day: date, days: int = 30, out: Path | None = None) -> Path:
    """Render day D's report and write it atomically; returns its path."""
    path = out or default_path(curated_root, day)
    if path.is_dir():  # --out DIR: the page goes into it, under the day's name
        path = path / f"{day.isoformat()}.html"
    data = gather(curated_root, day, days, report_dir=path.parent)
    page = render(data)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # never leave a half-written page behind
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write report {path}: {exc.strerror or exc}") from None
    log.info("wrote daily report %s", path)
    return path


def gather(
    curated_root: Path,
    day: date,
    days: int = 30,
    report_dir: Path | None = None,
    now: datetime | None = None,
) -> DailyReport:
    """Day D's figures; InputError (exit 3) when D has no published run."""
    manifest = last_published(curated_root, day)
    if manifest is None:
        raise InputError(f"no published run for {day.isoformat()} under {curated_root}")
    report_dir = report_dir or default_path(curated_root, day).parent
    published = manifest.get("tables", {})
    missing: list[str] = []

    cs = _day_rows(curated_root / CURATED_TABLE, day)
    by_method, by_source, proxied, devices_cs = _curated_figures(cs)

    status_counts = blind = blind_total = None
    devices, from_coverage = devices_cs, False
    if PROXY_COVERAGE_TABLE in published:
        coverage = _day_rows(curated_root / PROXY_COVERAGE_TABLE, day).collect()
        status_counts, blind, blind_total = _coverage_figures(coverage)
        devices, from_coverage = coverage.height, True
    else:
        missing.append(
            f"This day was published before the proxy_coverage table existed (run "
            f"{manifest['run_id']}): device coverage and blind devices are missing. Rebuild it "
            f"with `proxylink run --date {day.isoformat()} --force` to add them."
        )
    top = None
    if DOMAIN_DAILY_TABLE in published:
        top = _top_domains(_day_rows(curated_root / DOMAIN_DAILY_TABLE, day))
    else:
        missing.append(
            "This day was published before the domain_daily table existed: the top domains "
            "are missing."
        )
    trend = _trend(curated_root / PROXY_COVERAGE_TABLE, day, days)
    if not any(p.legs is not None for p in trend):
        missing.append(f"proxy_coverage has no data in the {days} days ending {day.isoformat()}.")

    return DailyReport(
        day=day,
        run_id=str(manifest.get("run_id", "?")),
        published_at=str(manifest.get("finished_at", "?")),
        connections=sum(by_method.values()),
        proxied=proxied,
        link_methods=by_method,
        evidence_sources=by_source,
        devices=devices,
        devices_from_coverage=from_coverage,
        validation=_validation(manifest, curated_root, report_dir),
        trend=trend,
        status_counts=status_counts,
        blind_devices=blind,
        blind_total=blind_total,
        top_domains=top,
        missing=tuple(missing),
        generated_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
    )


def _scan(table: Path) -> pl.LazyFrame:
    try:
        return scan(table.parent, table.name)
    except Exception as exc:
        raise InputError(f"cannot read the Delta table {table}: {_first_line(exc)}") from None


def _day_rows(table: Path, day: date) -> pl.LazyFrame:
    return _scan(table).filter(pl.col(s.PARTITION_DATE) == day)


def _collect(frame: pl.LazyFrame, what: str) -> pl.DataFrame:
    try:
        return frame.collect()
    except Exception as exc:
        raise InputError(f"cannot read {what}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _curated_figures(cs: pl.LazyFrame) -> tuple[dict[str, int], dict[str, int], int, int]:
    """Rows per LinkMethod, linked legs per EvidenceSource, proxied rows, distinct devices."""
    groups = _collect(
        cs.group_by(s.LINK_METHOD, s.EVIDENCE_SOURCE, s.IS_PROXIED).agg(pl.len().alias("n")),
        "connection_success",
    )
    devices = _collect(cs.select(pl.col(s.DEVICE_ID).n_unique()), "connection_success").item()
    by_method: dict[str, int] = {}
    by_source: dict[str, int] = {}
    proxied = 0
    for row in groups.iter_rows(named=True):
        method, n = row[s.LINK_METHOD] or "(null)", int(row["n"])
        by_method[method] = by_method.get(method, 0) + n
        if row[s.IS_PROXIED]:
            proxied += n
        if method in ("socket", "process"):
            source = row[s.EVIDENCE_SOURCE] or "(none)"
            by_source[source] = by_source.get(source, 0) + n
    return by_method, by_source, proxied, int(devices or 0)


def _coverage_figures(
    coverage: pl.DataFrame,
) -> tuple[dict[str, int], tuple[BlindDevice, ...], int]:
    counts = {
        str(k): int(v) for k, v in coverage.group_by("Status").len().iter_rows() if k is not None
    }
    blind = coverage.filter(pl.col("Status") == "blind").sort(
        ["ProxyLegs", "DeviceName", s.DEVICE_ID], descending=[True, False, False], nulls_last=True
    )
    listed = tuple(
        BlindDevice(
            device_name=r[s.DEVICE_NAME],
            device_id=r[s.DEVICE_ID],
            proxy_legs=int(r["ProxyLegs"]),
            connections=int(r["Connections"]),
        )
        for r in blind.head(MAX_BLIND_LISTED).iter_rows(named=True)
    )
    return counts, listed, blind.height


def _top_domains(domains: pl.LazyFrame) -> tuple[DomainRow, ...]:
    top = _collect(
        domains.filter(pl.col("ProxiedConnections") > 0)
        .sort(
            ["ProxiedConnections", "Devices", s.REMOTE_URL],
            descending=[True, True, False],
        )
        .head(TOP_DOMAINS),
        "domain_daily",
    )
    return tuple(
        DomainRow(
            domain=r[s.REMOTE_URL],
            proxied=int(r["ProxiedConnections"]),
            connections=int(r["Connections"]),
            devices=int(r["Devices"]),
        )
        for r in top.iter_rows(named=True)
    )


def _trend(table: Path, day: date, days: int) -> tuple[TrendPoint, ...]:
    """Sum of linked / sum of legs per day over `days` days ending D; absent days stay None."""
    first = day - timedelta(days=days - 1)
    sums: dict[date, tuple[int, int]] = {}
    if DeltaTable.is_deltatable(str(table)):
        per_day = _collect(
            _scan(table)
            .filter(pl.col(s.PARTITION_DATE).is_between(first, day))
            .group_by(s.PARTITION_DATE)
            .agg(
                linked=(pl.col("LinkedSocket") + pl.col("LinkedProcess")).sum(),
                legs=pl.col("ProxyLegs").sum(),
            ),
            "proxy_coverage",
        )
        sums = {r[0]: (int(r[1]), int(r[2])) for r in per_day.iter_rows()}
    points = []
    for n in range(days):
        d = first + timedelta(days=n)
        linked, legs = sums.get(d, (None, None))
        points.append(TrendPoint(day=d, linked=linked, legs=legs))
    return tuple(points)


def _validation(
    manifest: dict[str, Any], curated_root: Path, report_dir: Path
) -> ValidationSummary:
    v = manifest.get("validation") or {}
    if not v:
        return ValidationSummary(status="not recorded")
    status = "passed" if v.get("passed") else "failed"
    return ValidationSummary(
        status=status,
        warnings=tuple(str(w) for w in v.get("warnings", [])),
        href=_validation_href(v.get("report_pages") or [], curated_root, report_dir),
    )


def _validation_href(pages: list[str], curated_root: Path, report_dir: Path) -> str | None:
    """A relative link to the run's validation page, if the page is where the manifest says or
    in this curated root (the root may have moved since the run)."""
    if not pages:
        return None
    recorded = Path(pages[0])
    here = curated_root / "_reports" / "validation" / "runs" / recorded.name
    for candidate in (here, recorded):
        if candidate.is_file():
            rel = os.path.relpath(candidate.resolve(), report_dir.resolve())
            return quote(Path(rel).as_posix())
    return None
